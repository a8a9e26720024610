//! Turning certificate files into a [`CertStore`]: parse every PEM item, pair
//! each leaf with its private key by public key, pick the longest chain.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rustls::crypto::CryptoProvider;
use rustls::sign::{CertifiedKey, SigningKey};
use rustls_pki_types::pem::{PemObject, SectionKind};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use super::keys::check_key;
use super::store::{CertEntry, CertProblem, CertStore, label};
use super::walk::{SourceFile, read_tree};

/// The outcome of loading certificates: what serves, and what is wrong.
#[derive(Debug, Default)]
pub struct CertLoad {
    pub store: CertStore,
    pub problems: Vec<CertProblem>,
}

impl CertLoad {
    /// Whether any problem is an error (warnings, such as expiry, are not).
    pub fn has_errors(&self) -> bool {
        use super::store::Severity;
        self.problems.iter().any(|p| p.severity == Severity::Error)
    }
}

/// Loads every certificate under `dir`; see the module docs for the rules.
pub fn load_dir(dir: &Path, default_cert: Option<&str>) -> CertLoad {
    let mut problems = Vec::new();
    let files = read_tree(dir, &mut problems);
    build(dir, files, default_cert, Source::Dir(None), problems)
}

/// Like [`load_dir`], but a file in error keeps serving the certificates
/// `previous` had from it (a broken replacement, or a `.crt` written before
/// its `.key`), with a warning.
pub fn reload_dir(dir: &Path, default_cert: Option<&str>, previous: &CertStore) -> CertLoad {
    let mut problems = Vec::new();
    let files = read_tree(dir, &mut problems);
    build(
        dir,
        files,
        default_cert,
        Source::Dir(Some(previous)),
        problems,
    )
}

/// Loads certificates from in-memory files `(name, contents)`, as if they
/// were files of that name in a certificate directory (no OCSP files).
pub fn load_pem(files: &[(&str, &[u8])], default_cert: Option<&str>) -> CertLoad {
    let files = files
        .iter()
        .map(|(name, bytes)| SourceFile {
            rel: PathBuf::from(name),
            link: false,
            bytes: bytes.to_vec(),
        })
        .collect();
    build(
        Path::new(""),
        files,
        default_cert,
        Source::Memory,
        Vec::new(),
    )
}

/// Where the files came from: a directory (OCSP files beside them, maybe a
/// store to fall back on) or memory.
#[derive(Clone, Copy)]
enum Source<'a> {
    Dir(Option<&'a CertStore>),
    Memory,
}

struct ParsedCert {
    der: CertificateDer<'static>,
    spki: Vec<u8>,
    names: Vec<String>,
    not_before: DateTime<Utc>,
    not_after: DateTime<Utc>,
    ca: bool,
    /// Self-signed with DNS SANs: a demo certificate, even if marked CA.
    demo: bool,
    key_check: Result<(), String>,
}

struct ParsedKey {
    spki: Vec<u8>,
    key: Arc<dyn SigningKey>,
}

struct ParsedFile {
    rel: PathBuf,
    link: bool,
    certs: Vec<ParsedCert>,
    keys: Vec<ParsedKey>,
}

/// The best chain seen so far for one leaf certificate.
struct Candidate {
    file: usize,
    pos: usize,
    len: usize,
}

fn build(
    dir: &Path,
    files: Vec<SourceFile>,
    default_cert: Option<&str>,
    source: Source<'_>,
    mut problems: Vec<CertProblem>,
) -> CertLoad {
    let parsed = parse_all(dir, files, &mut problems);
    let mut keys: HashMap<&[u8], &Arc<dyn SigningKey>> = HashMap::new();
    for key in parsed.iter().flat_map(|f| &f.keys) {
        keys.entry(key.spki.as_slice()).or_insert(&key.key);
    }
    let candidates = best_chains(&parsed, &keys);

    let now = Utc::now();
    let mut used: HashSet<&[u8]> = HashSet::new();
    let mut entries = Vec::new();
    for cand in &candidates {
        let Some(file) = parsed.get(cand.file) else {
            continue;
        };
        let Some(chain) = file.certs.get(cand.pos..cand.pos + cand.len) else {
            continue;
        };
        let Some(leaf) = chain.first() else {
            continue;
        };
        let key = keys.get(leaf.spki.as_slice());
        if key.is_some() {
            used.insert(leaf.spki.as_slice());
        }
        let name = label(&leaf.names);
        if let Err(why) = &leaf.key_check {
            let message = format!("certificate for {name} {why}");
            problems.push(CertProblem::error(dir, &file.rel, message));
            continue;
        }
        let Some(&key) = key else {
            let message = format!("no private key matches the certificate for {name}");
            problems.push(CertProblem::error(dir, &file.rel, message));
            continue;
        };
        if leaf.not_before > now {
            let message = format!(
                "certificate for {name} is not valid before {}",
                leaf.not_before.format("%Y-%m-%d %H:%M:%S UTC")
            );
            problems.push(CertProblem::warning(dir, &file.rel, message));
        }
        let mut certified = CertifiedKey::new(
            chain.iter().map(|c| c.der.clone()).collect(),
            Arc::clone(key),
        );
        if matches!(source, Source::Dir(_)) {
            certified.ocsp = read_ocsp(dir, &file.rel, &mut problems);
        }
        entries.push(CertEntry {
            key: Arc::new(certified),
            names: leaf.names.clone(),
            not_before: leaf.not_before,
            not_after: leaf.not_after,
            file: file.rel.clone(),
        });
    }

    for file in &parsed {
        for key in &file.keys {
            if !used.contains(key.spki.as_slice()) {
                let message = "private key matches no certificate";
                problems.push(CertProblem::warning(dir, &file.rel, message));
            }
        }
    }

    if let Source::Dir(Some(previous)) = source {
        keep_previous(dir, previous, &mut entries, &mut problems);
    }
    let store = CertStore::build(entries, default_cert, dir, now, &mut problems);
    problems.sort_by(|a, b| a.file.cmp(&b.file));
    CertLoad { store, problems }
}

