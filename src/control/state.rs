//! Run-time server changes (SPEC §7) and the state file that keeps them.
//!
//! The changes are an overlay on the configuration file, per pool and
//! server name: servers registered, servers removed, and operator state
//! and weight. [`Overlay::apply`] lays them over a freshly loaded
//! [`Config`] (at start and on every reload), so a restart or a reload
//! loses none.
//!
//! The file is JSON, written whole on every change: to a temporary file
//! beside it, fsynced, renamed over the old one, and the directory fsynced,
//! so that a crash leaves either the old file or the new one. A file that
//! cannot be read or parsed is reported, kept aside as `NAME.bad`, and
//! berth starts with its configuration alone.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::{self, Config};
use crate::runtime::AdminState;

const VERSION: u32 = 1;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overlay {
    version: u32,
    #[serde(default)]
    pools: BTreeMap<String, PoolChanges>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PoolChanges {
    /// Servers registered through the API, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    registered: BTreeMap<String, Registered>,
    /// Servers of the configuration file deregistered through the API.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    removed: BTreeSet<String>,
    /// Operator state and weight set through the API, by server name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    settings: BTreeMap<String, Settings>,
}

impl PoolChanges {
    fn is_empty(&self) -> bool {
        self.registered.is_empty() && self.removed.is_empty() && self.settings.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Registered {
    addr: String,
    weight: u32,
    route: String,
    backup: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    state: Option<StateName>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    weight: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StateName {
    Ready,
    Drain,
    Maint,
}

impl From<StateName> for AdminState {
    fn from(state: StateName) -> AdminState {
        match state {
            StateName::Ready => AdminState::Ready,
            StateName::Drain => AdminState::Drain,
            StateName::Maint => AdminState::Maint,
        }
    }
}

/// The configuration with the overlay laid over it, and the operator
/// states to set.
pub struct Applied {
    pub config: Config,
    /// (pool, server) → operator state, for servers that have one.
    pub states: BTreeMap<(String, String), AdminState>,
    /// Changes that no longer apply (their pool or server is gone), or
    /// clash with the configuration; they are dropped from the overlay.
    pub notes: Vec<String>,
}

impl Overlay {
    /// Reads the state file. A missing file is an empty overlay; a file
    /// that cannot be used is moved aside and reported as `Err`, with an
    /// empty overlay to go on with.
    pub fn load(path: &Path) -> (Overlay, Option<String>) {
        let empty = Overlay {
            version: VERSION,
            ..Overlay::default()
        };
        let text = match fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return (empty, None),
            Err(err) => {
                let message = format!(
                    "state file {}: cannot read it ({err}); starting from the configuration alone",
                    path.display()
                );
                return (empty, Some(message));
            }
        };
        match serde_json::from_str::<Overlay>(&text) {
            Ok(overlay) if overlay.version == VERSION => (overlay, None),
            Ok(overlay) => {
                let message = format!(
                    "state file {}: version {} is not {VERSION}; {}",
                    path.display(),
                    overlay.version,
                    set_aside(path)
                );
                (empty, Some(message))
            }
            Err(err) => {
                let message = format!(
                    "state file {}: not valid ({err}); {}",
                    path.display(),
                    set_aside(path)
                );
                (empty, Some(message))
            }
        }
    }

    /// Writes the overlay to `path` atomically: write, fsync, rename,
    /// fsync the directory. Missing parent directories are created.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        fs::create_dir_all(&dir)?;
        let mut text = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        text.push(b'\n');
        let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
        tmp_name.push(format!(".tmp{}", std::process::id()));
        let tmp = dir.join(tmp_name);
        let written = (|| {
            let mut file = fs::File::create(&tmp)?;
            file.write_all(&text)?;
            file.sync_all()?;
            fs::rename(&tmp, path)?;
            fs::File::open(&dir)?.sync_all()
        })();
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written
    }

    /// Lays the overlay over `config`. Pools that are gone take their
    /// changes with them; so do settings of servers that are gone.
    pub fn apply(&mut self, mut config: Config) -> Applied {
        let mut notes = Vec::new();
        let mut states = BTreeMap::new();
        self.pools.retain(|name, _| {
            let exists = config.pools.iter().any(|p| p.name == *name);
            if !exists {
                notes.push(format!(
                    "pool {name} is no longer configured: its run-time changes are dropped"
                ));
            }
            exists
        });
        for pool in &mut config.pools {
            let Some(changes) = self.pools.get_mut(&pool.name) else {
                continue;
            };
            pool.servers.retain(|s| !changes.removed.contains(&s.name));
            let mut clashes = Vec::new();
            for (name, registered) in &changes.registered {
                let server = match config::runtime_server(
                    name,
                    &registered.addr,
                    Some(i64::from(registered.weight)),
                    Some(&registered.route),
                    Some(registered.backup),
                ) {
                    Ok(server) => server,
                    Err((field, err)) => {
                        notes.push(format!(
                            "pools.{}: registered server {name}: {field}: {err}; dropped",
                            pool.name
                        ));
                        clashes.push(name.clone());
                        continue;
                    }
                };
                pool.servers.retain(|s| s.name != server.name);
                if let Some(other) = pool.servers.iter().find(|s| s.route == server.route) {
                    notes.push(format!(
                        "pools.{}: registered server {name}: route id {:?} is now used by {} in the configuration; dropped",
                        pool.name, server.route, other.name
                    ));
                    clashes.push(name.clone());
                    continue;
                }
                pool.servers.push(server);
            }
            for name in clashes {
                changes.registered.remove(&name);
            }
            changes.settings.retain(|name, settings| {
                let Some(server) = pool.servers.iter_mut().find(|s| s.name == *name) else {
                    notes.push(format!(
                        "pools.{}: server {name} is gone: its run-time state is dropped",
                        pool.name
                    ));
                    return false;
                };
                if let Some(weight) = settings.weight {
                    server.weight = weight;
                }
                if let Some(state) = settings.state {
                    states.insert((pool.name.clone(), name.clone()), state.into());
                }
                true
            });
        }
        self.pools.retain(|_, changes| !changes.is_empty());
        Applied {
            config,
            states,
            notes,
        }
    }

    /// Registers `server` in `pool` (replacing nothing: the caller checked
    /// the name is free).
    pub fn register(&mut self, pool: &str, server: &config::Server) {
        let changes = self.pools.entry(pool.to_owned()).or_default();
        changes.removed.remove(&server.name);
        changes.settings.remove(&server.name);
        changes.registered.insert(
            server.name.clone(),
            Registered {
                addr: server.addr.to_string(),
                weight: server.weight,
                route: server.route.clone(),
                backup: server.backup,
            },
        );
    }

    /// Sets a server's operator state and/or weight.
    pub fn change(
        &mut self,
        pool: &str,
        name: &str,
        state: Option<StateName>,
        weight: Option<u32>,
    ) {
        let changes = self.pools.entry(pool.to_owned()).or_default();
        if let Some(registered) = changes.registered.get_mut(name) {
            // A registered server keeps its weight in its registration.
            if let Some(weight) = weight {
                registered.weight = weight;
            }
            if let Some(state) = state {
                changes.settings.entry(name.to_owned()).or_default().state = Some(state);
            }
            return;
        }
        let settings = changes.settings.entry(name.to_owned()).or_default();
        if state.is_some() {
            settings.state = state;
        }
        if weight.is_some() {
            settings.weight = weight;
        }
    }

    /// Deregisters a server: a registered one is forgotten, one from the
    /// configuration file is marked removed.
    pub fn deregister(&mut self, pool: &str, name: &str, in_file: bool) {
        let changes = self.pools.entry(pool.to_owned()).or_default();
        changes.registered.remove(name);
        changes.settings.remove(name);
        if in_file {
            changes.removed.insert(name.to_owned());
        }
        if changes.is_empty() {
            self.pools.remove(pool);
        }
    }
}

/// Moves an unusable state file aside, so the next save does not destroy
/// what an operator may want to look at. Returns what was done.
fn set_aside(path: &Path) -> String {
    let mut bad = path.as_os_str().to_os_string();
    bad.push(".bad");
    let bad = PathBuf::from(bad);
    match fs::rename(path, &bad) {
        Ok(()) => format!(
            "kept as {}; starting from the configuration alone",
            bad.display()
        ),
        Err(err) => format!(
            "could not keep it as {} ({err}); starting from the configuration alone",
            bad.display()
        ),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn config() -> Config {
        config::parse(
            r#"
[[listener]]
bind = "127.0.0.1:0"
tls = false
[[route]]
pool = "web"
[pools.web]
[[pools.web.servers]]
name = "app01"
addr = "127.0.0.1:8001"
[[pools.web.servers]]
name = "app02"
addr = "127.0.0.1:8002"
"#,
            Path::new("t.toml"),
        )
        .unwrap()
    }

    fn names(config: &Config) -> Vec<(String, u32)> {
        config.pools[0]
            .servers
            .iter()
            .map(|s| (s.name.clone(), s.weight))
            .collect()
    }

    #[test]
    fn changes_survive_a_save_and_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/berth.state");
        let mut overlay = Overlay::load(&path).0;
        let app03 = config::runtime_server("app03", "10.0.0.3:80", Some(5), None, None).unwrap();
        overlay.register("web", &app03);
        overlay.change("web", "app01", Some(StateName::Drain), Some(7));
        overlay.deregister("web", "app02", true);
        overlay.save(&path).unwrap();
        let (mut loaded, problem) = Overlay::load(&path);
        assert_eq!(problem, None);
        assert_eq!(loaded, overlay);
        let applied = loaded.apply(config());
        assert_eq!(
            names(&applied.config),
            vec![("app01".into(), 7), ("app03".into(), 5)]
        );
        assert_eq!(
            applied.states.get(&("web".into(), "app01".into())),
            Some(&AdminState::Drain)
        );
        assert!(applied.notes.is_empty(), "{:?}", applied.notes);
    }

    #[test]
    fn a_corrupt_file_is_set_aside_and_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.state");
        fs::write(&path, "{not json").unwrap();
        let (overlay, problem) = Overlay::load(&path);
        assert_eq!(overlay.pools.len(), 0);
        let problem = problem.unwrap();
        assert!(problem.contains("not valid"), "{problem}");
        assert!(dir.path().join("berth.state.bad").exists());
        assert!(!path.exists());
    }

    #[test]
    fn stale_changes_are_dropped_with_a_note() {
        let mut overlay = Overlay::default();
        overlay.change("gone", "x", Some(StateName::Maint), None);
        overlay.change("web", "app09", Some(StateName::Maint), None);
        // A registration whose route id the file now gives another server.
        let clash =
            config::runtime_server("app05", "10.0.0.5:80", None, Some("app01"), None).unwrap();
        overlay.register("web", &clash);
        let applied = overlay.apply(config());
        assert_eq!(applied.notes.len(), 3, "{:?}", applied.notes);
        assert_eq!(
            names(&applied.config),
            vec![("app01".into(), 100), ("app02".into(), 100)]
        );
        assert!(overlay.pools.is_empty());
    }

    #[test]
    fn save_fails_cleanly_where_it_cannot_write() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        fs::write(&blocker, "").unwrap();
        let err = Overlay::default()
            .save(&blocker.join("berth.state"))
            .unwrap_err();
        assert!(!err.to_string().is_empty());
    }
}
