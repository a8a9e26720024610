//! The certificate store: every certificate berth serves, indexed for SNI.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rustls::sign::CertifiedKey;

/// One served certificate: a leaf with its chain and private key.
#[derive(Clone, Debug)]
pub struct CertEntry {
    /// Chain (leaf first) and signing key, as rustls serves them.
    pub key: Arc<CertifiedKey>,
    /// DNS names from the SANs, lower-cased (the CN when there is no DNS SAN).
    pub names: Vec<String>,
    pub not_before: DateTime<Utc>,
    pub not_after: DateTime<Utc>,
    /// Path of the file holding the leaf, relative to `certs/`, links not resolved.
    pub file: PathBuf,
}

/// What `/status` and metrics show of one certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    pub file: String,
    pub names: Vec<String>,
    pub not_after: DateTime<Utc>,
    pub expired: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// A problem found while loading certificates; errors make `berth check` fail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertProblem {
    /// The certificate directory as configured (`certs`), for messages.
    pub dir: PathBuf,
    /// The file, relative to `dir`; empty for problems of the whole directory.
    pub file: PathBuf,
    pub message: String,
    pub severity: Severity,
}

impl CertProblem {
    pub(crate) fn error(dir: &Path, file: &Path, message: impl Into<String>) -> Self {
        Self::new(dir, file, message.into(), Severity::Error)
    }

    pub(crate) fn warning(dir: &Path, file: &Path, message: impl Into<String>) -> Self {
        Self::new(dir, file, message.into(), Severity::Warning)
    }

    fn new(dir: &Path, file: &Path, message: String, severity: Severity) -> Self {
        Self {
            dir: dir.to_path_buf(),
            file: file.to_path_buf(),
            message,
            severity,
        }
    }
}

impl fmt::Display for CertProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let empty = Path::new("");
        match (self.dir.as_path() == empty, self.file.as_path() == empty) {
            (true, true) => write!(f, "{}", self.message),
            (_, true) => write!(f, "{}: {}", self.dir.display(), self.message),
            (_, false) => write!(
                f,
                "{}: {}",
                self.dir.join(&self.file).display(),
                self.message
            ),
        }
    }
}

/// Every served certificate, immutable once built; share it in an `Arc`.
///
/// Lookups go through two maps built up front: exact DNS name → entry, and
/// wildcard parent (`example.com` for `*.example.com`) → entry.
#[derive(Default)]
pub struct CertStore {
    /// In byte order of `file`, then position in the file.
    entries: Vec<CertEntry>,
    exact: HashMap<String, usize>,
    wildcard: HashMap<String, usize>,
    default: Option<usize>,
}

impl fmt::Debug for CertStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertStore")
            .field("certificates", &self.entries.len())
            .finish()
    }
}

impl CertStore {
    /// Builds the store from candidate entries in file order.
    ///
    /// Certificates that lose every one of their names to a newer one are
    /// dropped (they would never be served; one without any name may still be
    /// the default). Problems about the default
    /// certificate and expiry are appended to `problems`.
    pub(crate) fn build(
        candidates: Vec<CertEntry>,
        default_cert: Option<&str>,
        dir: &Path,
        now: DateTime<Utc>,
        problems: &mut Vec<CertProblem>,
    ) -> Self {
        let (exact, wildcard) = index(&candidates);
        let winners: std::collections::HashSet<usize> =
            exact.values().chain(wildcard.values()).copied().collect();
        let entries: Vec<CertEntry> = candidates
            .into_iter()
            .enumerate()
            .filter(|(i, entry)| winners.contains(i) || entry.names.is_empty())
            .map(|(_, entry)| entry)
            .collect();
        let (exact, wildcard) = index(&entries);
        let mut store = Self {
            entries,
            exact,
            wildcard,
            default: None,
        };
        store.default = store.choose_default(default_cert, dir, problems);
        for entry in &store.entries {
            if entry.not_after < now {
                let message = format!(
                    "certificate for {} expired on {}; still served",
                    label(&entry.names),
                    entry.not_after.format("%Y-%m-%d %H:%M:%S UTC")
                );
                problems.push(CertProblem::warning(dir, &entry.file, message));
            }
        }
        store
    }

    fn choose_default(
        &self,
        default_cert: Option<&str>,
        dir: &Path,
        problems: &mut Vec<CertProblem>,
    ) -> Option<usize> {
        let first = (!self.entries.is_empty()).then_some(0);
        let Some(name) = default_cert else {
            return first;
        };
        let lower = name.to_ascii_lowercase();
        let found = match lower.strip_prefix("*.") {
            Some(parent) => self.wildcard.get(parent).copied(),
            None => self.find(&lower),
        };
        // With no certificate at all, that is the problem to report, not this.
        if let (None, Some(entry)) = (found, self.entries.first()) {
            let message = format!(
                "default_cert \"{name}\" matches no certificate; using {} instead",
                entry.file.display()
            );
            problems.push(CertProblem::error(dir, Path::new(""), message));
        }
        found.or(first)
    }

    /// An empty store (every handshake fails).
    pub fn empty() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The served certificates, in file order.
    pub fn entries(&self) -> &[CertEntry] {
        &self.entries
    }

    /// Expiry and names of each certificate, in file order.
    pub fn summary(&self) -> Vec<CertInfo> {
        let now = Utc::now();
        self.entries
            .iter()
            .map(|entry| CertInfo {
                file: entry.file.to_string_lossy().into_owned(),
                names: entry.names.clone(),
                not_after: entry.not_after,
                expired: entry.not_after < now,
            })
            .collect()
    }

    /// The certificate to present for this SNI (`None`: no SNI sent).
    pub fn select(&self, sni: Option<&str>) -> Option<&CertEntry> {
        let index = sni.and_then(|name| self.find(name)).or(self.default)?;
        self.entries.get(index)
    }

    /// The certificate covering `name` (exact, then wildcard), without the default.
    pub fn lookup(&self, name: &str) -> Option<&CertEntry> {
        self.find(name).and_then(|i| self.entries.get(i))
    }

    fn find(&self, name: &str) -> Option<usize> {
        let name = name.strip_suffix('.').unwrap_or(name);
        if name.bytes().any(|b| b.is_ascii_uppercase()) {
            // rustls hands over SNI already lower-cased; others may not.
            return self.find(&name.to_ascii_lowercase());
        }
        if let Some(&i) = self.exact.get(name) {
            return Some(i);
        }
        match name.split_once('.') {
            Some((first, parent)) if !first.is_empty() => self.wildcard.get(parent).copied(),
            _ => None,
        }
    }
}

/// For each name, the entry that wins it: latest notBefore, then first in file order.
fn index(entries: &[CertEntry]) -> (HashMap<String, usize>, HashMap<String, usize>) {
    let mut exact: HashMap<String, usize> = HashMap::new();
    let mut wildcard: HashMap<String, usize> = HashMap::new();
    for (i, entry) in entries.iter().enumerate() {
        for name in &entry.names {
            let (map, key) = match name.strip_prefix("*.") {
                Some(parent) => (&mut wildcard, parent),
                None => (&mut exact, name.as_str()),
            };
            match map.get_mut(key) {
                Some(held) => {
                    let newer = entries
                        .get(*held)
                        .is_some_and(|old| entry.not_before > old.not_before);
                    if newer {
                        *held = i;
                    }
                }
                None => {
                    map.insert(key.to_owned(), i);
                }
            }
        }
    }
    (exact, wildcard)
}

/// How messages name a certificate: its first DNS name.
pub(crate) fn label(names: &[String]) -> &str {
    names.first().map_or("(no name)", String::as_str)
}
