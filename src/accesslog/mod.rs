//! The access log (SPEC §6): Apache `combined`, `vhost_combined` and
//! `combined_plus` lines, written off the request path.
//!
//! - `escape`: Apache's `ap_escape_logitem`, byte for byte.

mod escape;

pub use escape::escape_into;
