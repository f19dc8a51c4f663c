//! The cluster picture: which Node holds which prefix, the free space of every
//! pool, reservations in flight and conflicts. Pure and synchronous: the node
//! reconciler feeds it watch events, write answers and reads, and asks it what
//! to write; the status writer reads it. Nodes are the truth; everything here
//! can be rebuilt from them at any time.
//!
//! What the ledger holds for a Node only moves forward in the API server's
//! order (see [`order`]): a stale watch event, a late write answer or an old
//! read never takes a prefix away from a live Node.

mod conflicts;
mod holdback;
pub mod order;
mod pools;
mod view;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::SystemTime;

use ipnet::IpNet;

use crate::alloc::{Family, PoolSpace, cidr};
use crate::api::{Labels, PoolDefinition, SpecError};
pub use order::{Order, Revision, parse_resource_version};
pub use view::{ConflictView, PoolView, PrefixView};

/// What the ledger needs to know of a Node.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeSnapshot {
    pub name: String,
    pub uid: String,
    /// `metadata.resourceVersion` as the API server's order (None: not
    /// comparable).
    pub resource_version: Option<u64>,
    pub labels: Labels,
    /// `spec.podCIDRs` (or `spec.podCIDR` when the list is empty), as written.
    pub pod_cidrs: Vec<String>,
    /// The Node has a deletion timestamp. Its prefix stays held until the
    /// object is gone (see kubernetes#127792).
    pub deleting: bool,
    /// Families of the Node's InternalIP addresses (next hops for routes).
    pub address_families: Vec<Family>,
}

impl NodeSnapshot {
    fn revision(&self) -> Revision {
        Revision {
            uid: self.uid.clone(),
            rv: self.resource_version,
        }
    }
}

/// A held-back prefix as recorded in a pool's status.
#[derive(Clone, Debug, PartialEq)]
pub struct HeldBackRecord {
    pub prefix: String,
    pub node: String,
    pub retained_until: Option<SystemTime>,
    pub reusable_at: SystemTime,
}

/// What the ledger needs to know of a PrefixPool.
#[derive(Clone, Debug)]
pub struct PoolSnapshot {
    pub name: String,
    pub uid: String,
    pub resource_version: Option<u64>,
    pub generation: i64,
    /// The spec, validated at the edge (or why it cannot be served: an
    /// invalid spec, an object that does not decode).
    pub def: Result<PoolDefinition, SpecError>,
    /// Retired prefixes recorded in the last status, so that they survive a
    /// restart of the operator or a change of leader.
    pub retired: Vec<String>,
    /// Held-back prefixes recorded in the last status (same reason).
    pub held_back: Vec<HeldBackRecord>,
}

impl PoolSnapshot {
    fn revision(&self) -> Revision {
        Revision {
            uid: self.uid.clone(),
            rv: self.resource_version,
        }
    }
}

/// A prefix of a deleted Node kept back from reuse.
#[derive(Clone, Debug, PartialEq)]
pub struct HoldBack {
    pub node: String,
    pub pool: String,
    /// Until then a Node of the same name gets it back.
    pub retained_until: Option<SystemTime>,
    /// From then on it is free.
    pub reusable_at: SystemTime,
}

#[derive(Debug)]
struct NodeEntry {
    rev: Revision,
    labels: Labels,
    cidrs: Vec<IpNet>,
    /// podCIDRs text that is not a CIDR (someone else wrote it).
    garbage: Vec<String>,
    deleting: bool,
    address_families: Vec<Family>,
}

impl NodeEntry {
    fn from_snapshot(n: &NodeSnapshot) -> Self {
        let (cidrs, garbage) = parse_node_cidrs(&n.pod_cidrs);
        NodeEntry {
            rev: n.revision(),
            labels: n.labels.clone(),
            cidrs,
            garbage,
            deleting: n.deleting,
            address_families: n.address_families.clone(),
        }
    }

    fn has_prefixes(&self) -> bool {
        !self.cidrs.is_empty() || !self.garbage.is_empty()
    }

    /// Everything a pool's status or an allocation decision reads.
    fn same_picture(&self, o: &NodeEntry) -> bool {
        self.rev.uid == o.rev.uid
            && self.labels == o.labels
            && self.cidrs == o.cidrs
            && self.garbage == o.garbage
            && self.deleting == o.deleting
            && self.address_families == o.address_families
    }
}

#[derive(Debug)]
struct PoolEntry {
    uid: String,
    resource_version: Option<u64>,
    generation: i64,
    def: Result<PoolDefinition, SpecError>,
    space: Option<PoolSpace>,
    /// Prefixes removed from spec while Nodes still held prefixes inside them.
    retired: BTreeSet<IpNet>,
}

