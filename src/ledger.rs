//! The cluster picture: which Node holds which prefix, the free space of every
//! pool, reservations in flight and conflicts. Pure and synchronous: the node
//! reconciler feeds it watch events and asks it what to write; the status
//! writer reads it. Nodes are the truth; everything here can be rebuilt from
//! them at any time.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use ipnet::IpNet;
use kube::core::SelectorExt;

use crate::alloc::{Family, PoolSpace, cidr};
use crate::api::{Labels, PoolDefinition, PrefixPoolSpec, SpecError, validate_spec};

/// What the ledger needs to know of a Node.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeSnapshot {
    pub name: String,
    pub uid: String,
    pub labels: Labels,
    /// `spec.podCIDRs` (or `spec.podCIDR` when the list is empty), as written.
    pub pod_cidrs: Vec<String>,
    /// The Node has a deletion timestamp. Its prefix stays held until the
    /// object is gone (see kubernetes#127792).
    pub deleting: bool,
}

/// What the ledger needs to know of a PrefixPool.
#[derive(Clone, Debug, PartialEq)]
pub struct PoolSnapshot {
    pub name: String,
    pub generation: i64,
    pub spec: PrefixPoolSpec,
    /// Retired prefixes recorded in the last status, so that they survive a
    /// restart of the operator.
    pub retired: Vec<String>,
}

#[derive(Debug)]
struct NodeEntry {
    uid: String,
    labels: Labels,
    cidrs: Vec<IpNet>,
    /// podCIDRs text that is not a CIDR (someone else wrote it).
    garbage: Vec<String>,
    deleting: bool,
}

#[derive(Debug)]
struct PoolEntry {
    generation: i64,
    def: Result<PoolDefinition, SpecError>,
    space: Option<PoolSpace>,
    /// Prefixes removed from spec while Nodes still held prefixes inside them.
    retired: BTreeSet<IpNet>,
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

/// A view of one pool for its status.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PoolView {
    pub generation: i64,
    pub error: Option<String>,
    pub family: Option<Family>,
    pub scope: Option<String>,
    pub node_prefix_length: Option<u8>,
    pub capacity: u128,
    pub available: u128,
    /// (prefix, node), sorted by prefix.
    pub allocations: Vec<(IpNet, String)>,
    /// (prefix, capacity, allocated, retired).
    pub prefixes: Vec<(IpNet, u128, u64, bool)>,
    /// (prefix as written, node, reason).
    pub conflicts: Vec<(String, String, String)>,
    /// Other pools whose prefixes overlap this pool's.
    pub overlapping_pools: Vec<String>,
    /// Nodes waiting for this pool to have space.
    pub waiting: u64,
}

type HeldKey = (Family, u128, u8);

/// The cluster picture.
#[derive(Default, Debug)]
pub struct Ledger {
    nodes: HashMap<String, NodeEntry>,
    pools: BTreeMap<String, PoolEntry>,
    /// Every prefix a Node holds, by (family, first address, length).
    held: BTreeMap<HeldKey, BTreeSet<String>>,
    /// Prefixes reserved for a write in flight, by Node.
    reservations: HashMap<String, Vec<IpNet>>,
    /// Nodes in conflict and why.
    conflicts: HashMap<String, Vec<String>>,
    /// Nodes waiting on full pools.
    waiting: HashMap<String, Vec<String>>,
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

    /// Adds or updates a Node from a watch event or a write's response.
    pub fn upsert_node(&mut self, n: &NodeSnapshot) {
        let (cidrs, garbage) = parse_node_cidrs(&n.pod_cidrs);
        if let Some(old) = self.nodes.get(&n.name)
            && old.uid == n.uid
            && old.cidrs == cidrs
        {
            let e = self.nodes.get_mut(&n.name).expect("checked above");
            e.labels = n.labels.clone();
            e.deleting = n.deleting;
            e.garbage = garbage;
            if !e.cidrs.is_empty() || e.deleting {
                self.waiting.remove(&n.name);
            }
            return;
        }
        self.remove_node(&n.name);
        for c in &cidrs {
            self.hold(&n.name, c);
        }
        if !cidrs.is_empty() || n.deleting {
            self.waiting.remove(&n.name);
        }
        self.nodes.insert(
            n.name.clone(),
            NodeEntry {
                uid: n.uid.clone(),
                labels: n.labels.clone(),
                cidrs: cidrs.clone(),
                garbage,
                deleting: n.deleting,
            },
        );
        for c in &cidrs {
            self.refresh_conflict(&n.name);
            let others = self.holders_overlapping(c);
            for o in others {
                if o != n.name {
                    self.refresh_conflict(&o);
                }
            }
        }
    }

