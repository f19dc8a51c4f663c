//! Property tests of `PoolSpace` against reference models.
//!
//! Small pools (at most 4096 slots in the region under test) are checked
//! against a brute-force per-slot model. Big IPv6 pools (/32 and /20 split
//! into /64s) are checked against a sparse model that only tracks the slots
//! marks touch, which is exact as long as marks stay small.

use std::collections::HashMap;

use ipnet::IpNet;
use prefix_operator::alloc::cidr::{self, Family, net_from};
use prefix_operator::alloc::{PoolSpace, SpaceError};
use proptest::prelude::*;

#[path = "alloc_props/big.rs"]
mod big;

/// Bits below a slot, and 2^bits capped so a /0 universe does not overflow.
fn host_size(bits: u32) -> Option<u128> {
    1u128.checked_shl(bits)
}

fn slot_of(addr: u128, shift: u32) -> u128 {
    addr.checked_shr(shift).unwrap_or(0)
}

/// Raw random choices for a small pool; `SmallPool::build` turns them into a
/// valid pool so every generated case is usable.
#[derive(Debug, Clone)]
struct SmallPoolSeed {
    v6: bool,
    n: u8,
    log_slots: u8,
    base: u128,
    /// (slot offset in the universe, extra prefix length) per candidate.
    candidates: Vec<(u128, u8)>,
}

fn small_pool_seed() -> impl Strategy<Value = SmallPoolSeed> {
    (
        any::<bool>(),
        any::<u8>(),
        0u8..=12,
        prop_oneof![any::<u128>(), Just(0), Just(u128::MAX)],
        prop::collection::vec((any::<u128>(), any::<u8>()), 1..8),
    )
        .prop_map(|(v6, n, log_slots, base, candidates)| {
            let bits = if v6 { 128 } else { 32 };
            SmallPoolSeed {
                v6,
                n: n % (bits + 1),
                log_slots,
                base,
                candidates,
            }
        })
}

/// A pool inside a "universe": the aligned block of at most 4096 slots that
/// contains every prefix.
#[derive(Debug)]
struct SmallPool {
    family: Family,
    n: u8,
    shift: u32,
    universe: IpNet,
    prefixes: Vec<IpNet>,
}

impl SmallPool {
    fn build(seed: &SmallPoolSeed) -> SmallPool {
        let family = if seed.v6 { Family::V6 } else { Family::V4 };
        let bits = family.bits();
        let n = seed.n;
        let u = n - seed.log_slots.min(n);
        let universe = net_from(family, seed.base, u);
        let (ubase, _) = cidr::range(&universe);
        let shift = u32::from(bits - n);
        let universe_slots = 1u128 << (n - u);
        let mut prefixes: Vec<IpNet> = Vec::new();
        for &(off, extra) in &seed.candidates {
            let len = u + extra % (n - u + 1);
            let addr = ubase + (off % universe_slots).checked_shl(shift).unwrap_or(0);
            let p = net_from(family, addr, len);
            if !prefixes.iter().any(|q| cidr::overlaps(q, &p)) {
                prefixes.push(p);
            }
            if prefixes.len() == 4 {
                break;
            }
        }
        SmallPool {
            family,
            n,
            shift,
            universe,
            prefixes,
        }
    }

    /// A CIDR in or around the universe, of any length from one bit shorter
    /// than the universe down to a single address.
    fn foreign(&self, addr_raw: u128, len_raw: u8) -> IpNet {
        let bits = self.family.bits();
        let u = self.universe.prefix_len();
        let lo = u.saturating_sub(1);
        let len = lo + len_raw % (bits - lo + 1);
        let (ubase, _) = cidr::range(&self.universe);
        let addr = match host_size(u32::from(bits - u)) {
            Some(size) => ubase + addr_raw % size,
            None => addr_raw,
        };
        net_from(self.family, addr, len)
    }
}

/// Brute-force model: one cover counter per slot of the universe.
struct SlotModel {
    shift: u32,
    first_slot: u128,
    in_pool: Vec<bool>,
    cover: Vec<u32>,
    counts: HashMap<IpNet, u32>,
}

