//! Pools in the ledger: their definitions, free space, retired prefixes, and
//! which pools a Node's labels select.

use std::collections::{BTreeSet, HashSet};

use ipnet::IpNet;
use kube::core::SelectorExt;

use super::order::{Order, Revision};
use super::records::later_than;
use super::{HeldBackRecord, HoldBack, Ledger, PoolEntry, PoolSnapshot, key};
use crate::alloc::{Family, PoolSpace, cidr};
use crate::api::Labels;

fn prefixes_of(
    def: &Result<crate::api::PoolDefinition, crate::api::SpecError>,
) -> Result<&[IpNet], &str> {
    def.as_ref()
        .map(|d| &d.prefixes[..])
        .map_err(|e| e.0.as_str())
}

impl Ledger {
    /// Adds or updates a pool. Returns false when nothing the picture reads
    /// changed: a state not later than the one held, or the same spec
    /// (generation) with no new status record — our own status writes come
    /// back as such updates and must not rebuild the picture each time.
    ///
    /// A pool re-created under the same name (another UID) is a new pool:
    /// nothing of the old object's spec or records carries over.
    pub fn upsert_pool(&mut self, p: &PoolSnapshot) -> bool {
        match self.pools.admit(&p.name, &p.revision()) {
            Order::Stale => return false,
            Order::Newer => {
                // A delegated pool's prefixes change with its status (the
                // DHCPv6 binding), not its generation.
                let same_definition = self.pools.get(&p.name).is_some_and(|old| {
                    old.generation == p.generation && prefixes_of(&old.def) == prefixes_of(&p.def)
                });
                if same_definition && p.generation > 0 {
                    return self.merge_status_records(p);
                }
            }
            // A replaced object was deleted before this one was created:
            // nothing of it carries over.
            Order::Replaces | Order::New => {}
        }
        let def = p.def.clone();
        let mut retired: BTreeSet<IpNet> = match self.pools.get(&p.name) {
            Some(old) if old.rev.uid == p.uid => {
                let mut r = old.retired.clone();
                if let Ok(d) = &old.def {
                    r.extend(d.prefixes.iter().copied());
                }
                r
            }
            _ => BTreeSet::new(),
        };
        retired.extend(p.retired.iter().filter_map(|s| cidr::parse_lenient(s).ok()));
        if let Ok(d) = &def {
            retired.retain(|r| !d.prefixes.contains(r));
        }
        let mut entry = PoolEntry {
            rev: p.revision(),
            generation: p.generation,
            def,
            space: None,
            retired,
            labels: p.labels.clone(),
            delegation: p.delegation.clone(),
        };
        self.prune_retired(&mut entry);
        if let Some(old) = self.pools.insert(p.name.clone(), entry) {
            self.record_vanished(&p.name, &old);
        }
        self.restore_hold_backs(&p.name, &p.held_back);
        self.rebuild_spaces();
        self.refresh_all_conflicts();
        true
    }

    /// True when the ledger holds exactly this revision of pool `name`: not
    /// an older one, not a later one, not another object of the same name.
    pub fn holds_pool(&self, name: &str, uid: &str, resource_version: Option<u64>) -> bool {
        self.pools
            .get(name)
            .is_some_and(|p| p.rev.uid == uid && p.rev.rv == resource_version)
    }

    /// Same spec, a later status: takes in retired prefixes and hold-backs
    /// recorded there that the ledger does not know (another replica wrote
    /// them while it led). Returns true when something was taken in.
    fn merge_status_records(&mut self, p: &PoolSnapshot) -> bool {
        let Some(entry) = self.pools.get_mut(&p.name) else {
            return false;
        };
        entry.rev.rv = p.resource_version;
        // Labels change without a new generation; claims select by them.
        let mut changed = entry.labels != p.labels;
        entry.labels = p.labels.clone();
        // The DHCPv6 binding (state of each delegated prefix) is shown in
        // the pool's conditions.
        changed |= entry.delegation != p.delegation;
        entry.delegation = p.delegation.clone();
        let known_prefixes: Vec<IpNet> = entry
            .def
            .as_ref()
            .map(|d| d.prefixes.clone())
            .unwrap_or_default();
        let before = entry.retired.len();
        entry.retired.extend(
            p.retired
                .iter()
                .filter_map(|s| cidr::parse_lenient(s).ok())
                .filter(|r| !known_prefixes.contains(r)),
        );
        changed |= entry.retired.len() != before;
        if changed {
            self.prune_retired_of(&p.name);
        }
        if self.restore_hold_backs(&p.name, &p.held_back) {
            self.rebuild_spaces();
            changed = true;
        }
        changed
    }

