//! Per-server affinity state: the generation that stamps every tie, the
//! count of live table ties, and when the last tied request arrived.
//!
//! A server's generation and its live tie count share one `AtomicU64`
//! (generation in the high 32 bits, ties in the low 32), so that the three
//! events that change them are each one atomic step and can never disagree:
//!
//! ```text
//! tie made      fetch_add(1)             → the tie is stamped with the generation it was counted in
//! tie dropped   CAS: same generation?    → ties - 1; a tie stamped earlier was already counted out
//! purge         (generation + 1, 0)      → the old ties are the purged count, every stamp now stale
//! ```
//!
//! Servers are found by [`ServerId`], a small dense number. Their slots live
//! in buckets that double in size and are allocated on first use, so a
//! lookup is one atomic load and an index: no lock, and the table of a pool
//! with three servers costs a few hundred bytes. [`Registry`] hands out the
//! ids by server name, reusing those of retired servers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};

/// A server's identity in its pool's affinity state. Stable while the
/// server exists (across reloads); dense, so the lead should get it from
/// [`Registry`] (or number servers 0, 1, 2, … and reuse the ids of removed
/// ones after [`crate::affinity::Affinity::retire`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerId(pub u16);

/// What one server carries. 16 bytes.
#[derive(Debug, Default)]
pub(super) struct ServerSlot {
    /// generation << 32 | live ties.
    word: AtomicU64,
    /// Milliseconds since the table's epoch, plus one; 0 = never.
    last_tied: AtomicU64,
}

const TIES: u64 = 0xffff_ffff;

impl ServerSlot {
    pub(super) fn generation(&self) -> u32 {
        (self.word.load(Ordering::Acquire) >> 32) as u32
    }

    /// Counts a new tie and returns the generation it is stamped with.
    /// The caller keeps the number of ties under `u32::MAX` (the table is
    /// bounded by `max_entries`, which is clamped to that).
    pub(super) fn add_tie(&self) -> u32 {
        (self.word.fetch_add(1, Ordering::AcqRel) >> 32) as u32
    }

    /// Counts out a tie stamped with `generation`; a tie from before the
    /// last purge was counted out by the purge.
    pub(super) fn drop_tie(&self, generation: u32) {
        let _ = self
            .word
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |word| {
                let live = (word >> 32) as u32 == generation && word & TIES > 0;
                live.then(|| word - 1)
            });
    }

    /// Starts a new generation and returns how many ties the old one held.
    pub(super) fn purge(&self) -> u64 {
        let next = |word: u64| {
            let generation = ((word >> 32) as u32).wrapping_add(1);
            u64::from(generation) << 32
        };
        let old = self
            .word
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |w| Some(next(w)))
            .unwrap_or_else(|w| w);
        old & TIES
    }

    pub(super) fn ties(&self) -> u64 {
        self.word.load(Ordering::Acquire) & TIES
    }

    pub(super) fn mark_tied(&self, now_ms: u64) {
        self.last_tied
            .fetch_max(now_ms.saturating_add(1), Ordering::Relaxed);
    }

    pub(super) fn last_tied_ms(&self) -> Option<u64> {
        self.last_tied.load(Ordering::Relaxed).checked_sub(1)
    }

    pub(super) fn forget_last_tied(&self) {
        self.last_tied.store(0, Ordering::Relaxed);
    }
}

/// Slots of bucket `b` number `FIRST << b`; 13 buckets cover every `u16`.
const FIRST: usize = 16;
const BUCKETS: usize = 13;

/// Every server's slot, by id, allocated as ids are first used.
#[derive(Default)]
pub(super) struct Slots {
    buckets: [OnceLock<Box<[ServerSlot]>>; BUCKETS],
}

impl Slots {
    pub(super) fn get(&self, id: ServerId) -> &ServerSlot {
        let n = usize::from(id.0) + FIRST;
        // log2(n) - log2(FIRST): 0 for ids 0..16, 1 for 16..48, …
        let bucket =
            (usize::BITS - 1 - n.leading_zeros()) as usize - FIRST.trailing_zeros() as usize;
        let index = n - (FIRST << bucket);
        let slots = self.buckets[bucket].get_or_init(|| {
            (0..FIRST << bucket)
                .map(|_| ServerSlot::default())
                .collect()
        });
        &slots[index]
    }

