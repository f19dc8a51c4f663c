//! The cluster picture: which Node holds which prefix, the free space of every
//! pool, reservations in flight and conflicts. Pure and synchronous: the node
//! reconciler feeds it watch events and asks it what to write; the status
//! writer reads it. Nodes are the truth; everything here can be rebuilt from
//! them at any time.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::SystemTime;

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
    /// Families of the Node's InternalIP addresses (next hops for routes).
    pub address_families: Vec<Family>,
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
#[derive(Clone, Debug, PartialEq)]
pub struct PoolSnapshot {
    pub name: String,
    pub generation: i64,
    pub spec: PrefixPoolSpec,
    /// Retired prefixes recorded in the last status, so that they survive a
    /// restart of the operator.
    pub retired: Vec<String>,
    /// Held-back prefixes recorded in the last status (same reason).
    pub held_back: Vec<HeldBackRecord>,
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
    uid: String,
    labels: Labels,
    cidrs: Vec<IpNet>,
    /// podCIDRs text that is not a CIDR (someone else wrote it).
    garbage: Vec<String>,
    deleting: bool,
    address_families: Vec<Family>,
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
    /// Held-back prefixes of this pool, sorted by prefix.
    pub held_back: Vec<(IpNet, HoldBack)>,
    /// Held-back prefixes still retained for a Node of the same name.
    pub retained: u64,
    /// Allocated Nodes without an InternalIP of the pool's family.
    pub unroutable: u64,
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

    // ----- Time -----

    fn now(&self) -> SystemTime {
        self.now.unwrap_or(SystemTime::UNIX_EPOCH)
    }

    /// Advances the clock and frees held-back prefixes whose time has come.
    /// Returns true when space was freed.
    pub fn set_time(&mut self, now: SystemTime) -> bool {
        self.now = Some(now);
        let mut freed = false;
        while let Some(&(at, net)) = self.release_order.first() {
            if at > now {
                break;
            }
            self.remove_hold_back(&net);
            self.unmark_everywhere(&net);
            freed = true;
        }
        freed
    }

    fn insert_hold_back(&mut self, net: IpNet, hb: HoldBack) -> bool {
        let at = hb.reusable_at;
        let old = self.hold_backs.insert(net, hb);
        if let Some(o) = &old {
            self.release_order.remove(&(o.reusable_at, net));
        }
        self.release_order.insert((at, net));
        old.is_none()
    }

    fn remove_hold_back(&mut self, net: &IpNet) -> Option<HoldBack> {
        let hb = self.hold_backs.remove(net)?;
        self.release_order.remove(&(hb.reusable_at, *net));
        Some(hb)
    }

    /// The next moment a held-back prefix becomes free.
    pub fn next_release(&self) -> Option<SystemTime> {
        self.release_order.first().map(|(t, _)| *t)
    }

