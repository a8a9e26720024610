//! Reading certs/: pairing, chains, layouts, and problems.

use std::fs;
use std::path::Path;

use rcgen::{KeyPair, date_time_ymd};
use tempfile::TempDir;

use super::{Ca, leaf_params, link, problems, served, write};
use crate::tls::{CertProblem, Severity, load_dir, load_pem};

fn chain_len(load: &crate::tls::CertLoad, file: &str) -> usize {
    let entry = load
        .store
        .entries()
        .iter()
        .find(|e| e.file == Path::new(file));
    entry.unwrap().key.cert.len()
}

#[test]
fn cert_chain_and_key_in_one_file() {
    let root = Ca::root("Root");
    let inter = root.intermediate("Intermediate");
    let leaf = inter.leaf(&["www.example.com"]);
    let dir = TempDir::new().unwrap();
    let pem = format!("{}{}{}", leaf.cert_pem, inter.pem(), leaf.key_pem);
    write(dir.path(), "site.pem", &pem);

    let load = load_dir(dir.path(), None);
    assert!(load.problems.is_empty(), "{:?}", load.problems);
    assert_eq!(
        served(&load),
        [("site.pem".into(), vec!["www.example.com".into()])]
    );
    let entry = &load.store.entries()[0];
    assert_eq!(entry.key.cert, [leaf.der, inter.der()]);
}

#[test]
fn key_first_then_cert_in_one_file() {
    let leaf = Ca::root("Root").leaf(&["a.example.com"]);
    let dir = TempDir::new().unwrap();
    write(
        dir.path(),
        "a.pem",
        &format!("{}{}", leaf.key_pem, leaf.cert_pem),
    );
    let load = load_dir(dir.path(), None);
    assert!(load.problems.is_empty(), "{:?}", load.problems);
    assert_eq!(load.store.len(), 1);
}

#[test]
fn crt_with_key_beside_it() {
    let leaf = Ca::root("Root").leaf(&["api.example.com"]);
    let dir = TempDir::new().unwrap();
    write(dir.path(), "sites/api.crt", &leaf.cert_pem);
    write(dir.path(), "sites/api.key", &leaf.key_pem);
    let load = load_dir(dir.path(), None);
    assert!(load.problems.is_empty(), "{:?}", load.problems);
    assert_eq!(
        served(&load),
        [("sites/api.crt".into(), vec!["api.example.com".into()])]
    );
}

#[test]
fn certbot_layout_through_symlinks() {
    let root = Ca::root("Root");
    let inter = root.intermediate("R3");
    let old = inter.leaf_issued(&["example.com", "www.example.com"], 2024);
    let new = inter.leaf_issued(&["example.com", "www.example.com"], 2025);
    let dir = TempDir::new().unwrap();
    let d = dir.path();
    for (n, leaf) in [(1, &old), (2, &new)] {
        let archive = "archive/example.com";
        write(d, &format!("{archive}/cert{n}.pem"), &leaf.cert_pem);
        write(d, &format!("{archive}/chain{n}.pem"), &inter.pem());
        let full = format!("{}{}", leaf.cert_pem, inter.pem());
        write(d, &format!("{archive}/fullchain{n}.pem"), &full);
        write(d, &format!("{archive}/privkey{n}.pem"), &leaf.key_pem);
    }
    for name in ["cert", "chain", "fullchain", "privkey"] {
        let target = format!("../../archive/example.com/{name}2.pem");
        link(d, &format!("live/example.com/{name}.pem"), &target);
    }
    write(
        d,
        "live/example.com/README",
        "This directory contains your keys.\n",
    );
    write(d, "live/README", "certbot readme\n");

    let load = load_dir(d, None);
    assert!(load.problems.is_empty(), "{:?}", load.problems);
    // The renewal wins both names; the longest chain through the live/ link.
    assert_eq!(
        served(&load),
        [(
            "live/example.com/fullchain.pem".into(),
            vec!["example.com".into(), "www.example.com".into()]
        )]
    );
    assert_eq!(load.store.entries()[0].key.cert, [new.der, inter.der()]);
}

#[test]
fn longest_chain_wins() {
    let root = Ca::root("Root");
    let inter = root.intermediate("Intermediate");
    let leaf = inter.leaf(&["www.example.com"]);
    let dir = TempDir::new().unwrap();
    write(dir.path(), "a-short.pem", &leaf.bundle());
    let long = format!("{}{}{}", leaf.cert_pem, inter.pem(), root.pem());
    write(dir.path(), "z-long.pem", &long);
    let load = load_dir(dir.path(), None);
    assert!(load.problems.is_empty(), "{:?}", load.problems);
    assert_eq!(load.store.len(), 1);
    assert_eq!(chain_len(&load, "z-long.pem"), 3);
}

