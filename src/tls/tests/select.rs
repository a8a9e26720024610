//! Choosing a certificate by SNI, and the default certificate.

use tempfile::TempDir;

use super::{Ca, problems, write};
use crate::tls::{CertLoad, Severity, load_dir, load_pem};

/// The file of the certificate chosen for `sni`.
fn chosen(load: &CertLoad, sni: Option<&str>) -> Option<String> {
    let entry = load.store.select(sni)?;
    Some(entry.file.to_string_lossy().into_owned())
}

#[test]
fn newest_not_before_wins_and_the_old_one_is_dropped() {
    let root = Ca::root("Root");
    let old = root.leaf_issued(&["www.example.com"], 2024);
    let new = root.leaf_issued(&["www.example.com"], 2025);
    let load = load_pem(
        &[
            ("a-new.pem", new.bundle().as_bytes()),
            ("b-old.pem", old.bundle().as_bytes()),
        ],
        None,
    );
    assert_eq!(chosen(&load, Some("www.example.com")).unwrap(), "a-new.pem");
    // b-old.pem wins no name: it is never served.
    assert_eq!(load.store.len(), 1);

    // A certificate that still wins one name stays.
    let wider = root.leaf_issued(&["www.example.com", "old.example.com"], 2023);
    let load = load_pem(
        &[
            ("a.pem", new.bundle().as_bytes()),
            ("b.pem", wider.bundle().as_bytes()),
        ],
        None,
    );
    assert_eq!(chosen(&load, Some("www.example.com")).unwrap(), "a.pem");
    assert_eq!(chosen(&load, Some("old.example.com")).unwrap(), "b.pem");
}

#[test]
fn exact_beats_wildcard_even_when_older() {
    let root = Ca::root("Root");
    let exact = root.leaf_issued(&["www.example.com"], 2020);
    let wild = root.leaf_issued(&["*.example.com"], 2025);
    let load = load_pem(
        &[
            ("exact.pem", exact.bundle().as_bytes()),
            ("wild.pem", wild.bundle().as_bytes()),
        ],
        None,
    );
    assert_eq!(chosen(&load, Some("www.example.com")).unwrap(), "exact.pem");
    assert_eq!(chosen(&load, Some("api.example.com")).unwrap(), "wild.pem");
}

#[test]
fn wildcard_matches_exactly_one_label() {
    let root = Ca::root("Root");
    let wild = root.leaf(&["*.example.com"]);
    let other = root.leaf(&["other.test"]);
    let load = load_pem(
        &[
            ("a-other.pem", other.bundle().as_bytes()),
            ("wild.pem", wild.bundle().as_bytes()),
        ],
        None,
    );
    let store = &load.store;
    assert!(store.lookup("a.example.com").is_some());
    assert!(store.lookup("example.com").is_none());
    assert!(store.lookup("a.b.example.com").is_none());
    assert!(store.lookup(".example.com").is_none());
    // No match: the default (first file).
    assert_eq!(
        chosen(&load, Some("a.b.example.com")).unwrap(),
        "a-other.pem"
    );
}

#[test]
fn sni_case_and_trailing_dot_do_not_matter() {
    let leaf = Ca::root("Root").leaf(&["WWW.Example.com"]);
    let load = load_pem(&[("w.pem", leaf.bundle().as_bytes())], None);
    assert_eq!(load.store.summary()[0].names, ["www.example.com"]);
    assert!(load.store.lookup("www.EXAMPLE.com.").is_some());
}

#[test]
fn default_is_the_first_file_in_byte_order() {
    let root = Ca::root("Root");
    let a = root.leaf(&["dash.example.com"]);
    let b = root.leaf(&["slash.example.com"]);
    let dir = TempDir::new().unwrap();
    // Byte order puts "a-x.pem" ('-' is 0x2d) before "a/y.pem" ('/' is 0x2f).
    write(dir.path(), "a/y.pem", &b.bundle());
    write(dir.path(), "a-x.pem", &a.bundle());
    let load = load_dir(dir.path(), None);
    assert_eq!(chosen(&load, None).unwrap(), "a-x.pem");
    assert_eq!(chosen(&load, Some("unknown.test")).unwrap(), "a-x.pem");
    let files: Vec<_> = load.store.summary().into_iter().map(|i| i.file).collect();
    assert_eq!(files, ["a-x.pem", "a/y.pem"]);
}

#[test]
fn default_cert_by_name() {
    let root = Ca::root("Root");
    let a = root.leaf(&["a.example.com"]);
    let b = root.leaf(&["www.example.com"]);
    let wild = root.leaf(&["*.wild.test"]);
    let files = [
        ("a.pem", a.bundle()),
        ("b.pem", b.bundle()),
        ("c.pem", wild.bundle()),
    ];
    let files: Vec<(&str, &[u8])> = files.iter().map(|(n, p)| (*n, p.as_bytes())).collect();

    let load = load_pem(&files, Some("WWW.example.com"));
    assert!(load.problems.is_empty(), "{:?}", load.problems);
    assert_eq!(chosen(&load, None).unwrap(), "b.pem");
    assert_eq!(chosen(&load, Some("nothing.test")).unwrap(), "b.pem");

    // A name covered by a wildcard, or the wildcard itself.
    let load = load_pem(&files, Some("x.wild.test"));
    assert_eq!(chosen(&load, None).unwrap(), "c.pem");
    let load = load_pem(&files, Some("*.wild.test"));
    assert_eq!(chosen(&load, None).unwrap(), "c.pem");

    // Unknown: an error, and the first file serves.
    let load = load_pem(&files, Some("nowhere.test"));
    assert_eq!(chosen(&load, None).unwrap(), "a.pem");
    assert_eq!(
        problems(&load, Severity::Error),
        ["default_cert \"nowhere.test\" matches no certificate; using a.pem instead"]
    );
}

#[test]
fn empty_store_selects_nothing() {
    let load = load_pem(&[], None);
    assert!(load.store.select(None).is_none());
    assert!(load.store.select(Some("www.example.com")).is_none());
}
