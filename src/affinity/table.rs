//! The affinity table of one pool: key → (server, generation), bounded,
//! least recently used first out, idle entries swept.
//!
//! ```text
//! Table
//!  ├─ shards[key.1 · n >> 64]: Mutex<Shard>     (n: 1 to 64, by max_entries)
//!  │    index: HashMap<key.0, slot>              key.0 is already a keyed hash: no rehash
//!  │    slots: [Slot; ≤ capacity]                40 bytes each: key, used, server, generation,
//!  │    head ⇄ … ⇄ tail                          prev/next of the shard's LRU list (head = newest)
//!  └─ servers: [ServerSlot]                      per server: generation | live ties, last tied request
//! ```
//!
//! **Keys** are 128-bit keyed hashes of the tie's bytes (cookie value,
//! session id, header value, client address), computed with a per-table
//! random SipHash key, as Varnish keys objects by digest: every entry has
//! the same small size whatever its key's length, there is no per-entry
//! heap allocation, and a client cannot aim keys at one shard or bucket.
//! Two keys that differ share an entry only if their 128-bit hashes are
//! equal (about 10⁻²⁷ at a million entries); the worst that could do is send
//! one client where another's tie points. When two keys share the 64 bits
//! the index uses (10⁻⁸), the newer one takes the entry over.
//!
//! **Locks.** Each shard is a `std::sync::Mutex`, as mini-redis' `db.rs`
//! argues: the critical section is a hash probe and a few index writes
//! (tens of nanoseconds), never spans an `.await`, and an async mutex would
//! only add cost. A lookup must write anyway (it moves the entry to the
//! head of the LRU list and refreshes its idle time), so a `RwLock` would
//! buy nothing. Shards keep threads from meeting on one lock.
//!
//! **LRU.** Each shard is an exact LRU of its own entries, with capacity
//! `max_entries / shards`; a full shard evicts its own least recently used
//! entry. Keys spread over shards by a random hash, so every shard sees the
//! same mix of ages and this approximates one global LRU closely (tested).
//! Tables of fewer than 8,192 entries have one shard: exact LRU. Shards
//! fill unevenly, so evictions start a little before the table holds
//! `max_entries` (a fraction of a percent at a million entries); once
//! every shard is full it holds exactly `max_entries`. A lookup moves its
//! entry to the head only if it was last moved [`TOUCH_EVERY_MS`] or more
//! ago (or an eighth of `ttl`, if less): the burst of requests a page
//! makes costs one move, not one each. So recency, and idle time, are
//! counted to within a second.
//!
//! **Purge by generation.** An entry is *live* while its generation equals
//! its server's current one. Purging a server is one atomic step on that
//! server's slot (see `servers.rs`): every tie to it turns stale at once,
//! whatever the table size, and the number purged is known at once. A
//! stale entry found by a lookup reports `Stale` (the caller answers
//! `moved` and re-ties it); stale entries age out like any other.
//!
//! **Sweeping.** Each shard's LRU list is in order of last use, so expired
//! entries sit at its tail: a sweep walks tails only, removing what has
//! been idle for `ttl`, in batches of [`SWEEP_BATCH`] per lock, and reports
//! when the next entry will expire. New entries expire after every existing
//! one, so the sweeper can sleep until then (no wake-up needed on insert).

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::servers::{ServerId, ServerSlot, Slots};

/// A live entry found by a lookup is moved to the head of its LRU list if
/// it was last moved this long ago (or `ttl / 8`, if less).
pub const TOUCH_EVERY_MS: u64 = 1000;

/// Entries removed per shard lock taken by [`Table::sweep`].
pub const SWEEP_BATCH: usize = 1024;

/// About a shard per this many entries, so tables under twice this size
/// have one shard (exact LRU), up to [`MAX_SHARDS`].
const ENTRIES_PER_SHARD: usize = 4096;
pub const MAX_SHARDS: usize = 64;
const NIL: u32 = u32::MAX;

/// A tie's key: a keyed 128-bit hash of its bytes (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key(pub [u64; 2]);

/// What the table holds for a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// Nothing, or only an entry idle for `ttl` (now removed).
    Absent,
    /// A tie to this server, live: its idle time starts again.
    Live(ServerId),
    /// A tie to this server from before its last purge: not to be honoured.
    Stale(ServerId),
}

/// What one call of [`Table::sweep`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sweep {
    /// Entries removed for being idle `ttl` or longer.
    pub removed: usize,
    /// When the next entry expires, if nothing touches it first; `now + ttl`
    /// for an empty table. The sweeper can sleep until then.
    pub next: Instant,
}