#[test]
fn chain_stops_at_next_leaf() {
    let root = Ca::root("Root");
    let inter = root.intermediate("Intermediate");
    let a = inter.leaf(&["a.example.com"]);
    let b = inter.leaf(&["b.example.com"]);
    let dir = TempDir::new().unwrap();
    let pem = format!(
        "{}{}{}{}{}{}",
        a.cert_pem,
        inter.pem(),
        a.key_pem,
        b.cert_pem,
        inter.pem(),
        b.key_pem
    );
    write(dir.path(), "both.pem", &pem);
    let load = load_dir(dir.path(), None);
    assert!(load.problems.is_empty(), "{:?}", load.problems);
    assert_eq!(load.store.len(), 2);
    assert!(load.store.entries().iter().all(|e| e.key.cert.len() == 2));
}

#[test]
fn broken_file_is_skipped_and_named() {
    let leaf = Ca::root("Root").leaf(&["ok.example.com"]);
    let dir = TempDir::new().unwrap();
    write(dir.path(), "good.pem", &leaf.bundle());
    let bad_base64 = "-----BEGIN CERTIFICATE-----\n!!! not base64 !!!\n-----END CERTIFICATE-----\n";
    write(dir.path(), "bad/base64.pem", bad_base64);
    let bad_der = "-----BEGIN CERTIFICATE-----\nAAECAwQ=\n-----END CERTIFICATE-----\n";
    write(dir.path(), "bad/der.crt", bad_der);
    write(dir.path(), "bad/empty.key", "");
    write(dir.path(), "bad/text.cer", "hello\n");

    let load = load_dir(dir.path(), None);
    assert_eq!(served(&load).len(), 1);
    let errors: Vec<_> = load
        .problems
        .iter()
        .map(|p| (p.file.to_str().unwrap(), p.severity))
        .collect();
    assert_eq!(
        errors,
        [
            ("bad/base64.pem", Severity::Error),
            ("bad/der.crt", Severity::Error),
            ("bad/empty.key", Severity::Error),
            ("bad/text.cer", Severity::Error),
        ]
    );
    assert!(load.problems[1].message.contains("not valid X.509"));
    assert!(load.has_errors());
}

#[test]
fn cert_without_key_and_key_without_cert() {
    let root = Ca::root("Root");
    let lonely_cert = root.leaf(&["www.example.com"]);
    let lonely_key = root.leaf(&["other.example.com"]);
    let good = root.leaf(&["good.example.com"]);
    let dir = TempDir::new().unwrap();
    write(dir.path(), "foo.pem", &lonely_cert.cert_pem);
    write(dir.path(), "stray.key", &lonely_key.key_pem);
    write(dir.path(), "good.pem", &good.bundle());

    let load = load_dir(dir.path(), None);
    assert_eq!(load.store.len(), 1);
    let expected = format!(
        "{}: no private key matches the certificate for www.example.com",
        dir.path().join("foo.pem").display()
    );
    assert_eq!(problems(&load, Severity::Error), [expected]);
    let stray = format!(
        "{}: private key matches no certificate",
        dir.path().join("stray.key").display()
    );
    assert_eq!(problems(&load, Severity::Warning), [stray]);
}

#[test]
fn problem_display_names_the_file_under_the_certs_dir() {
    let problem = CertProblem::error(
        Path::new("certs"),
        Path::new("foo.pem"),
        "no private key matches the certificate for www.example.com",
    );
    assert_eq!(
        problem.to_string(),
        "certs/foo.pem: no private key matches the certificate for www.example.com"
    );
    let whole_dir = CertProblem::error(Path::new("certs"), Path::new(""), "is not a directory");
    assert_eq!(whole_dir.to_string(), "certs: is not a directory");
}

#[test]
fn expired_certificate_is_served_with_a_warning() {
    let root = Ca::root("Root");
    let mut params = leaf_params(&["old.example.com"]);
    params.not_before = date_time_ymd(2019, 1, 1);
    params.not_after = date_time_ymd(2020, 1, 1);
    let expired = root.issue(params, KeyPair::generate().unwrap());
    let dir = TempDir::new().unwrap();
    write(dir.path(), "old.pem", &expired.bundle());

    let load = load_dir(dir.path(), None);
    assert!(!load.has_errors());
    let warnings = problems(&load, Severity::Warning);
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].contains("old.pem: certificate for old.example.com expired on 2020-01-01"));
    let info = &load.store.summary()[0];
    assert!(info.expired);
    assert_eq!(info.not_after.timestamp(), 1_577_836_800);
    assert!(load.store.select(Some("old.example.com")).is_some());
}

