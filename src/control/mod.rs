//! Changing a running berth without a restart (SPEC §7, §9): reloads of
//! the configuration and certificates, run-time server changes, and the
//! admin API that asks for them.
//!
//! Every change goes through [`Control`], one at a time (a lock held for
//! the whole change, never on the request path), and ends the same way:
//! the configuration file's contents with the run-time changes laid over
//! them ([`state::Overlay`]) become a new [`Snapshot`], built from the old
//! one so that servers, ties and counters carry over, and swapped in
//! whole. Requests in flight keep the snapshot they started with.
//!
//! A reload is all or nothing: the file, its certificates, client CA files
//! and new listeners' sockets are all made ready first; only then is
//! anything swapped. Listeners whose `bind` is unchanged are never re-bound:
//! their settings change in place for new connections.

pub mod admin;
pub mod certwatch;
pub mod state;
pub mod status;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;

use crate::config::{self, Config};
use crate::listen::{self, Listener, Serving};
use crate::proxy::Shared;
use crate::runtime::{AdminState, Snapshot};
use crate::tls::{self, CertStore, SniResolver};
use state::{Overlay, StateName};

/// Where certificates come from.
pub struct Certs {
    pub resolver: Arc<SniResolver>,
    /// `certs/` and `default_cert` as last configured; `None` for a fixed
    /// in-memory store (the demo), which is never reloaded.
    source: Mutex<Option<(PathBuf, Option<String>)>>,
}

impl Certs {
    pub fn fixed(store: CertStore) -> Certs {
        Certs {
            resolver: SniResolver::new(Arc::new(store)),
            source: Mutex::new(None),
        }
    }

    pub fn from_dir(store: CertStore, dir: PathBuf, default_cert: Option<String>) -> Certs {
        Certs {
            resolver: SniResolver::new(Arc::new(store)),
            source: Mutex::new(Some((dir, default_cert))),
        }
    }

