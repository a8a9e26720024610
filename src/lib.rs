//! berth: a TLS-terminating edge proxy with session affinity.
//!
//! ```text
//!  client ──TLS──▶ listen      accept, max_connections, TLS handshake (tls: certs/, SNI)
//!                   │           hyper HTTP/1.1 or HTTP/2 (ALPN); watch: idle, slow heads
//!                   ▼
//!                 proxy        check → route → pick a server (balance) → rewrite head
//!                   │           → upstream (pooled HTTP/1.1) → stream the response back
//!                   ▼
//!                 accesslog    one line per request, formatted and written off the
//!                               request path by a single writer thread
//! ```
//!
//! Modules:
//! - [`config`]: the TOML file, checked; every problem reported at once.
//! - [`runtime`]: the immutable snapshot built from a config (pools, servers).
//! - [`server`]: start (bind, serve) and the graceful drain.
//! - [`listen`], [`watch`]: accept loops, per-connection serving, timeouts.
//! - [`proxy_protocol`]: the L4 balancer's PROXY v1/v2 header, before TLS.
//! - [`affinity`]: ties of users to servers, the table and its sweeper.
//! - [`tls`]: certificates from `certs/`, SNI choice, the rustls policy.
//! - [`proxy`]: the request path; [`route`], [`balance`], [`upstream`] it calls.
//! - [`health`]: active health checks; passive marking lives in [`runtime`].
//! - [`accesslog`]: Apache combined formats, escaping, the writer.
//! - [`cli`], [`demo`]: the command line.

pub mod accesslog;
pub mod affinity;
pub mod balance;
pub mod cli;
pub mod config;
pub mod control;
pub mod demo;
#[doc(hidden)]
pub mod fuzzing;
pub mod health;
pub mod listen;
pub mod metrics;
pub mod proxy;
pub mod proxy_protocol;
pub mod resolve;
pub mod route;
pub mod runtime;
pub mod server;
pub mod tls;
pub mod upstream;
pub mod watch;
