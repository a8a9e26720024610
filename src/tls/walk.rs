//! Walking `certs/`: every certificate-looking file at any depth, links followed.

use std::ffi::{OsStr, OsString};
use std::fs;
use std::path::{Path, PathBuf};

use super::store::CertProblem;

/// Names ending in these (any case) are read; other files are ignored.
const EXTENSIONS: [&str; 4] = ["pem", "crt", "cer", "key"];
/// Deeper trees are not walked: a guard against link mazes.
const MAX_DEPTH: usize = 16;
/// Certificate files are a few KiB; anything past this is not one.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// One file read from the tree.
pub(crate) struct SourceFile {
    /// Path relative to the certificate directory, as found (links not resolved).
    pub rel: PathBuf,
    /// The file's own name is a symbolic link (certbot's `live/`).
    pub link: bool,
    pub bytes: Vec<u8>,
}

/// Reads every certificate file under `dir`, sorted by the bytes of `rel`.
pub(crate) fn read_tree(dir: &Path, problems: &mut Vec<CertProblem>) -> Vec<SourceFile> {
    let mut files = Vec::new();
    let root_problem = match fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => None,
        Ok(_) => Some("is not a directory".to_owned()),
        Err(e) => Some(format!("cannot read the certificate directory: {e}")),
    };
    if let Some(message) = root_problem {
        problems.push(CertProblem::error(dir, Path::new(""), message));
        return files;
    }
    let mut ancestors: Vec<PathBuf> = fs::canonicalize(dir).into_iter().collect();
    let mut walk = Walk {
        root: dir,
        ancestors: &mut ancestors,
        files: &mut files,
        problems,
    };
    walk.dir(Path::new(""));
    files.sort_by(|a, b| {
        let a = a.rel.as_os_str().as_encoded_bytes();
        a.cmp(b.rel.as_os_str().as_encoded_bytes())
    });
    files
}

struct Walk<'a> {
    root: &'a Path,
    /// Canonical paths of the directories being walked, to stop link loops.
    ancestors: &'a mut Vec<PathBuf>,
    files: &'a mut Vec<SourceFile>,
    problems: &'a mut Vec<CertProblem>,
}

impl Walk<'_> {
    fn dir(&mut self, rel_dir: &Path) {
        let entries = match fs::read_dir(self.root.join(rel_dir)) {
            Ok(entries) => entries,
            Err(e) => {
                let message = format!("cannot read the directory: {e}");
                self.problems
                    .push(CertProblem::error(self.root, rel_dir, message));
                return;
            }
        };
        let mut names: Vec<OsString> = entries.flatten().map(|e| e.file_name()).collect();
        names.sort();
        for name in names {
            self.entry(&rel_dir.join(&name), &name);
        }
    }

    fn entry(&mut self, rel: &Path, name: &OsStr) {
        let path = self.root.join(rel);
        let wanted = is_cert_file(name);
        let meta = match fs::metadata(&path) {
            Ok(meta) => meta,
            Err(e) => {
                // A dangling link or a file that vanished meanwhile.
                if wanted {
                    let message = format!("cannot read: {e}");
                    self.problems
                        .push(CertProblem::error(self.root, rel, message));
                }
                return;
            }
        };
        if meta.is_dir() {
            self.subdir(rel, &path);
        } else if wanted && meta.is_file() {
            self.file(rel, &path, meta.len());
        }
    }

    fn subdir(&mut self, rel: &Path, path: &Path) {
        let Ok(canonical) = fs::canonicalize(path) else {
            return;
        };
        if self.ancestors.contains(&canonical) {
            let message = "symbolic link loop; not followed";
            self.problems
                .push(CertProblem::warning(self.root, rel, message));
            return;
        }
        if self.ancestors.len() > MAX_DEPTH {
            let message = format!("more than {MAX_DEPTH} directories deep; not read");
            self.problems
                .push(CertProblem::warning(self.root, rel, message));
            return;
        }
        self.ancestors.push(canonical);
        self.dir(rel);
        self.ancestors.pop();
    }

    fn file(&mut self, rel: &Path, path: &Path, len: u64) {
        if len > MAX_FILE_BYTES {
            let message = format!("is {len} bytes, too large for a certificate file");
            self.problems
                .push(CertProblem::error(self.root, rel, message));
            return;
        }
        match fs::read(path) {
            Ok(bytes) => self.files.push(SourceFile {
                rel: rel.to_path_buf(),
                link: fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()),
                bytes,
            }),
            Err(e) => {
                let message = format!("cannot read: {e}");
                self.problems
                    .push(CertProblem::error(self.root, rel, message));
            }
        }
    }
}

fn is_cert_file(name: &OsStr) -> bool {
    let name = name.to_string_lossy();
    match name.rsplit_once('.') {
        Some((stem, ext)) => {
            !stem.is_empty() && EXTENSIONS.iter().any(|e| e.eq_ignore_ascii_case(ext))
        }
        None => false,
    }
}
