//! Balancing: which server takes a request that has no tie.
//!
//! Weighted round robin uses a schedule computed once per snapshot with the
//! smooth weighted round-robin method (as nginx does): every server appears
//! `weight / gcd` times, spread out rather than in runs. A shared atomic
//! counter walks the schedule, and servers that cannot take new requests
//! are skipped, so no lock is taken on the request path. Pure code: the
//! caller says which servers are eligible.

/// A precomputed weighted round-robin order of server indexes.
#[derive(Debug, Clone, Default)]
pub struct Schedule {
    order: Vec<u16>,
}

impl Schedule {
    /// Builds the schedule for servers with these weights (0 = never chosen).
    pub fn new(weights: &[u32]) -> Schedule {
        let divisor = weights.iter().copied().filter(|w| *w > 0).fold(0, gcd);
        if divisor == 0 {
            return Schedule::default();
        }
        let weights: Vec<i64> = weights.iter().map(|w| i64::from(w / divisor)).collect();
        let total: i64 = weights.iter().sum();
        let mut current = vec![0i64; weights.len()];
        let mut order = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
        for _ in 0..total {
            for (c, w) in current.iter_mut().zip(&weights) {
                *c += w;
            }
            let best = current
                .iter()
                .enumerate()
                .max_by_key(|(i, c)| (**c, std::cmp::Reverse(*i)))
                .map(|(i, _)| i);
            if let Some(best) = best {
                current[best] -= total;
                order.push(u16::try_from(best).unwrap_or(u16::MAX));
            }
        }
        Schedule { order }
    }

    /// The server at position `tick` of the schedule, or the next one after
    /// it that is `eligible`; `None` when no server in the schedule is.
    pub fn pick(&self, tick: usize, eligible: impl Fn(usize) -> bool) -> Option<usize> {
        let len = self.order.len();
        if len == 0 {
            return None;
        }
        (0..len)
            .map(|step| usize::from(self.order[(tick + step) % len]))
            .find(|&server| eligible(server))
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(schedule: &Schedule, servers: usize, picks: usize) -> Vec<usize> {
        let mut counts = vec![0; servers];
        for tick in 0..picks {
            if let Some(server) = schedule.pick(tick, |_| true) {
                counts[server] += 1;
            }
        }
        counts
    }

    #[test]
    fn equal_weights_alternate() {
        let schedule = Schedule::new(&[100, 100]);
        assert_eq!(schedule.len(), 2);
        let picks: Vec<_> = (0..4).filter_map(|t| schedule.pick(t, |_| true)).collect();
        assert_eq!(picks, vec![0, 1, 0, 1]);
    }

    #[test]
    fn weights_are_honoured_and_spread() {
        let schedule = Schedule::new(&[300, 100]);
        assert_eq!(counts(&schedule, 2, 400), vec![300, 100]);
        // Smooth: the light server is not starved for a run of three.
        let first: Vec<_> = (0..4).filter_map(|t| schedule.pick(t, |_| true)).collect();
        assert_eq!(first.iter().filter(|s| **s == 1).count(), 1);
    }

    #[test]
    fn zero_weight_is_never_chosen() {
        let schedule = Schedule::new(&[0, 5, 0]);
        assert_eq!(counts(&schedule, 3, 10), vec![0, 10, 0]);
        assert!(Schedule::new(&[0, 0]).is_empty());
        assert_eq!(Schedule::new(&[0]).pick(0, |_| true), None);
    }

    #[test]
    fn ineligible_servers_are_skipped() {
        let schedule = Schedule::new(&[1, 1, 1]);
        let picks: Vec<_> = (0..6)
            .filter_map(|t| schedule.pick(t, |s| s != 1))
            .collect();
        assert!(!picks.contains(&1));
        assert_eq!(schedule.pick(0, |_| false), None);
    }
}