pub struct Table {
    shards: Box<[Padded]>,
    hasher: RandomState,
    pub(super) servers: Slots,
    epoch: Instant,
    /// Milliseconds; changed by a reload.
    ttl: AtomicU64,
    purged: AtomicU64,
}

struct Shard {
    index: HashMap<u64, u32, BuildHasherDefault<Prehashed>>,
    slots: Vec<Slot>,
    /// Free slots, linked through `next`.
    free: u32,
    /// Most and least recently used.
    head: u32,
    tail: u32,
    len: usize,
    capacity: usize,
}

/// 40 bytes.
#[derive(Debug, Clone, Copy)]
struct Slot {
    key: Key,
    /// Milliseconds since the table's epoch.
    used: u64,
    generation: u32,
    prev: u32,
    next: u32,
    server: ServerId,
}

impl Table {
    /// An empty table holding at most `max_entries` (clamped to
    /// `1..=u32::MAX`) entries, forgetting those idle for `ttl`. `now` is
    /// the table's epoch: later times passed in are measured from it.
    pub fn new(max_entries: usize, ttl: Duration, now: Instant) -> Table {
        Table::with_shards(max_entries, ttl, now, shards_for(max_entries))
    }

    /// As [`Table::new`], with `shards` shards (at most [`MAX_SHARDS`] and
    /// at most `max_entries`).
    pub fn with_shards(max_entries: usize, ttl: Duration, now: Instant, shards: usize) -> Table {
        let max_entries = max_entries.clamp(1, u32::MAX as usize);
        let shards = shards.clamp(1, MAX_SHARDS).min(max_entries);
        let table = Table {
            shards: (0..shards)
                .map(|_| Padded(Mutex::new(Shard::new())))
                .collect(),
            hasher: RandomState::new(),
            servers: Slots::default(),
            epoch: now,
            ttl: AtomicU64::new(0),
            purged: AtomicU64::new(0),
        };
        table.apply_limits(max_entries, ttl);
        table
    }

    /// New bounds from a reload. Entries over a smaller `max_entries` go,
    /// least recently used first, as new ones come in. Returns `false`
    /// (and changes nothing) if a table of the new size would have less
    /// than half or more than twice the shards: build a new table then.
    pub fn set_limits(&self, max_entries: usize, ttl: Duration) -> bool {
        let (now, new) = (self.shards.len(), shards_for(max_entries));
        if now > max_entries || now * 2 < new || new * 2 < now {
            return false;
        }
        self.apply_limits(max_entries, ttl);
        true
    }

    fn apply_limits(&self, max_entries: usize, ttl: Duration) {
        let max_entries = max_entries.clamp(1, u32::MAX as usize);
        let shards = self.shards.len();
        let (each, extra) = (max_entries / shards, max_entries % shards);
        for (i, shard) in self.shards.iter().enumerate() {
            lock(shard).capacity = each + usize::from(i < extra);
        }
        let ttl = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        self.ttl.store(ttl, Ordering::Relaxed);
    }

    /// The key of a tie's bytes. Two calls of one SipHash keyed for this
    /// table, told apart by a prefix byte, make 128 independent bits.
    pub fn key(&self, bytes: &[u8]) -> Key {
        Key([
            self.hasher.hash_one((0u8, bytes)),
            self.hasher.hash_one((1u8, bytes)),
        ])
    }

    /// The tie of `key`, refreshing it if it is live.
    pub fn lookup(&self, key: Key, now: Instant) -> Lookup {
        let now = self.ms(now);
        let ttl = self.ttl.load(Ordering::Relaxed);
        self.shard(key).lookup(key, now, ttl, &self.servers)
    }

    /// Ties `key` to `server` (replacing any tie it had), evicting the
    /// shard's least recently used entry if the shard is full.
    pub fn insert(&self, key: Key, server: ServerId, now: Instant) {
        let now = self.ms(now);
        self.shard(key).insert(key, server, now, &self.servers);
    }

    /// Forgets `key`'s tie; whether it had one (live or stale).
    pub fn remove(&self, key: Key) -> bool {
        let mut shard = self.shard(key);
        match shard.find(key) {
            Some(i) => {
                shard.remove(i, &self.servers);
                true
            }
            None => false,
        }
    }

    /// Invalidates every tie to `server` at once (no scan, no table lock)
    /// and returns how many there were. Call it when the server goes down,
    /// enters maintenance or is removed.
    pub fn purge(&self, server: ServerId) -> u64 {
        let purged = self.servers.get(server).purge();
        self.purged.fetch_add(purged, Ordering::Relaxed);
        purged
    }

