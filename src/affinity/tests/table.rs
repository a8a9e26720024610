//! The table: idle expiry, LRU eviction, purge by generation, sweeping,
//! concurrent use.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::affinity::{Key, Lookup, ServerId, Table};

const TTL: Duration = Duration::from_secs(60);
const S0: ServerId = ServerId(0);
const S1: ServerId = ServerId(1);

fn key(table: &Table, n: u64) -> Key {
    table.key(&n.to_le_bytes())
}

fn secs(t0: Instant, s: u64) -> Instant {
    t0 + Duration::from_secs(s)
}

#[test]
fn keys_are_stable_per_table_and_spread() {
    let t0 = Instant::now();
    let table = Table::new(10, TTL, t0);
    assert_eq!(table.key(b"abc"), table.key(b"abc"));
    assert_ne!(table.key(b"abc"), table.key(b"abd"));
    assert_ne!(table.key(b""), table.key(b"\0"));
    let Key([a, b]) = table.key(b"abc");
    assert_ne!(a, b, "the two halves are independent hashes");
}

#[test]
fn an_entry_idle_for_ttl_is_forgotten() {
    let t0 = Instant::now();
    let table = Table::new(10, TTL, t0);
    let k = key(&table, 1);
    table.insert(k, S0, t0);
    assert_eq!(table.ties(S0), 1);
    // Used just before its ttl runs out: kept, and its idle time restarts.
    assert_eq!(table.lookup(k, secs(t0, 59)), Lookup::Live(S0));
    assert_eq!(table.lookup(k, secs(t0, 118)), Lookup::Live(S0));
    // Idle for exactly ttl: gone.
    assert_eq!(table.lookup(k, secs(t0, 178)), Lookup::Absent);
    assert_eq!(table.len(), 0);
    assert_eq!(table.ties(S0), 0);
    // Instants from before the epoch count as the epoch.
    table.insert(k, S1, t0 - Duration::from_secs(5));
    assert_eq!(table.lookup(k, secs(t0, 1)), Lookup::Live(S1));
}

#[test]
fn the_least_recently_used_entry_goes_first() {
    let t0 = Instant::now();
    let table = Table::new(3, TTL, t0);
    assert_eq!(table.shard_count(), 1);
    let [a, b, c, d, e] = [1, 2, 3, 4, 5].map(|n| key(&table, n));
    table.insert(a, S0, t0);
    table.insert(b, S0, secs(t0, 1));
    table.insert(c, S1, secs(t0, 2));
    assert_eq!(table.order(0), [c, b, a]);
    // A lookup makes `a` the most recent; a re-tie makes `b` so.
    assert_eq!(table.lookup(a, secs(t0, 3)), Lookup::Live(S0));
    table.insert(b, S1, secs(t0, 4));
    assert_eq!(table.order(0), [b, a, c]);
    table.insert(d, S0, secs(t0, 5));
    assert_eq!(table.order(0), [d, b, a]);
    table.insert(e, S0, secs(t0, 6));
    assert_eq!(table.order(0), [e, d, b]);
    assert_eq!(table.lookup(c, secs(t0, 7)), Lookup::Absent);
    assert_eq!(table.len(), 3);
    assert_eq!(table.ties(S0), 2);
    assert_eq!(table.ties(S1), 1);
}

#[test]
fn sharded_tables_evict_old_entries_not_recent_ones() {
    let t0 = Instant::now();
    let table = Table::with_shards(4000, TTL, t0, 4);
    assert_eq!(table.shard_count(), 4);
    // Three quarters full (each shard near 750 of its 1,000)…
    let keys: Vec<Key> = (0..3000).map(|n| key(&table, n)).collect();
    for k in &keys {
        table.insert(*k, S0, t0);
    }
    assert_eq!(table.len(), 3000);
    // …half of them used again, then 1,500 new keys: every shard overflows.
    for k in &keys[..1500] {
        assert_eq!(table.lookup(*k, secs(t0, 1)), Lookup::Live(S0));
    }
    for n in 3000..4500 {
        table.insert(key(&table, n), S1, secs(t0, 2));
    }
    let len = table.len();
    assert!((3900..=4000).contains(&len), "{len}");
    assert_eq!(table.ties(S0) + table.ties(S1), len as u64);
    assert_eq!(table.ties(S1), 1500, "no new entry was evicted");
    let recent_kept = keys[..1500]
        .iter()
        .filter(|k| table.lookup(**k, secs(t0, 3)) == Lookup::Live(S0))
        .count();
    assert_eq!(recent_kept, 1500, "no recently used entry was evicted");
}