#[test]
fn other_files_are_ignored() {
    let dir = TempDir::new().unwrap();
    write(
        dir.path(),
        "README",
        "-----BEGIN CERTIFICATE-----\ngarbage\n",
    );
    write(dir.path(), "notes.txt", "not a cert");
    write(dir.path(), "example.com.ocsp", "binary");
    let load = load_dir(dir.path(), None);
    assert!(load.problems.is_empty(), "{:?}", load.problems);
    assert!(load.store.is_empty());
}

#[test]
fn symlink_loop_does_not_hang() {
    let leaf = Ca::root("Root").leaf(&["www.example.com"]);
    let dir = TempDir::new().unwrap();
    write(dir.path(), "sub/site.pem", &leaf.bundle());
    link(dir.path(), "sub/again", "..");
    link(dir.path(), "self", ".");

    let load = load_dir(dir.path(), None);
    assert!(!load.has_errors(), "{:?}", load.problems);
    assert_eq!(load.store.len(), 1);
    let warnings = problems(&load, Severity::Warning);
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings.iter().all(|w| w.contains("symbolic link loop")));
}

#[test]
fn missing_dir_is_one_error() {
    let dir = TempDir::new().unwrap();
    let load = load_dir(&dir.path().join("certs"), None);
    assert!(load.store.is_empty());
    assert_eq!(load.problems.len(), 1);
    assert_eq!(load.problems[0].severity, Severity::Error);
    assert!(load.problems[0].to_string().contains("certs: cannot read"));
}

#[test]
fn dangling_link_is_an_error() {
    let dir = TempDir::new().unwrap();
    link(dir.path(), "gone.pem", "nowhere.pem");
    let load = load_dir(dir.path(), None);
    assert_eq!(problems(&load, Severity::Error).len(), 1);
}

#[test]
fn supported_key_types_load() {
    let root = Ca::root("Root");
    let dir = TempDir::new().unwrap();
    let rsa = KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048);
    let keys = [
        ("rsa.pem", rsa.unwrap()),
        (
            "p384.pem",
            KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).unwrap(),
        ),
        (
            "ed25519.pem",
            KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap(),
        ),
    ];
    for (file, key) in keys {
        let name = file.replace(".pem", ".example.com");
        let leaf = root.issue(leaf_params(&[&name]), key);
        write(dir.path(), file, &leaf.bundle());
    }
    let load = load_dir(dir.path(), None);
    assert!(load.problems.is_empty(), "{:?}", load.problems);
    assert_eq!(load.store.len(), 3);
}

#[test]
fn weak_and_unsupported_keys_are_refused() {
    let dir = TempDir::new().unwrap();
    write(
        dir.path(),
        "weak.pem",
        include_str!("../testdata/rsa1024.pem"),
    );
    let p521 = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P521_SHA512).unwrap();
    let leaf = Ca::root("Root").issue(leaf_params(&["p521.example.com"]), p521);
    write(dir.path(), "p521.pem", &leaf.bundle());

    let load = load_dir(dir.path(), None);
    assert!(load.store.is_empty());
    let errors = problems(&load, Severity::Error).join("\n");
    assert!(
        errors.contains("certificate for weak.example.com has a 1024-bit RSA key; 2048 bits"),
        "{errors}"
    );
    assert!(errors.contains("p521.pem: certificate for p521.example.com has an ECDSA P-521 key"));
}

#[test]
fn encrypted_key_is_refused_clearly() {
    let dir = TempDir::new().unwrap();
    let pem = "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n";
    write(dir.path(), "site.key", pem);
    let load = load_dir(dir.path(), None);
    assert!(problems(&load, Severity::Error)[0].contains("encrypted private keys"));
}

#[test]
fn self_signed_demo_cert_marked_ca_is_a_leaf() {
    // `openssl req -x509` marks its certificate CA:TRUE.
    let key = KeyPair::generate().unwrap();
    let mut params = leaf_params(&["demo.test"]);
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).unwrap();
    let bundle = format!("{}{}", cert.pem(), key.serialize_pem());
    let load = load_pem(&[("demo.pem", bundle.as_bytes())], None);
    assert!(load.problems.is_empty(), "{:?}", load.problems);
    assert_eq!(
        served(&load),
        [("demo.pem".into(), vec!["demo.test".into()])]
    );
}

