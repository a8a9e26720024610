//! The affinity table's figures: lookups per second per core, bytes per
//! entry at a million entries, and what purging one server's 250,000 ties
//! costs while other threads keep looking up.
//!
//! ```text
//! cargo bench --bench affinity            (about 20 s, plus the release build)
//! ```
//!
//! Not a timed test: it prints figures and checks nothing. Memory is the
//! process's resident set (`VmRSS` in `/proc/self/status`) before and
//! after filling the table, so it counts everything the entries cost:
//! slots, index, allocator slack. Rates are given per second of wall
//! clock and per second a thread actually ran on a core
//! (`/proc/thread-self/schedstat`), which stays right on a machine shared
//! with other work.
//!
//! Lookups pick keys uniformly at random among a million: every lookup
//! misses the CPU caches and moves its entry to the head of the LRU list,
//! the worst case. The "hot" figure repeats lookups of 10,000 keys, as a
//! site's active sessions do.
#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use berth::affinity::{Key, Lookup, ServerId, Table};

const ENTRIES: usize = 1_000_000;
const SERVERS: u16 = 4;
const RUN: Duration = Duration::from_secs(2);
/// Long enough that nothing expires while the clock runs ahead in the runs.
const TTL: Duration = Duration::from_secs(30 * 86_400);

fn main() {
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    println!("affinity table bench: {ENTRIES} entries, {SERVERS} servers, {threads} threads");

    // Keys and session ids made before the memory baseline.
    let ids: Vec<String> = (0..ENTRIES)
        .map(|n| format!("{:032X}.app{:02}", n as u128 * 0x9E37_79B9_7F4A_7C15, n % 4))
        .collect();
    let t0 = Instant::now();
    let rss_before = rss_bytes();
    let table = Arc::new(Table::new(ENTRIES, TTL, t0));
    let keys: Vec<Key> = ids.iter().map(|id| table.key(id.as_bytes())).collect();
    let rss_keys = rss_bytes();

    // 1. Fill to a million: 250,000 ties per server.
    let started = Instant::now();
    for (n, key) in keys.iter().enumerate() {
        table.insert(*key, ServerId((n % SERVERS as usize) as u16), t0);
    }
    let fill = started.elapsed();
    let rss_after = rss_bytes();
    let len = table.len();
    let table_bytes = rss_after.saturating_sub(rss_keys);
    println!(
        "fill        {len} entries in {:.0} ms ({:.1} M inserts/s), {} shards",
        fill.as_secs_f64() * 1e3,
        ENTRIES as f64 / fill.as_secs_f64() / 1e6,
        table.shard_count()
    );
    println!(
        "memory      {:.1} MiB resident for the table: {:.0} bytes per entry \
         (key list kept outside: {:.1} MiB)",
        table_bytes as f64 / 1048576.0,
        table_bytes as f64 / len as f64,
        rss_keys.saturating_sub(rss_before) as f64 / 1048576.0,
    );

    // 1b. Churn: two million more keys, each evicting the least recently
    //     used; the index's deleted markers must not make it grow.
    let started = Instant::now();
    for n in 0..2 * ENTRIES as u64 {
        let key = table.key(&n.to_le_bytes());
        table.insert(key, ServerId((n % u64::from(SERVERS)) as u16), t0);
    }
    let churn = started.elapsed();
    let rss_churn = rss_bytes();
    println!(
        "churn       2M more inserts, evicting, in {:.0} ms: {} entries, {:.0} bytes per entry",
        churn.as_secs_f64() * 1e3,
        table.len(),
        rss_churn.saturating_sub(rss_keys) as f64 / table.len() as f64
    );
    // Back to the keys the rest uses.
    for (n, key) in keys.iter().enumerate() {
        table.insert(*key, ServerId((n % SERVERS as usize) as u16), t0);
    }

    // 2. Lookups, one thread then all. In the cold runs the clock moves a
    //    second per batch of 4,096 lookups, so that every lookup moves its
    //    entry in its LRU list (each run starts later than the last); in
    //    the hot run, a second per million lookups.
    let at = |second: u64| t0 + Duration::from_secs(second);
    let single = lookups(ENTRIES, 1, RUN, |n, batch| {
        black_box(table.lookup(keys[n], at(10_000 + batch)));
    });
    report("lookup      1 thread ", single, "cold: random among 1M");
    let hot = lookups(10_000, 1, RUN, |n, batch| {
        black_box(table.lookup(keys[n], at(20_000 + batch / 244)));
    });
    report("lookup      1 thread ", hot, "hot: random among 10,000");
    let many = lookups(ENTRIES, threads, RUN, |n, batch| {
        black_box(table.lookup(keys[n], at(30_000 + batch)));
    });
    report(
        &format!("lookup      {threads} threads"),
        many,
        "cold: random among 1M",
    );
    // What the request path adds before a lookup: the key of the bytes.
    let cpu_start = thread_cpu_ns();
    let rounds = 4_000_000;
    for n in 0..rounds {
        black_box(table.key(black_box(ids[n % 64].as_bytes())));
    }
    println!(
        "key         {:.0} ns of CPU to hash a 38-byte session id into a key",
        (thread_cpu_ns() - cpu_start) as f64 / rounds as f64
    );

    // 3. Purge server 0's 250,000 ties while every core looks up, re-tying
    //    what it finds stale as the request path would (moved → record).
    let now = t0 + Duration::from_secs(100_000);
    purge_under_load(&table, &keys, threads, now);

    // 4. For comparison: a sweep freeing the whole table walks every entry.
    let started = Instant::now();
    let swept = table.sweep(now + TTL + Duration::from_secs(1));
    println!(
        "sweep       {} idle entries freed in {:.0} ms ({} per lock taken): \
         what a scan of the table costs",
        swept.removed,
        started.elapsed().as_secs_f64() * 1e3,
        berth::affinity::table::SWEEP_BATCH
    );
}