    /// Removes entries idle for `ttl` or longer, a batch per lock taken, so
    /// requests on the same shard wait at most one batch.
    pub fn sweep(&self, now: Instant) -> Sweep {
        let now_ms = self.ms(now);
        let ttl = self.ttl.load(Ordering::Relaxed);
        let mut removed = 0;
        let mut next = u64::MAX;
        for shard in self.shards.iter() {
            loop {
                let mut shard = lock(shard);
                let (batch, oldest) = shard.sweep(now_ms, ttl, SWEEP_BATCH, &self.servers);
                removed += batch;
                if batch < SWEEP_BATCH {
                    if let Some(used) = oldest {
                        next = next.min(used.saturating_add(ttl));
                    }
                    break;
                }
            }
        }
        let next = if next == u64::MAX {
            now + self.ttl()
        } else {
            self.epoch + Duration::from_millis(next)
        };
        Sweep { removed, next }
    }

    /// Entries held, live or stale (`berth_affinity_entries`).
    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Ties invalidated by purges so far (`berth_affinity_purged_total`).
    pub fn purged(&self) -> u64 {
        self.purged.load(Ordering::Relaxed)
    }

    /// Live ties to `server` (`ties` in `/status`).
    pub fn ties(&self, server: ServerId) -> u64 {
        self.servers.peek(server).map_or(0, ServerSlot::ties)
    }