    fn source(&self) -> Option<(PathBuf, Option<String>)> {
        self.source
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Reads `certs/` again; a broken file keeps what it served before.
    /// Returns how many certificates serve now, or `None` for a fixed
    /// store.
    pub fn reload(&self) -> Option<usize> {
        let (dir, default_cert) = self.source()?;
        let loaded = tls::reload_dir(&dir, default_cert.as_deref(), &self.resolver.store());
        report(&loaded.problems);
        if loaded.store.is_empty() {
            tracing::error!(dir = %dir.display(), "no usable certificate: keeping the ones being served");
            return Some(self.resolver.store().len());
        }
        let count = loaded.store.len();
        self.resolver.swap(Arc::new(loaded.store));
        Some(count)
    }
}

/// Logs certificate problems: errors as errors, warnings as warnings.
pub fn report(problems: &[tls::CertProblem]) {
    for problem in problems {
        match problem.severity {
            tls::Severity::Error => tracing::error!("{problem}"),
            tls::Severity::Warning => tracing::warn!("{problem}"),
        }
    }
}

/// Why a run-time change was refused; maps to the admin API's status.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    #[error("no pool {0:?}")]
    NoPool(String),
    #[error("no server {server:?} in pool {pool:?}")]
    NoServer { pool: String, server: String },
    #[error("pool {pool:?} already has a server {server:?}")]
    Exists { pool: String, server: String },
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
    #[error("cannot save the state file {path}: {source}; nothing was changed")]
    Save {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Where a reloaded listener's socket comes from.
enum Origin {
    /// The running listener at this index: never re-bound.
    Kept(usize),
    New(tokio::net::TcpListener),
}

/// One bound listener as configured.
struct Bound {
    config: config::Listener,
    listener: Arc<Listener>,
}

struct Inner {
    /// The configuration file's contents, without run-time changes.
    base: Arc<Config>,
    overlay: Overlay,
    listeners: Vec<Bound>,
}

/// The one place run-time changes go through.
pub struct Control {
    pub shared: Arc<Shared>,
    pub certs: Option<Arc<Certs>>,
    config_path: Option<PathBuf>,
    pub started: SystemTime,
    inner: tokio::sync::Mutex<Inner>,
    /// The listeners serving now, for `/status` and metrics.
    listeners: ArcSwap<Vec<Arc<Listener>>>,
}

/// Listeners bound before anything else starts (so that a bind error is
/// reported before the admin API or any task runs).
pub struct Prepared {
    listeners: Vec<(config::Listener, tokio::net::TcpListener, Arc<Listener>)>,
}

impl Control {
    /// Takes over a freshly started configuration: its snapshot is already
    /// in `shared`, its listeners bound in `prepared`; accept loops start
    /// here.
    pub fn start(
        shared: Arc<Shared>,
        certs: Option<Arc<Certs>>,
        config_path: Option<PathBuf>,
        base: Arc<Config>,
        overlay: Overlay,
        prepared: Prepared,
    ) -> Arc<Control> {
        let mut bound = Vec::new();
        for (config, socket, listener) in prepared.listeners {
            tokio::spawn(listen::accept_loop(
                socket,
                listener.clone(),
                shared.clone(),
            ));
            bound.push(Bound { config, listener });
        }
        let listeners = bound.iter().map(|b| b.listener.clone()).collect();
        Arc::new(Control {
            shared,
            certs,
            config_path,
            started: SystemTime::now(),
            inner: tokio::sync::Mutex::new(Inner {
                base,
                overlay,
                listeners: bound,
            }),
            listeners: ArcSwap::from_pointee(listeners),
        })
    }

    pub fn listeners(&self) -> Arc<Vec<Arc<Listener>>> {
        self.listeners.load_full()
    }

    /// Reloads the configuration file and the certificates. On any error
    /// nothing changes and every error is returned.
    pub async fn reload(&self) -> Result<String, Vec<String>> {
        let Some(path) = &self.config_path else {
            return Err(vec![
                "this instance has no configuration file to reload (berth demo)".to_owned(),
            ]);
        };
        let config = config::load(path)
            .map_err(|problems| problems.iter().map(ToString::to_string).collect::<Vec<_>>())?;
        let mut inner = self.inner.lock().await;
        let mut errors = Vec::new();
        let mut notes = restart_only(&inner.base.global, &config.global);

        // Certificates first: a TLS listener needs at least one.
        let needs_tls = config.listeners.iter().any(|l| l.tls);
        let new_store = match &self.certs {
            Some(certs) if certs.source().is_some() => {
                let loaded = tls::reload_dir(
                    &config.global.certs,
                    config.global.default_cert.as_deref(),
                    &certs.resolver.store(),
                );
                report(&loaded.problems);
                if needs_tls && loaded.store.is_empty() {
                    errors.push(format!(
                        "no usable certificate in {} for the TLS listeners",
                        config.global.certs.display()
                    ));
                }
                Some(loaded.store)
            }
            Some(_) => None,
            None if needs_tls => {
                errors.push(
                    "TLS listeners were added, but berth started without any: restart it"
                        .to_owned(),
                );
                None
            }
            None => None,
        };

        // Listeners: new settings for kept ones (the same `bind`; several
        // with port 0 pair up in order), sockets for new ones.
        let mut serving = Vec::new();
        let mut claimed = vec![false; inner.listeners.len()];
        for listener in &config.listeners {
            let kept = inner
                .listeners
                .iter()
                .enumerate()
                .position(|(i, b)| !claimed[i] && b.config.bind == listener.bind);
            let (local, origin) = match kept {
                Some(i) => {
                    claimed[i] = true;
                    (inner.listeners[i].listener.local, Origin::Kept(i))
                }
                None => match listen::bind(listener.bind).await {
                    Ok(socket) => match socket.local_addr() {
                        Ok(local) => (local, Origin::New(socket)),
                        Err(err) => {
                            errors.push(format!("listener {}: {err}", listener.bind));
                            continue;
                        }
                    },
                    Err(err) => {
                        errors.push(err.to_string());
                        continue;
                    }
                },
            };
            match self.serving(listener, local, &config) {
                Ok(new) => serving.push((listener.clone(), local, new, origin)),
                Err(err) => errors.push(err),
            }
        }
        if !errors.is_empty() {
            // New sockets are dropped (closed) here: nothing changed.
            return Err(errors);
        }

        // Everything is ready: swap.
        let base = Arc::new(config);
        let mut overlay = inner.overlay.clone();
        let applied = overlay.apply((*base).clone());
        notes.extend(applied.notes.iter().cloned());
        self.swap_snapshot(applied);
        inner.base = base.clone();
        if overlay != inner.overlay {
            inner.overlay = overlay;
            self.save(&inner.overlay);
        }
        if let (Some(certs), Some(store)) = (&self.certs, new_store) {
            if !store.is_empty() {
                certs.resolver.swap(Arc::new(store));
            }
            *certs
                .source
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) =
                Some((base.global.certs.clone(), base.global.default_cert.clone()));
        }
        let (added, removed) = self.swap_listeners(&mut inner, serving);
        let snapshot = self.shared.snapshot.load();
        let servers: usize = snapshot.pools.iter().map(|p| p.servers.len()).sum();
        let certificates = self.certs.as_ref().map_or(0, |c| c.resolver.store().len());
        let mut summary = format!(
            "reloaded {}: {} listeners ({added} added, {removed} removed), {} routes, {} pools, {servers} servers, {certificates} certificates",
            path.display(),
            inner.listeners.len(),
            base.routes.len(),
            base.pools.len(),
        );
        for note in &notes {
            tracing::warn!("{note}");
            summary.push_str("\nnote: ");
            summary.push_str(note);
        }
        tracing::info!("{}", summary.lines().next().unwrap_or_default());
        Ok(summary)
    }

    /// What a listener's new connections are served with under `config`.
    fn serving(
        &self,
        listener: &config::Listener,
        local: SocketAddr,
        config: &Config,
    ) -> Result<Serving, String> {
        let tls = match (&self.certs, listener.tls) {
            (Some(certs), true) => Some(listener_tls(&certs.resolver, listener)?),
            _ => None,
        };
        Ok(Serving::new(
            listener.clone(),
            local.port(),
            tls,
            config.global.limits,
        ))
    }

    /// Starts, updates and stops listeners to match a reloaded
    /// configuration. Returns how many were added and removed.
    fn swap_listeners(
        &self,
        inner: &mut Inner,
        serving: Vec<(config::Listener, SocketAddr, Serving, Origin)>,
    ) -> (usize, usize) {
        let mut old: Vec<Option<Bound>> = std::mem::take(&mut inner.listeners)
            .into_iter()
            .map(Some)
            .collect();
        let mut added = 0;
        for (config, local, new, origin) in serving {
            let listener = match origin {
                Origin::Kept(i) => {
                    let Some(kept) = old.get_mut(i).and_then(Option::take) else {
                        continue;
                    };
                    kept.listener.update(new);
                    kept.listener
                }
                Origin::New(socket) => {
                    let listener = Arc::new(Listener::new(local, new));
                    tracing::info!(listener = %local, tls = config.tls, "listening");
                    tokio::spawn(listen::accept_loop(
                        socket,
                        listener.clone(),
                        self.shared.clone(),
                    ));
                    added += 1;
                    listener
                }
            };
            inner.listeners.push(Bound { config, listener });
        }
        let mut removed = 0;
        for gone in old.into_iter().flatten() {
            tracing::info!(listener = %gone.listener.local, "listener removed: its connections finish their requests");
            gone.listener.stop_accepting();
            gone.listener.close_connections();
            removed += 1;
        }
        self.listeners.store(Arc::new(
            inner.listeners.iter().map(|b| b.listener.clone()).collect(),
        ));
        (added, removed)
    }

    /// Builds the snapshot of `applied` from the current one, sets operator
    /// states, and swaps it in.
    fn swap_snapshot(&self, applied: state::Applied) {
        let previous = self.shared.snapshot.load_full();
        let snapshot = Snapshot::rebuild(Arc::new(applied.config), Some(&previous));
        apply_states(&snapshot, &applied.states);
        self.shared.snapshot.store(Arc::new(snapshot));
    }

    fn save(&self, overlay: &Overlay) -> bool {
        let path = &self.shared.snapshot.load().config.global.state_file;
        match overlay.save(path) {
            Ok(()) => true,
            Err(err) => {
                tracing::error!(path = %path.display(), error = %err, "cannot save the state file");
                false
            }
        }
    }

    /// Runs one run-time change: `change` edits a copy of the overlay
    /// (checking it against the current configuration); the result is
    /// saved, then applied. If it cannot be saved, nothing changes.
    async fn change<T>(
        &self,
        change: impl FnOnce(&mut Overlay, &Config) -> Result<T, ChangeError>,
    ) -> Result<T, ChangeError> {
        let mut inner = self.inner.lock().await;
        let current = self.shared.snapshot.load_full();
        let mut overlay = inner.overlay.clone();
        let result = change(&mut overlay, &current.config)?;
        let path = current.config.global.state_file.clone();
        overlay.save(&path).map_err(|source| ChangeError::Save {
            path: path.display().to_string(),
            source,
        })?;
        let applied = overlay.apply((*inner.base).clone());
        for note in &applied.notes {
            tracing::warn!("{note}");
        }
        inner.overlay = overlay;
        self.swap_snapshot(applied);
        Ok(result)
    }

    /// `POST /pools/{pool}/servers`.
    pub async fn register(&self, pool: &str, server: config::Server) -> Result<(), ChangeError> {
        let name = server.name.clone();
        let addr = server.addr.to_string();
        self.change(|overlay, config| {
            let servers = pool_servers(config, pool)?;
            if servers.iter().any(|s| s.name == server.name) {
                return Err(ChangeError::Exists {
                    pool: pool.to_owned(),
                    server: server.name.clone(),
                });
            }
            if let Some(other) = servers.iter().find(|s| s.route == server.route) {
                return Err(ChangeError::Invalid {
                    field: "route".into(),
                    message: format!(
                        "route id {:?} is already used by server {:?}",
                        server.route, other.name
                    ),
                });
            }
            overlay.register(pool, &server);
            Ok(())
        })
        .await?;
        tracing::info!(pool, server = %name, addr, "server registered");
        Ok(())
    }

    /// `PUT /pools/{pool}/servers/{name}`.
    pub async fn update(
        &self,
        pool: &str,
        name: &str,
        state: Option<StateName>,
        weight: Option<u32>,
    ) -> Result<(), ChangeError> {
        self.change(|overlay, config| {
            find_server(config, pool, name)?;
            overlay.change(pool, name, state, weight);
            Ok(())
        })
        .await?;
        if let Some(weight) = weight {
            tracing::info!(pool, server = name, weight, "server weight changed");
        }
        Ok(())
    }

    /// `DELETE /pools/{pool}/servers/{name}`.
    pub async fn deregister(&self, pool: &str, name: &str) -> Result<(), ChangeError> {
        let base = self.inner.lock().await.base.clone();
        let in_file = base
            .pools
            .iter()
            .any(|p| p.name == pool && p.servers.iter().any(|s| s.name == name));
        self.change(|overlay, config| {
            find_server(config, pool, name)?;
            overlay.deregister(pool, name, in_file);
            Ok(())
        })
        .await
    }

    /// Stops every listener accepting (what is queued is still served).
    pub fn stop_accepting(&self) {
        for listener in self.listeners().iter() {
            listener.stop_accepting();
        }
    }

    /// Asks every connection to close once its requests are done.
    pub fn close_connections(&self) {
        for listener in self.listeners().iter() {
            listener.close_connections();
        }
    }

    /// Closes every connection now.
    pub fn cut_connections(&self) {
        for listener in self.listeners().iter() {
            listener.cut_connections();
        }
    }
}

fn pool_servers<'c>(config: &'c Config, pool: &str) -> Result<&'c [config::Server], ChangeError> {
    config
        .pools
        .iter()
        .find(|p| p.name == pool)
        .map(|p| p.servers.as_slice())
        .ok_or_else(|| ChangeError::NoPool(pool.to_owned()))
}

