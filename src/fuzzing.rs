//! Entry points for the `cargo fuzz` targets in `fuzz/`: crate-private
//! parsers of outside input, reachable without widening their modules' API.
//! Not part of berth's interface.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use crate::watch::{Activity, Framing, RawHead};

/// Feeds `chunks` to a connection's head watcher as reads from a client,
/// between requests, keeping at most `head_max` bytes; then returns what
/// the request path would get when hyper completes the head, and the
/// first line the access log would show before that.
pub fn scan_head<'c>(
    chunks: impl IntoIterator<Item = &'c [u8]>,
    head_max: usize,
) -> (RawHead, Option<Vec<u8>>) {
    let activity = Activity::new(Arc::new(AtomicUsize::new(0)), true, head_max);
    for chunk in chunks {
        activity.saw_read(chunk);
    }
    let first_line = activity.first_line();
    (activity.head_complete(), first_line)
}

/// The framing headers counted in a complete raw head (`None` if it does
/// not parse as a request head).
pub fn count_framing(head: &[u8]) -> Option<Framing> {
    Framing::count(head)
}