/// Operations per second of wall clock (all threads) and per second of
/// CPU time (one core's worth).
struct Rate {
    wall: f64,
    cpu: f64,
}

fn report(what: &str, rate: Rate, how: &str) {
    println!(
        "{what}: {:.2} M lookups/s wall clock, {:.2} M per CPU-second ({how})",
        rate.wall / 1e6,
        rate.cpu / 1e6
    );
}

/// Runs `op` from `threads` threads for `run`, on random key numbers
/// below `keys`, with the number of the batch of 4,096 each is in.
fn lookups(keys: usize, threads: usize, run: Duration, op: impl Fn(usize, u64) + Sync) -> Rate {
    let done = AtomicU64::new(0);
    let cpu_ns = AtomicU64::new(0);
    let started = Instant::now();
    std::thread::scope(|scope| {
        for t in 0..threads {
            let (done, cpu_ns, op) = (&done, &cpu_ns, &op);
            scope.spawn(move || {
                let cpu_start = thread_cpu_ns();
                let mut x = 0x2545_f491_4f6c_dd1d_u64 ^ (t as u64 + 1);
                let mut ops = 0u64;
                let mut batch = 0;
                while started.elapsed() < run {
                    for _ in 0..4096 {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        op((x % keys as u64) as usize, batch);
                    }
                    ops += 4096;
                    batch += 1;
                }
                done.fetch_add(ops, Ordering::Relaxed);
                cpu_ns.fetch_add(thread_cpu_ns() - cpu_start, Ordering::Relaxed);
            });
        }
    });
    let ops = done.load(Ordering::Relaxed) as f64;
    Rate {
        wall: ops / started.elapsed().as_secs_f64(),
        cpu: ops / (cpu_ns.load(Ordering::Relaxed).max(1) as f64 / 1e9),
    }
}

/// Nanoseconds the calling thread has run on a CPU.
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn purge_under_load(table: &Arc<Table>, keys: &[Key], threads: usize, now: Instant) {
    let stop = AtomicBool::new(false);
    let ops = AtomicU64::new(0);
    let moved = AtomicU64::new(0);
    let window = Duration::from_secs(1);
    let (before, purge_time, purged, after, ties_after) = std::thread::scope(|scope| {
        for t in 0..threads {
            let (stop, ops, moved, table) = (&stop, &ops, &moved, &**table);
            scope.spawn(move || {
                let mut x = 0x9e37_79b9_7f4a_7c15_u64 ^ (t as u64 + 1);
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..1024 {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let key = keys[(x % keys.len() as u64) as usize];
                        if let Lookup::Stale(_) = table.lookup(key, now) {
                            table.insert(key, ServerId(1 + (x >> 40) as u16 % 3), now);
                            moved.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    ops.fetch_add(1024, Ordering::Relaxed);
                }
            });
        }
        std::thread::sleep(Duration::from_millis(300)); // warm up
        let start = ops.load(Ordering::Relaxed);
        std::thread::sleep(window);
        let before = ops.load(Ordering::Relaxed) - start;
        let started = Instant::now();
        let purged = table.purge(ServerId(0));
        let purge_time = started.elapsed();
        let start = ops.load(Ordering::Relaxed);
        std::thread::sleep(window);
        let after = ops.load(Ordering::Relaxed) - start;
        stop.store(true, Ordering::Relaxed);
        (before, purge_time, purged, after, table.ties(ServerId(0)))
    });
    println!(
        "purge       {purged} ties of one server in {:.1} µs, {threads} threads looking up meanwhile \
         (ties left: {ties_after})",
        purge_time.as_secs_f64() * 1e6
    );
    println!(
        "            lookups/s: {:.2} M in the second before, {:.2} M in the second after \
         ({} stale ties found and re-tied by then)",
        before as f64 / window.as_secs_f64() / 1e6,
        after as f64 / window.as_secs_f64() / 1e6,
        moved.load(Ordering::Relaxed)
    );
}

/// The resident set size, from `/proc/self/status` (0 if unreadable).
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}
