//! Active health checks (SPEC §9): every `interval`, an HTTP GET of the
//! pool's `health.path` on a new connection; a 2xx or 3xx within `timeout`
//! passes. [`Server::checked`] turns the results into state changes
//! (`fall` failures in a row: down; `rise` passes: up), each logged with
//! its reason.
//!
//! One task per server, holding only a `Weak` reference: when the server
//! leaves the configuration, is replaced, or a reload changes the pool's
//! `health` table (a new task takes over), the task ends by itself.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use http::{Request, header};

use crate::config;
use crate::proxy::body::RequestBody;
use crate::runtime::Server;
use crate::upstream;

/// Starts checking `server` of `pool` with `health`; a check task started
/// earlier for it ends at its next tick.
pub fn spawn(server: &Arc<Server>, pool: &Arc<str>, health: &config::Health) {
    let epoch = server.health_epoch.fetch_add(1, Ordering::Relaxed) + 1;
    tokio::spawn(check_loop(
        Arc::downgrade(server),
        epoch,
        pool.clone(),
        health.clone(),
    ));
}

async fn check_loop(server: Weak<Server>, epoch: u64, pool: Arc<str>, health: config::Health) {
    let mut interval = tokio::time::interval(health.interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let current = |server: &Server| {
        server.is_current() && server.health_epoch.load(Ordering::Relaxed) == epoch
    };
    loop {
        interval.tick().await;
        let Some(target) = server.upgrade().filter(|s| current(s)) else {
            return;
        };
        let addrs = target.addresses();
        let host = target.addr.to_string();
        drop(target);
        let result = probe(&addrs, &host, &health).await;
        let Some(server) = server.upgrade().filter(|s| current(s)) else {
            return;
        };
        server.checked(&pool, &health, result);
    }
}

/// One check: `Ok` for a 2xx or 3xx answer within the timeout, else why not.
pub async fn probe(
    addrs: &[SocketAddr],
    host: &str,
    health: &config::Health,
) -> Result<(), String> {
    let check = async {
        let mut conn = upstream::connect(addrs, host, health.timeout)
            .await
            .map_err(|e| e.to_string())?;
        let request = Request::get(health.path.as_str())
            .header(header::HOST, host)
            .header(
                header::USER_AGENT,
                concat!("berth/", env!("CARGO_PKG_VERSION"), " health check"),
            )
            .header(header::CONNECTION, "close")
            .body(RequestBody::empty())
            .map_err(|e| e.to_string())?;
        let response = conn
            .sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        if status.is_success() || status.is_redirection() {
            Ok(())
        } else {
            Err(format!("status {}", status.as_u16()))
        }
    };
    match tokio::time::timeout(health.timeout, check).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {:?}", health.timeout)),
    }
}
