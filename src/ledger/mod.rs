//! The cluster picture: which Node holds which prefix, the free space of every
//! pool, reservations in flight and conflicts. Pure and synchronous: the node
//! reconciler feeds it watch events, write answers and reads, and asks it what
//! to write; the status writer reads it. Nodes are the truth; everything here
//! can be rebuilt from them at any time.
//!
//! What the ledger holds for a Node only moves forward in the API server's
//! order (see [`order`]): a stale watch event, a late write answer or an old
//! read never takes a prefix away from a live Node.

mod addresses;
mod claims;
mod conflicts;
mod holdback;
mod nodes;
pub mod order;
mod plan;
mod pools;
mod records;
mod services;
mod vanished;
mod view;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::SystemTime;

use ipnet::IpNet;

use crate::alloc::{Family, PoolSpace, cidr};
use crate::api::{ClaimDefinition, Labels, PoolDefinition, SpecError};
pub use addresses::AddressSnapshot;
pub use claims::{ClaimPlan, ClaimState, ClaimView, ClaimWait};
pub use order::{Order, Revision, parse_resource_version};
use records::{Record, Records};
pub use services::{AddressPlan, AddressWait, ServiceSnapshot, Wants};
pub use vanished::FAMILY_GRACE;
pub use view::{ConflictView, MAX_WAITING_NAMES, OnExpired, PoolView, PrefixView};

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
    pub pending_write: bool,
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
    /// The pool's labels (PrefixClaims select pools by them).
    pub labels: Labels,
    /// The DHCPv6 binding of a delegated pool, as its status holds it.
    pub delegation: Option<crate::api::DelegationStatus>,
}

/// What the ledger needs to know of a PrefixClaim. Its `status.prefix` is
/// the record of what it holds, as `spec.podCIDRs` is for a Node.
#[derive(Clone, Debug)]
pub struct ClaimSnapshot {
    pub name: String,
    pub uid: String,
    pub resource_version: Option<u64>,
    pub generation: i64,
    pub def: Result<ClaimDefinition, SpecError>,
    /// `status.prefix`, as written.
    pub prefix: Option<String>,
    /// `status.pool`.
    pub pool: Option<String>,
    /// The claim has a deletion timestamp: it keeps its prefix until the
    /// object is gone.
    pub deleting: bool,
    /// The claim carries the operator's finalizer.
    pub finalized: bool,
}

impl ClaimSnapshot {
    fn revision(&self) -> Revision {
        Revision {
            uid: self.uid.clone(),
            rv: self.resource_version,
        }
    }
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
    /// Kept for a write to `node` with an unknown outcome (not for a
    /// deleted Node): ends once `node` holds prefixes.
    pub pending_write: bool,
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
        Self::from_owned(n.clone()).1
    }

    /// The same, taking the snapshot apart (no copies); with its name.
    fn from_owned(n: NodeSnapshot) -> (String, Self) {
        let (cidrs, garbage) = parse_node_cidrs(&n.pod_cidrs);
        let entry = NodeEntry {
            rev: Revision {
                uid: n.uid,
                rv: n.resource_version,
            },
            labels: n.labels,
            cidrs,
            garbage,
            deleting: n.deleting,
            address_families: n.address_families,
        };
        (n.name, entry)
    }

    fn has_prefixes(&self) -> bool {
        !self.cidrs.is_empty() || !self.garbage.is_empty()
    }

    /// podCIDRs is write-once: an empty value after a set one (`held`'s)
    /// can only come from an unordered stale state. Keeps the prefixes.
    fn keep_written(&mut self, held: &NodeEntry) {
        if held.has_prefixes() && !self.has_prefixes() {
            self.cidrs = held.cidrs.clone();
            self.garbage = held.garbage.clone();
        }
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

impl Record for NodeEntry {
    fn rev(&self) -> &Revision {
        &self.rev
    }
}

#[derive(Debug)]
struct PoolEntry {
    rev: Revision,
    generation: i64,
    def: Result<PoolDefinition, SpecError>,
    space: Option<PoolSpace>,
    /// Prefixes removed from spec while Nodes still held prefixes inside them.
    retired: BTreeSet<IpNet>,
    labels: Labels,
    delegation: Option<crate::api::DelegationStatus>,
}

impl Record for PoolEntry {
    fn rev(&self) -> &Revision {
        &self.rev
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
    /// No pool of `family` selects the Node now, but `pools` did less than
    /// [`FAMILY_GRACE`] ago (deleted, re-created or edited), or (`pools`
    /// empty) this replica started leading less than that ago and the
    /// family is in use: the Node waits until `until` for one to serve it,
    /// rather than being written without that family for good.
    FamilyGone {
        family: Family,
        pools: Vec<String>,
        until: SystemTime,
    },
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
    /// Nodes, by name, with the Nodes known deleted and the list floor.
    nodes: Records<HashMap<String, NodeEntry>>,
    /// Pools, by name (the same rules as for Nodes).
    pools: Records<BTreeMap<String, PoolEntry>>,
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
    /// Space was freed outside `set_time` ([`Ledger::take_freed`]).
    freed: bool,
    /// The pending-write hold-backs by Node, so that the per-Node paths
    /// find a Node's without scanning every hold-back.
    pending_writes: HashMap<String, BTreeSet<IpNet>>,
    /// PrefixClaims, by name.
    claims: Records<BTreeMap<String, claims::ClaimEntry>>,
    /// Prefixes reserved for a claim's status write in flight, by claim.
    claim_reservations: HashMap<String, (String, IpNet)>,
    /// Services, by `namespace/name`.
    services: Records<HashMap<String, services::ServiceEntry>>,
    /// Every LoadBalancer address a Service's status holds, with holders.
    address_held: BTreeMap<std::net::IpAddr, BTreeSet<String>>,
    /// Addresses reserved for a Service's status write in flight.
    address_reservations: HashMap<String, Vec<(String, std::net::IpAddr)>>,
    /// ClusterIPs the API server handed out (IPAddress objects), by
    /// address.
    cluster_ips: Records<BTreeMap<std::net::IpAddr, addresses::AddressEntry>>,
    /// Pools that stopped selecting Nodes lately (the family grace).
    vanished: Vec<vanished::Vanished>,
    /// Until then this replica has just started leading (the family grace).
    lead_grace_until: Option<SystemTime>,
    /// Conflicts of each bound claim as last reported
    /// ([`Ledger::take_claim_conflict_changes`]).
    claim_conflicts_reported: HashMap<String, Vec<String>>,
    /// Something a claim's conflicts read may have changed since.
    claim_conflicts_dirty: bool,
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
