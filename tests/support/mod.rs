//! Test support: app servers, certificates, a running berth, TLS clients.

pub mod app;
pub mod berth;
pub mod client;

pub use app::AppServer;
pub use berth::Berth;
pub use client::{Client, Proto};

/// A test CA and leaf certificates it signed, written as PEM.
pub struct TestPki {
    pub ca_pem: String,
    ca: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl TestPki {
    pub fn new() -> TestPki {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "berth test CA");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        TestPki {
            ca_pem: cert.pem(),
            ca: rcgen::Issuer::new(params, key),
        }
    }

    /// A leaf for `names`, as one HAProxy-style PEM (certificate, key).
    pub fn leaf_pem(&self, names: &[&str]) -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = rcgen::CertificateParams::new(names.clone()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, names[0].clone());
        let cert = params.signed_by(&key, &self.ca).unwrap();
        format!("{}{}", cert.pem(), key.serialize_pem())
    }
}