    /// Forgets a Node whose object is gone, freeing its prefixes.
    pub fn remove_node(&mut self, name: &str) {
        self.waiting.remove(name);
        let Some(old) = self.nodes.remove(name) else {
            return;
        };
        self.conflicts.remove(name);
        for c in &old.cidrs {
            self.unhold(name, c);
            for o in self.holders_overlapping(c) {
                self.refresh_conflict(&o);
            }
        }
    }

    /// Replaces every Node at once (after a list or re-list). Reservations in
    /// flight stay marked.
    pub fn replace_nodes(&mut self, nodes: &[NodeSnapshot]) {
        self.nodes.clear();
        self.held.clear();
        self.conflicts.clear();
        self.waiting.clear();
        for p in self.pools.values_mut() {
            p.space = None;
        }
        for n in nodes {
            let (cidrs, garbage) = parse_node_cidrs(&n.pod_cidrs);
            for c in &cidrs {
                self.held
                    .entry(key(c))
                    .or_default()
                    .insert(n.name.clone());
            }
            self.nodes.insert(
                n.name.clone(),
                NodeEntry {
                    uid: n.uid.clone(),
                    labels: n.labels.clone(),
                    cidrs,
                    garbage,
                    deleting: n.deleting,
                },
            );
        }
        self.rebuild_spaces();
        self.refresh_all_conflicts();
    }

    fn hold(&mut self, node: &str, c: &IpNet) {
        self.held.entry(key(c)).or_default().insert(node.to_string());
        for p in self.pools.values_mut() {
            if let Some(s) = p.space.as_mut()
                && s.overlaps(c)
            {
                s.mark(c);
            }
        }
    }

    fn unhold(&mut self, node: &str, c: &IpNet) {
        let k = key(c);
        if let Some(set) = self.held.get_mut(&k) {
            set.remove(node);
            if set.is_empty() {
                self.held.remove(&k);
            }
        }
        for p in self.pools.values_mut() {
            if let Some(s) = p.space.as_mut() {
                s.unmark(c);
            }
        }
    }

    /// Names of Nodes holding a prefix that overlaps `net`.
    fn holders_overlapping(&self, net: &IpNet) -> BTreeSet<String> {
        let (fam, start, len) = key(net);
        let (_, end) = cidr::range(net);
        let mut out = BTreeSet::new();
        // Equal or smaller prefixes start inside [start, end].
        for (_, names) in self.held.range((fam, start, 0)..=(fam, end, u8::MAX)) {
            out.extend(names.iter().cloned());
        }
        // Larger prefixes contain `start`; one lookup per shorter length.
        for l in 0..len {
            let sup = cidr::net_from(fam, start, l);
            if let Some(names) = self.held.get(&key(&sup)) {
                out.extend(names.iter().cloned());
            }
        }
        out
    }

    fn refresh_conflict(&mut self, node: &str) {
        let Some(e) = self.nodes.get(node) else {
            self.conflicts.remove(node);
            return;
        };
        let mut reasons = vec![];
        for c in &e.cidrs {
            for o in self.holders_overlapping(c) {
                if o != node {
                    let theirs = self
                        .nodes
                        .get(&o)
                        .and_then(|oe| oe.cidrs.iter().find(|x| cidr::overlaps(x, c)))
                        .map(|x| x.to_string())
                        .unwrap_or_default();
                    reasons.push(format!("{c} overlaps {theirs} of Node {o}"));
                }
            }
            for (pname, p) in &self.pools {
                if let Ok(def) = &p.def {
                    for r in &def.reserved {
                        if cidr::overlaps(r, c) {
                            reasons.push(format!("{c} overlaps reserved range {r} of PrefixPool {pname}"));
                        }
                    }
                }
            }
        }
        if reasons.is_empty() {
            self.conflicts.remove(node);
        } else {
            self.conflicts.insert(node.to_string(), reasons);
        }
    }

