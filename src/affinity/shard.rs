//! One shard of the table: an index from key to slot, the slots, and the
//! LRU list through them. Every method runs under the shard's lock, taken
//! by `table.rs`; none of them blocks or panics.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use super::servers::{ServerId, Slots};
use super::table::{Key, Lookup, TOUCH_EVERY_MS};

const NIL: u32 = u32::MAX;

pub(super) struct Shard {
    index: HashMap<u64, u32, BuildHasherDefault<Prehashed>>,
    slots: Vec<Slot>,
    /// Free slots, linked through `next`.
    free: u32,
    /// Most and least recently used.
    head: u32,
    tail: u32,
    pub(super) len: usize,
    pub(super) capacity: usize,
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

const _: () = assert!(std::mem::size_of::<Slot>() == 40);

fn touch_every(ttl: u64) -> u64 {
    (ttl / 8).min(TOUCH_EVERY_MS)
}

impl Shard {
    pub(super) fn new() -> Shard {
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
    pub(super) fn find(&self, key: Key) -> Option<u32> {
        let i = *self.index.get(&key.0[0])?;
        (self.slot(i).key == key).then_some(i)
    }

    pub(super) fn lookup(&mut self, key: Key, now: u64, ttl: u64, servers: &Slots) -> Lookup {
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

    pub(super) fn insert(&mut self, key: Key, server: ServerId, now: u64, servers: &Slots) {
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
    pub(super) fn remove(&mut self, i: u32, servers: &Slots) {
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
    pub(super) fn sweep(
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
impl Shard {
    /// The keys, most recently used first.
    pub(super) fn order(&self) -> Vec<Key> {
        let mut keys = Vec::new();
        let mut at = self.head;
        while at != NIL {
            keys.push(self.slot(at).key);
            at = self.slot(at).next;
        }
        keys
    }
}
