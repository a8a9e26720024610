//! Certificate choice by SNI and protocol negotiation, with a real client.

use crate::support::{AppServer, Berth, Client, Proto, TLS_LISTENER, TestPki, pool};

fn leaf_names(tls: &tokio_rustls::client::TlsStream<tokio::net::TcpStream>) -> Vec<String> {
    let certs = tls.get_ref().1.peer_certificates().unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(&certs[0]).unwrap();
    let san = cert.subject_alternative_name().unwrap().unwrap();
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            x509_parser::extensions::GeneralName::DNSName(name) => Some(name.to_string()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn sni_picks_the_certificate_and_alpn_the_protocol() {
    let pki = TestPki::new();
    let app = AppServer::start("app").await;
    let berth = Berth::builder()
        .cert("a.pem", pki.leaf_pem(&["www.a.test"]))
        .cert("b.pem", pki.leaf_pem(&["*.b.test"]))
        .config(TLS_LISTENER)
        .config("[[route]]\npool = \"web\"\n")
        .config(&pool("web", &[&app]))
        .start()
        .await;
    let a = Client::new(&pki.ca_pem, berth.addr(), "www.a.test", Proto::H2)
        .tls()
        .await;
    assert_eq!(leaf_names(&a), ["www.a.test"]);
    assert_eq!(a.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let b = Client::new(&pki.ca_pem, berth.addr(), "api.b.test", Proto::H1)
        .tls()
        .await;
    assert_eq!(leaf_names(&b), ["*.b.test"], "wildcard for one more label");
    assert_eq!(b.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    assert!(
        matches!(
            b.get_ref().1.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_3)
        ),
        "TLS 1.3 when the client offers it"
    );
    berth.stop().await;
}