impl PoolEntry {
    fn revision(&self) -> Revision {
        Revision {
            uid: self.uid.clone(),
            rv: self.resource_version,
        }
    }
}

/// Why a Node gets nothing now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wait {
    /// No valid pool selects the Node.
    NoPool,
    /// Every selecting pool of `family` is full; nothing was written for any
    /// family, because podCIDRs is write-once.
    Exhausted { family: Family, pools: Vec<String> },
}

/// The answer to "what should this Node get?".
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Write these prefixes (already reserved), in this order, in one PATCH.
    Allocate(Vec<(String, IpNet)>),
    Wait(Wait),
    /// Nothing to do: the Node has podCIDRs, is being deleted, is unknown or
    /// has a write in flight.
    Nothing,
}

/// What applying a Node's state did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeChange {
    /// The state was older than what the ledger holds and was ignored.
    pub stale: bool,
    /// Something a pool status or an allocation reads changed (heartbeats
    /// change nothing of that).
    pub changed: bool,
}

type HeldKey = (Family, u128, u8);

/// The cluster picture.
#[derive(Default, Debug)]
pub struct Ledger {
    nodes: HashMap<String, NodeEntry>,
    /// Nodes known deleted, so that late states of them are ignored.
    tombstones: order::Tombstones,
    /// `resourceVersion` of the latest complete Node list merged.
    list_floor: Option<u64>,
    pools: BTreeMap<String, PoolEntry>,
    /// Pools known deleted (the same rule as for Nodes).
    pool_tombstones: order::Tombstones,
    /// `resourceVersion` of the latest complete pool list merged.
    pool_floor: Option<u64>,
    /// Every prefix a Node holds, by (family, first address, length).
    held: BTreeMap<HeldKey, BTreeSet<String>>,
    /// Prefixes reserved for a write in flight, by Node.
    reservations: HashMap<String, Vec<IpNet>>,
    /// Nodes in conflict and why.
    conflicts: HashMap<String, Vec<String>>,
    /// Nodes last told to wait on full pools: the ones to wake when space
    /// frees. The counts in the status are computed from state instead.
    waiting: HashMap<String, Vec<String>>,
    /// Prefixes of deleted Nodes kept back (sticky prefixes, reuse delay).
    hold_backs: BTreeMap<IpNet, HoldBack>,
    /// The same, ordered by the time each becomes free.
    release_order: BTreeSet<(SystemTime, IpNet)>,
    /// The clock, set by [`Ledger::set_time`]; the ledger reads no clock.
    now: Option<SystemTime>,
}

fn key(net: &IpNet) -> HeldKey {
    (Family::of(net), cidr::range(net).0, net.prefix_len())
}

fn parse_node_cidrs(raw: &[String]) -> (Vec<IpNet>, Vec<String>) {
    let mut ok = vec![];
    let mut bad = vec![];
    for s in raw {
        match cidr::parse_lenient(s) {
            Ok(n) => ok.push(n),
            Err(_) => bad.push(s.clone()),
        }
    }
    (ok, bad)
}

impl Ledger {
    pub fn new() -> Self {
        Self::default()
    }

    // ----- Nodes -----

    /// Applies a state of a Node — from a watch event, a write's answer or a
    /// read — unless the ledger already holds a later one (see [`order`]).
    pub fn upsert_node(&mut self, n: &NodeSnapshot) -> NodeChange {
        let rev = n.revision();
        let held = self.nodes.get(&n.name).map(|e| &e.rev);
        match order::order(held, self.tombstones.get(&n.name), self.list_floor, &rev) {
            Order::Stale => NodeChange {
                stale: true,
                changed: false,
            },
            Order::Newer => self.update_node(n),
            Order::Replaces => {
                // The held object was deleted before this one was created.
                self.remove_held_node(&n.name);
                self.insert_node(n);
                NodeChange {
                    stale: false,
                    changed: true,
                }
            }
            Order::New => {
                self.insert_node(n);
                NodeChange {
                    stale: false,
                    changed: true,
                }
            }
        }
    }

