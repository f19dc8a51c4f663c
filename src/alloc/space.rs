//! The free-space index of one pool.
//!
//! A pool is one or more disjoint prefixes of one family, carved into aligned
//! subnets of the node prefix length `n` ("slots"). Slot `i` is the /n whose
//! first address is `i << (bits - n)`, so slots are numbered globally across
//! the family's address space, not per prefix.
//!
//! Pools can be enormous (a /20 split into /64s has 2^44 slots), so instead of
//! a bitmap the index keeps the union of marked space as merged slot
//! intervals. Memory then grows with the number of marks, and the lowest free
//! slot is one ordered lookup per pool prefix.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use ipnet::IpNet;

use super::cidr::{self, Family};
use super::coverage::Coverage;

/// Most slots one pool prefix may hold, as a power of two. Keeps every count
/// far from `u128` overflow and rejects pools that are surely a typo.
const MAX_SLOT_BITS: u8 = 64;

#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum SpaceError {
    #[error("a pool needs at least one prefix")]
    NoPrefixes,
    #[error("a pool's prefixes must be all IPv4 or all IPv6")]
    MixedFamilies,
    #[error(
        "node prefix length /{node_prefix_length} is shorter than pool prefix {prefix}; \
         it must be at least /{}",
        .prefix.prefix_len()
    )]
    NodePrefixTooShort {
        prefix: IpNet,
        node_prefix_length: u8,
    },
    #[error("node prefix length /{node_prefix_length} exceeds the maximum /{max}")]
    NodePrefixTooLong { node_prefix_length: u8, max: u8 },
    #[error(
        "splitting {prefix} into /{node_prefix_length} gives 2^{} slots; at most 2^64 are supported",
        .node_prefix_length - .prefix.prefix_len()
    )]
    TooManySlots {
        prefix: IpNet,
        node_prefix_length: u8,
    },
    #[error("pool prefixes {0} and {1} overlap")]
    Overlapping(IpNet, IpNet),
}

/// Free-space index of one pool; see the module docs.
#[derive(Debug, Clone)]
pub struct PoolSpace {
    family: Family,
    node_prefix_length: u8,
    /// Address bits below a slot. It is 128 for a `::/0` pool with n = 0, one
    /// past what `<<`/`>>` accept, hence the checked shifts in `slot_of` and
    /// `slot_addr`.
    shift: u32,
    prefixes: Vec<IpNet>,
    capacity: u128,
    coverage: Coverage,
    /// Reference counts keyed by the marked CIDR's (first address, length).
    /// Ordering by first address also orders by first slot, which lets
    /// `unmark` find the marks inside a block with one range scan.
    marks: BTreeMap<(u128, u8), u32>,
    /// Distinct marked CIDRs per prefix length.
    marks_per_len: [u32; 129],
    /// Bit `l` is set while some length-`l` CIDR is marked (l < 128), so
    /// `unmark` probes for covering supernets only at lengths in use.
    lens_in_use: u128,
}

impl PoolSpace {
    /// Index a pool of `prefixes` (any order; host bits are cleared) split
    /// into /`node_prefix_length` slots.
    pub fn new(prefixes: &[IpNet], node_prefix_length: u8) -> Result<Self, SpaceError> {
        let first = prefixes.first().ok_or(SpaceError::NoPrefixes)?;
        let family = Family::of(first);
        if prefixes.iter().any(|p| Family::of(p) != family) {
            return Err(SpaceError::MixedFamilies);
        }
        let max = family.bits();
        if node_prefix_length > max {
            return Err(SpaceError::NodePrefixTooLong {
                node_prefix_length,
                max,
            });
        }
        let mut sorted: Vec<IpNet> = prefixes.iter().map(IpNet::trunc).collect();
        for &prefix in &sorted {
            if prefix.prefix_len() > node_prefix_length {
                return Err(SpaceError::NodePrefixTooShort {
                    prefix,
                    node_prefix_length,
                });
            }
            if node_prefix_length - prefix.prefix_len() > MAX_SLOT_BITS {
                return Err(SpaceError::TooManySlots {
                    prefix,
                    node_prefix_length,
                });
            }
        }
        sorted.sort_unstable_by_key(|p| (cidr::range(p).0, p.prefix_len()));
        // CIDRs are nested or disjoint, so once sorted by first address any
        // overlap shows up between neighbours.
        if let Some(pair) = sorted.windows(2).find(|w| cidr::overlaps(&w[0], &w[1])) {
            return Err(SpaceError::Overlapping(pair[0], pair[1]));
        }

        let mut space = PoolSpace {
            family,
            node_prefix_length,
            shift: u32::from(max - node_prefix_length),
            prefixes: Vec::new(),
            capacity: 0,
            coverage: Coverage::default(),
            marks: BTreeMap::new(),
            marks_per_len: [0; 129],
            lens_in_use: 0,
        };
        let prefix_slots: Vec<(u128, u128)> = sorted.iter().map(|p| space.slots_of(p)).collect();
        space.capacity = prefix_slots.iter().map(|&(s, e)| e - s + 1).sum();
        space.coverage = Coverage::new(prefix_slots);
        space.prefixes = sorted;
        Ok(space)
    }