    fn refresh_all_conflicts(&mut self) {
        self.conflicts.clear();
        let names: Vec<String> = self.nodes.keys().cloned().collect();
        for n in names {
            self.refresh_conflict(&n);
        }
    }

    // ----- Pools -----

    /// Adds or updates a pool.
    pub fn upsert_pool(&mut self, p: &PoolSnapshot) {
        let def = validate_spec(&p.spec);
        let mut retired: BTreeSet<IpNet> = self
            .pools
            .get(&p.name)
            .map(|old| {
                let mut r = old.retired.clone();
                if let Ok(d) = &old.def {
                    r.extend(d.prefixes.iter().copied());
                }
                r
            })
            .unwrap_or_default();
        retired.extend(p.retired.iter().filter_map(|s| cidr::parse_lenient(s).ok()));
        if let Ok(d) = &def {
            retired.retain(|r| !d.prefixes.contains(r));
        }
        let mut entry = PoolEntry {
            generation: p.generation,
            def,
            space: None,
            retired,
        };
        self.prune_retired(&mut entry);
        self.pools.insert(p.name.clone(), entry);
        self.rebuild_spaces();
        self.refresh_all_conflicts();
    }

    /// Forgets a pool. Its Nodes keep their prefixes; a pool re-created with
    /// the same prefixes adopts them again.
    pub fn remove_pool(&mut self, name: &str) {
        if self.pools.remove(name).is_some() {
            self.rebuild_spaces();
            self.refresh_all_conflicts();
        }
    }

    /// Retired prefixes stay only while some Node holds space inside them.
    fn prune_retired(&self, p: &mut PoolEntry) {
        p.retired
            .retain(|r| self.held_inside(r).next().is_some());
    }

