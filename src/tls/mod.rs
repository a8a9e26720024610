//! TLS: certificates from `certs/`, the choice by SNI, and the one rustls policy.
//!
//! # Loading `certs/` ([`load_dir`])
//!
//! Every file under the directory, at any depth and through symbolic links
//! (a link back to a directory being walked is not followed), whose name ends
//! in `.pem`, `.crt`, `.cer` or `.key` is read; other files are ignored. Every
//! PEM item is parsed: certificates and PKCS#1, PKCS#8 and SEC1 private keys.
//!
//! - A **leaf** is a certificate that is not a CA, or a self-signed one with
//!   DNS names whose key is present (demo certificates made by
//!   `openssl req -x509` are marked CA). Other CA certificates are chain
//!   material: a file of only those (certbot's `chain.pem`) is fine.
//! - A leaf is **paired** with the private key whose public key
//!   (SubjectPublicKeyInfo) is the leaf's, wherever that key is: same file
//!   (HAProxy style), `NAME.key` beside `NAME.crt`, certbot's `privkey.pem`.
//! - Its **chain** is the leaf and the non-leaf certificates after it in the
//!   same file. When a leaf appears in several files, the longest chain wins
//!   (`fullchain.pem` over `cert.pem`), then a file that is itself a link
//!   (certbot's `live/` over `archive/`), then the first file in byte order.
//! - A file that does not parse, a leaf without its key, or a key that is not
//!   RSA 2048+, ECDSA P-256/P-384 or Ed25519 is an error [`CertProblem`]
//!   naming the file; everything else still loads. An expired certificate is
//!   served, with a warning. `NAME.ocsp` beside `NAME.pem` is stapled.
//! - On reload ([`reload_dir`]) a file in error keeps serving what the
//!   previous store had from it.
//!
//! # Choice by SNI ([`CertStore::select`])
//!
//! Names are the DNS SANs, lower-cased (the CN when there is none). An exact
//! name wins, then a wildcard: `*.example.com` covers `a.example.com` but not
//! `example.com` nor `a.b.example.com`. Among certificates for one name the
//! latest notBefore wins (ties: first file); a certificate that wins none of
//! its names is never served and is dropped from the store. Without SNI, or
//! with no match, the default certificate: `default_cert` (a name, looked up
//! the same way), else the first certificate in byte order of file path.
//!
//! # Policy ([`server_config`])
//!
//! aws-lc-rs, TLS 1.3 and 1.2 only, ALPN `h2` then `http/1.1`, resumption by
//! tickets and by a session cache. The server picks the cipher suite, AES-128-GCM
//! first: OpenSSL clients list AES-256-GCM-SHA384 first, whose SHA-384 key
//! schedule has no CPU instructions here (a sixth of a full handshake's
//! crypto) and whose AES costs 40% more rounds per byte; AES-128 is the
//! suite TLS 1.3 makes mandatory and as safe in practice. Certificates come from a [`SniResolver`]
//! whose store can be swapped while listeners run.

mod keys;
mod load;
mod store;
mod walk;

#[cfg(test)]
mod tests;

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::RootCertStore;
use rustls::crypto::aws_lc_rs;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{
    ClientHello, ResolvesServerCert, ServerSessionMemoryCache, WebPkiClientVerifier,
};
use rustls::sign::CertifiedKey;
use rustls::{CipherSuite, ServerConfig, version};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

pub use keys::client_subject;
pub use load::{CertLoad, load_dir, load_pem, reload_dir};
pub use store::{CertEntry, CertInfo, CertProblem, CertStore, Severity};

/// Sessions remembered for resumption by session id, per listener.
const SESSION_CACHE_ENTRIES: usize = 20_000;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client certificate verification: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("{}: {reason}", path.display())]
    ClientCa { path: PathBuf, reason: String },
    #[error("generating a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("the generated certificate is unusable: {0}")]
    Generated(String),
}

/// Picks the certificate for each handshake from a swappable [`CertStore`].
pub struct SniResolver {
    store: ArcSwap<CertStore>,
}