    pub fn ttl(&self) -> Duration {
        Duration::from_millis(self.ttl.load(Ordering::Relaxed))
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// Milliseconds from the epoch to `now` (0 for earlier instants).
    pub(super) fn ms(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    pub(super) fn instant(&self, ms: u64) -> Instant {
        self.epoch + Duration::from_millis(ms)
    }

    fn shard(&self, key: Key) -> MutexGuard<'_, Shard> {
        // A uniform u64 times n, over 2⁶⁴: uniform in 0..n (Lemire).
        let i = (u128::from(key.0[1]) * self.shards.len() as u128) >> 64;
        lock(&self.shards[i as usize])
    }
}

fn touch_every(ttl: u64) -> u64 {
    (ttl / 8).min(TOUCH_EVERY_MS)
}

/// The number of shards for a table of `max_entries`: about one per
/// [`ENTRIES_PER_SHARD`], up to [`MAX_SHARDS`], and among the counts from
/// half that up, the one whose full shards' indexes take the fewest
/// buckets. A freshly filled index is then up to 7/8 full (at a million
/// entries, 35 shards: 65 bytes an entry, not 79 with 64). Under churn,
/// the deleted markers std's `HashMap` leaves make a full index double
/// once, to under 7/16 full, where it stays (81 bytes an entry; see the
/// bench).
fn shards_for(max_entries: usize) -> usize {
    let most = (max_entries / ENTRIES_PER_SHARD).clamp(1, MAX_SHARDS);
    (most.div_ceil(2)..=most)
        .rev()
        .min_by_key(|&n| n * index_buckets(max_entries.div_ceil(n)))
        .unwrap_or(1)
}

/// The buckets std's `HashMap` (hashbrown) has once it holds `entries`:
/// a power of two, at most 7/8 full.
fn index_buckets(entries: usize) -> usize {
    match entries {
        0..4 => 4,
        4..8 => 8,
        _ => (entries.saturating_mul(8) / 7).next_power_of_two(),
    }
}

/// A shard on cache lines of its own, so that threads locking neighbouring
/// shards do not contend for one line.
#[repr(align(128))]
struct Padded(Mutex<Shard>);

const _: () = assert!(std::mem::size_of::<Slot>() == 40);

/// Nothing panics while a shard is locked, but if something ever did, the
/// shard's links are still consistent between operations: carry on.
fn lock(shard: &Padded) -> MutexGuard<'_, Shard> {
    shard.0.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shard {
    fn new() -> Shard {
        Shard {
            index: HashMap::default(),
            slots: Vec::new(),
            free: NIL,
            head: NIL,
            tail: NIL,
            len: 0,
            capacity: 1,
        }
    }

    /// The slot holding exactly `key`.
    fn find(&self, key: Key) -> Option<u32> {
        let i = *self.index.get(&key.0[0])?;
        (self.slot(i).key == key).then_some(i)
    }

    fn lookup(&mut self, key: Key, now: u64, ttl: u64, servers: &Slots) -> Lookup {
        let Some(i) = self.find(key) else {
            return Lookup::Absent;
        };
        let slot = *self.slot(i);
        if slot.used.saturating_add(ttl) <= now {
            self.remove(i, servers);
            return Lookup::Absent;
        }
        if servers.get(slot.server).generation() != slot.generation {
            return Lookup::Stale(slot.server);
        }
        // Moving an entry to the head costs three cache misses (it and its
        // neighbours); a session's burst of requests moves it once.
        if now >= slot.used.saturating_add(touch_every(ttl)) {
            self.touch(i, now);
        }
        Lookup::Live(slot.server)
    }

    fn insert(&mut self, key: Key, server: ServerId, now: u64, servers: &Slots) {
        if let Some(&i) = self.index.get(&key.0[0]) {
            // The same key, or (once in 10⁸ at a million entries) another
            // with the same index bits: either way this slot is retied.
            let old = *self.slot(i);
            servers.get(old.server).drop_tie(old.generation);
            let generation = servers.get(server).add_tie();
            let slot = self.slot_mut(i);
            slot.key = key;
            slot.server = server;
            slot.generation = generation;
            self.touch(i, now);
            return;
        }
        while self.len >= self.capacity.max(1) && self.tail != NIL {
            self.remove(self.tail, servers);
        }
        let generation = servers.get(server).add_tie();
        let slot = Slot {
            key,
            used: now,
            generation,
            prev: NIL,
            next: NIL,
            server,
        };
        let i = if self.free == NIL {
            if self.slots.len() == self.slots.capacity() {
                // Double, but never past the capacity: a full shard holds
                // no spare slots.
                let room = self.capacity.saturating_sub(self.slots.len()).max(1);
                self.slots.reserve_exact(self.slots.len().max(8).min(room));
            }
            self.slots.push(slot);
            (self.slots.len() - 1) as u32
        } else {
            let i = self.free;
            self.free = self.slot(i).next;
            *self.slot_mut(i) = slot;
            i
        };
        self.index.insert(key.0[0], i);
        self.len += 1;
        self.push_front(i, now);
    }

    /// Removes slot `i`, counting its tie out if it is still live.
    fn remove(&mut self, i: u32, servers: &Slots) {
        let slot = *self.slot(i);
        servers.get(slot.server).drop_tie(slot.generation);
        self.unlink(i);
        self.index.remove(&slot.key.0[0]);
        self.slot_mut(i).next = self.free;
        self.free = i;
        self.len -= 1;
    }

    /// Removes up to `budget` entries idle for `ttl` from the tail; returns
    /// how many, and the last use of the oldest entry left.
    fn sweep(
        &mut self,
        now: u64,
        ttl: u64,
        budget: usize,
        servers: &Slots,
    ) -> (usize, Option<u64>) {
        let mut removed = 0;
        while self.tail != NIL && removed < budget {
            if self.slot(self.tail).used.saturating_add(ttl) > now {
                break;
            }
            self.remove(self.tail, servers);
            removed += 1;
        }
        let oldest = (self.tail != NIL).then(|| self.slot(self.tail).used);
        (removed, oldest)
    }

    /// Moves slot `i` to the head and marks it used at `now`, or at the
    /// head's time if that is later (callers' clocks are read before they
    /// take the lock), so the list stays in order of use.
    fn touch(&mut self, i: u32, now: u64) {
        if self.head != i {
            self.unlink(i);
            self.push_front(i, now);
        } else {
            let slot = self.slot_mut(i);
            slot.used = slot.used.max(now);
        }
    }

    fn push_front(&mut self, i: u32, now: u64) {
        let head = self.head;
        let used = if head == NIL {
            now
        } else {
            self.slot_mut(head).prev = i;
            now.max(self.slot(head).used)
        };
        let slot = self.slot_mut(i);
        slot.used = used;
        slot.prev = NIL;
        slot.next = head;
        self.head = i;
        if self.tail == NIL {
            self.tail = i;
        }
    }

    fn unlink(&mut self, i: u32) {
        let Slot { prev, next, .. } = *self.slot(i);
        if prev == NIL {
            self.head = next;
        } else {
            self.slot_mut(prev).next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            self.slot_mut(next).prev = prev;
        }
    }

    // Slot numbers come from this shard's own index and links, never from
    // a request, and always name a slot that exists.
    fn slot(&self, i: u32) -> &Slot {
        &self.slots[i as usize]
    }

    fn slot_mut(&mut self, i: u32) -> &mut Slot {
        &mut self.slots[i as usize]
    }
}

/// The index's hasher: its keys are already keyed random hashes.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used; this keeps any other use well spread.
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[cfg(test)]
impl Table {
    /// The keys of shard `i`, most recently used first.
    pub(super) fn order(&self, i: usize) -> Vec<Key> {
        let shard = lock(&self.shards[i]);
        let mut keys = Vec::new();
        let mut at = shard.head;
        while at != NIL {
            keys.push(shard.slot(at).key);
            at = shard.slot(at).next;
        }
        keys
    }
}