    fn held_inside<'a>(&'a self, net: &IpNet) -> impl Iterator<Item = (IpNet, &'a String)> + 'a {
        let (fam, start, _) = key(net);
        let (_, end) = cidr::range(net);
        let len = net.prefix_len();
        self.held
            .range((fam, start, 0)..=(fam, end, u8::MAX))
            .filter(move |((_, _, l), _)| *l >= len)
            .flat_map(move |(&(f, s, l), names)| {
                let n = cidr::net_from(f, s, l);
                names.iter().map(move |name| (n, name))
            })
    }

    /// Rebuilds every pool's free space from the definitions, the Nodes,
    /// the reserved ranges of every pool and the reservations in flight.
    fn rebuild_spaces(&mut self) {
        let all_reserved: Vec<IpNet> = self
            .pools
            .values()
            .filter_map(|p| p.def.as_ref().ok())
            .flat_map(|d| d.reserved.iter().copied())
            .collect();
        let in_flight: Vec<IpNet> = self.reservations.values().flatten().copied().collect();
        let held: Vec<IpNet> = self
            .held
            .keys()
            .map(|&(f, s, l)| cidr::net_from(f, s, l))
            .collect();
        let held_counts: Vec<usize> = self.held.values().map(BTreeSet::len).collect();
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
            for (h, count) in held.iter().zip(&held_counts) {
                if s.overlaps(h) {
                    for _ in 0..*count {
                        s.mark(h);
                    }
                }
            }
        }
    }

    // ----- Allocation -----

    /// Valid pools of `family` that select `labels`, best first.
    fn candidates(&self, family: Family, labels: &Labels) -> Vec<&str> {
        let mut v: Vec<(&str, i32)> = self
            .pools
            .iter()
            .filter_map(|(name, p)| {
                let d = p.def.as_ref().ok()?;
                p.space.as_ref()?;
                (d.family == family && d.selector.matches(labels)).then_some((name.as_str(), d.priority))
            })
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        v.into_iter().map(|(n, _)| n).collect()
    }

    /// Decides what `node` gets and, when it gets something, reserves it.
    /// The caller must then write it and call [`Ledger::commit`] or
    /// [`Ledger::release`].
    pub fn plan(&mut self, node: &str, primary: Family) -> Plan {
        let Some(e) = self.nodes.get(node) else {
            return Plan::Nothing;
        };
        if e.deleting
            || !e.cidrs.is_empty()
            || !e.garbage.is_empty()
            || self.reservations.contains_key(node)
        {
            return Plan::Nothing;
        }
        let labels = e.labels.clone();
        let secondary = match primary {
            Family::V6 => Family::V4,
            Family::V4 => Family::V6,
        };
        let mut picks: Vec<(String, IpNet)> = vec![];
        let mut any_candidate = false;
        for fam in [primary, secondary] {
            let cands = self.candidates(fam, &labels);
            if cands.is_empty() {
                continue;
            }
            any_candidate = true;
            let found = cands.iter().find_map(|name| {
                let s = self.pools.get(*name)?.space.as_ref()?;
                s.first_free().map(|n| (name.to_string(), n))
            });
            match found {
                Some(p) => picks.push(p),
                None => {
                    let pools: Vec<String> = cands.iter().map(|s| s.to_string()).collect();
                    self.waiting.insert(node.to_string(), pools.clone());
                    return Plan::Wait(Wait::Exhausted {
                        family: fam,
                        pools,
                    });
                }
            }
        }
        if !any_candidate {
            self.waiting.remove(node);
            return Plan::Wait(Wait::NoPool);
        }
        self.waiting.remove(node);
        let nets: Vec<IpNet> = picks.iter().map(|(_, n)| *n).collect();
        for n in &nets {
            self.mark_everywhere(n);
        }
        self.reservations.insert(node.to_string(), nets);
        Plan::Allocate(picks)
    }

    fn mark_everywhere(&mut self, n: &IpNet) {
        for p in self.pools.values_mut() {
            if let Some(s) = p.space.as_mut()
                && s.overlaps(n)
            {
                s.mark(n);
            }
        }
    }

    fn unmark_everywhere(&mut self, n: &IpNet) {
        for p in self.pools.values_mut() {
            if let Some(s) = p.space.as_mut() {
                s.unmark(n);
            }
        }
    }

    /// The write for `node` succeeded and the server returned `written`.
    /// The Node is updated only if it is still the same object (it may have
    /// been deleted meanwhile); the reservation is dropped afterwards so its
    /// space is never free in between.
    pub fn commit(&mut self, written: &NodeSnapshot) {
        if self
            .nodes
            .get(&written.name)
            .is_some_and(|e| e.uid == written.uid)
        {
            self.upsert_node(written);
        }
        self.release(&written.name);
    }

    /// Drops the reservation of `node` (after its write failed or landed).
    pub fn release(&mut self, node: &str) {
        if let Some(nets) = self.reservations.remove(node) {
            for n in &nets {
                self.unmark_everywhere(n);
            }
        }
    }

    /// Nodes that have no prefix, are not being deleted and have no write in
    /// flight: candidates for [`Ledger::plan`].
    pub fn unallocated_nodes(&self) -> Vec<String> {
        self.nodes
            .iter()
            .filter(|(n, e)| {
                e.cidrs.is_empty()
                    && e.garbage.is_empty()
                    && !e.deleting
                    && !self.reservations.contains_key(*n)
            })
            .map(|(n, _)| n.clone())
            .collect()
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    pub fn node_uid(&self, name: &str) -> Option<String> {
        self.nodes.get(name).map(|e| e.uid.clone())
    }

    pub fn has_node(&self, name: &str) -> bool {
        self.nodes.contains_key(name)
    }

    pub fn pool_names(&self) -> Vec<String> {
        self.pools.keys().cloned().collect()
    }

    /// Nodes in conflict, sorted.
    pub fn conflicted_nodes(&self) -> Vec<String> {
        let mut v: Vec<String> = self.conflicts.keys().cloned().collect();
        v.sort();
        v
    }

    /// Conflict reasons of a Node, if any.
    pub fn conflict_of(&self, node: &str) -> Option<&[String]> {
        self.conflicts.get(node).map(Vec::as_slice)
    }

    /// The pool that owns `net`: the best valid pool whose current or
    /// retired prefixes contain it.
    fn owner_of(&self, net: &IpNet) -> Option<&str> {
        let mut best: Option<(&str, i32)> = None;
        for (name, p) in &self.pools {
            let Ok(d) = &p.def else { continue };
            let inside = d.prefixes.iter().chain(p.retired.iter()).any(|x| x.contains(net));
            if inside && best.is_none_or(|(_, pr)| d.priority > pr) {
                best = Some((name, d.priority));
            }
        }
        best.map(|(n, _)| n)
    }

    /// Everything the status of pool `name` shows.
    pub fn pool_view(&self, name: &str) -> Option<PoolView> {
        let p = self.pools.get(name)?;
        let mut v = PoolView {
            generation: p.generation,
            ..Default::default()
        };
        let d = match &p.def {
            Ok(d) => d,
            Err(e) => {
                v.error = Some(e.0.clone());
                return Some(v);
            }
        };
        v.family = Some(d.family);
        v.node_prefix_length = Some(d.node_prefix_length);
        let scopes: BTreeSet<String> = d.prefixes.iter().map(|x| cidr::scope(x).to_string()).collect();
        v.scope = Some(if scopes.len() == 1 {
            scopes.into_iter().next().unwrap_or_default()
        } else {
            "Mixed".into()
        });
        if let Some(s) = &p.space {
            v.capacity = s.capacity();
            v.available = s.available();
        }
        let mut all_prefixes: Vec<(IpNet, bool)> =
            d.prefixes.iter().map(|x| (*x, false)).collect();
        all_prefixes.extend(p.retired.iter().map(|x| (*x, true)));
        for (px, retired) in all_prefixes {
            let mut count = 0u64;
            for (net, node) in self.held_inside(&px) {
                if self.owner_of(&net) == Some(name) {
                    count += 1;
                    v.allocations.push((net, node.clone()));
                    if let Some(reasons) = self.conflicts.get(node) {
                        for r in reasons {
                            v.conflicts.push((net.to_string(), node.clone(), r.clone()));
                        }
                    }
                }
            }
            let cap = if retired {
                0
            } else {
                let slots = d.node_prefix_length.saturating_sub(px.prefix_len());
                1u128 << slots
            };
            v.prefixes.push((px, cap, count, retired));
        }
        // Conflicting Nodes whose prefix overlaps the pool without fitting in it
        // (for example a /56 written into a /64 pool from outside).
        for (node, reasons) in &self.conflicts {
            if let Some(e) = self.nodes.get(node) {
                for c in &e.cidrs {
                    let overlapping = d.prefixes.iter().any(|x| cidr::overlaps(x, c));
                    let contained = d.prefixes.iter().any(|x| x.contains(c));
                    if overlapping && !contained {
                        for r in reasons {
                            v.conflicts.push((c.to_string(), node.clone(), r.clone()));
                        }
                    }
                }
            }
        }
        v.allocations.sort();
        v.conflicts.sort();
        v.conflicts.dedup();
        for (other, op) in &self.pools {
            if other == name {
                continue;
            }
            if let Ok(od) = &op.def
                && od
                    .prefixes
                    .iter()
                    .any(|a| d.prefixes.iter().any(|b| cidr::overlaps(a, b)))
            {
                v.overlapping_pools.push(other.clone());
            }
        }
        v.waiting = self
            .waiting
            .values()
            .filter(|pools| pools.iter().any(|x| x == name))
            .count() as u64;
        Some(v)
    }

    /// Pools whose status may show something about `node`'s prefixes.
    pub fn pools_touching_node(&self, node: &str) -> Vec<String> {
        let Some(e) = self.nodes.get(node) else {
            return vec![];
        };
        self.pools
            .iter()
            .filter(|(_, p)| match &p.def {
                Ok(d) => {
                    d.selector.matches(&e.labels)
                        || e.cidrs.iter().any(|c| {
                            d.prefixes
                                .iter()
                                .chain(p.retired.iter())
                                .any(|x| cidr::overlaps(x, c))
                        })
                }
                Err(_) => false,
            })
            .map(|(n, _)| n.clone())
            .collect()
    }
}
