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

/// A client presenting `cert_and_key` (PEM) to berth.
fn client_with_cert(ca_pem: &str, cert_and_key: &str) -> tokio_rustls::TlsConnector {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let chain: Vec<_> = CertificateDer::pem_slice_iter(cert_and_key.as_bytes())
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_slice(cert_and_key.as_bytes()).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
}

#[tokio::test]
async fn verified_client_certificates_name_their_subject_upstream() {
    let pki = TestPki::new();
    let app = AppServer::start("app").await;
    let berth = Berth::builder()
        .cert("a.pem", pki.leaf_pem(&["www.a.test"]))
        .cert("clients-ca.pem", pki.ca_pem.clone())
        .config(
            "[[listener]]\nbind = \"127.0.0.1:0\"\ntls = true\n\
             client_ca = \"{certs}/clients-ca.pem\"\nclient_auth = \"required\"\n",
        )
        .config("[[route]]\npool = \"web\"\n")
        .config(&pool("web", &[&app]))
        .start()
        .await;

    // With a certificate from the CA: its subject goes upstream, a forged
    // header does not.
    let connector = client_with_cert(&pki.ca_pem, &pki.leaf_pem(&["alice"]));
    let tcp = tokio::net::TcpStream::connect(berth.addr()).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("www.a.test").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("/")
        .header("host", "www.a.test")
        .header("x-client-cert-subject", "CN=mallory")
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let answer = crate::support::client::read(sender.send_request(req).await.unwrap()).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.header("x-seen-x-client-cert-subject"), "CN=alice");

    // Without one, `required` refuses: the request never reaches the app.
    let anonymous = Client::new(&pki.ca_pem, berth.addr(), "www.a.test", Proto::H1);
    let tcp = tokio::net::TcpStream::connect(berth.addr()).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("www.a.test").unwrap();
    let refused = match anonymous.connector().connect(name, tcp).await {
        Err(_) => true,
        // TLS 1.3: the refusal arrives after the client's handshake ends.
        Ok(mut tls) => {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let _ = tls.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").await;
            let mut buf = [0u8; 64];
            !matches!(tls.read(&mut buf).await, Ok(n) if n > 0)
        }
    };
    assert!(refused, "no client certificate, no service");
    assert_eq!(app.hits(), 1);
    berth.stop().await;
}