#[test]
fn a_purge_invalidates_every_tie_at_once_and_counts_them() {
    let t0 = Instant::now();
    let table = Table::new(100_000, TTL, t0);
    let keys: Vec<Key> = (0..30_000).map(|n| key(&table, n)).collect();
    for (n, k) in keys.iter().enumerate() {
        table.insert(*k, if n % 3 == 0 { S0 } else { S1 }, t0);
    }
    assert_eq!((table.ties(S0), table.ties(S1)), (10_000, 20_000));
    assert_eq!(table.purge(S0), 10_000);
    assert_eq!((table.ties(S0), table.ties(S1)), (0, 20_000));
    assert_eq!(table.purged(), 10_000);
    assert_eq!(table.len(), 30_000, "entries stay until swept or re-tied");
    assert_eq!(table.purge(S0), 0, "nothing left to purge");
    assert_eq!(table.purge(ServerId(7)), 0, "a server never seen");
    // Purged ties are stale; the others live.
    assert_eq!(table.lookup(keys[0], secs(t0, 1)), Lookup::Stale(S0));
    assert_eq!(table.lookup(keys[1], secs(t0, 1)), Lookup::Live(S1));
    // Re-tied: live again, and counted once.
    table.insert(keys[0], S1, secs(t0, 2));
    table.insert(keys[3], S0, secs(t0, 2));
    assert_eq!(table.lookup(keys[0], secs(t0, 3)), Lookup::Live(S1));
    assert_eq!(table.lookup(keys[3], secs(t0, 3)), Lookup::Live(S0));
    assert_eq!((table.ties(S0), table.ties(S1)), (1, 20_001));
    // Removing or expiring a stale entry does not count it out twice.
    assert!(table.remove(keys[6]));
    assert!(!table.remove(keys[6]));
    assert_eq!(table.ties(S0), 1);
    let swept = table.sweep(secs(t0, 61));
    assert_eq!(swept.removed, 30_000 - 2 - 1);
    assert_eq!((table.ties(S0), table.ties(S1)), (1, 1));
    assert_eq!(table.len(), 2);
}

#[test]
fn sweep_frees_idle_entries_in_batches_and_says_when_to_come_back() {
    let t0 = Instant::now();
    let table = Table::with_shards(10_000, TTL, t0, 1);
    let empty = table.sweep(t0);
    assert_eq!((empty.removed, empty.next), (0, secs(t0, 60)));
    for n in 0..3000 {
        table.insert(key(&table, n), S0, t0);
    }
    for n in 3000..3010 {
        table.insert(key(&table, n), S1, secs(t0, 30));
    }
    let early = table.sweep(secs(t0, 59));
    assert_eq!((early.removed, early.next), (0, secs(t0, 60)));
    // 3,000 in one shard: three batches and a bit, none left behind.
    let due = table.sweep(secs(t0, 60));
    assert_eq!((due.removed, due.next), (3000, secs(t0, 90)));
    assert_eq!((table.len(), table.ties(S0), table.ties(S1)), (10, 0, 10));
    // A purged entry is freed once idle for ttl, like any other.
    table.purge(S1);
    assert_eq!(table.sweep(secs(t0, 89)).removed, 0);
    assert_eq!(table.sweep(secs(t0, 90)).removed, 10);
    assert!(table.is_empty());
}

#[test]
fn keys_sharing_index_bits_take_the_entry_over() {
    let t0 = Instant::now();
    let table = Table::new(10, TTL, t0);
    let (a, b) = (Key([1, 2]), Key([1, 3]));
    table.insert(a, S0, t0);
    assert_eq!(table.lookup(b, t0), Lookup::Absent);
    table.insert(b, S1, t0);
    assert_eq!(table.lookup(a, t0), Lookup::Absent);
    assert_eq!(table.lookup(b, t0), Lookup::Live(S1));
    assert!(!table.remove(a));
    assert_eq!((table.len(), table.ties(S0), table.ties(S1)), (1, 0, 1));
}