fn find_server<'c>(
    config: &'c Config,
    pool: &str,
    name: &str,
) -> Result<&'c config::Server, ChangeError> {
    pool_servers(config, pool)?
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| ChangeError::NoServer {
            pool: pool.to_owned(),
            server: name.to_owned(),
        })
}

/// Sets every server's operator state: the overlay's, else ready.
pub fn apply_states(snapshot: &Snapshot, states: &BTreeMap<(String, String), AdminState>) {
    for pool in &snapshot.pools {
        for server in &pool.servers {
            let key = (pool.name.to_string(), server.name.to_string());
            let state = states.get(&key).copied().unwrap_or(AdminState::Ready);
            server.set_admin_state(state, &pool.name);
        }
    }
}

/// Global settings a reload cannot apply, as notes.
fn restart_only(old: &config::Global, new: &config::Global) -> Vec<String> {
    let mut notes = Vec::new();
    let mut check = |changed: bool, key: &str| {
        if changed {
            notes.push(format!(
                "global.{key} changed: it takes effect when berth is restarted"
            ));
        }
    };
    check(old.access_log != new.access_log, "access_log");
    check(old.log_format != new.log_format, "log_format");
    check(old.admin != new.admin, "admin");
    check(old.admin_token != new.admin_token, "admin_token");
    check(old.state_file != new.state_file, "state_file");
    check(old.workers != new.workers, "workers");
    notes
}

