//! Starting and stopping berth: from a checked [`Config`] to bound
//! listeners serving traffic, and the graceful drain at the end.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::accesslog::AccessLog;
use crate::config::Config;
use crate::control::state::Overlay;
use crate::control::{self, Certs, Control, Prepared};
use crate::listen;
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

/// How to start: where the configuration came from (for reloads) and,
/// for the demo and tests, a fixed certificate store instead of `certs/`.
#[derive(Default)]
pub struct Options {
    pub config_path: Option<PathBuf>,
    pub certs: Option<CertStore>,
}

/// A running berth.
pub struct Running {
    /// The address each configured listener is bound to, in config order
    /// (port 0 in the config is resolved here).
    pub listeners: Vec<SocketAddr>,
    /// The admin API's address, when `global.admin` is set.
    pub admin: Option<SocketAddr>,
    pub shared: Arc<Shared>,
    pub control: Arc<Control>,
}

/// Loads certificates from `config.global.certs` (unless `options` gives a
/// store, as the demo and tests may), applies the state file, binds every
/// listener and the admin API, and starts serving.
pub async fn start(config: Config, options: Options) -> Result<Running, StartError> {
    let global = &config.global;
    let needs_tls = config.listeners.iter().any(|l| l.tls);
    let certs = if needs_tls {
        let certs = match options.certs {
            Some(store) => Certs::fixed(store),
            None => {
                let loaded = tls::load_dir(&global.certs, global.default_cert.as_deref());
                control::report(&loaded.problems);
                Certs::from_dir(
                    loaded.store,
                    global.certs.clone(),
                    global.default_cert.clone(),
                )
            }
        };
        if certs.resolver.store().is_empty() {
            return Err(StartError::Config(format!(
                "no usable certificate in {} for the TLS listeners",
                global.certs.display()
            )));
        }
        Some(Arc::new(certs))
    } else {
        None
    };

    let log = AccessLog::open(&global.access_log, global.log_format).map_err(|err| {
        StartError::Runtime(format!(
            "cannot open the access log {:?}: {err}",
            global.access_log
        ))
    })?;
    let prepared = Prepared::bind(&config, certs.as_ref()).await?;
    let admin = match global.admin {
        Some(addr) => {
            let socket = listen::bind(addr)
                .await
                .map_err(|err| StartError::Runtime(format!("admin API: {err}")))?;
            let local = socket
                .local_addr()
                .map_err(|err| StartError::Runtime(err.to_string()))?;
            Some((socket, local))
        }
        None => None,
    };

    // The configuration, then the state file's run-time changes over it.
    let (mut overlay, problem) = Overlay::load(&global.state_file);
    if let Some(problem) = problem {
        tracing::error!("{problem}");
    }
    let base = Arc::new(config);
    let applied = overlay.apply((*base).clone());
    for note in &applied.notes {
        tracing::warn!("{note}");
    }
    let snapshot = Snapshot::build(Arc::new(applied.config));
    control::apply_states(&snapshot, &applied.states);
    let shared = Arc::new(Shared {
        snapshot: arc_swap::ArcSwap::from_pointee(snapshot),
        log,
        draining: false.into(),
        counters: Arc::default(),
    });
    let listeners = prepared.locals();
    let control = Control::start(
        shared.clone(),
        certs.clone(),
        options.config_path,
        base.clone(),
        overlay,
        prepared,
    );
    if let Some(certs) = &certs {
        control::certwatch::spawn(certs);
    }
    let admin = admin.map(|(socket, local)| {
        tracing::info!(admin = %local, "admin API listening");
        tokio::spawn(control::admin::serve(
            socket,
            control.clone(),
            base.global.admin_token.clone(),
        ));
        local
    });
    Ok(Running {
        listeners,
        admin,
        shared,
        control,
    })
}

impl Running {
    /// Open client connections, across listeners.
    pub fn open_connections(&self) -> usize {
        self.control
            .listeners()
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
        let global = self.shared.snapshot.load().config.global.clone();
        tokio::time::sleep(global.drain_delay).await;
        self.control.stop_accepting();
        self.control.close_connections();
        let listeners = self.control.listeners();
        let all_closed = || async {
            for listener in listeners.iter() {
                listener.connections.all_closed().await;
            }
        };
        let cut = match tokio::time::timeout(global.drain_timeout, all_closed()).await {
            Ok(()) => 0,
            Err(_) => self.open_connections(),
        };
        if cut > 0 {
            tracing::warn!(
                connections = cut,
                "drain_timeout passed; cutting the remaining connections (their requests are logged with 503)"
            );
            self.control.cut_connections();
            // Long enough for the cut requests' log lines to be handed over.
            let _ = tokio::time::timeout(Duration::from_secs(1), all_closed()).await;
        }
        let log = self.shared.log.clone();
        let _ = tokio::task::spawn_blocking(move || log.shutdown()).await;
        cut
    }
}