#[test]
fn smaller_limits_evict_as_new_entries_come() {
    let t0 = Instant::now();
    let table = Table::new(100, TTL, t0);
    for n in 0..100 {
        table.insert(key(&table, n), S0, t0);
    }
    assert!(table.set_limits(10, Duration::from_secs(5)));
    assert_eq!(table.ttl(), Duration::from_secs(5));
    table.insert(key(&table, 100), S0, t0);
    assert_eq!((table.len(), table.ties(S0)), (10, 10));
    assert_eq!(table.lookup(key(&table, 100), t0), Lookup::Live(S0));
    assert_eq!(table.lookup(key(&table, 99), secs(t0, 5)), Lookup::Absent);
    assert!(!table.set_limits(1_000_000, TTL), "another shard count");
    let big = Table::new(1_000_000, TTL, t0);
    assert_eq!(big.shard_count(), 35, "the fewest index buckets");
    assert!(big.set_limits(1_200_000, TTL) && big.set_limits(600_000, TTL));
    assert!(!big.set_limits(9_000, TTL));
    assert_eq!(Table::new(8191, TTL, t0).shard_count(), 1);
    assert_eq!(Table::new(8192, TTL, t0).shard_count(), 2);
}

/// 8 threads × 10,000 mixed operations (insert, lookup, remove, purge) on
/// a table small enough to evict: at the end every count agrees with what
/// the table holds.
#[test]
fn concurrent_use_keeps_every_count_right() {
    const THREADS: u64 = 8;
    const OPS: u64 = 10_000;
    const KEYS: u64 = 12_000;
    let t0 = Instant::now();
    let table = Arc::new(Table::with_shards(9_000, TTL, t0, 8));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let table = table.clone();
            std::thread::spawn(move || {
                let mut x = 0x9e37_79b9_7f4a_7c15 ^ (t + 1);
                let mut purged = 0;
                for i in 0..OPS {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let k = key(&table, x % KEYS);
                    let server = ServerId((x >> 32) as u16 % 4);
                    let now = t0 + Duration::from_millis(i);
                    match x % 100 {
                        0 => purged += table.purge(server),
                        1..=10 => {
                            table.remove(k);
                        }
                        11..=50 => table.insert(k, server, now),
                        _ => {
                            table.lookup(k, now);
                        }
                    }
                }
                purged
            })
        })
        .collect();
    let purged: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(table.purged(), purged);
    let len = table.len();
    assert!(len <= 9_000 && len > 0, "{len}");
    // Every key once: live ones per server, stale ones, absent ones.
    let now = t0 + Duration::from_millis(OPS);
    let mut live = [0u64; 4];
    let mut present = 0;
    let mut seen = HashSet::new();
    for n in 0..KEYS {
        match table.lookup(key(&table, n), now) {
            Lookup::Live(s) => {
                live[usize::from(s.0)] += 1;
                present += 1;
            }
            Lookup::Stale(_) => present += 1,
            Lookup::Absent => {}
        }
        assert!(seen.insert(key(&table, n)));
    }
    assert_eq!(present, len);
    for s in 0..4u16 {
        assert_eq!(table.ties(ServerId(s)), live[usize::from(s)], "server {s}");
    }
}

#[test]
fn a_burst_of_lookups_moves_an_entry_once() {
    let t0 = Instant::now();
    let table = Table::new(10, TTL, t0);
    let [a, b] = [1, 2].map(|n| key(&table, n));
    table.insert(a, S0, t0);
    table.insert(b, S0, t0);
    let ms = |n| t0 + Duration::from_millis(n);
    assert_eq!(table.lookup(a, ms(999)), Lookup::Live(S0));
    assert_eq!(table.order(0), [b, a], "within a second: not moved");
    assert_eq!(table.lookup(a, ms(1000)), Lookup::Live(S0));
    assert_eq!(table.order(0), [a, b]);
    // Idle time counts from the last move: to within a second.
    assert_eq!(table.lookup(a, ms(1500)), Lookup::Live(S0));
    assert_eq!(table.lookup(a, ms(61_000)), Lookup::Absent);
    // With a short ttl, an eighth of it.
    let short = Table::new(10, Duration::from_millis(800), t0);
    short.insert(a, S0, t0);
    short.insert(b, S0, t0);
    assert_eq!(short.lookup(a, ms(100)), Lookup::Live(S0));
    assert_eq!(short.order(0), [a, b]);
}
