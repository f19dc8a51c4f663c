//! The union of marked slots of one pool as merged intervals: what
//! [`PoolSpace`](super::PoolSpace) asks to find the lowest free slot and to
//! count used space without a bitmap.

use std::collections::BTreeMap;

/// The union of marked slots, as disjoint, non-adjacent inclusive intervals,
/// with a running count of how many of those slots lie inside the pool.
#[derive(Debug, Clone, Default)]
pub(super) struct Coverage {
    /// Slot intervals of the pool prefixes, sorted and disjoint.
    prefix_slots: Vec<(u128, u128)>,
    /// start -> end.
    intervals: BTreeMap<u128, u128>,
    used: u128,
}

impl Coverage {
    /// Nothing covered yet; `prefix_slots` are the pool prefixes' slot
    /// intervals, sorted and disjoint.
    pub(super) fn new(prefix_slots: Vec<(u128, u128)>) -> Self {
        Coverage {
            prefix_slots,
            ..Default::default()
        }
    }

    /// Covered slots inside the pool prefixes.
    pub(super) fn used(&self) -> u128 {
        self.used
    }

    pub(super) fn cover(&mut self, s: u128, e: u128) {
        // Count the whole range as new, then take back what existing
        // intervals already covered while merging them in.
        let mut newly = slots_inside(&self.prefix_slots, s, e);
        // `saturating_add` keeps the top slot (u128::MAX) usable.
        let reach = e.saturating_add(1);
        // Fast path, hit by every allocation that extends a run: the
        // rightmost interval that could touch [s, e] starts at or before `s`,
        // so no other interval touches and this one grows in place.
        if let Some((&a, b)) = self.intervals.range_mut(..=reach).next_back()
            && a <= s
            && b.saturating_add(1) >= s
        {
            if *b >= s {
                newly -= slots_inside(&self.prefix_slots, s, (*b).min(e));
            }
            *b = (*b).max(e);
            self.used += newly;
            return;
        }
        // Otherwise walk right to left, absorbing every interval that
        // overlaps or touches [lo, hi].
        let (mut lo, mut hi) = (s, e);
        while let Some((&a, &b)) = self.intervals.range(..=hi.saturating_add(1)).next_back() {
            if b.saturating_add(1) < lo {
                break;
            }
            let (oa, ob) = (a.max(s), b.min(e));
            if oa <= ob {
                newly -= slots_inside(&self.prefix_slots, oa, ob);
            }
            self.intervals.remove(&a);
            lo = lo.min(a);
            hi = hi.max(b);
        }
        self.intervals.insert(lo, hi);
        self.used += newly;
    }

    pub(super) fn uncover(&mut self, s: u128, e: u128) {
        // Right to left over the intervals overlapping [s, e]. The leftmost
        // one is trimmed in place rather than removed and reinserted, since
        // releasing one slot from the middle of a run is the common case.
        while let Some((&a, b)) = self.intervals.range_mut(..=e).next_back() {
            let end = *b;
            if end < s {
                break;
            }
            self.used -= slots_inside(&self.prefix_slots, a.max(s), end.min(e));
            // The bounds below cannot overflow: a < s means s > 0, end > e
            // means e < u128::MAX.
            let leftmost = a < s;
            if leftmost {
                *b = s - 1;
            } else {
                self.intervals.remove(&a);
            }
            if end > e {
                self.intervals.insert(e + 1, end);
            }
            if leftmost {
                break;
            }
        }
    }

    pub(super) fn is_clear(&self, s: u128, e: u128) -> bool {
        self.intervals
            .range(..=e)
            .next_back()
            .is_none_or(|(_, &b)| b < s)
    }

    /// The end of the last covered interval that meets `[s, e]`, if any
    /// does (a block that meets one is not clear, and no clear block can
    /// start before that end).
    pub(super) fn last_covered_end(&self, s: u128, e: u128) -> Option<u128> {
        self.intervals
            .range(..=e)
            .next_back()
            .and_then(|(_, &b)| (b >= s).then_some(b))
    }

    pub(super) fn first_clear(&self) -> Option<u128> {
        self.prefix_slots.iter().find_map(|&(ps, pe)| {
            // Intervals never touch, so the slot right after the one covering
            // `ps` is clear.
            let candidate = match self.intervals.range(..=ps).next_back() {
                Some((_, &b)) if b >= ps => b.checked_add(1)?,
                _ => ps,
            };
            (candidate <= pe).then_some(candidate)
        })
    }
}

/// Number of slots in `[a, b]` that lie inside the pool's `prefix_slots`.
fn slots_inside(prefix_slots: &[(u128, u128)], a: u128, b: u128) -> u128 {
    let from = prefix_slots.partition_point(|&(_, pe)| pe < a);
    prefix_slots[from..]
        .iter()
        .take_while(|&&(ps, _)| ps <= b)
        .map(|&(ps, pe)| pe.min(b) - ps.max(a) + 1)
        .sum()
}
