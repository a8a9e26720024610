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
//! tickets and by a session cache. Certificates come from a [`SniResolver`]
//! whose store can be swapped while listeners run.

mod keys;
mod load;
mod store;
mod walk;

#[cfg(test)]
mod tests;

pub use keys::client_subject;
pub use load::{CertLoad, load_dir, load_pem, reload_dir};
pub use store::{CertEntry, CertInfo, CertProblem, CertStore, Severity};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("generating a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("the generated certificate is unusable: {0}")]
    Generated(String),
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
