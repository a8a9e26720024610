//! Real handshakes between a rustls client and `server_config`, in memory.

use std::sync::Arc;

use rustls::crypto::aws_lc_rs;
use rustls::{ClientConfig, HandshakeKind, ProtocolVersion, RootCertStore, version};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::{Ca, Leaf};
use crate::tls::{ClientAuth, SniResolver, client_subject, load_pem, server_config};

struct Outcome {
    /// The leaf the client was shown.
    presented: CertificateDer<'static>,
    alpn: Option<Vec<u8>>,
    version: Option<ProtocolVersion>,
    kind: Option<HandshakeKind>,
    subject: Option<String>,
}

fn client(
    ca: &Ca,
    versions: &[&'static rustls::SupportedProtocolVersion],
    alpn: &[&[u8]],
) -> ClientConfig {
    let mut roots = RootCertStore::empty();
    roots.add(ca.der()).unwrap();
    let builder = ClientConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots);
    let mut config = builder.with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

/// Runs one handshake and a ping over it; `Err` if the handshake failed.
async fn connect(
    server: Arc<rustls::ServerConfig>,
    client: Arc<ClientConfig>,
    sni: &str,
) -> Result<Outcome, std::io::Error> {
    let (client_io, server_io) = duplex(64 * 1024);
    let acceptor = TlsAcceptor::from(server);
    let server = tokio::spawn(async move {
        let mut tls = acceptor.accept(server_io).await?;
        let mut ping = [0u8; 4];
        tls.read_exact(&mut ping).await?;
        tls.write_all(b"pong").await?;
        tls.flush().await?;
        let conn = tls.get_ref().1;
        let subject = conn.peer_certificates().and_then(client_subject);
        Ok::<_, std::io::Error>((conn.handshake_kind(), subject))
    });
    let name = ServerName::try_from(sni.to_owned()).unwrap();
    let mut tls = TlsConnector::from(client).connect(name, client_io).await?;
    tls.write_all(b"ping").await?;
    let mut pong = [0u8; 4];
    tls.read_exact(&mut pong).await?;
    assert_eq!(&pong, b"pong");
    let (kind, subject) = server.await.unwrap()?;
    let conn = tls.get_ref().1;
    Ok(Outcome {
        presented: conn.peer_certificates().unwrap()[0].clone(),
        alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
        version: conn.protocol_version(),
        kind,
        subject,
    })
}

fn resolver(leaves: &[(&str, &Leaf)]) -> Arc<SniResolver> {
    let bundles: Vec<(&str, String)> = leaves.iter().map(|(n, l)| (*n, l.bundle())).collect();
    let files: Vec<(&str, &[u8])> = bundles.iter().map(|(n, b)| (*n, b.as_bytes())).collect();
    let load = load_pem(&files, None);
    assert!(load.problems.is_empty(), "{:?}", load.problems);
    SniResolver::new(Arc::new(load.store))
}

#[tokio::test]
async fn sni_picks_the_certificate_and_alpn_prefers_h2() {
    let ca = Ca::root("Root");
    let a = ca.leaf(&["a.example.com"]);
    let b = ca.leaf(&["b.example.com"]);
    let config = server_config(resolver(&[("a.pem", &a), ("b.pem", &b)]), None).unwrap();
    let h2_and_h1: &[&[u8]] = &[b"http/1.1", b"h2"];
    let tls13 = Arc::new(client(&ca, &[&version::TLS13], h2_and_h1));

    let out = connect(Arc::clone(&config), Arc::clone(&tls13), "b.example.com").await;
    let out = out.unwrap();
    assert_eq!(out.presented, b.der);
    // The server's order wins: h2 first.
    assert_eq!(out.alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(out.version, Some(ProtocolVersion::TLSv1_3));

    let out = connect(Arc::clone(&config), tls13, "a.example.com").await;
    assert_eq!(out.unwrap().presented, a.der);

    let h1_only = Arc::new(client(&ca, &[&version::TLS13], &[b"http/1.1"]));
    let out = connect(config, h1_only, "a.example.com").await.unwrap();
    assert_eq!(out.alpn.as_deref(), Some(&b"http/1.1"[..]));
}

#[tokio::test]
async fn tls12_works_when_the_client_insists() {
    let ca = Ca::root("Root");
    let a = ca.leaf(&["a.example.com"]);
    let config = server_config(resolver(&[("a.pem", &a)]), None).unwrap();
    let tls12 = Arc::new(client(&ca, &[&version::TLS12], &[b"h2"]));
    let out = connect(config, tls12, "a.example.com").await.unwrap();
    assert_eq!(out.version, Some(ProtocolVersion::TLSv1_2));
    assert_eq!(out.presented, a.der);
}

#[tokio::test]
async fn sessions_resume() {
    let ca = Ca::root("Root");
    let a = ca.leaf(&["a.example.com"]);
    let config = server_config(resolver(&[("a.pem", &a)]), None).unwrap();
    for versions in [&[&version::TLS13], &[&version::TLS12]] {
        let client = Arc::new(client(&ca, versions, &[b"h2"]));
        let first = connect(Arc::clone(&config), Arc::clone(&client), "a.example.com").await;
        assert_eq!(first.unwrap().kind, Some(HandshakeKind::Full));
        let again = connect(Arc::clone(&config), client, "a.example.com").await;
        assert_eq!(again.unwrap().kind, Some(HandshakeKind::Resumed));
    }
}

#[tokio::test]
async fn swapped_store_serves_new_handshakes() {
    let ca = Ca::root("Root");
    let old = ca.leaf_issued(&["www.example.com"], 2024);
    let new = ca.leaf_issued(&["www.example.com"], 2025);
    let resolver = resolver(&[("www.pem", &old)]);
    let config = server_config(Arc::clone(&resolver), None).unwrap();
    let client = Arc::new(client(&ca, &[&version::TLS13], &[b"h2"]));
    let out = connect(Arc::clone(&config), Arc::clone(&client), "www.example.com").await;
    assert_eq!(out.unwrap().presented, old.der);

    let load = load_pem(&[("www.pem", new.bundle().as_bytes())], None);
    resolver.swap(Arc::new(load.store));
    // A fresh client, so the handshake is full and shows the certificate.
    let client = Arc::new(self::client(&ca, &[&version::TLS13], &[b"h2"]));
    let out = connect(config, client, "www.example.com").await.unwrap();
    assert_eq!(out.presented, new.der);
}

#[tokio::test]
async fn empty_store_fails_the_handshake() {
    let ca = Ca::root("Root");
    let config = server_config(resolver(&[]), None).unwrap();
    let client = Arc::new(client(&ca, &[&version::TLS13], &[b"h2"]));
    assert!(connect(config, client, "www.example.com").await.is_err());
}

#[tokio::test]
async fn client_certificates_are_verified() {
    let ca = Ca::root("Root");
    let site = ca.leaf(&["www.example.com"]);
    let clients = Ca::root("Client CA");
    let mut params = super::leaf_params(&[]);
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "Example, Inc");
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "alice");
    let alice = clients.issue(params, rcgen::KeyPair::generate().unwrap());

    let dir = tempfile::TempDir::new().unwrap();
    let ca_file = dir.path().join("clients.pem");
    std::fs::write(&ca_file, clients.pem()).unwrap();
    let required = ClientAuth::load(&ca_file, true).unwrap();
    let config = server_config(resolver(&[("www.pem", &site)]), Some(&required)).unwrap();

    let mut roots = RootCertStore::empty();
    roots.add(ca.der()).unwrap();
    let with_cert = ClientConfig::builder_with_provider(Arc::new(aws_lc_rs::default_provider()))
        .with_protocol_versions(&[&version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(
            vec![alice.der.clone()],
            PrivateKeyDer::from_pem_slice(alice.key_pem.as_bytes()).unwrap(),
        )
        .unwrap();
    let out = connect(Arc::clone(&config), Arc::new(with_cert), "www.example.com").await;
    assert_eq!(
        out.unwrap().subject.as_deref(),
        Some("CN=alice,O=Example\\, Inc")
    );

    let anonymous = Arc::new(client(&ca, &[&version::TLS13], &[b"h2"]));
    assert!(
        connect(Arc::clone(&config), anonymous.clone(), "www.example.com")
            .await
            .is_err()
    );

    let optional = ClientAuth::load(&ca_file, false).unwrap();
    let config = server_config(resolver(&[("www.pem", &site)]), Some(&optional)).unwrap();
    let out = connect(config, anonymous, "www.example.com").await.unwrap();
    assert_eq!(out.subject, None);

    assert!(ClientAuth::load(&dir.path().join("missing.pem"), true).is_err());
}
