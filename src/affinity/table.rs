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
//! argues: the critical section is a hash probe and a few writes (well
//! under a microsecond even when every access misses the CPU caches),
//! never spans an `.await`, and an async mutex would only add cost. A
//! lookup may write (it moves the entry to the head of the LRU list), and
//! a `RwLock`'s read side writes its lock word too, so one would buy
//! nothing. Shards (on cache lines of their own) keep threads from meeting
//! on one lock.
//!
//! **Memory.** A slot is 40 bytes; the index adds a 16-byte bucket per
//! entry at 44 to 87% load: about 65 bytes an entry in a freshly filled
//! table of a million, 81 once churn has made the indexes double (see
//! `shards_for` and `benches/affinity.rs`). Nothing is allocated per entry.
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

use std::hash::{BuildHasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::servers::{ServerId, ServerSlot, Slots};
use super::shard::Shard;

/// A live entry found by a lookup is moved to the head of its LRU list if
/// it was last moved this long ago (or `ttl / 8`, if less).
pub const TOUCH_EVERY_MS: u64 = 1000;

/// Entries removed per shard lock taken by [`Table::sweep`].
pub const SWEEP_BATCH: usize = 1024;

/// About a shard per this many entries, so tables under twice this size
/// have one shard (exact LRU), up to [`MAX_SHARDS`].
const ENTRIES_PER_SHARD: usize = 4096;
pub const MAX_SHARDS: usize = 64;

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
        let (have, want) = (self.shards.len(), shards_for(max_entries));
        if have > max_entries || have * 2 < want || want * 2 < have {
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

/// Nothing panics while a shard is locked, but if something ever did, the
/// shard's links are still consistent between operations: carry on.
fn lock(shard: &Padded) -> MutexGuard<'_, Shard> {
    shard.0.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
impl Table {
    /// The keys of shard `i`, most recently used first.
    pub(super) fn order(&self, i: usize) -> Vec<Key> {
        lock(&self.shards[i]).order()
    }
}