    /// A later state of the same object.
    fn update_node(&mut self, n: &NodeSnapshot) -> NodeChange {
        let mut next = NodeEntry::from_snapshot(n);
        let Some(e) = self.nodes.get_mut(&n.name) else {
            self.insert_node(n);
            return NodeChange {
                stale: false,
                changed: true,
            };
        };
        if e.has_prefixes() && !next.has_prefixes() {
            // podCIDRs is write-once: an empty value after a set one can only
            // come from an unordered stale state. Keep the prefixes.
            next.cidrs = e.cidrs.clone();
            next.garbage = e.garbage.clone();
        }
        let changed = !e.same_picture(&next);
        if e.cidrs == next.cidrs {
            *e = next;
            if e.has_prefixes() || e.deleting {
                self.waiting.remove(&n.name);
            }
            return NodeChange {
                stale: false,
                changed,
            };
        }
        // The prefixes changed (first written, or by another writer).
        let old = std::mem::replace(e, next);
        for c in &old.cidrs {
            self.unhold(&n.name, c);
        }
        self.index_node_prefixes(&n.name);
        NodeChange {
            stale: false,
            changed,
        }
    }

    fn insert_node(&mut self, n: &NodeSnapshot) {
        self.nodes
            .insert(n.name.clone(), NodeEntry::from_snapshot(n));
        self.index_node_prefixes(&n.name);
    }

    /// Holds the prefixes of Node `name` everywhere and refreshes conflicts.
    fn index_node_prefixes(&mut self, name: &str) {
        let Some(e) = self.nodes.get(name) else {
            return;
        };
        let cidrs = e.cidrs.clone();
        if e.has_prefixes() || e.deleting {
            self.waiting.remove(name);
        }
        for c in &cidrs {
            self.hold(name, c);
        }
        self.refresh_conflict(name);
        for c in &cidrs {
            for o in self.holders_overlapping(c) {
                if o != name {
                    self.refresh_conflict(&o);
                }
            }
        }
    }

    /// A watch event says the object `uid` of `name` is gone (at `rv`).
    /// Returns the pools its prefixes belonged to.
    pub fn remove_node(&mut self, name: &str, uid: &str, rv: Option<u64>) -> Vec<String> {
        let dead = Revision {
            uid: uid.to_string(),
            rv,
        };
        let held_uid = self.nodes.get(name).map(|e| e.rev.uid.clone());
        let owners = match held_uid {
            // Only the object that died: a later one under the name stays.
            Some(u) if u == uid => self.remove_held_node(name),
            _ => vec![],
        };
        self.tombstones.bury(name, dead);
        owners
    }

    /// Forgets the held object of `name` as deleted, freeing its prefixes
    /// (or holding them back). Returns the pools they belonged to.
    fn remove_held_node(&mut self, name: &str) -> Vec<String> {
        self.waiting.remove(name);
        let Some(old) = self.nodes.remove(name) else {
            return vec![];
        };
        self.tombstones.bury(name, old.rev.clone());
        let owners: Vec<String> = old
            .cidrs
            .iter()
            .filter_map(|c| self.owner_of(c).map(str::to_string))
            .collect();
        self.conflicts.remove(name);
        for c in &old.cidrs {
            if self.hold_back(name, c) {
                self.mark_everywhere(c);
            }
            self.unhold(name, c);
            for o in self.holders_overlapping(c) {
                self.refresh_conflict(&o);
            }
        }
        self.prune_all_retired();
        owners
    }

    /// A read of `name` found no object: the held one, if it is still
    /// `uid`, is gone. (A later object may already be held: it stays.)
    pub fn remove_node_if_uid(&mut self, name: &str, uid: &str) -> Vec<String> {
        match self.nodes.get(name) {
            Some(e) if e.rev.uid == uid => self.remove_held_node(name),
            _ => vec![],
        }
    }

