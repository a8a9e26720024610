//! Starting and stopping berth: from a checked [`Config`] to bound
//! listeners serving traffic, and the graceful drain at the end.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::watch;

use crate::accesslog::AccessLog;
use crate::config::Config;
use crate::listen::{self, Listener};
use crate::proxy::Shared;
use crate::runtime::Snapshot;
use crate::tls::{self, CertStore};

/// Why berth could not start; the first kind exits 1, the second 2
/// (SPEC §1).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(String),
    #[error("{0}")]
    Runtime(String),
}

impl StartError {
    pub fn exit_code(&self) -> u8 {
        match self {
            StartError::Config(_) => 1,
            StartError::Runtime(_) => 2,
        }
    }
}

/// A running berth.
pub struct Running {
    /// The address each configured listener is bound to, in config order
    /// (port 0 in the config is resolved here).
    pub listeners: Vec<SocketAddr>,
    pub shared: Arc<Shared>,
    listener_state: Vec<Arc<Listener>>,
    stop_accepting: watch::Sender<bool>,
    close_connections: watch::Sender<bool>,
    drain_delay: Duration,
    drain_timeout: Duration,
}

/// Loads certificates from `config.global.certs` (unless `certs` is given,
/// as the demo and tests may), binds every listener and starts serving.
pub async fn start(config: Config, certs: Option<CertStore>) -> Result<Running, StartError> {
    let config = Arc::new(config);
    let global = &config.global;
    let needs_tls = config.listeners.iter().any(|l| l.tls);
    let tls_config = if needs_tls {
        let store = match certs {
            Some(store) => store,
            None => {
                let loaded = tls::load_dir(&global.certs, global.default_cert.as_deref());
                for problem in &loaded.problems {
                    match problem.severity {
                        tls::Severity::Error => tracing::error!("{problem}"),
                        tls::Severity::Warning => tracing::warn!("{problem}"),
                    }
                }
                loaded.store
            }
        };
        if store.is_empty() {
            return Err(StartError::Config(format!(
                "no usable certificate in {} for the TLS listeners",
                global.certs.display()
            )));
        }
        Some(tls::SniResolver::new(Arc::new(store)))
    } else {
        None
    };

    let log = AccessLog::open(&global.access_log, global.log_format).map_err(|err| {
        StartError::Runtime(format!(
            "cannot open the access log {:?}: {err}",
            global.access_log
        ))
    })?;
    let snapshot = Snapshot::build(config.clone());
    crate::health::spawn(&snapshot);
    snapshot.spawn_sweepers();
    let shared = Arc::new(Shared {
        snapshot: arc_swap::ArcSwap::from_pointee(snapshot),
        log,
        draining: false.into(),
    });

    let mut sockets = Vec::new();
    for listener in &config.listeners {
        let socket = listen::bind(listener.bind)
            .await
            .map_err(|err| StartError::Runtime(err.to_string()))?;
        let local = socket
            .local_addr()
            .map_err(|err| StartError::Runtime(err.to_string()))?;
        let tls = match (&tls_config, listener.tls) {
            (Some(resolver), true) => Some(listener_tls(resolver, listener)?),
            _ => None,
        };
        let state = Arc::new(Listener::new(
            listener.clone(),
            local.port(),
            tls,
            global.limits,
        ));
        sockets.push((socket, local, state));
    }

    let (stop_accepting, stop_rx) = watch::channel(false);
    let (close_connections, close_rx) = watch::channel(false);
    let mut running = Running {
        listeners: Vec::new(),
        shared: shared.clone(),
        listener_state: Vec::new(),
        stop_accepting,
        close_connections,
        drain_delay: global.drain_delay,
        drain_timeout: global.drain_timeout,
    };
    for (socket, local, state) in sockets {
        tracing::info!(listener = %local, tls = state.tls.is_some(), "listening");
        running.listeners.push(local);
        running.listener_state.push(state.clone());
        tokio::spawn(listen::accept_loop(
            socket,
            state,
            shared.clone(),
            stop_rx.clone(),
            close_rx.clone(),
        ));
    }
    Ok(running)
}

/// The TLS acceptor of one listener: the shared certificate resolver, and
/// the listener's own client-certificate policy.
fn listener_tls(
    resolver: &Arc<tls::SniResolver>,
    listener: &crate::config::Listener,
) -> Result<tokio_rustls::TlsAcceptor, StartError> {
    let client_auth = match &listener.client_ca {
        Some(ca) => {
            let required = listener.client_auth == crate::config::ClientAuth::Required;
            let auth = tls::ClientAuth::load(ca, required)
                .map_err(|err| StartError::Config(format!("listener {}: {err}", listener.bind)))?;
            Some(auth)
        }
        None => None,
    };
    let config = tls::server_config(resolver.clone(), client_auth.as_ref()).map_err(|err| {
        StartError::Config(format!(
            "listener {}: TLS setup failed: {err}",
            listener.bind
        ))
    })?;
    Ok(tokio_rustls::TlsAcceptor::from(config))
}

impl Running {
    /// Open client connections, across listeners.
    pub fn open_connections(&self) -> usize {
        self.listener_state
            .iter()
            .map(|l| l.connections.open())
            .sum()
    }

    /// The graceful drain of SPEC §9: health checks turn 503, listeners keep
    /// accepting for `drain_delay`, then stop; connections are closed as
    /// their requests finish, for at most `drain_timeout`; the log is
    /// flushed. Returns the number of connections that were cut.
    pub async fn shutdown(self) -> usize {
        self.shared.draining.store(true, Ordering::Relaxed);
        tokio::time::sleep(self.drain_delay).await;
        let _ = self.stop_accepting.send(true);
        let _ = self.close_connections.send(true);
        let all_closed = async {
            for listener in &self.listener_state {
                listener.connections.all_closed().await;
            }
        };
        let cut = match tokio::time::timeout(self.drain_timeout, all_closed).await {
            Ok(()) => 0,
            Err(_) => self.open_connections(),
        };
        if cut > 0 {
            tracing::warn!(
                connections = cut,
                "drain_timeout passed; cutting the remaining connections"
            );
        }
        let log = self.shared.log.clone();
        let _ = tokio::task::spawn_blocking(move || log.shutdown()).await;
        cut
    }
}