/// The TLS acceptor of one listener: the shared certificate resolver, and
/// the listener's own client-certificate policy.
pub fn listener_tls(
    resolver: &Arc<SniResolver>,
    listener: &config::Listener,
) -> Result<tokio_rustls::TlsAcceptor, String> {
    let client_auth = match &listener.client_ca {
        Some(ca) => {
            let required = listener.client_auth == config::ClientAuth::Required;
            let auth = tls::ClientAuth::load(ca, required)
                .map_err(|err| format!("listener {}: {err}", listener.bind))?;
            Some(auth)
        }
        None => None,
    };
    let config = tls::server_config(resolver.clone(), client_auth.as_ref())
        .map_err(|err| format!("listener {}: TLS setup failed: {err}", listener.bind))?;
    Ok(tokio_rustls::TlsAcceptor::from(config))
}

impl Prepared {
    /// Binds every listener of `config`.
    pub async fn bind(
        config: &Config,
        certs: Option<&Arc<Certs>>,
    ) -> Result<Prepared, crate::server::StartError> {
        use crate::server::StartError;
        let mut listeners = Vec::new();
        for listener in &config.listeners {
            let socket = listen::bind(listener.bind)
                .await
                .map_err(|err| StartError::Runtime(err.to_string()))?;
            let local = socket
                .local_addr()
                .map_err(|err| StartError::Runtime(err.to_string()))?;
            let tls = match (certs, listener.tls) {
                (Some(certs), true) => {
                    Some(listener_tls(&certs.resolver, listener).map_err(StartError::Config)?)
                }
                _ => None,
            };
            let serving = Serving::new(listener.clone(), local.port(), tls, config.global.limits);
            tracing::info!(listener = %local, tls = listener.tls, "listening");
            listeners.push((
                listener.clone(),
                socket,
                Arc::new(Listener::new(local, serving)),
            ));
        }
        Ok(Prepared { listeners })
    }

    pub fn locals(&self) -> Vec<SocketAddr> {
        self.listeners.iter().map(|(_, _, l)| l.local).collect()
    }
}