impl SlotModel {
    fn new(pool: &SmallPool) -> SlotModel {
        let (ubase, ulast) = cidr::range(&pool.universe);
        let first_slot = slot_of(ubase, pool.shift);
        let count = usize::try_from(slot_of(ulast, pool.shift) - first_slot + 1)
            .expect("universe is small");
        let in_pool = (0..count)
            .map(|i| {
                let slot = net_from(
                    pool.family,
                    slot_addr(first_slot + i as u128, pool.shift),
                    pool.n,
                );
                pool.prefixes.iter().any(|p| p.contains(&slot))
            })
            .collect();
        SlotModel {
            shift: pool.shift,
            first_slot,
            in_pool,
            cover: vec![0; count],
            counts: HashMap::new(),
        }
    }

    /// Indexes of the universe slots `net` overlaps.
    fn slots(&self, net: &IpNet) -> std::ops::Range<usize> {
        let (a, b) = cidr::range(net);
        let last_slot = self.first_slot + (self.cover.len() as u128 - 1);
        let (s, e) = (slot_of(a, self.shift), slot_of(b, self.shift));
        if e < self.first_slot || s > last_slot {
            return 0..0;
        }
        let lo = (s.max(self.first_slot) - self.first_slot) as usize;
        let hi = (e.min(last_slot) - self.first_slot) as usize;
        lo..hi + 1
    }

    fn mark(&mut self, net: &IpNet) {
        *self.counts.entry(*net).or_insert(0) += 1;
        for i in self.slots(net) {
            self.cover[i] += 1;
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
        for i in self.slots(net) {
            self.cover[i] -= 1;
        }
        true
    }

    fn capacity(&self) -> u128 {
        self.in_pool.iter().filter(|&&p| p).count() as u128
    }

    fn used(&self) -> u128 {
        (0..self.cover.len())
            .filter(|&i| self.in_pool[i] && self.cover[i] > 0)
            .count() as u128
    }

    fn first_free(&self) -> Option<u128> {
        (0..self.cover.len())
            .find(|&i| self.in_pool[i] && self.cover[i] == 0)
            .map(|i| self.first_slot + i as u128)
    }

    fn is_clear(&self, net: &IpNet) -> bool {
        self.slots(net).all(|i| self.cover[i] == 0)
    }
}

fn slot_addr(slot: u128, shift: u32) -> u128 {
    slot.checked_shl(shift).unwrap_or(0)
}

#[derive(Debug, Clone)]
enum Op {
    /// first_free + mark, as the controller allocates.
    Allocate,
    /// Unmark one held allocation.
    Release(usize),
    /// A second node claims a prefix that is already held.
    Reclaim(usize),
    /// A foreign node prefix or reservation of arbitrary size appears.
    MarkForeign(u128, u8),
    UnmarkForeign(usize),
    /// Query a CIDR without changing anything, including unmarking one that
    /// was never marked.
    Probe(u128, u8),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => Just(Op::Allocate),
        2 => any::<usize>().prop_map(Op::Release),
        1 => any::<usize>().prop_map(Op::Reclaim),
        2 => (any::<u128>(), any::<u8>()).prop_map(|(a, l)| Op::MarkForeign(a, l)),
        1 => any::<usize>().prop_map(Op::UnmarkForeign),
        1 => (any::<u128>(), any::<u8>()).prop_map(|(a, l)| Op::Probe(a, l)),
    ]
}

fn check_small(
    space: &PoolSpace,
    pool: &SmallPool,
    model: &SlotModel,
) -> Result<(), TestCaseError> {
    let used = model.used();
    prop_assert_eq!(space.used(), used);
    prop_assert_eq!(space.available(), model.capacity() - used);
    prop_assert_eq!(space.mark_count(), model.counts.len());
    let want = model
        .first_free()
        .map(|slot| net_from(pool.family, slot_addr(slot, pool.shift), pool.n));
    prop_assert_eq!(space.first_free(), want);
    if let Some(free) = want {
        prop_assert!(space.is_free(&free));
    }
    Ok(())
}

