//! Active health checks (SPEC §9): every `interval`, an HTTP GET of the
//! pool's `health.path` on a new connection; a 2xx or 3xx within `timeout`
//! passes. [`Server::checked`] turns the results into state changes
//! (`fall` failures in a row: down; `rise` passes: up), each logged with
//! its reason.
//!
//! One task per server, holding only a `Weak` reference: when a new
//! snapshot replaces the server (reload, removal), the task ends by itself.

use std::sync::{Arc, Weak};

use http::{Request, header};

use crate::config::{self, ServerAddr};
use crate::proxy::body::RequestBody;
use crate::runtime::{Server, Snapshot};
use crate::upstream;

/// Starts the checks of every pool that has a `health` table.
pub fn spawn(snapshot: &Snapshot) {
    for pool in &snapshot.pools {
        let Some(health) = &pool.health else { continue };
        for server in &pool.servers {
            tokio::spawn(check_loop(
                Arc::downgrade(server),
                pool.name.clone(),
                health.clone(),
            ));
        }
    }
}

async fn check_loop(server: Weak<Server>, pool: Arc<str>, health: config::Health) {
    let mut interval = tokio::time::interval(health.interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(addr) = server.upgrade().map(|s| s.addr.clone()) else {
            return;
        };
        let result = probe(&addr, &health).await;
        let Some(server) = server.upgrade() else {
            return;
        };
        server.checked(&pool, &health, result);
    }
}

/// One check: `Ok` for a 2xx or 3xx answer within the timeout, else why not.
pub async fn probe(addr: &ServerAddr, health: &config::Health) -> Result<(), String> {
    let check = async {
        let mut conn = upstream::connect(addr, health.timeout)
            .await
            .map_err(|e| e.to_string())?;
        let request = Request::get(health.path.as_str())
            .header(header::HOST, addr.to_string())
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
