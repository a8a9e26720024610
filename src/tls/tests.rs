//! Test helpers: a CA that issues leaves with rcgen, and a certs/ tree on disk.
#![allow(clippy::unwrap_used)]

mod handshake;
mod load;
mod select;

use std::fs;
use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, date_time_ymd,
};
use rustls_pki_types::CertificateDer;

use super::{CertLoad, Severity};

/// A certificate authority that issues test certificates.
pub(super) struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    pub(super) fn root(cn: &str) -> Self {
        let issuer = CertifiedIssuer::self_signed(ca_params(cn), KeyPair::generate().unwrap());
        Self {
            issuer: issuer.unwrap(),
        }
    }

    pub(super) fn intermediate(&self, cn: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let issuer = CertifiedIssuer::signed_by(ca_params(cn), key, &self.issuer).unwrap();
        Self { issuer }
    }

    pub(super) fn pem(&self) -> String {
        self.issuer.pem()
    }

    pub(super) fn der(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// A leaf for `names` with an ECDSA P-256 key, valid 1975–4096.
    pub(super) fn leaf(&self, names: &[&str]) -> Leaf {
        self.issue(leaf_params(names), KeyPair::generate().unwrap())
    }

    /// A leaf issued on `year`-01-01 (a later year: a renewal).
    pub(super) fn leaf_issued(&self, names: &[&str], year: i32) -> Leaf {
        let mut params = leaf_params(names);
        params.not_before = date_time_ymd(year, 1, 1);
        self.issue(params, KeyPair::generate().unwrap())
    }

    pub(super) fn issue(&self, params: CertificateParams, key: KeyPair) -> Leaf {
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }
}

pub(super) struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
}

impl Leaf {
    /// Certificate then key, the HAProxy way.
    pub(super) fn bundle(&self) -> String {
        format!("{}{}", self.cert_pem, self.key_pem)
    }
}

fn ca_params(cn: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
}

pub(super) fn leaf_params(names: &[&str]) -> CertificateParams {
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let mut params = CertificateParams::new(names).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, "leaf");
    params
}

/// Writes `contents` to `root/rel`, creating directories.
pub(super) fn write(root: &Path, rel: &str, contents: &str) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, contents).unwrap();
}

/// Makes `root/rel` a symbolic link to `target` (relative to the link's folder).
pub(super) fn link(root: &Path, rel: &str, target: &str) {
    let path = root.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(target, path).unwrap();
}

/// `(file, names)` of every served certificate, in store order.
pub(super) fn served(load: &CertLoad) -> Vec<(String, Vec<String>)> {
    load.store
        .summary()
        .into_iter()
        .map(|info| (info.file, info.names))
        .collect()
}

/// Problems of one severity, as displayed.
pub(super) fn problems(load: &CertLoad, severity: Severity) -> Vec<String> {
    load.problems
        .iter()
        .filter(|p| p.severity == severity)
        .map(ToString::to_string)
        .collect()
}
