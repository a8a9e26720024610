//! Session affinity (SPEC §5): which server a request is tied to.
//!
//! Pure: no IO, no hyper types, the clock passed in. [`extract`] reads ties
//! out of requests and responses and writes berth's cookie; [`table`] is
//! the bounded, sharded, swept table with purge by generation.

pub mod extract;
#[allow(dead_code)]
pub mod table;

#[allow(dead_code)] // last tied request: read by the decision, next commit
mod servers;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests;

pub use extract::SessionId;
pub use servers::{Registry, ServerId};
pub use table::{Key, Lookup, Sweep, Table};
