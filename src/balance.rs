//! Balancing: which server takes a request that has no tie.
//!
//! Three policies, all weighted, all choosing only among the servers the
//! caller calls eligible (able to take new ties):
//! - `round_robin`: a precomputed schedule walked by a shared counter;
//! - `least_conn`: the fewest in-flight requests per unit of weight;
//! - `random2`: two servers drawn at random in proportion to their
//!   weights, the less loaded of the two wins (power of two choices).
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

/// A server's load as the balancer sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Load {
    pub in_flight: u64,
    pub weight: u32,
}

impl Load {
    /// Whether `self` carries less per unit of weight than `other`
    /// (counting the request about to be placed, so idle heavy servers win).
    fn lighter_than(self, other: Load) -> bool {
        u128::from(self.in_flight + 1) * u128::from(other.weight)
            < u128::from(other.in_flight + 1) * u128::from(self.weight)
    }
}

/// Weighted least connections over servers `0..count`; `load(i)` is `None`
/// for a server that is not eligible. Ties go to the first from `tick`, so
/// equal servers share the load.
pub fn least_conn(
    count: usize,
    tick: usize,
    load: impl Fn(usize) -> Option<Load>,
) -> Option<usize> {
    let mut best: Option<(usize, Load)> = None;
    for step in 0..count {
        let server = (tick + step) % count;
        let Some(this) = load(server).filter(|l| l.weight > 0) else {
            continue;
        };
        if best.is_none_or(|(_, current)| this.lighter_than(current)) {
            best = Some((server, this));
        }
    }
    best.map(|(server, _)| server)
}

/// Power of two choices: two draws from the weighted schedule (so by
/// weight), the lighter eligible one wins; if neither draw is eligible,
/// least connections over all.
pub fn random2(
    schedule: &Schedule,
    count: usize,
    mut random: impl FnMut(usize) -> usize,
    load: impl Fn(usize) -> Option<Load>,
) -> Option<usize> {
    let len = schedule.order.len();
    if len == 0 {
        return None;
    }
    let mut draw = || usize::from(schedule.order[random(len) % len]);
    let (a, b) = (draw(), draw());
    match (load(a), load(b)) {
        (Some(la), Some(lb)) => Some(if lb.lighter_than(la) { b } else { a }),
        (Some(_), None) => Some(a),
        (None, Some(_)) => Some(b),
        (None, None) => least_conn(count, random(count.max(1)), load),
    }
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
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

    fn loads(in_flight: &[u64], weights: &[u32]) -> impl Fn(usize) -> Option<Load> {
        let loads: Vec<Load> = in_flight
            .iter()
            .zip(weights)
            .map(|(&in_flight, &weight)| Load { in_flight, weight })
            .collect();
        move |i| loads.get(i).copied()
    }

    #[test]
    fn least_conn_takes_the_lightest_per_weight() {
        assert_eq!(
            least_conn(3, 0, loads(&[5, 1, 3], &[100, 100, 100])),
            Some(1)
        );
        // 4 in flight on weight 300 is lighter than 2 on weight 100.
        assert_eq!(least_conn(2, 0, loads(&[2, 4], &[100, 300])), Some(1));
        // Equal loads rotate with the tick.
        assert_eq!(least_conn(2, 0, loads(&[0, 0], &[1, 1])), Some(0));
        assert_eq!(least_conn(2, 1, loads(&[0, 0], &[1, 1])), Some(1));
        // Ineligible and weight-0 servers are never chosen.
        assert_eq!(
            least_conn(2, 0, |i| (i == 1).then_some(Load {
                in_flight: 9,
                weight: 1
            })),
            Some(1)
        );
        assert_eq!(least_conn(1, 0, loads(&[0], &[0])), None);
    }

    #[test]
    fn least_conn_spreads_by_weight_under_load() {
        let weights = [300, 100];
        let mut in_flight = [0u64; 2];
        for tick in 0..400 {
            let server = least_conn(2, tick, loads(&in_flight, &weights)).unwrap();
            in_flight[server] += 1;
        }
        assert_eq!(in_flight, [300, 100]);
    }

    #[test]
    fn random2_prefers_the_lighter_of_two_and_honours_weight() {
        let schedule = Schedule::new(&[300, 100]);
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut random = move |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        // With equal load, draws follow the weights.
        let mut counts = [0; 2];
        for _ in 0..4000 {
            counts[random2(&schedule, 2, &mut random, loads(&[0, 0], &[300, 100])).unwrap()] += 1;
        }
        assert!(counts[0] > counts[1] * 2, "{counts:?}");
        // A loaded server loses whenever the other is drawn: the light one
        // wins in 1 - (3/4)^2 = 44% of picks instead of its 25% share.
        let mut counts = [0; 2];
        for _ in 0..1000 {
            counts[random2(&schedule, 2, &mut random, loads(&[50, 0], &[300, 100])).unwrap()] += 1;
        }
        assert!((380..500).contains(&counts[1]), "{counts:?}");
        // Ineligible draws fall back to whoever is eligible.
        let only_1 = |i: usize| {
            (i == 1).then_some(Load {
                in_flight: 0,
                weight: 100,
            })
        };
        for _ in 0..50 {
            assert_eq!(random2(&schedule, 2, &mut random, only_1), Some(1));
        }
        assert_eq!(
            random2(
                &Schedule::default(),
                2,
                &mut random,
                loads(&[0, 0], &[1, 1])
            ),
            None
        );
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