    /// The slot of `id` if it was ever used (no allocation).
    pub(super) fn peek(&self, id: ServerId) -> Option<&ServerSlot> {
        let n = usize::from(id.0) + FIRST;
        let bucket =
            (usize::BITS - 1 - n.leading_zeros()) as usize - FIRST.trailing_zeros() as usize;
        self.buckets[bucket].get()?.get(n - (FIRST << bucket))
    }
}

/// Server ids by name, for one pool: the same name keeps its id across
/// reloads; a retired server's id goes to the next new name. Touched only
/// when snapshots are built and servers added or removed, never per request.
#[derive(Debug, Default)]
pub struct Registry {
    inner: Mutex<RegistryInner>,
}

#[derive(Debug, Default)]
struct RegistryInner {
    ids: HashMap<Box<str>, ServerId>,
    free: Vec<ServerId>,
    next: u32,
}

impl Registry {
    /// The id of server `name`, given one if it has none; `None` once
    /// 65,536 servers exist in the pool at the same time.
    pub fn id(&self, name: &str) -> Option<ServerId> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(id) = inner.ids.get(name) {
            return Some(*id);
        }
        let id = match inner.free.pop() {
            Some(id) => id,
            None => {
                let id = ServerId(u16::try_from(inner.next).ok()?);
                inner.next += 1;
                id
            }
        };
        inner.ids.insert(name.into(), id);
        Some(id)
    }

    /// Frees the id of server `name` for reuse, returning it. The caller
    /// purges it first ([`crate::affinity::Affinity::retire`] does both),
    /// so the ties of the old server never reach the new one.
    pub(super) fn release(&self, name: &str) -> Option<ServerId> {
        let mut inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let id = inner.ids.remove(name)?;
        inner.free.push(id);
        Some(id)
    }

    /// The id of server `name`, if it has one.
    pub fn get(&self, name: &str) -> Option<ServerId> {
        let inner = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        inner.ids.get(name).copied()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_id_has_its_own_slot() {
        let slots = Slots::default();
        assert!(slots.peek(ServerId(0)).is_none(), "nothing allocated yet");
        for id in [0u16, 1, 15, 16, 47, 48, 1000, u16::MAX] {
            slots.get(ServerId(id)).add_tie();
        }
        for id in [0u16, 1, 15, 16, 47, 48, 1000, u16::MAX] {
            assert_eq!(slots.get(ServerId(id)).ties(), 1, "id {id}");
            assert_eq!(slots.peek(ServerId(id)).unwrap().ties(), 1);
        }
        assert_eq!(slots.get(ServerId(2)).ties(), 0);
    }

    #[test]
    fn a_purge_counts_out_every_tie_of_the_old_generation() {
        let slot = ServerSlot::default();
        let old = slot.add_tie();
        slot.add_tie();
        assert_eq!(slot.ties(), 2);
        assert_eq!(slot.purge(), 2);
        assert_eq!(slot.ties(), 0);
        assert_ne!(slot.generation(), old);
        // A tie stamped before the purge is not counted out twice.
        slot.drop_tie(old);
        let new = slot.add_tie();
        slot.drop_tie(old);
        assert_eq!(slot.ties(), 1);
        slot.drop_tie(new);
        assert_eq!(slot.ties(), 0);
        slot.drop_tie(new);
        assert_eq!(slot.ties(), 0);
    }

    #[test]
    fn registry_keeps_names_and_reuses_released_ids() {
        let registry = Registry::default();
        let a = registry.id("app01").unwrap();
        let b = registry.id("app02").unwrap();
        assert_ne!(a, b);
        assert_eq!(registry.id("app01"), Some(a));
        assert_eq!(registry.release("app01"), Some(a));
        assert_eq!(registry.get("app01"), None);
        assert_eq!(registry.id("app03"), Some(a));
        assert_eq!(registry.release("nobody"), None);
    }
}