    pub fn family(&self) -> Family {
        self.family
    }

    pub fn node_prefix_length(&self) -> u8 {
        self.node_prefix_length
    }

    /// The pool's prefixes, sorted by address.
    pub fn prefixes(&self) -> &[IpNet] {
        &self.prefixes
    }

    /// Total slots in all prefixes.
    pub fn capacity(&self) -> u128 {
        self.capacity
    }

    /// Slots inside the prefixes that at least one mark blocks.
    pub fn used(&self) -> u128 {
        self.coverage.used()
    }

    pub fn available(&self) -> u128 {
        self.capacity.saturating_sub(self.coverage.used())
    }

    /// Whether `net` lies entirely inside one of the prefixes.
    pub fn contains(&self, net: &IpNet) -> bool {
        self.prefixes.iter().any(|p| p.contains(net))
    }

    /// Whether `net` shares any address with the prefixes.
    pub fn overlaps(&self, net: &IpNet) -> bool {
        self.prefixes.iter().any(|p| cidr::overlaps(p, net))
    }

    /// Block every slot `net` overlaps until it is unmarked as many times as
    /// it was marked. Any CIDR of the pool's family is accepted, whatever its
    /// length or location; a CIDR of the other family is ignored because it
    /// cannot collide with this pool.
    pub fn mark(&mut self, net: &IpNet) {
        if Family::of(net) != self.family {
            return;
        }
        let key = mark_key(net);
        let count = self.marks.entry(key).or_insert(0);
        // Saturating: an absurd number of repeat marks must not wrap the
        // count to zero, which would free slots that are still claimed.
        *count = count.saturating_add(1);
        if *count == 1 {
            self.count_length(key.1, true);
            let (s, e) = self.slots_of(net);
            self.coverage.cover(s, e);
        }
    }

    /// Drop one mark of `net`; returns false if `net` was not marked. Slots
    /// are freed only when no remaining mark still blocks them.
    pub fn unmark(&mut self, net: &IpNet) -> bool {
        if Family::of(net) != self.family {
            return false;
        }
        let key = mark_key(net);
        let Entry::Occupied(mut entry) = self.marks.entry(key) else {
            return false;
        };
        // Entries are removed when they reach zero, so the count is at least 1.
        *entry.get_mut() -= 1;
        if *entry.get() == 0 {
            entry.remove();
            self.count_length(key.1, false);
            self.release(net);
        }
        true
    }

    /// Track a distinct CIDR of length `len` being marked or fully unmarked.
    fn count_length(&mut self, len: u8, added: bool) {
        let count = &mut self.marks_per_len[usize::from(len)];
        if added {
            *count += 1;
        } else {
            *count -= 1;
        }
        if len < 128 {
            let bit = 1u128 << len;
            if *count > 0 {
                self.lens_in_use |= bit;
            } else {
                self.lens_in_use &= !bit;
            }
        }
    }