/// Parses every file; a file that does not parse is left out, with an error.
fn parse_all(
    dir: &Path,
    files: Vec<SourceFile>,
    problems: &mut Vec<CertProblem>,
) -> Vec<ParsedFile> {
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let mut parsed = Vec::new();
    for file in files {
        match parse_file(&provider, &file.bytes) {
            Ok((certs, keys, key_errors)) => {
                if certs.is_empty() && keys.is_empty() && key_errors.is_empty() {
                    let message = "holds no certificate or private key; ignored";
                    problems.push(CertProblem::warning(dir, &file.rel, message));
                }
                for reason in key_errors {
                    let message = format!(
                        "private key cannot be used ({reason}); supported are RSA 2048+, \
                         ECDSA P-256/P-384 and Ed25519"
                    );
                    problems.push(CertProblem::error(dir, &file.rel, message));
                }
                parsed.push(ParsedFile {
                    rel: file.rel,
                    link: file.link,
                    certs,
                    keys,
                });
            }
            Err(reason) => problems.push(CertProblem::error(dir, &file.rel, reason)),
        }
    }
    parsed
}

/// For each distinct leaf, the longest chain; on a tie a linked file
/// (certbot's `live/`), then the first file in byte order. In file order.
fn best_chains(
    parsed: &[ParsedFile],
    keys: &HashMap<&[u8], &Arc<dyn SigningKey>>,
) -> Vec<Candidate> {
    let is_leaf = |c: &ParsedCert| !c.ca || (c.demo && keys.contains_key(c.spki.as_slice()));
    let mut candidates: Vec<Candidate> = Vec::new();
    let mut by_leaf: HashMap<&[u8], usize> = HashMap::new();
    for (fi, file) in parsed.iter().enumerate() {
        for (pos, cert) in file.certs.iter().enumerate() {
            if !is_leaf(cert) {
                continue;
            }
            let len = 1 + file
                .certs
                .iter()
                .skip(pos + 1)
                .take_while(|c| !is_leaf(c))
                .count();
            let new = Candidate { file: fi, pos, len };
            match by_leaf
                .get(cert.der.as_ref())
                .and_then(|&i| candidates.get_mut(i))
            {
                Some(old) => {
                    let linked = |c: &Candidate| parsed.get(c.file).is_some_and(|f| f.link);
                    if new.len > old.len || (new.len == old.len && linked(&new) && !linked(old)) {
                        *old = new;
                    }
                }
                None => {
                    by_leaf.insert(cert.der.as_ref(), candidates.len());
                    candidates.push(new);
                }
            }
        }
    }
    candidates.sort_by_key(|c| (c.file, c.pos));
    candidates
}

/// Adds the certificates `previous` served from files now in error.
fn keep_previous(
    dir: &Path,
    previous: &CertStore,
    entries: &mut Vec<CertEntry>,
    problems: &mut Vec<CertProblem>,
) {
    use super::store::Severity;
    let broken: HashSet<&Path> = problems
        .iter()
        .filter(|p| p.severity == Severity::Error)
        .map(|p| p.file.as_path())
        .collect();
    let loaded: HashSet<&[u8]> = entries.iter().filter_map(|e| leaf_der(e)).collect();
    let kept: Vec<CertEntry> = previous
        .entries()
        .iter()
        .filter(|e| broken.contains(e.file.as_path()))
        .filter(|e| leaf_der(e).is_some_and(|der| !loaded.contains(der)))
        .cloned()
        .collect();
    let mut warned: HashSet<PathBuf> = HashSet::new();
    for entry in &kept {
        if warned.insert(entry.file.clone()) {
            let message = "keeping the certificate loaded before from this file until it is fixed";
            problems.push(CertProblem::warning(dir, &entry.file, message));
        }
    }
    entries.extend(kept);
    entries.sort_by(|a, b| {
        let a = a.file.as_os_str().as_encoded_bytes();
        a.cmp(b.file.as_os_str().as_encoded_bytes())
    });
}