    /// Merges a consistent list of every Node (after a list or re-list) into
    /// the picture. Each listed Node's state is merged by the API server's
    /// order, so states the ledger learned after the list was taken (our own
    /// writes landing while it was read) are kept. A held Node missing from
    /// the list was deleted — unless its state may be later than the list:
    /// with the list's `resourceVersion` known (`list_rv`), one later than
    /// it is kept (the watch brings its fate); without it, one later than
    /// every listed Node (or any, when the list is empty) is kept and
    /// returned, to be read back. Reservations in flight stay.
    pub fn replace_nodes(&mut self, nodes: &[NodeSnapshot], list_rv: Option<u64>) -> Vec<String> {
        if let (Some(r), Some(floor)) = (list_rv, self.list_floor)
            && r < floor
        {
            // Older than a list already merged: everything in it is known.
            return vec![];
        }
        let latest_listed = nodes.iter().filter_map(|n| n.resource_version).max();
        let listed: HashSet<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
        let mut to_verify = vec![];
        let mut vanished = vec![];
        for (name, e) in &self.nodes {
            if listed.contains(name.as_str()) {
                continue;
            }
            match (e.rev.rv, list_rv, latest_listed) {
                (Some(rv), Some(r), _) if rv > r => {}
                (Some(rv), None, Some(latest)) if rv > latest => to_verify.push(name.clone()),
                (Some(_), None, None) => to_verify.push(name.clone()),
                _ => vanished.push(name.clone()),
            }
        }
        for name in vanished {
            // Deleted while the watch was down.
            self.remove_held_node(&name);
        }
        let mut next: HashMap<String, NodeEntry> = HashMap::with_capacity(nodes.len());
        for n in nodes {
            let held = self.nodes.remove(&n.name);
            let ord = order::order(
                held.as_ref().map(|e| &e.rev),
                self.tombstones.get(&n.name),
                self.list_floor,
                &n.revision(),
            );
            let entry = match (ord, held) {
                (Order::Stale, Some(h)) => h,
                (Order::Stale, None) => continue,
                (Order::Newer, Some(h)) => {
                    let mut e = NodeEntry::from_snapshot(n);
                    if h.has_prefixes() && !e.has_prefixes() {
                        e.cidrs = h.cidrs;
                        e.garbage = h.garbage;
                    }
                    e
                }
                (Order::Replaces, Some(h)) => {
                    self.tombstones.bury(&n.name, h.rev.clone());
                    NodeEntry::from_snapshot(n)
                }
                _ => NodeEntry::from_snapshot(n),
            };
            next.insert(n.name.clone(), entry);
        }
        // Kept unlisted Nodes (to be read back) stay as they are.
        next.extend(self.nodes.drain());
        self.nodes = next;
        if list_rv.is_some() {
            self.list_floor = list_rv.max(self.list_floor);
        }
        self.reindex_nodes();
        to_verify
    }

    /// Rebuilds the held-prefix index, every pool's space and the conflicts
    /// from the Nodes.
    fn reindex_nodes(&mut self) {
        self.held.clear();
        self.waiting.clear();
        for (name, e) in &self.nodes {
            for c in &e.cidrs {
                self.held.entry(key(c)).or_default().insert(name.clone());
            }
        }
        // A live Node holding a held-back prefix again ends the hold-back.
        let reheld: Vec<IpNet> = self
            .hold_backs
            .keys()
            .filter(|n| self.held.contains_key(&key(n)))
            .copied()
            .collect();
        for n in reheld {
            self.remove_hold_back(&n);
        }
        self.rebuild_spaces();
        self.refresh_all_conflicts();
        self.prune_all_retired();
    }

    fn hold(&mut self, node: &str, c: &IpNet) {
        self.held
            .entry(key(c))
            .or_default()
            .insert(node.to_string());
        // A live Node holds it again: the hold-back has done its job.
        if self.remove_hold_back(c).is_some() {
            self.unmark_everywhere(c);
        }
        self.mark_everywhere(c);
    }

    fn unhold(&mut self, node: &str, c: &IpNet) {
        let k = key(c);
        if let Some(set) = self.held.get_mut(&k) {
            set.remove(node);
            if set.is_empty() {
                self.held.remove(&k);
            }
        }
        self.unmark_everywhere(c);
    }

    // ----- Allocation -----

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
    fn pick(&self, node: &str, fam: Family, cands: &[&str]) -> Option<(String, IpNet)> {
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

    /// Nodes that have no prefix, are not being deleted and have no write in
    /// flight: candidates for [`Ledger::plan`].
    pub fn unallocated_nodes(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|(n, e)| {
                !e.has_prefixes() && !e.deleting && !self.reservations.contains_key(*n)
            })
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// Nodes last told to wait on full pools (to wake when space frees).
    pub fn waiting_nodes(&self) -> Vec<String> {
        let mut v: Vec<String> = self.waiting.keys().cloned().collect();
        v.sort();
        v
    }

    /// Whether the Node holds prefixes (None: unknown Node).
    pub fn node_has_prefixes(&self, name: &str) -> Option<bool> {
        self.nodes.get(name).map(NodeEntry::has_prefixes)
    }

    pub fn node_uid(&self, name: &str) -> Option<String> {
        self.nodes.get(name).map(|e| e.rev.uid.clone())
    }

    /// The prefixes the ledger holds for `name` (empty when unknown).
    pub fn node_prefixes(&self, name: &str) -> Vec<IpNet> {
        self.nodes
            .get(name)
            .map(|e| e.cidrs.clone())
            .unwrap_or_default()
    }

    /// Whether `net` could be handed out: some pool covers it and in every
    /// pool that does it is free (not held, reserved, held back or in a
    /// reservation).
    pub fn is_free(&self, net: &IpNet) -> bool {
        let mut covering = self
            .pools
            .values()
            .filter_map(|p| p.space.as_ref())
            .filter(|s| s.overlaps(net))
            .peekable();
        covering.peek().is_some() && covering.all(|s| s.is_free(net))
    }
}
