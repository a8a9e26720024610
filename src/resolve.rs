//! Server addresses given as host names (SPEC §2 `resolve_interval`): each
//! is resolved when its server is created and again every
//! `resolve_interval`. A changed answer takes effect for new connections
//! (idle ones to the old addresses are closed); ties are to the server's
//! name, so they are kept. A failed lookup keeps the last answer, and is
//! logged when it starts failing and when it recovers.

use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::config::ServerAddr;
use crate::runtime::Server;

/// Starts resolving `server`'s address, if it is a host name. The task
/// ends when the server leaves the configuration.
pub fn spawn(server: &Arc<Server>) {
    let ServerAddr::Host { host, port } = &server.addr else {
        return;
    };
    let name = format!("{host}:{port}");
    let server = Arc::downgrade(server);
    tokio::spawn(resolve_loop(server, name));
}

async fn resolve_loop(server: Weak<Server>, name: String) {
    let mut failing = false;
    loop {
        let answer = lookup(&name).await;
        let Some(target) = server.upgrade().filter(|s| s.is_current()) else {
            return;
        };
        match answer {
            Ok(addrs) => {
                if failing {
                    tracing::info!(server = %target.name, addr = %name, "name resolves again");
                    failing = false;
                }
                let first = target.addresses().is_empty();
                if target.set_addresses(addrs.clone()) && !first {
                    tracing::info!(server = %target.name, addr = %name, resolved = ?addrs, "server address changed");
                }
            }
            Err(err) => {
                if !failing {
                    tracing::warn!(server = %target.name, addr = %name, error = %err, "cannot resolve the server's name; keeping its last addresses");
                    failing = true;
                }
            }
        }
        let every = Duration::from_millis(
            target
                .resolve_every_ms
                .load(std::sync::atomic::Ordering::Relaxed)
                .max(1000),
        );
        // Until a first answer, try again sooner.
        let wait = if target.addresses().is_empty() {
            every.min(Duration::from_secs(1))
        } else {
            every
        };
        drop(target);
        tokio::time::sleep(wait).await;
    }
}

pub async fn lookup(name: &str) -> std::io::Result<Vec<SocketAddr>> {
    let mut addrs: Vec<SocketAddr> = tokio::net::lookup_host(name).await?.collect();
    // A stable order, so an unchanged answer in another order is no change.
    addrs.sort();
    addrs.dedup();
    if addrs.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "no address",
        ));
    }
    Ok(addrs)
}