    /// Takes in hold-backs recorded in a pool's status that are still in
    /// force and unknown here. Returns true when one was taken in.
    fn restore_hold_backs(&mut self, pool: &str, records: &[HeldBackRecord]) -> bool {
        let now = self.now();
        let mut any = false;
        for r in records {
            if let Ok(net) = cidr::parse_lenient(&r.prefix)
                && r.reusable_at > now
                && !self.held.contains_key(&key(&net))
                && !self.hold_backs.contains_key(&net)
                // A write to a Node that holds prefixes now can never land.
                && !(r.pending_write && self.nodes.get(&r.node).is_some_and(|e| e.has_prefixes()))
            {
                self.insert_hold_back(
                    net,
                    HoldBack {
                        node: r.node.clone(),
                        pool: pool.to_string(),
                        pending_write: r.pending_write,
                        retained_until: r.retained_until,
                        reusable_at: r.reusable_at,
                    },
                );
                any = true;
            }
        }
        any
    }

    /// Forgets pool `name` if it is still the object `uid` (a later pool of
    /// the same name stays). Its Nodes keep their prefixes; a pool
    /// re-created with the same prefixes adopts them again.
    pub fn remove_pool(&mut self, name: &str, uid: &str, rv: Option<u64>) -> bool {
        let dead = Revision {
            uid: uid.to_string(),
            rv,
        };
        let Some(old) = self.pools.remove(name, dead) else {
            return false;
        };
        self.record_vanished(name, &old);
        self.rebuild_spaces();
        self.refresh_all_conflicts();
        true
    }

    /// Merges a complete, consistent list of pools taken at `list_rv`: each
    /// listed state is applied in order like a watch event, and a held pool
    /// the list does not show is removed unless the ledger holds a state of
    /// it later than the list (created after it). Returns the names removed.
    pub fn replace_pools(&mut self, pools: &[PoolSnapshot], list_rv: Option<u64>) -> Vec<String> {
        let listed: HashSet<&str> = pools.iter().map(|p| p.name.as_str()).collect();
        let Some(gone) = self
            .pools
            .list_gone(|n| listed.contains(n.as_str()), list_rv)
        else {
            // Older than a list already merged.
            return vec![];
        };
        let mut removed = vec![];
        for (name, rev) in gone {
            if self.remove_pool(&name, &rev.uid, rev.rv) {
                removed.push(name);
            }
        }
        for p in pools {
            self.upsert_pool(p);
        }
        self.pools.raise_floor(list_rv);
        removed
    }

    /// True when the pools a consistent list (of metadata, at `list_rv`)
    /// shows are the ones the ledger holds, each at least as recent: the
    /// picture of pools is then no older than the list.
    pub fn pools_current(&self, listed: &[(String, Revision)], list_rv: Option<u64>) -> bool {
        let mut names = HashSet::with_capacity(listed.len());
        for (name, rev) in listed {
            names.insert(name.as_str());
            if !self.holds_at_least(name, rev) {
                return false;
            }
        }
        self.pools
            .iter()
            .all(|(n, e)| names.contains(n.as_str()) || later_than(e.rev.rv, list_rv))
    }

    /// True when the ledger holds pool `name` as the object `rev` names, at
    /// that revision or a later one.
    fn holds_at_least(&self, name: &str, rev: &Revision) -> bool {
        self.pools.get(name).is_some_and(|e| {
            e.rev.uid == rev.uid && matches!((e.rev.rv, rev.rv), (Some(a), Some(b)) if a >= b)
        })
    }

    pub(super) fn prune_all_retired(&mut self) {
        if self.pools.values().all(|p| p.retired.is_empty()) {
            return;
        }
        let names: Vec<String> = self.pools.keys().cloned().collect();
        for n in names {
            self.prune_retired_of(&n);
        }
    }

    /// Prunes the retired prefixes of the pool held as `name`.
    fn prune_retired_of(&mut self, name: &str) {
        let Some(p) = self.pools.get(name) else {
            return;
        };
        let kept = self.retired_in_use(&p.retired);
        if let Some(p) = self.pools.get_mut(name) {
            p.retired = kept;
        }
    }

