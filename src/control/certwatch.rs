//! Watching `certs/` (SPEC §3): files added, replaced or removed take effect
//! within 5 seconds without a signal.
//!
//! Once a second the tree is walked for each file's metadata (path, size,
//! modification time, inode), through symbolic links; when that changes,
//! the directory is loaded again ([`Certs::reload`]), where a broken
//! replacement keeps the previous certificate for its names. Polling is
//! used rather than inotify because certbot renews by re-pointing
//! symbolic links into `archive/`, which inotify on `live/` does not
//! report, and because it works the same on every file system (NFS, bind
//! mounts in containers). A walk of a few hundred files costs well under
//! a millisecond. A change still being written (a `.crt` before its
//! `.key`) is picked up again on the next tick.

use std::collections::hash_map::DefaultHasher;
use std::fs;
use std::hash::{Hash, Hasher};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::Certs;

const EVERY: Duration = Duration::from_secs(1);
const MAX_DEPTH: usize = 16;

/// Starts watching; the task ends when `certs` is dropped.
pub fn spawn(certs: &Arc<Certs>) {
    // What was loaded is the starting point: a change made from now on,
    // however soon, is seen.
    let first = certs.source().map(|(dir, _)| fingerprint(&dir));
    let weak = Arc::downgrade(certs);
    tokio::spawn(watch(weak, first));
}

async fn watch(certs: Weak<Certs>, mut last: Option<u64>) {
    loop {
        tokio::time::sleep(EVERY).await;
        let Some(source) = certs.upgrade().and_then(|c| c.source()) else {
            return;
        };
        let dir = source.0;
        let seen = tokio::task::spawn_blocking(move || fingerprint(&dir))
            .await
            .ok();
        match (last, seen) {
            (Some(before), Some(now)) if before != now => {
                let Some(certs) = certs.upgrade() else { return };
                let serving = tokio::task::spawn_blocking(move || certs.reload())
                    .await
                    .ok()
                    .flatten();
                tracing::info!(
                    certificates = serving,
                    "certs/ changed: certificates reloaded"
                );
            }
            _ => {}
        }
        if seen.is_some() {
            last = seen;
        }
    }
}

/// A hash of the metadata of every file under `dir`.
pub fn fingerprint(dir: &Path) -> u64 {
    let mut hasher = DefaultHasher::new();
    walk(dir, Path::new(""), 0, &mut hasher);
    hasher.finish()
}

fn walk(root: &Path, rel: &Path, depth: usize, hasher: &mut DefaultHasher) {
    if depth > MAX_DEPTH {
        return;
    }
    let Ok(entries) = fs::read_dir(root.join(rel)) else {
        rel.hash(hasher);
        "unreadable".hash(hasher);
        return;
    };
    let mut names: Vec<_> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .collect();
    names.sort();
    for name in names {
        let rel = rel.join(&name);
        let path = root.join(&rel);
        rel.hash(hasher);
        // Through links: certbot's live/ names point into archive/.
        match fs::metadata(&path) {
            Ok(meta) if meta.is_dir() => walk(root, &rel, depth + 1, hasher),
            Ok(meta) => {
                (
                    meta.len(),
                    meta.mtime(),
                    meta.mtime_nsec(),
                    meta.ino(),
                    meta.dev(),
                )
                    .hash(hasher);
                if let Ok(target) = fs::read_link(&path) {
                    target.hash(hasher);
                }
            }
            Err(_) => "dangling".hash(hasher),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn any_change_of_a_file_changes_the_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let empty = fingerprint(dir.path());
        fs::create_dir(dir.path().join("live")).unwrap();
        fs::write(dir.path().join("live/a.pem"), "one").unwrap();
        let one = fingerprint(dir.path());
        assert_ne!(empty, one);
        assert_eq!(one, fingerprint(dir.path()), "stable while nothing changes");
        // Same size, new file (rename over: another inode).
        fs::write(dir.path().join("b.tmp"), "two").unwrap();
        fs::rename(dir.path().join("b.tmp"), dir.path().join("live/a.pem")).unwrap();
        let two = fingerprint(dir.path());
        assert_ne!(one, two);
        // A link re-pointed, as certbot renews.
        fs::write(dir.path().join("x1.pem"), "x").unwrap();
        fs::write(dir.path().join("x2.pem"), "y").unwrap();
        std::os::unix::fs::symlink("x1.pem", dir.path().join("cur.pem")).unwrap();
        let linked = fingerprint(dir.path());
        fs::remove_file(dir.path().join("cur.pem")).unwrap();
        std::os::unix::fs::symlink("x2.pem", dir.path().join("cur.pem")).unwrap();
        assert_ne!(linked, fingerprint(dir.path()));
        fs::remove_file(dir.path().join("live/a.pem")).unwrap();
        assert_ne!(two, fingerprint(dir.path()));
    }
}