proptest! {
    #[test]
    fn small_pools_match_brute_force(
        seed in small_pool_seed(),
        reservations in prop::collection::vec((any::<u128>(), any::<u8>()), 0..4),
        ops in prop::collection::vec(op(), 1..64),
    ) {
        let pool = SmallPool::build(&seed);
        let mut space = PoolSpace::new(&pool.prefixes, pool.n).expect("generated pool is valid");
        let mut model = SlotModel::new(&pool);
        prop_assert_eq!(space.capacity(), model.capacity());
        prop_assert_eq!(space.family(), pool.family);

        let reserved: Vec<IpNet> = reservations.iter().map(|&(a, l)| pool.foreign(a, l)).collect();
        for r in &reserved {
            space.mark(r);
            model.mark(r);
        }
        check_small(&space, &pool, &model)?;

        let mut held: Vec<IpNet> = Vec::new();
        let mut foreign: Vec<IpNet> = Vec::new();
        for op in ops {
            match op {
                Op::Allocate => {
                    let got = space.first_free();
                    if let Some(slot) = got {
                        prop_assert!(space.contains(&slot));
                        prop_assert!(model.is_clear(&slot), "{} is covered", slot);
                        prop_assert!(!held.iter().any(|h| cidr::overlaps(h, &slot)));
                        prop_assert!(!reserved.iter().any(|r| cidr::overlaps(r, &slot)));
                        space.mark(&slot);
                        model.mark(&slot);
                        held.push(slot);
                    } else {
                        prop_assert_eq!(space.available(), 0);
                    }
                }
                Op::Release(i) if !held.is_empty() => {
                    let slot = held.swap_remove(i % held.len());
                    prop_assert!(space.unmark(&slot));
                    prop_assert!(model.unmark(&slot));
                }
                Op::Reclaim(i) if !held.is_empty() => {
                    let slot = held[i % held.len()];
                    space.mark(&slot);
                    model.mark(&slot);
                    held.push(slot);
                }
                Op::MarkForeign(a, l) => {
                    let net = pool.foreign(a, l);
                    space.mark(&net);
                    model.mark(&net);
                    foreign.push(net);
                }
                Op::UnmarkForeign(i) if !foreign.is_empty() => {
                    let net = foreign.swap_remove(i % foreign.len());
                    prop_assert!(space.unmark(&net));
                    prop_assert!(model.unmark(&net));
                }
                Op::Probe(a, l) => {
                    let net = pool.foreign(a, l);
                    let marked = model.counts.contains_key(&net);
                    prop_assert_eq!(space.is_marked(&net), marked);
                    prop_assert_eq!(
                        space.is_free(&net),
                        space.contains(&net) && model.is_clear(&net)
                    );
                    if !marked {
                        prop_assert!(!space.unmark(&net));
                    }
                }
                Op::Release(_) | Op::Reclaim(_) | Op::UnmarkForeign(_) => {}
            }
            check_small(&space, &pool, &model)?;
            for h in &held {
                prop_assert!(space.is_marked(h));
                prop_assert!(!space.is_free(h));
            }
        }

        // Dropping every mark returns the pool to empty.
        for net in held.iter().chain(&foreign).chain(&reserved) {
            prop_assert!(space.unmark(net));
        }
        prop_assert_eq!(space.used(), 0);
        prop_assert_eq!(space.mark_count(), 0);
    }

    #[test]
    fn invalid_node_prefix_lengths_are_rejected(seed in small_pool_seed(), extra in 1u8..=64) {
        let pool = SmallPool::build(&seed);
        let shortest = pool.prefixes.iter().map(|p| p.prefix_len()).min().expect("at least one prefix");
        if let Some(n) = shortest.checked_sub(extra) {
            let err = PoolSpace::new(&pool.prefixes, n).expect_err("n shorter than a prefix");
            let is_too_short = matches!(err, SpaceError::NodePrefixTooShort { .. });
            prop_assert!(is_too_short);
        }
        let max = pool.family.bits();
        if let Some(n) = max.checked_add(extra) {
            prop_assert_eq!(
                PoolSpace::new(&pool.prefixes, n).err(),
                Some(SpaceError::NodePrefixTooLong { node_prefix_length: n, max })
            );
        }
    }
}