    /// Records `c` of the deleted Node `node` as held back when its pool asks
    /// for retention or a reuse delay. Returns true when a new record was made.
    fn hold_back(&mut self, node: &str, c: &IpNet) -> bool {
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
            retained_until: (!retain.is_zero()).then(|| now + retain),
            reusable_at: now + retain.max(reuse),
        };
        self.insert_hold_back(*c, hb)
    }

    /// Held-back prefixes, for tests and diagnostics.
    pub fn hold_backs(&self) -> &BTreeMap<IpNet, HoldBack> {
        &self.hold_backs
    }

    // ----- Nodes -----

    /// Adds or updates a Node from a watch event or a write's response.
    pub fn upsert_node(&mut self, n: &NodeSnapshot) {
        let (cidrs, garbage) = parse_node_cidrs(&n.pod_cidrs);
        if let Some(e) = self.nodes.get_mut(&n.name)
            && e.uid == n.uid
            && e.cidrs == cidrs
        {
            // Same object, same prefixes: only what selection and routes read.
            e.labels = n.labels.clone();
            e.deleting = n.deleting;
            e.garbage = garbage;
            e.address_families = n.address_families.clone();
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
                address_families: n.address_families.clone(),
            },
        );
        self.refresh_conflict(&n.name);
        for c in &cidrs {
            for o in self.holders_overlapping(c) {
                if o != n.name {
                    self.refresh_conflict(&o);
                }
            }
        }
    }

    /// Forgets a Node whose object is gone, freeing its prefixes. Returns
    /// the pools those prefixes belonged to.
    pub fn remove_node(&mut self, name: &str) -> Vec<String> {
        self.waiting.remove(name);
        let Some(old) = self.nodes.remove(name) else {
            return vec![];
        };
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

    fn prune_all_retired(&mut self) {
        if self.pools.values().all(|p| p.retired.is_empty()) {
            return;
        }
        let names: Vec<String> = self.pools.keys().cloned().collect();
        for n in names {
            if let Some(mut p) = self.pools.remove(&n) {
                self.prune_retired(&mut p);
                self.pools.insert(n, p);
            }
        }
    }

    /// Replaces every Node at once (after a list or re-list). Reservations in
    /// flight stay marked.
    pub fn replace_nodes(&mut self, nodes: &[NodeSnapshot]) {
        // Nodes that vanished while the watch was down were deleted meanwhile.
        let present: std::collections::HashSet<&str> =
            nodes.iter().map(|n| n.name.as_str()).collect();
        let vanished: Vec<(String, Vec<IpNet>)> = self
            .nodes
            .iter()
            .filter(|(n, _)| !present.contains(n.as_str()))
            .map(|(n, e)| (n.clone(), e.cidrs.clone()))
            .collect();
        for (n, cidrs) in vanished {
            for c in &cidrs {
                self.hold_back(&n, c);
            }
        }
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
                self.held.entry(key(c)).or_default().insert(n.name.clone());
            }
            self.nodes.insert(
                n.name.clone(),
                NodeEntry {
                    uid: n.uid.clone(),
                    labels: n.labels.clone(),
                    cidrs,
                    garbage,
                    deleting: n.deleting,
                    address_families: n.address_families.clone(),
                },
            );
        }
        self.rebuild_spaces();
        self.refresh_all_conflicts();
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
                            reasons.push(format!(
                                "{c} overlaps reserved range {r} of PrefixPool {pname}"
                            ));
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
    /// Returns false when nothing changed: the pool is known at this
    /// generation (its spec is the same; our own status writes come back as
    /// such updates and must not rebuild the picture each time).
    pub fn upsert_pool(&mut self, p: &PoolSnapshot) -> bool {
        if p.generation > 0
            && self
                .pools
                .get(&p.name)
                .is_some_and(|old| old.generation == p.generation)
        {
            return false;
        }
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
        let now = self.now();
        for r in &p.held_back {
            if let Ok(net) = cidr::parse_lenient(&r.prefix)
                && r.reusable_at > now
                && !self.held.contains_key(&key(&net))
                && !self.hold_backs.contains_key(&net)
            {
                self.insert_hold_back(
                    net,
                    HoldBack {
                        node: r.node.clone(),
                        pool: p.name.clone(),
                        retained_until: r.retained_until,
                        reusable_at: r.reusable_at,
                    },
                );
            }
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
        true
    }

    /// Records a pool whose object could not even be decoded: it serves
    /// nothing and its status says why.
    pub fn upsert_pool_error(&mut self, name: &str, generation: i64, error: String) {
        self.pools.insert(
            name.to_string(),
            PoolEntry {
                generation,
                def: Err(SpecError(error)),
                space: None,
                retired: BTreeSet::new(),
            },
        );
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
        p.retired.retain(|r| self.held_inside(r).next().is_some());
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
        let in_flight: Vec<IpNet> = self
            .reservations
            .values()
            .flatten()
            .chain(self.hold_backs.keys())
            .copied()
            .collect();
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
                (d.family == family && d.selector.matches(labels))
                    .then_some((name.as_str(), d.priority))
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
            let now = self.now();
            let sticky = self.hold_backs.iter().find(|(net, hb)| {
                hb.node == node
                    && Family::of(net) == fam
                    && hb.retained_until.is_some_and(|t| t > now)
                    && cands.contains(&hb.pool.as_str())
            });
            if let Some((net, hb)) = sticky {
                picks.push((hb.pool.clone(), *net));
                continue;
            }
            let found = cands.iter().find_map(|name| {
                let s = self.pools.get(*name)?.space.as_ref()?;
                s.first_free().map(|n| (name.to_string(), n))
            });
            match found {
                Some(p) => picks.push(p),
                None => {
                    let pools: Vec<String> = cands.iter().map(|s| s.to_string()).collect();
                    self.waiting.insert(node.to_string(), pools.clone());
                    return Plan::Wait(Wait::Exhausted { family: fam, pools });
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
            // A sticky prefix moves from its hold-back to the reservation.
            if self.remove_hold_back(n).is_some() {
                self.unmark_everywhere(n);
            }
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

    /// Nodes that wait on full pools.
    pub fn waiting_nodes(&self) -> Vec<String> {
        let mut v: Vec<String> = self.waiting.keys().cloned().collect();
        v.sort();
        v
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the Node holds prefixes (None: unknown Node).
    pub fn node_has_prefixes(&self, name: &str) -> Option<bool> {
        self.nodes.get(name).map(|e| !e.cidrs.is_empty())
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

    /// Why pool `name` serves nothing, if it does not.
    pub fn pool_error(&self, name: &str) -> Option<&str> {
        self.pools
            .get(name)?
            .def
            .as_ref()
            .err()
            .map(|e| e.0.as_str())
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
        let scopes: BTreeSet<String> = d
            .prefixes
            .iter()
            .map(|x| cidr::scope(x).to_string())
            .collect();
        v.scope = Some(if scopes.len() == 1 {
            scopes.into_iter().next().unwrap_or_default()
        } else {
            "Mixed".into()
        });
        if let Some(s) = &p.space {
            v.capacity = s.capacity();
            v.available = s.available();
        }
        let mut all_prefixes: Vec<(IpNet, bool)> = d.prefixes.iter().map(|x| (*x, false)).collect();
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
        let now = self.now();
        v.held_back = self
            .hold_backs
            .iter()
            .filter(|(_, hb)| hb.pool == name)
            .map(|(n, hb)| (*n, hb.clone()))
            .collect();
        v.retained = v
            .held_back
            .iter()
            .filter(|(_, hb)| hb.retained_until.is_some_and(|t| t > now))
            .count() as u64;
        v.unroutable = v
            .allocations
            .iter()
            .filter(|(_, node)| {
                self.nodes
                    .get(node)
                    .is_some_and(|e| !e.address_families.contains(&d.family))
            })
            .count() as u64;
        v.waiting = self
            .waiting
            .values()
            .filter(|pools| pools.iter().any(|x| x == name))
            .count() as u64;
        Some(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn pool(name: &str, prefixes: &[&str]) -> PoolSnapshot {
        PoolSnapshot {
            name: name.into(),
            generation: 1,
            spec: PrefixPoolSpec {
                prefixes: prefixes.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            },
            retired: vec![],
            held_back: vec![],
        }
    }

    fn node(name: &str, cidrs: &[&str]) -> NodeSnapshot {
        NodeSnapshot {
            name: name.into(),
            uid: format!("uid-{name}"),
            pod_cidrs: cidrs.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn net(s: &str) -> IpNet {
        s.parse().expect("cidr")
    }

    /// plan + commit as the reconciler does after a successful write.
    fn allocate(l: &mut Ledger, name: &str) -> Vec<IpNet> {
        match l.plan(name, Family::V6) {
            Plan::Allocate(picks) => {
                let nets: Vec<IpNet> = picks.iter().map(|(_, n)| *n).collect();
                let mut n = node(name, &[]);
                n.pod_cidrs = nets.iter().map(|n| n.to_string()).collect();
                l.commit(&n);
                nets
            }
            other => panic!("expected an allocation for {name}, got {other:?}"),
        }
    }

    #[test]
    fn lowest_free_first_and_no_duplicates() {
        let mut l = Ledger::new();
        l.upsert_pool(&pool("p", &["2001:db8::/62"]));
        for i in 0..4 {
            l.upsert_node(&node(&format!("n{i}"), &[]));
        }
        let got: Vec<IpNet> = (0..4)
            .flat_map(|i| allocate(&mut l, &format!("n{i}")))
            .collect();
        assert_eq!(
            got,
            vec![
                net("2001:db8::/64"),
                net("2001:db8:0:1::/64"),
                net("2001:db8:0:2::/64"),
                net("2001:db8:0:3::/64")
            ]
        );
        l.upsert_node(&node("n4", &[]));
        assert!(matches!(
            l.plan("n4", Family::V6),
            Plan::Wait(Wait::Exhausted { .. })
        ));
        let v = l.pool_view("p").expect("view");
        assert_eq!(
            (v.capacity, v.available, v.allocations.len(), v.waiting),
            (4, 0, 4, 1)
        );
    }

    #[test]
    fn a_reservation_in_flight_blocks_its_prefix() {
        let mut l = Ledger::new();
        l.upsert_pool(&pool("p", &["2001:db8::/63"]));
        l.upsert_node(&node("a", &[]));
        l.upsert_node(&node("b", &[]));
        let Plan::Allocate(a) = l.plan("a", Family::V6) else {
            panic!("a")
        };
        let Plan::Allocate(b) = l.plan("b", Family::V6) else {
            panic!("b")
        };
        assert_ne!(a[0].1, b[0].1);
        // A second plan for a Node with a write in flight does nothing.
        assert_eq!(l.plan("a", Family::V6), Plan::Nothing);
        // A failed write frees the prefix again.
        l.release("a");
        l.upsert_node(&node("c", &[]));
        let Plan::Allocate(c) = l.plan("c", Family::V6) else {
            panic!("c")
        };
        assert_eq!(c[0].1, a[0].1);
    }

    #[test]
    fn rebuild_from_nodes_adopts_and_blocks_foreign_prefixes() {
        let mut l = Ledger::new();
        l.upsert_pool(&pool("p", &["2001:db8::/48"]));
        l.replace_nodes(&[
            node("old", &["2001:db8::/64"]),
            node("foreign", &["2001:db8:0:100::/56"]),
            node("new", &[]),
        ]);
        let got = allocate(&mut l, "new");
        assert_eq!(got, vec![net("2001:db8:0:1::/64")]);
        let v = l.pool_view("p").expect("view");
        // 65536 - 1 (old) - 256 (the /56) - 1 (new)
        assert_eq!(v.available, 65536 - 258);
        assert_eq!(
            v.allocations.len(),
            3,
            "a foreign /56 inside the pool counts as its allocation too"
        );
    }

    #[test]
    fn conflicts_are_found_and_cleared() {
        let mut l = Ledger::new();
        let mut p = pool("p", &["2001:db8::/48"]);
        p.spec.reserved = vec!["2001:db8:0:ff::/64".into()];
        l.upsert_pool(&p);
        l.replace_nodes(&[
            node("a", &["2001:db8::/64"]),
            node("b", &["2001:db8::/56"]),
            node("r", &["2001:db8:0:ff::/64"]),
        ]);
        assert!(l.conflict_of("a").is_some());
        assert!(l.conflict_of("b").is_some());
        assert!(
            l.conflict_of("r")
                .expect("r")
                .iter()
                .any(|m| m.contains("reserved"))
        );
        l.remove_node("b");
        assert!(l.conflict_of("a").is_none(), "a no longer collides");
        assert_eq!(l.conflicted_nodes(), vec!["r".to_string()]);
    }

    #[test]
    fn deletion_timestamp_keeps_the_prefix() {
        let mut l = Ledger::new();
        l.upsert_pool(&pool("p", &["2001:db8::/63"]));
        l.upsert_node(&node("a", &[]));
        let a = allocate(&mut l, "a");
        let mut dying = node("a", &[&a[0].to_string()]);
        dying.deleting = true;
        l.upsert_node(&dying);
        l.upsert_node(&node("b", &[]));
        assert_ne!(allocate(&mut l, "b"), a);
        l.upsert_node(&node("c", &[]));
        assert!(
            matches!(l.plan("c", Family::V6), Plan::Wait(_)),
            "a's prefix is still taken"
        );
        l.remove_node("a");
        assert_eq!(allocate(&mut l, "c"), a);
    }

    #[test]
    fn priority_then_name_and_overflow_to_the_next_pool() {
        let mut l = Ledger::new();
        let mut hi = pool("zz-high", &["2001:db8:1::/64"]);
        hi.spec.node_prefix_length = Some(64);
        hi.spec.priority = 5;
        l.upsert_pool(&hi);
        l.upsert_pool(&pool("b", &["2001:db8:3::/48"]));
        l.upsert_pool(&pool("a", &["2001:db8:2::/48"]));
        l.upsert_node(&node("n1", &[]));
        l.upsert_node(&node("n2", &[]));
        assert_eq!(allocate(&mut l, "n1"), vec![net("2001:db8:1::/64")]);
        assert_eq!(
            allocate(&mut l, "n2"),
            vec![net("2001:db8:2::/64")],
            "full high-priority pool passes to 'a' before 'b'"
        );
    }

    #[test]
    fn dual_stack_is_all_or_nothing() {
        let mut l = Ledger::new();
        l.upsert_pool(&pool("v6", &["2001:db8::/48"]));
        let mut v4 = pool("v4", &["10.0.0.0/24"]);
        v4.spec.node_prefix_length = Some(24);
        l.upsert_pool(&v4);
        l.upsert_node(&node("a", &[]));
        l.upsert_node(&node("b", &[]));
        match l.plan("a", Family::V4) {
            Plan::Allocate(p) => assert_eq!(
                p.iter().map(|x| x.1).collect::<Vec<_>>(),
                vec![net("10.0.0.0/24"), net("2001:db8::/64")]
            ),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            l.plan("b", Family::V6),
            Plan::Wait(Wait::Exhausted {
                family: Family::V4,
                pools: vec!["v4".into()]
            })
        );
        let v = l.pool_view("v6").expect("view");
        assert_eq!(v.available, 65535, "nothing reserved for b");
    }

    #[test]
    fn sticky_prefix_returns_to_the_same_name_and_reuse_waits() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut l = Ledger::new();
        l.set_time(t0);
        let mut p = pool("p", &["2001:db8::/63"]);
        p.spec.retain_for = Some("60s".into());
        p.spec.reuse_after = Some("120s".into());
        l.upsert_pool(&p);
        l.upsert_node(&node("a", &[]));
        let a = allocate(&mut l, "a");
        l.remove_node("a");
        let hb = l.hold_backs().get(&a[0]).expect("held back");
        assert_eq!(hb.retained_until, Some(t0 + Duration::from_secs(60)));
        assert_eq!(hb.reusable_at, t0 + Duration::from_secs(120));
        // Another Node does not get it.
        l.upsert_node(&node("b", &[]));
        assert_ne!(allocate(&mut l, "b"), a);
        l.upsert_node(&node("c", &[]));
        assert!(matches!(l.plan("c", Family::V6), Plan::Wait(_)));
        // The same name within the window gets it back.
        l.set_time(t0 + Duration::from_secs(30));
        l.upsert_node(&node("a", &[]));
        assert_eq!(allocate(&mut l, "a"), a);
        assert!(l.hold_backs().is_empty());
        // Deleted again; past retention but before reuse, the name no longer sticks.
        l.remove_node("a");
        l.set_time(t0 + Duration::from_secs(100));
        l.upsert_node(&node("a", &[]));
        assert!(matches!(l.plan("a", Family::V6), Plan::Wait(_)));
        // Once reusable, anyone gets it.
        assert!(l.set_time(t0 + Duration::from_secs(30 + 121)));
        assert_eq!(allocate(&mut l, "c"), a);
    }

    #[test]
    fn hold_backs_survive_a_restart_through_the_status_record() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(5_000_000);
        let mut l = Ledger::new();
        l.set_time(t0);
        let mut p = pool("p", &["2001:db8::/63"]);
        p.spec.reuse_after = Some("10m".into());
        p.held_back = vec![HeldBackRecord {
            prefix: "2001:db8::/64".into(),
            node: "gone".into(),
            retained_until: None,
            reusable_at: t0 + Duration::from_secs(600),
        }];
        l.upsert_pool(&p);
        l.replace_nodes(&[node("n", &[])]);
        assert_eq!(allocate(&mut l, "n"), vec![net("2001:db8:0:1::/64")]);
        assert_eq!(l.pool_view("p").expect("view").held_back.len(), 1);
    }

    #[test]
    fn retired_prefix_keeps_its_allocations() {
        let mut l = Ledger::new();
        l.upsert_pool(&pool("p", &["2001:db8:1::/64"]));
        l.upsert_node(&node("a", &[]));
        allocate(&mut l, "a");
        // A spec change comes with a new generation.
        let mut shrunk = pool("p", &["2001:db8:2::/64"]);
        shrunk.generation = 2;
        l.upsert_pool(&shrunk);
        let v = l.pool_view("p").expect("view");
        assert!(
            v.prefixes
                .iter()
                .any(|(p, _, n, retired)| *p == net("2001:db8:1::/64") && *retired && *n == 1)
        );
        assert_eq!(v.allocations.len(), 1);
        l.remove_node("a");
        let v = l.pool_view("p").expect("view");
        assert!(
            v.prefixes.iter().all(|(_, _, _, retired)| !retired),
            "retired prefix dropped once empty"
        );
    }

    #[test]
    fn a_status_only_update_does_not_rebuild() {
        let mut l = Ledger::new();
        assert!(l.upsert_pool(&pool("p", &["2001:db8::/48"])));
        assert!(
            !l.upsert_pool(&pool("p", &["2001:db8::/48"])),
            "same generation"
        );
        let mut next = pool("p", &["2001:db8::/48", "2001:db9::/48"]);
        next.generation = 2;
        assert!(l.upsert_pool(&next));
        assert_eq!(l.pool_view("p").expect("view").capacity, 2 * 65536);
    }

    #[test]
    fn invalid_pool_serves_nothing_and_says_why() {
        let mut l = Ledger::new();
        l.upsert_pool(&pool("bad", &["2001:db8::1/64"]));
        l.upsert_node(&node("a", &[]));
        assert_eq!(l.plan("a", Family::V6), Plan::Wait(Wait::NoPool));
        assert!(
            l.pool_view("bad")
                .expect("view")
                .error
                .expect("error")
                .contains("host bits")
        );
    }
}
