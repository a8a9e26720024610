//! berth's end-to-end tests: berth in-process on 127.0.0.1:0, real TLS
//! clients, small app servers that report what they saw. One test binary
//! (see `autotests = false` in Cargo.toml) keeps link time down.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod affinity;
mod broken_app;
mod forwarding;
mod limits;
mod operate;
mod proxy_protocol;
mod smuggling;
mod streaming;
mod tls_sni;
mod upstream_head;
