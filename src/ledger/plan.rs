//! The allocation rule: what a Node gets (every family its selecting pools
//! serve, from the pool of highest priority with free space, lowest free
//! prefix first, all or nothing), reserved until the write's outcome is
//! known.

use std::time::SystemTime;

use ipnet::IpNet;

use super::{HoldBack, Ledger, NodeChange, NodeSnapshot, Plan, Wait};
use crate::alloc::Family;

impl Ledger {
    /// Decides what `node` gets and, when it gets something, reserves it.
    /// The caller must then write it and call [`Ledger::commit`] or
    /// [`Ledger::release`].
    pub fn plan(&mut self, node: &str, primary: Family) -> Plan {
        let Some(e) = self.nodes.get(node) else {
            return Plan::Nothing;
        };
        if e.deleting || e.has_prefixes() || self.reservations.contains_key(node) {
            return Plan::Nothing;
        }
        let labels = e.labels.clone();
        let mut picks: Vec<(String, IpNet)> = vec![];
        let mut any_candidate = false;
        for fam in [primary, primary.other()] {
            let cands = self.candidates(fam, &labels);
            if cands.is_empty() {
                let grace = self
                    .family_grace(fam, &labels)
                    .or_else(|| self.lead_grace(fam).map(|until| (vec![], until)));
                if let Some((pools, until)) = grace {
                    self.waiting.insert(node.to_string(), pools.clone());
                    return Plan::Wait(Wait::FamilyGone {
                        family: fam,
                        pools,
                        until,
                    });
                }
                continue;
            }
            any_candidate = true;
            match self.pick(node, fam, &cands) {
                Some(p) => picks.push(p),
                None => {
                    let pools: Vec<String> = cands.iter().map(|s| s.to_string()).collect();
                    self.waiting.insert(node.to_string(), pools.clone());
                    return Plan::Wait(Wait::Exhausted { family: fam, pools });
                }
            }
        }
        self.waiting.remove(node);
        if !any_candidate {
            return Plan::Wait(Wait::NoPool);
        }
        let nets: Vec<IpNet> = picks.iter().map(|(_, n)| *n).collect();
        for n in &nets {
            self.mark_everywhere(n);
            // A sticky prefix moves from its hold-back to the reservation.
            if self.remove_hold_back(n).is_some() {
                self.unmark_everywhere(n);
            }
        }
        self.reservations.insert(node.to_string(), nets);
        Plan::Allocate(picks)
    }

    /// The prefix of family `fam` that `node` would get from `cands`: its
    /// retained one, else the lowest free one of the best pool with space.
    pub(super) fn pick(&self, node: &str, fam: Family, cands: &[&str]) -> Option<(String, IpNet)> {
        if let Some((net, hb)) = self.retained_for(node, fam, cands) {
            return Some((hb.pool.clone(), net));
        }
        cands.iter().find_map(|name| {
            let s = self.pools.get(*name)?.space.as_ref()?;
            s.first_free().map(|n| (name.to_string(), n))
        })
    }

    /// The write for `node` landed and the server answered with `written`.
    /// The answer is applied in the API server's order like any other state
    /// (a later watch event may already be in); the reservation is dropped
    /// afterwards so its space is never free in between.
    pub fn commit(&mut self, written: &NodeSnapshot) -> NodeChange {
        let change = self.upsert_node(written);
        self.release(&written.name);
        change
    }

    /// Drops the reservation of `node` (after its write failed or landed).
    /// Returns true when one was held.
    pub fn release(&mut self, node: &str) -> bool {
        let Some(nets) = self.reservations.remove(node) else {
            return false;
        };
        for n in &nets {
            self.unmark_everywhere(n);
        }
        true
    }

    /// Settles a write of `picks` to `node` (object `uid`) whose outcome was
    /// unknown, once a read of the Node has been applied. If the Node holds
    /// prefixes (the write landed, or someone else's did), is gone, or is
    /// another object now, the reservation is simply dropped. If it is still
    /// that object and empty, the write did not land as of the read — but a
    /// request the server still holds may land later, so the prefixes are
    /// kept from every other Node until `until` (a hold-back of that Node)
    /// and the Node is planned afresh (it may no longer be selected).
    /// Returns true when the Node should be planned again.
    pub fn settle_unknown(
        &mut self,
        node: &str,
        uid: &str,
        picks: &[(String, IpNet)],
        until: SystemTime,
    ) -> bool {
        let still_empty = self
            .nodes
            .get(node)
            .is_some_and(|e| e.rev.uid == uid && !e.has_prefixes());
        if still_empty {
            for (pool, net) in picks {
                let hb = HoldBack {
                    node: node.to_string(),
                    pool: pool.clone(),
                    pending_write: true,
                    retained_until: None,
                    reusable_at: until,
                };
                if self.insert_hold_back(*net, hb) {
                    self.mark_everywhere(net);
                }
            }
        }
        self.release(node);
        still_empty
    }
}
