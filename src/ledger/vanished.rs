//! The family grace: a Node is never written single-stack the instant the
//! last pool of the other family that selected it disappears.
//!
//! podCIDRs is write-once, so a dual-stack Node written with one family can
//! never get the other. Admins delete and re-create a pool to change what
//! cannot be edited (`nodePrefixLength`), and a pool's selector or family
//! can be edited away; for [`FAMILY_GRACE`] after a pool of a family stops
//! selecting a Node (deleted, re-created, edited), a Node that no pool of
//! that family selects waits instead of being written with the other
//! family alone. A pool re-created in that time is seen by the watch and
//! serves the Node both families in one write.
//!
//! What vanished is known only to the replica that saw it go. A replica
//! that starts leading (or starts alone) cannot know what went in the
//! moments before, so for [`FAMILY_GRACE`] after it does, a Node that no
//! pool of a family selects waits too, when that family is in use in the
//! cluster (a valid pool or a Node prefix of it). A cluster of one family
//! never waits.

use std::time::{Duration, SystemTime};

use kube::core::{Selector, SelectorExt};

use super::{Ledger, PoolEntry};
use crate::alloc::Family;
use crate::api::Labels;

/// How long a Node waits for a pool of a family that just stopped
/// selecting it before it is written without that family.
pub const FAMILY_GRACE: Duration = Duration::from_secs(10);

/// A pool definition that no longer serves, remembered for the grace.
#[derive(Clone, Debug)]
pub(super) struct Vanished {
    pool: String,
    family: Family,
    selector: Selector,
    until: SystemTime,
}

impl Ledger {
    /// Remembers what `old` (pool `name`) selected, as it stops serving.
    pub(super) fn record_vanished(&mut self, name: &str, old: &PoolEntry) {
        let Ok(d) = &old.def else { return };
        let until = self.now() + FAMILY_GRACE;
        self.vanished
            .retain(|v| !(v.pool == name && v.family == d.family && v.selector == d.selector));
        self.vanished.push(Vanished {
            pool: name.to_string(),
            family: d.family,
            selector: d.selector.clone(),
            until,
        });
    }

    /// Pools of `family` that selected `labels` and stopped serving less
    /// than [`FAMILY_GRACE`] ago, and when the last grace ends.
    pub(super) fn family_grace(
        &self,
        family: Family,
        labels: &Labels,
    ) -> Option<(Vec<String>, SystemTime)> {
        let now = self.now();
        let mut pools = vec![];
        let mut until = now;
        for v in &self.vanished {
            if v.family == family && v.until > now && v.selector.matches(labels) {
                pools.push(v.pool.clone());
                until = until.max(v.until);
            }
        }
        pools.sort();
        pools.dedup();
        (!pools.is_empty()).then_some((pools, until))
    }

    /// Forgets graces that ended. Returns true when one did (the Nodes
    /// held by it are planned again).
    pub(super) fn end_family_graces(&mut self, now: SystemTime) -> bool {
        let before = self.vanished.len();
        self.vanished.retain(|v| v.until > now);
        let lead_ended = self.lead_grace_until.is_some_and(|t| t <= now);
        if lead_ended {
            self.lead_grace_until = None;
        }
        self.vanished.len() != before || lead_ended
    }

    /// When the next family grace ends.
    pub(super) fn next_grace_end(&self) -> Option<SystemTime> {
        self.vanished
            .iter()
            .map(|v| v.until)
            .chain(self.lead_grace_until)
            .min()
    }

    /// This replica starts writing (it became leader, or runs alone): see
    /// the module notes.
    pub fn start_leading(&mut self, now: SystemTime) {
        self.lead_grace_until = Some(now + FAMILY_GRACE);
    }

    /// The end of the grace after starting to lead, while it runs and
    /// `family` is in use in the cluster.
    pub(super) fn lead_grace(&self, family: Family) -> Option<SystemTime> {
        let until = self.lead_grace_until.filter(|t| *t > self.now())?;
        let pool_of_family = self
            .pools
            .values()
            .any(|p| p.def.as_ref().is_ok_and(|d| d.family == family));
        let prefix_of_family = self
            .held
            .range((family, 0, 0)..=(family, u128::MAX, u8::MAX))
            .next()
            .is_some();
        (pool_of_family || prefix_of_family).then_some(until)
    }
}