    /// Retired prefixes stay only while some Node holds space inside them.
    fn prune_retired(&self, p: &mut PoolEntry) {
        p.retired.retain(|r| self.held_inside(r).next().is_some());
    }

    /// The same, of a pool in the map.
    fn retired_in_use(&self, retired: &BTreeSet<IpNet>) -> BTreeSet<IpNet> {
        retired
            .iter()
            .filter(|r| self.held_inside(r).next().is_some())
            .copied()
            .collect()
    }

    /// Rebuilds every pool's free space from the definitions, the Nodes,
    /// the reserved ranges of every pool and the reservations in flight.
    pub(super) fn rebuild_spaces(&mut self) {
        let all_reserved: Vec<IpNet> = self
            .pools
            .values()
            .filter_map(|p| p.def.as_ref().ok())
            .flat_map(|d| d.reserved.iter().copied())
            .collect();
        let in_flight: Vec<IpNet> = self
            .reservations
            .values()
            .flatten()
            .chain(self.hold_backs.keys())
            .chain(self.claim_reservations.values().map(|(_, n)| n))
            .chain(self.claims.values().filter_map(|c| c.prefix.as_ref()))
            .copied()
            .chain(self.held_address_nets())
            .collect();
        let held: Vec<(IpNet, usize)> = self
            .held
            .iter()
            .map(|(&(f, s, l), names)| (cidr::net_from(f, s, l), names.len()))
            .collect();
        for p in self.pools.values_mut() {
            p.space = match &p.def {
                Ok(d) => PoolSpace::new(&d.prefixes, d.node_prefix_length).ok(),
                Err(_) => None,
            };
            let Some(s) = p.space.as_mut() else { continue };
            for r in all_reserved.iter().chain(in_flight.iter()) {
                if s.overlaps(r) {
                    s.mark(r);
                }
            }
            for (h, count) in &held {
                if s.overlaps(h) {
                    for _ in 0..*count {
                        s.mark(h);
                    }
                }
            }
        }
    }

    pub(super) fn mark_everywhere(&mut self, n: &IpNet) {
        for p in self.pools.values_mut() {
            if let Some(s) = p.space.as_mut()
                && s.overlaps(n)
            {
                s.mark(n);
            }
        }
    }

    pub(super) fn unmark_everywhere(&mut self, n: &IpNet) {
        for p in self.pools.values_mut() {
            if let Some(s) = p.space.as_mut() {
                s.unmark(n);
            }
        }
    }

    /// Valid pools of `family` that select `labels`, best first.
    pub(super) fn candidates(&self, family: Family, labels: &Labels) -> Vec<&str> {
        let mut v: Vec<(&str, i32)> = self
            .pools
            .iter()
            .filter_map(|(name, p)| {
                // A valid pool without space (a delegated pool between
                // delegations) is a candidate that is full: its Nodes wait.
                let d = p.def.as_ref().ok()?;
                (d.family == family && d.selector.matches(labels))
                    .then_some((name.as_str(), d.priority))
            })
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        v.into_iter().map(|(n, _)| n).collect()
    }

    /// The pool that owns `net`: the best valid pool whose current or
    /// retired prefixes contain it.
    pub(super) fn owner_of(&self, net: &IpNet) -> Option<&str> {
        let mut best: Option<(&str, i32)> = None;
        for (name, p) in &self.pools {
            let Ok(d) = &p.def else { continue };
            let inside = d
                .prefixes
                .iter()
                .chain(p.retired.iter())
                .any(|x| x.contains(net));
            if inside && best.is_none_or(|(_, pr)| d.priority > pr) {
                best = Some((name, d.priority));
            }
        }
        best.map(|(n, _)| n)
    }

    pub fn pool_names(&self) -> Vec<String> {
        self.pools.keys().cloned().collect()
    }

    /// The UID of the pool object held under `name`.
    pub fn pool_uid(&self, name: &str) -> Option<String> {
        self.pools.get(name).map(|p| p.rev.uid.clone())
    }

    /// Why pool `name` serves nothing, if it does not.
    pub fn pool_error(&self, name: &str) -> Option<&str> {
        self.pools
            .get(name)?
            .def
            .as_ref()
            .err()
            .map(|e| e.0.as_str())
    }
}