#[test]
fn ca_only_files_and_der_cer_are_fine() {
    let root = Ca::root("Root");
    let dir = TempDir::new().unwrap();
    write(dir.path(), "chain.pem", &root.intermediate("R3").pem());
    fs::write(dir.path().join("root.cer"), root.der().as_ref()).unwrap();
    let load = load_dir(dir.path(), None);
    assert!(load.problems.is_empty(), "{:?}", load.problems);
    assert!(load.store.is_empty());
}

#[test]
fn common_name_when_there_is_no_san() {
    let root = Ca::root("Root");
    let mut params = leaf_params(&[]);
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Legacy.Example.com");
    let leaf = root.issue(params, KeyPair::generate().unwrap());
    let load = load_pem(&[("legacy.pem", leaf.bundle().as_bytes())], None);
    assert_eq!(served(&load)[0].1, ["legacy.example.com"]);
}

#[test]
fn ocsp_response_beside_the_file_is_stapled() {
    let leaf = Ca::root("Root").leaf(&["www.example.com"]);
    let dir = TempDir::new().unwrap();
    write(dir.path(), "www.pem", &leaf.bundle());
    fs::write(dir.path().join("www.ocsp"), [0x30, 0x03, 0x0a, 0x01, 0x00]).unwrap();
    let load = load_dir(dir.path(), None);
    let ocsp = load.store.entries()[0].key.ocsp.clone();
    assert_eq!(ocsp, Some(vec![0x30, 0x03, 0x0a, 0x01, 0x00]));
}

#[test]
fn self_signed_makes_a_usable_store() {
    let demo = crate::tls::self_signed(&["localhost", "demo.berth.test"]).unwrap();
    assert!(demo.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
    assert!(demo.key_pem.contains("PRIVATE KEY"));
    assert_eq!(
        served(&crate::tls::CertLoad {
            store: demo.store,
            problems: Vec::new()
        }),
        [(
            "(generated)".into(),
            vec!["localhost".into(), "demo.berth.test".into()]
        )]
    );
}

#[test]
fn other_pem_sections_alone_are_a_warning() {
    let dir = TempDir::new().unwrap();
    let dh = "-----BEGIN DH PARAMETERS-----\nMAYCAQACAQI=\n-----END DH PARAMETERS-----\n";
    write(dir.path(), "dhparam.pem", dh);
    let load = load_dir(dir.path(), None);
    assert!(!load.has_errors());
    assert_eq!(problems(&load, Severity::Warning).len(), 1);
}

#[test]
fn reload_keeps_the_previous_certificate_of_a_broken_file() {
    let root = Ca::root("Root");
    let www = root.leaf(&["www.example.com"]);
    let api = root.leaf(&["api.example.com"]);
    let dir = TempDir::new().unwrap();
    write(dir.path(), "www.crt", &www.cert_pem);
    write(dir.path(), "www.key", &www.key_pem);
    write(dir.path(), "api.pem", &api.bundle());
    let first = load_dir(dir.path(), None);
    assert_eq!(first.store.len(), 2);

    // The new .crt lands before its .key; api.pem is overwritten with junk.
    let renewed = root.leaf_issued(&["www.example.com"], 2025);
    write(dir.path(), "www.crt", &renewed.cert_pem);
    write(dir.path(), "api.pem", "-----BEGIN CERTIFICATE-----\n!!\n");
    let again = crate::tls::reload_dir(dir.path(), None, &first.store);
    assert!(again.has_errors());
    let warnings = problems(&again, Severity::Warning);
    let kept = warnings
        .iter()
        .filter(|w| w.contains("keeping the certificate"));
    assert_eq!(kept.count(), 2, "{warnings:?}");
    let served = |name| again.store.lookup(name).unwrap().key.cert[0].clone();
    assert_eq!(served("www.example.com"), www.der);
    assert_eq!(served("api.example.com"), api.der);

    // Once the key is there, the renewal serves.
    write(dir.path(), "www.key", &renewed.key_pem);
    let fixed = crate::tls::reload_dir(dir.path(), None, &again.store);
    assert_eq!(
        fixed.store.lookup("www.example.com").unwrap().key.cert[0],
        renewed.der
    );
}