    /// Recompute coverage of the block of slots `net` used to block, now that
    /// its last mark is gone.
    fn release(&mut self, net: &IpNet) {
        // The blocked slots form one aligned block: the mark itself when it is
        // at least a slot wide, else the slot holding it. CIDRs are nested or
        // disjoint, so every remaining mark that touches the block either
        // contains it or lies inside it.
        let (s, e) = self.slots_of(net);
        let block_len = net.prefix_len().min(self.node_prefix_length);
        let block_first = self.slot_addr(s);
        let block_last = self.slot_addr(e) | low_bits(self.shift);
        let bits = self.family.bits();
        let mut shorter = self.lens_in_use & low_bits(u32::from(block_len));
        while shorter != 0 {
            let len = shorter.trailing_zeros();
            shorter &= shorter - 1;
            let supernet = block_first & !low_bits(u32::from(bits) - len);
            // `len` < 128 here, so the cast is lossless.
            if self.marks.contains_key(&(supernet, len as u8)) {
                return;
            }
        }
        self.coverage.uncover(s, e);
        // Marks inside the block come in slot order, so contiguous ones are
        // merged into one `cover` call each.
        let mut run: Option<(u128, u128)> = None;
        for &(addr, len) in self
            .marks
            .range((block_first, 0)..=(block_last, u8::MAX))
            .map(|(k, _)| k)
        {
            let last = addr | low_bits(u32::from(bits - len));
            let (ms, me) = (slot_of(addr, self.shift), slot_of(last, self.shift));
            run = match run {
                Some((rs, re)) if ms <= re.saturating_add(1) => Some((rs, re.max(me))),
                Some((rs, re)) => {
                    self.coverage.cover(rs, re);
                    Some((ms, me))
                }
                None => Some((ms, me)),
            };
        }
        if let Some((rs, re)) = run {
            self.coverage.cover(rs, re);
        }
    }

    /// Whether this exact CIDR (host bits ignored) currently holds a mark.
    pub fn is_marked(&self, net: &IpNet) -> bool {
        Family::of(net) == self.family && self.marks.contains_key(&mark_key(net))
    }

    /// Whether `net` is inside the prefixes and no mark blocks any slot it
    /// overlaps.
    pub fn is_free(&self, net: &IpNet) -> bool {
        if !self.contains(net) {
            return false;
        }
        let (s, e) = self.slots_of(net);
        self.coverage.is_clear(s, e)
    }

    /// The lowest free slot inside the prefixes, in address order.
    pub fn first_free(&self) -> Option<IpNet> {
        let slot = self.coverage.first_clear()?;
        Some(cidr::net_from(
            self.family,
            self.slot_addr(slot),
            self.node_prefix_length,
        ))
    }

    /// The lowest free aligned /`len` inside the prefixes, in address order.
    /// A `len` at least the node prefix length is carved from the lowest
    /// free slot (the first /`len` of it: the slot is then blocked whole by
    /// a mark of it); a shorter one needs `2^(node prefix length - len)`
    /// free slots in one aligned block inside one prefix.
    pub fn first_free_block(&self, len: u8) -> Option<IpNet> {
        if len > self.family.bits() {
            return None;
        }
        if len >= self.node_prefix_length {
            let slot = self.coverage.first_clear()?;
            return Some(cidr::net_from(self.family, self.slot_addr(slot), len));
        }
        // `len` >= a prefix's length below, so the width is at most 64 bits.
        let width = u32::from(self.node_prefix_length - len);
        for p in self.prefixes.iter().filter(|p| p.prefix_len() <= len) {
            let (ps, pe) = self.slots_of(p);
            let size = 1u128 << width;
            let mut start = ps;
            while start <= pe {
                let end = start + (size - 1);
                match self.coverage.last_covered_end(start, end) {
                    None => {
                        return Some(cidr::net_from(self.family, self.slot_addr(start), len));
                    }
                    Some(b) => match (b >> width)
                        .checked_add(1)
                        .and_then(|k| k.checked_shl(width))
                    {
                        Some(next) => start = next,
                        None => break,
                    },
                }
            }
        }
        None
    }

    /// Number of distinct CIDRs currently marked (repeat marks of one CIDR
    /// count once).
    pub fn mark_count(&self) -> usize {
        self.marks.len()
    }

    fn slots_of(&self, net: &IpNet) -> (u128, u128) {
        let (first, last) = cidr::range(net);
        (slot_of(first, self.shift), slot_of(last, self.shift))
    }

    fn slot_addr(&self, slot: u128) -> u128 {
        slot.checked_shl(self.shift).unwrap_or(0)
    }
}

fn slot_of(addr: u128, shift: u32) -> u128 {
    addr.checked_shr(shift).unwrap_or(0)
}

/// The low `count` bits set (all of them for 128).
fn low_bits(count: u32) -> u128 {
    u128::MAX.checked_shr(128 - count).unwrap_or(0)
}

fn mark_key(net: &IpNet) -> (u128, u8) {
    (cidr::range(net).0, net.prefix_len())
}

#[cfg(test)]
#[path = "space_tests.rs"]
mod tests;
