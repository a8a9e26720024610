//! berth
pub mod accesslog;
pub mod config;
pub mod tls;
