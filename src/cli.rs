//! The command line of SPEC §1: `run`, `check`, `demo`, `--version`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::{self, Config};
use crate::server::{self, Running};
use crate::tls;

#[derive(Debug, Parser)]
#[command(
    name = "berth",
    version,
    about = "TLS-terminating edge proxy with session affinity"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve traffic.
    Run {
        /// The configuration file.
        #[arg(short = 'c', long = "config", default_value = "config/berth.toml")]
        config: PathBuf,
    },
    /// Validate the configuration and certificates, print a summary.
    Check {
        #[arg(short = 'c', long = "config", default_value = "config/berth.toml")]
        config: PathBuf,
    },
    /// Run a self-contained demo: a generated certificate, two app servers,
    /// TLS on 127.0.0.1:8443.
    Demo,
}

/// Loads the configuration, printing every problem; `None` if there were any.
fn load(path: &Path) -> Option<Config> {
    match config::load(path) {
        Ok(config) => Some(config),
        Err(problems) => {
            for problem in &problems {
                eprintln!("error: {problem}");
            }
            eprintln!("{} problem(s) in {}", problems.len(), path.display());
            None
        }
    }
}

/// `berth check`: every problem of the config and the certificates;
/// exit 1 on any error, 0 with warnings only.
pub fn check(path: &Path) -> ExitCode {
    let Some(config) = load(path) else {
        return ExitCode::from(1);
    };
    let global = &config.global;
    let mut errors = 0;
    let tls_listeners = config.listeners.iter().filter(|l| l.tls).count();
    let certs = tls::load_dir(&global.certs, global.default_cert.as_deref());
    if tls_listeners > 0 {
        for problem in &certs.problems {
            match problem.severity {
                tls::Severity::Error => {
                    errors += 1;
                    eprintln!("error: {problem}");
                }
                tls::Severity::Warning => eprintln!("warning: {problem}"),
            }
        }
        if certs.store.is_empty() {
            errors += 1;
            eprintln!(
                "error: no usable certificate in {} for the TLS listeners",
                global.certs.display()
            );
        }
    }
    println!(
        "{}: {}",
        path.display(),
        if errors == 0 { "ok" } else { "NOT ok" }
    );
    for listener in &config.listeners {
        let kind = if listener.tls { "https" } else { "http" };
        println!("  listener {} ({kind})", listener.bind);
    }
    for route in &config.routes {
        let host = route.host.as_ref().map_or("*".to_owned(), |h| match h {
            config::HostMatch::Exact(name) => name.clone(),
            config::HostMatch::Wildcard(parent) => format!("*.{parent}"),
        });
        let prefix = route.path_prefix.as_deref().unwrap_or("/");
        println!("  route {host}{prefix} -> pool {}", route.pool);
    }
    for pool in &config.pools {
        let servers: Vec<String> = pool
            .servers
            .iter()
            .map(|s| format!("{} ({})", s.name, s.addr))
            .collect();
        println!("  pool {}: {}", pool.name, servers.join(", "));
    }
    if tls_listeners > 0 {
        for cert in certs.store.summary() {
            let expired = if cert.expired { ", EXPIRED" } else { "" };
            println!(
                "  certificate {}: {} (until {}{expired})",
                cert.file,
                cert.names.join(", "),
                cert.not_after
            );
        }
    }
    ExitCode::from(u8::from(errors > 0))
}

/// `berth run`: serve until SIGTERM or SIGINT, then drain.
pub fn run(path: &Path) -> ExitCode {
    let Some(config) = load(path) else {
        return ExitCode::from(1);
    };
    let runtime = match build_runtime(config.global.workers) {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the runtime: {err}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(async {
        let options = server::Options {
            config_path: Some(path.to_path_buf()),
            certs: None,
        };
        match server::start(config, options).await {
            Ok(running) => serve_until_signalled(running).await,
            Err(err) => {
                eprintln!("error: {err}");
                ExitCode::from(err.exit_code())
            }
        }
    })
}

pub fn build_runtime(workers: usize) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if workers > 0 {
        builder.worker_threads(workers);
    }
    builder.enable_all().build()
}

/// Waits for signals: SIGHUP reloads the configuration and certificates;
/// SIGUSR1 reopens the access log; SIGTERM or SIGINT drains and exits 0,
/// and a second one during the drain exits 1 at once.
pub async fn serve_until_signalled(running: Running) -> ExitCode {
    use tokio::signal::unix::{SignalKind, signal};
    let signals = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::user_defined1()),
        signal(SignalKind::hangup()),
    );
    let (Ok(mut term), Ok(mut int), Ok(mut usr1), Ok(mut hup)) = signals else {
        eprintln!("error: cannot install signal handlers");
        return ExitCode::from(2);
    };
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = usr1.recv() => {
                tracing::info!("SIGUSR1: reopening the access log");
                running.shared.log.reopen();
            }
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading");
                if let Err(errors) = running.control.reload().await {
                    for error in &errors {
                        tracing::error!("{error}");
                    }
                    tracing::error!(errors = errors.len(), "reload refused; the running configuration stays");
                }
            }
        }
    }
    tracing::info!("draining");
    tokio::select! {
        cut = running.shutdown() => {
            tracing::info!(cut, "stopped");
            ExitCode::SUCCESS
        }
        _ = term.recv() => ExitCode::from(1),
        _ = int.recv() => ExitCode::from(1),
    }
}
