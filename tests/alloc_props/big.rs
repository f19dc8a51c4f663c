//! Big IPv6 pools against a sparse model of the slots marks touch.

use super::*;

/// Sparse model for big pools: cover counters only for slots some mark
/// touches. Marks here are at most a /56, so that stays small.
struct SparseModel {
    prefix_slots: Vec<(u128, u128)>,
    cover: HashMap<u128, u32>,
    counts: HashMap<IpNet, u32>,
}

const BIG_SHIFT: u32 = 64;

impl SparseModel {
    fn slots(net: &IpNet) -> std::ops::RangeInclusive<u128> {
        let (a, b) = cidr::range(net);
        (a >> BIG_SHIFT)..=(b >> BIG_SHIFT)
    }

    fn in_pool(&self, slot: u128) -> bool {
        self.prefix_slots
            .iter()
            .any(|&(s, e)| s <= slot && slot <= e)
    }

    fn mark(&mut self, net: &IpNet) {
        *self.counts.entry(*net).or_insert(0) += 1;
        for s in Self::slots(net) {
            *self.cover.entry(s).or_insert(0) += 1;
        }
    }

    fn unmark(&mut self, net: &IpNet) -> bool {
        let Some(count) = self.counts.get_mut(net) else {
            return false;
        };
        *count -= 1;
        if *count == 0 {
            self.counts.remove(net);
        }
        for s in Self::slots(net) {
            let c = self.cover.get_mut(&s).expect("marked slot has a counter");
            *c -= 1;
            if *c == 0 {
                self.cover.remove(&s);
            }
        }
        true
    }

    fn used(&self) -> u128 {
        self.cover.keys().filter(|&&s| self.in_pool(s)).count() as u128
    }

    /// Walks up from each prefix start past covered slots; bounded by the
    /// number of covered slots.
    fn first_free(&self) -> Option<u128> {
        self.prefix_slots.iter().find_map(|&(s, e)| {
            let mut slot = s;
            while slot <= e && self.cover.contains_key(&slot) {
                slot += 1;
            }
            (slot <= e).then_some(slot)
        })
    }
}

/// 1 or 2 disjoint IPv6 prefixes, each a /32 or a /20.
fn big_prefixes() -> impl Strategy<Value = Vec<IpNet>> {
    prop::collection::vec((any::<u128>(), prop_oneof![Just(32u8), Just(20u8)]), 1..=2).prop_map(
        |raw| {
            let mut out: Vec<IpNet> = Vec::new();
            for (addr, len) in raw {
                let p = net_from(Family::V6, addr, len);
                if !out.iter().any(|q| cidr::overlaps(q, &p)) {
                    out.push(p);
                }
            }
            out
        },
    )
}

proptest! {
    #[test]
    fn big_pools_keep_invariants(
        prefixes in big_prefixes(),
        ops in prop::collection::vec(
            prop_oneof![
                4 => Just(Op::Allocate),
                2 => any::<usize>().prop_map(Op::Release),
                2 => (any::<u128>(), 56u8..=80).prop_map(|(a, l)| Op::MarkForeign(a, l)),
                1 => any::<usize>().prop_map(Op::UnmarkForeign),
            ],
            1..100,
        ),
    ) {
        let mut space = PoolSpace::new(&prefixes, 64).expect("valid pool");
        let capacity: u128 = prefixes.iter().map(|p| 1u128 << (64 - p.prefix_len())).sum();
        prop_assert_eq!(space.capacity(), capacity);
        let mut sorted = prefixes.clone();
        sorted.sort();
        prop_assert_eq!(space.prefixes(), &sorted[..]);

        let mut model = SparseModel {
            prefix_slots: sorted.iter().map(|p| {
                let (a, b) = cidr::range(p);
                (a >> BIG_SHIFT, b >> BIG_SHIFT)
            }).collect(),
            cover: HashMap::new(),
            counts: HashMap::new(),
        };
        let mut held: Vec<IpNet> = Vec::new();
        let mut foreign: Vec<IpNet> = Vec::new();
        for op in ops {
            match op {
                Op::Allocate => {
                    let slot = space.first_free().expect("big pools never fill here");
                    prop_assert!(space.contains(&slot));
                    prop_assert!(space.is_free(&slot));
                    prop_assert!(!held.iter().chain(&foreign).any(|h| cidr::overlaps(h, &slot)));
                    space.mark(&slot);
                    model.mark(&slot);
                    held.push(slot);
                }
                Op::Release(i) if !held.is_empty() => {
                    let slot = held.swap_remove(i % held.len());
                    prop_assert!(space.unmark(&slot));
                    model.unmark(&slot);
                }
                Op::MarkForeign(a, len) => {
                    // Land near the low end of a prefix, where allocations
                    // are, or anywhere in it, or anywhere at all.
                    let p = sorted[(a % sorted.len() as u128) as usize];
                    let (base, last) = cidr::range(&p);
                    let addr = match a % 3 {
                        0 => base + (((a >> 8) % 64) << BIG_SHIFT) + (a >> 32) % (1 << 20),
                        1 => base + (a >> 8) % (last - base),
                        _ => a,
                    };
                    let net = net_from(Family::V6, addr, len);
                    space.mark(&net);
                    model.mark(&net);
                    foreign.push(net);
                }
                Op::UnmarkForeign(i) if !foreign.is_empty() => {
                    let net = foreign.swap_remove(i % foreign.len());
                    prop_assert!(space.unmark(&net));
                    model.unmark(&net);
                }
                Op::Release(_) | Op::UnmarkForeign(_) | Op::Reclaim(_) | Op::Probe(..) => {}
            }
            let used = model.used();
            prop_assert_eq!(space.used(), used);
            prop_assert_eq!(space.available(), capacity - used);
            prop_assert_eq!(space.mark_count(), model.counts.len());
            let want = model.first_free().map(|s| net_from(Family::V6, s << BIG_SHIFT, 64));
            prop_assert_eq!(space.first_free(), want);
        }
    }
}
