//! Test support: app servers, certificates, a running berth, TLS clients.

pub mod app;
pub mod berth;
pub mod client;

pub use app::AppServer;
pub use berth::Berth;
pub use client::{Client, Proto};

/// A TLS listener with HSTS and a health path, for most tests.
pub const TLS_LISTENER: &str = "[[listener]]\nbind = \"127.0.0.1:0\"\ntls = true\nhsts = \"max-age=31536000\"\nhealth_path = \"/berth-health\"\n";

/// The `[pools.NAME]` table with these app servers in it.
pub fn pool(name: &str, apps: &[&AppServer]) -> String {
    let mut toml = format!("[pools.{name}]\nretries = 2\n");
    for app in apps {
        toml.push_str(&format!(
            "[[pools.{name}.servers]]\nname = \"{}\"\naddr = \"{}\"\n",
            app.name, app.addr
        ));
    }
    toml
}

/// The common setup: a certificate for `www.a.test`, a TLS listener, and
/// every request to `app`; `global` adds `[global]` keys (or sub-tables).
pub async fn one_app(pki: &TestPki, app: &AppServer, global: &str) -> Berth {
    Berth::builder()
        .cert("a.pem", pki.leaf_pem(&["www.a.test"]))
        .global(global)
        .config(TLS_LISTENER)
        .config("[[route]]\npool = \"web\"\n")
        .config(&pool("web", &[app]))
        .start()
        .await
}

/// Whether any access log line contains `needle`.
pub fn logged(lines: &[String], needle: &str) -> bool {
    lines.iter().any(|l| l.contains(needle))
}

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
