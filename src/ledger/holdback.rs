//! The ledger's clock and the held-back prefixes of deleted Nodes (sticky
//! prefixes and the reuse delay).

use std::collections::BTreeMap;
use std::time::SystemTime;

use ipnet::IpNet;

use super::{HoldBack, Ledger};
use crate::alloc::Family;

impl Ledger {
    pub(super) fn now(&self) -> SystemTime {
        self.now.unwrap_or(SystemTime::UNIX_EPOCH)
    }

    /// Advances the clock and frees held-back prefixes whose time has come.
    /// Returns true when space was freed or a family grace ended.
    pub fn set_time(&mut self, now: SystemTime) -> bool {
        self.now = Some(now);
        let mut freed = self.end_family_graces(now);
        while let Some(&(at, net)) = self.release_order.first() {
            if at > now {
                break;
            }
            self.free_hold_back(&net);
            freed = true;
        }
        freed
    }

    /// Ends the hold-back of `net` and frees its space.
    fn free_hold_back(&mut self, net: &IpNet) {
        self.remove_hold_back(net);
        self.unmark_everywhere(net);
    }

    pub(super) fn insert_hold_back(&mut self, net: IpNet, hb: HoldBack) -> bool {
        let at = hb.reusable_at;
        if hb.pending_write {
            self.pending_writes
                .entry(hb.node.clone())
                .or_default()
                .insert(net);
        }
        let old = self.hold_backs.insert(net, hb);
        if let Some(o) = &old {
            self.release_order.remove(&(o.reusable_at, net));
            if o.pending_write {
                self.forget_pending_write(&o.node, &net);
            }
        }
        self.release_order.insert((at, net));
        old.is_none()
    }

    pub(super) fn remove_hold_back(&mut self, net: &IpNet) -> Option<HoldBack> {
        let hb = self.hold_backs.remove(net)?;
        self.release_order.remove(&(hb.reusable_at, *net));
        if hb.pending_write {
            self.forget_pending_write(&hb.node, net);
        }
        Some(hb)
    }

    fn forget_pending_write(&mut self, node: &str, net: &IpNet) {
        if let Some(set) = self.pending_writes.get_mut(node) {
            set.remove(net);
            if set.is_empty() {
                self.pending_writes.remove(node);
            }
        }
    }

    /// The next moment a held-back prefix becomes free.
    /// (or a family grace ends: Nodes it held are planned again).
    pub fn next_release(&self) -> Option<SystemTime> {
        let hold_back = self.release_order.first().map(|(t, _)| *t);
        match (hold_back, self.next_grace_end()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Records `c` of the deleted Node `node` as held back when its pool asks
    /// for retention or a reuse delay. Returns true when a new record was made.
    pub(super) fn hold_back(&mut self, node: &str, c: &IpNet) -> bool {
        let Some(pool) = self.owner_of(c).map(str::to_string) else {
            return false;
        };
        let Some(Ok(d)) = self.pools.get(&pool).map(|p| &p.def) else {
            return false;
        };
        let (retain, reuse) = (d.retain_for, d.reuse_after);
        if retain.is_zero() && reuse.is_zero() {
            return false;
        }
        let now = self.now();
        let hb = HoldBack {
            node: node.to_string(),
            pool,
            pending_write: false,
            retained_until: (!retain.is_zero()).then(|| now + retain),
            reusable_at: now + retain.max(reuse),
        };
        self.insert_hold_back(*c, hb)
    }

    /// A prefix of family `fam` still retained for a Node named `node` in
    /// one of `cands`.
    pub(super) fn retained_for(
        &self,
        node: &str,
        fam: Family,
        cands: &[&str],
    ) -> Option<(IpNet, &HoldBack)> {
        let now = self.now();
        self.hold_backs
            .iter()
            .find(|(net, hb)| {
                hb.node == node
                    && Family::of(net) == fam
                    && hb.retained_until.is_some_and(|t| t > now)
                    && cands.contains(&hb.pool.as_str())
            })
            .map(|(net, hb)| (*net, hb))
    }

    /// Ends the hold-backs kept for writes with an unknown outcome to
    /// `node`: it holds prefixes now (podCIDRs are write-once, so such a
    /// write can no longer land) or the object they were for is gone (the
    /// write tests its UID).
    pub(super) fn end_pending_writes_of(&mut self, node: &str) {
        let Some(ended) = self.pending_writes.remove(node) else {
            return;
        };
        for net in ended {
            self.free_hold_back(&net);
            self.freed = true;
        }
    }

    /// Ends every pending-write hold-back whose Node holds prefixes.
    pub(super) fn end_settled_pending_writes(&mut self) {
        let settled: Vec<String> = self
            .pending_writes
            .keys()
            .filter(|n| self.nodes.get(*n).is_some_and(|e| e.has_prefixes()))
            .cloned()
            .collect();
        for node in settled {
            self.end_pending_writes_of(&node);
        }
    }

    /// True once after space was freed outside [`Ledger::set_time`] (a
    /// pending-write hold-back ended): Nodes that wait may fit now.
    pub fn take_freed(&mut self) -> bool {
        std::mem::take(&mut self.freed)
    }

    /// Held-back prefixes, for tests and diagnostics.
    pub fn hold_backs(&self) -> &BTreeMap<IpNet, HoldBack> {
        &self.hold_backs
    }
}