impl SniResolver {
    pub fn new(store: Arc<CertStore>) -> Arc<Self> {
        Arc::new(Self {
            store: ArcSwap::new(store),
        })
    }

    /// Serves `store` from the next handshake on; connections are not disturbed.
    pub fn swap(&self, store: Arc<CertStore>) {
        self.store.store(store);
    }

    /// The store being served.
    pub fn store(&self) -> Arc<CertStore> {
        self.store.load_full()
    }
}

impl fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SniResolver")
            .field("store", &*self.store.load())
            .finish()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let sni = hello.server_name();
        let chosen = self.store.load().select(sni).map(|e| Arc::clone(&e.key));
        if chosen.is_none() {
            tracing::debug!(tls.sni = sni, "no certificate to present");
        }
        chosen
    }
}

/// Client certificates for a listener (`client_ca`, `client_auth`).
#[derive(Clone, Debug)]
pub struct ClientAuth {
    roots: Arc<RootCertStore>,
    required: bool,
}

impl ClientAuth {
    /// Reads the CA certificates (PEM) that client certificates must chain to.
    pub fn load(path: &Path, required: bool) -> Result<Self, TlsError> {
        let problem = |reason: String| TlsError::ClientCa {
            path: path.to_path_buf(),
            reason,
        };
        let bytes = fs::read(path).map_err(|e| problem(format!("cannot read: {e}")))?;
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(&bytes) {
            let cert = cert.map_err(|e| problem(format!("not valid PEM: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| problem(format!("unusable CA certificate: {e}")))?;
        }
        if roots.is_empty() {
            return Err(problem("holds no CA certificate".into()));
        }
        Ok(Self {
            roots: Arc::new(roots),
            required,
        })
    }
}

/// The TLS policy of every listener, in one place.
pub fn server_config(
    resolver: Arc<SniResolver>,
    client_auth: Option<&ClientAuth>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let mut provider = aws_lc_rs::default_provider();
    // A stable sort: the AES-128-GCM suites first, the rest as rustls orders them.
    provider.cipher_suites.sort_by_key(|suite| {
        !matches!(
            suite.suite(),
            CipherSuite::TLS13_AES_128_GCM_SHA256
                | CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
                | CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        )
    });
    let provider = Arc::new(provider);
    let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&version::TLS13, &version::TLS12])?;
    let verifier: Arc<dyn ClientCertVerifier> = match client_auth {
        None => WebPkiClientVerifier::no_client_auth(),
        Some(auth) => {
            let builder =
                WebPkiClientVerifier::builder_with_provider(Arc::clone(&auth.roots), provider);
            match auth.required {
                true => builder.build()?,
                false => builder.allow_unauthenticated().build()?,
            }
        }
    };
    let mut config = builder
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.ignore_client_order = true;
    config.session_storage = ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES);
    config.ticketer = aws_lc_rs::Ticketer::new()?;
    Ok(Arc::new(config))
}

/// A certificate made in memory, for `berth demo` and tests.
pub struct SelfSigned {
    pub cert_pem: String,
    pub key_pem: String,
    /// Holds only this certificate, from the file `(generated)`.
    pub store: CertStore,
}

/// Makes a self-signed ECDSA P-256 certificate for `names`.
pub fn self_signed(names: &[&str]) -> Result<SelfSigned, TlsError> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>())?;
    let mut subject = rcgen::DistinguishedName::new();
    subject.push(
        rcgen::DnType::CommonName,
        names.first().copied().unwrap_or("berth demo"),
    );
    params.distinguished_name = subject;
    let cert_pem = params.self_signed(&key)?.pem();
    let key_pem = key.serialize_pem();
    let bundle = format!("{cert_pem}{key_pem}");
    let load = load_pem(&[("(generated)", bundle.as_bytes())], None);
    if load.has_errors() || load.store.is_empty() {
        let problems: Vec<String> = load.problems.iter().map(|p| p.to_string()).collect();
        return Err(TlsError::Generated(problems.join("; ")));
    }
    Ok(SelfSigned {
        cert_pem,
        key_pem,
        store: load.store,
    })
}