fn leaf_der(entry: &CertEntry) -> Option<&[u8]> {
    entry.key.cert.first().map(|c| c.as_ref())
}

type FileItems = (Vec<ParsedCert>, Vec<ParsedKey>, Vec<String>);

/// Parses every PEM item of a file (or one DER certificate). Unusable keys
/// are returned as reasons; anything else wrong fails the whole file.
fn parse_file(provider: &CryptoProvider, bytes: &[u8]) -> Result<FileItems, String> {
    if contains(bytes, b"-----BEGIN ENCRYPTED PRIVATE KEY-----")
        || contains(bytes, b"Proc-Type: 4,ENCRYPTED")
    {
        return Err("encrypted private keys are not supported; store it unencrypted".into());
    }
    let mut certs = Vec::new();
    let mut keys = Vec::new();
    let mut key_errors = Vec::new();
    for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(bytes) {
        let (kind, der) = section.map_err(|e| format!("not valid PEM: {e}"))?;
        let key = match kind {
            SectionKind::Certificate => {
                certs.push(parse_cert(CertificateDer::from(der), certs.len())?);
                continue;
            }
            SectionKind::RsaPrivateKey => PrivateKeyDer::Pkcs1(der.into()),
            SectionKind::PrivateKey => PrivateKeyDer::Pkcs8(der.into()),
            SectionKind::EcPrivateKey => PrivateKeyDer::Sec1(der.into()),
            _ => continue,
        };
        match load_key(provider, key) {
            Ok(key) => keys.push(key),
            Err(reason) => key_errors.push(reason),
        }
    }
    if certs.is_empty() && keys.is_empty() && key_errors.is_empty() {
        if contains(bytes, b"-----BEGIN ") {
            // Only other PEM sections: a CSR, DH parameters, a public key.
            return Ok((certs, keys, key_errors));
        }
        // A `.cer` is often one DER certificate.
        match bytes.first() {
            Some(0x30) => certs.push(parse_cert(CertificateDer::from(bytes.to_vec()), 0)?),
            _ => return Err("holds no PEM certificate or private key".into()),
        }
    }
    Ok((certs, keys, key_errors))
}

fn load_key(provider: &CryptoProvider, der: PrivateKeyDer<'static>) -> Result<ParsedKey, String> {
    let key = provider
        .key_provider
        .load_private_key(der)
        .map_err(|e| match e {
            rustls::Error::General(reason) => reason,
            other => other.to_string(),
        })?;
    let spki = key
        .public_key()
        .ok_or("its public key cannot be derived")?
        .to_vec();
    Ok(ParsedKey { spki, key })
}

fn parse_cert(der: CertificateDer<'static>, index: usize) -> Result<ParsedCert, String> {
    let parsed = {
        let (_, x509) = X509Certificate::from_der(der.as_ref())
            .map_err(|e| format!("certificate #{} is not valid X.509: {e}", index + 1))?;
        let mut names: Vec<String> = Vec::new();
        if let Ok(Some(san)) = x509.subject_alternative_name() {
            for general in &san.value.general_names {
                if let GeneralName::DNSName(name) = general {
                    push_unique(&mut names, name.to_ascii_lowercase());
                }
            }
        }
        let has_dns_san = !names.is_empty();
        if !has_dns_san {
            let cn = x509.subject().iter_common_name().next();
            if let Some(cn) = cn.and_then(|cn| cn.as_str().ok()) {
                names.push(cn.to_ascii_lowercase());
            }
        }
        let validity = x509.validity();
        let time = |t: i64| DateTime::from_timestamp(t, 0).unwrap_or_default();
        let self_signed = x509.subject().as_raw() == x509.issuer().as_raw();
        ParsedCert {
            der: CertificateDer::from(Vec::new()),
            spki: x509.public_key().raw.to_vec(),
            names,
            not_before: time(validity.not_before.timestamp()),
            not_after: time(validity.not_after.timestamp()),
            ca: x509.is_ca(),
            demo: self_signed && has_dns_san,
            key_check: check_key(x509.public_key()),
        }
    };
    Ok(ParsedCert { der, ..parsed })
}

/// The stapled OCSP response: `NAME.ocsp` beside `NAME.pem`, if there is one.
fn read_ocsp(dir: &Path, rel: &Path, problems: &mut Vec<CertProblem>) -> Option<Vec<u8>> {
    let rel = rel.with_extension("ocsp");
    match fs::read(dir.join(&rel)) {
        Ok(bytes) if !bytes.is_empty() => Some(bytes),
        Ok(_) => None,
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => {
            let message = format!("cannot read the OCSP response: {e}");
            problems.push(CertProblem::warning(dir, &rel, message));
            None
        }
    }
}

fn push_unique(names: &mut Vec<String>, name: String) {
    if !names.contains(&name) {
        names.push(name);
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
