//! What a pool's status shows, computed from the picture. Every count here is
//! a function of the current state, never of the order things happened in.

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;

use super::{HoldBack, Ledger, NodeEntry, PoolEntry};
use crate::alloc::{Family, cidr};

/// Waiting Nodes a view names (the rest are only counted).
pub const MAX_WAITING_NAMES: usize = 50;

/// Usage of one prefix of a pool.
#[derive(Clone, Debug, PartialEq)]
pub struct PrefixView {
    pub prefix: IpNet,
    /// Node prefixes it holds (0 when retired: it gives no new ones).
    pub capacity: u128,
    pub allocated: u64,
    /// Removed from spec, still holding allocations.
    pub retired: bool,
}

/// A Node or a PrefixClaim whose prefix collides, as the status lists it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ConflictView {
    /// The prefix as written on the Node (or in the claim's status).
    pub prefix: String,
    /// The Node (empty for a claim).
    pub node: String,
    /// The claim, for a claim's conflict.
    pub claim: Option<String>,
    pub reason: String,
}

/// A view of one pool for its status.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PoolView {
    /// The pool object this view is of.
    pub uid: String,
    pub generation: i64,
    pub error: Option<String>,
    pub family: Option<Family>,
    pub scope: Option<String>,
    pub node_prefix_length: Option<u8>,
    pub capacity: u128,
    pub available: u128,
    /// (prefix, node), sorted by prefix.
    pub allocations: Vec<(IpNet, String)>,
    pub prefixes: Vec<PrefixView>,
    pub conflicts: Vec<ConflictView>,
    /// Other pools whose prefixes overlap this pool's.
    pub overlapping_pools: Vec<String>,
    /// Nodes this pool selects that wait for space (no pool of some family
    /// they need has a free prefix).
    pub waiting: u64,
    /// The first of them by name, at most [`MAX_WAITING_NAMES`].
    pub waiting_nodes: Vec<String>,
    /// Held-back prefixes of this pool, sorted by prefix.
    pub held_back: Vec<(IpNet, HoldBack)>,
    /// Held-back prefixes still retained for a Node of the same name.
    pub retained: u64,
    /// Allocated Nodes without an InternalIP of the pool's family.
    pub unroutable: u64,
    /// PrefixClaims holding prefixes of this pool, sorted by prefix.
    pub claims: Vec<super::ClaimView>,
    /// The interface of a pool fed by DHCPv6-PD.
    pub delegated_on: Option<String>,
    /// Its DHCPv6 binding, as its status holds it.
    pub delegation: Option<crate::api::DelegationStatus>,
    /// Its Nodes on delegated prefixes whose valid lifetime has ended.
    pub on_expired: Vec<OnExpired>,
}

/// A Node of a delegated pool on a delegated prefix whose valid lifetime
/// has ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OnExpired {
    pub node: String,
    pub prefix: IpNet,
    /// The expired delegated prefix it lies in.
    pub block: IpNet,
    pub valid_until: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
}

/// Every Node of the pool on an expired delegated prefix (and on no prefix
/// still valid: the same block delegated again is fine), from the view's
/// binding and allocations.
fn on_expired(view: &PoolView) -> Vec<OnExpired> {
    let Some(d) = &view.delegation else {
        return Vec::new();
    };
    let parse = |p: &crate::api::DelegatedPrefix| p.prefix.parse::<IpNet>().ok();
    let live: Vec<IpNet> = d
        .prefixes
        .iter()
        .filter(|p| p.state != crate::api::DELEGATED_EXPIRED)
        .filter_map(parse)
        .collect();
    let expired: Vec<(
        IpNet,
        Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    )> = d
        .prefixes
        .iter()
        .filter(|p| p.state == crate::api::DELEGATED_EXPIRED)
        .filter_map(|p| Some((parse(p)?, p.valid_until.clone())))
        .collect();
    view.allocations
        .iter()
        .filter(|(p, _)| !live.iter().any(|l| l.contains(p)))
        .filter_map(|(p, n)| {
            let (block, until) = expired.iter().find(|(b, _)| b.contains(p))?;
            Some(OnExpired {
                node: n.clone(),
                prefix: *p,
                block: *block,
                valid_until: until.clone(),
            })
        })
        .collect()
}

/// The Nodes waiting on one pool.
#[derive(Default)]
struct Waiting {
    count: u64,
    names: BTreeSet<String>,
}

impl Ledger {
    /// Everything the status of pool `name` shows.
    pub fn pool_view(&self, name: &str) -> Option<PoolView> {
        let waiting = self.waiting_counts();
        self.view_with(name, &waiting)
    }

    /// The views of every pool, computed together (the waiting counts are
    /// one pass over the Nodes for all pools).
    pub fn pool_views(&self) -> Vec<(String, PoolView)> {
        let waiting = self.waiting_counts();
        self.pools
            .keys()
            .filter_map(|n| Some((n.clone(), self.view_with(n, &waiting)?)))
            .collect()
    }

    /// Per pool, the Nodes that wait on it: Nodes without prefixes, not being
    /// deleted, with no write in flight, for which every pool of some family
    /// that selects them is full (and no retained prefix of theirs is left).
    /// Cheap when no pool is full: then nobody waits.
    fn waiting_counts(&self) -> BTreeMap<String, Waiting> {
        let mut out = BTreeMap::new();
        let any_full = self
            .pools
            .values()
            // A valid pool with no space at all (a delegated pool between
            // delegations) is as full as one with every slot taken.
            .any(|p| p.def.is_ok() && p.space.as_ref().is_none_or(|s| s.first_free().is_none()));
        if !any_full {
            return out;
        }
        for (name, e) in &self.nodes {
            if e.has_prefixes() || e.deleting || self.reservations.contains_key(name) {
                continue;
            }
            for fam in [Family::V6, Family::V4] {
                let cands = self.candidates(fam, &e.labels);
                if !cands.is_empty() && self.pick(name, fam, &cands).is_none() {
                    for c in cands {
                        let w: &mut Waiting = out.entry(c.to_string()).or_default();
                        w.count += 1;
                        // The first names in name order are kept (a name
                        // past a full list is not even copied).
                        let full = w.names.len() >= MAX_WAITING_NAMES;
                        if !full || w.names.last().is_some_and(|l| name < l) {
                            w.names.insert(name.clone());
                            if full {
                                w.names.pop_last();
                            }
                        }
                    }
                }
            }
        }
        out
    }

    fn view_with(&self, name: &str, waiting: &BTreeMap<String, Waiting>) -> Option<PoolView> {
        let p = self.pools.get(name)?;
        let mut v = PoolView {
            uid: p.rev.uid.clone(),
            generation: p.generation,
            delegation: p.delegation.clone(),
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
        v.delegated_on = d.delegation_interface.clone();
        v.node_prefix_length = Some(d.node_prefix_length);
        let scopes: BTreeSet<String> = d
            .prefixes
            .iter()
            .map(|x| cidr::scope(x).to_string())
            .collect();
        v.scope = match scopes.len() {
            // A delegated pool before (or between) delegations.
            0 => None,
            1 => scopes.into_iter().next(),
            _ => Some("Mixed".into()),
        };
        if let Some(s) = &p.space {
            v.capacity = s.capacity();
            v.available = s.available();
        }
        self.fill_prefixes(name, p, &mut v);
        self.fill_foreign_conflicts(&d.prefixes, &mut v);
        for c in self.claims_of_pool(name) {
            for reason in self.claim_conflicts(&c.claim) {
                v.conflicts.push(ConflictView {
                    prefix: c.prefix.to_string(),
                    node: String::new(),
                    claim: Some(c.claim.clone()),
                    reason,
                });
            }
        }
        v.allocations.sort();
        v.conflicts.sort();
        v.conflicts.dedup();
        v.overlapping_pools = self.overlapping_pools(name, &d.prefixes);
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
                    .is_some_and(|e: &NodeEntry| !e.address_families.contains(&d.family))
            })
            .count() as u64;
        v.claims = self.claims_of_pool(name);
        v.on_expired = on_expired(&v);
        if let Some(w) = waiting.get(name) {
            v.waiting = w.count;
            v.waiting_nodes = w.names.iter().cloned().collect();
        }
        Some(v)
    }

    /// Per-prefix usage, the allocations and the conflicts inside them.
    fn fill_prefixes(&self, name: &str, p: &PoolEntry, v: &mut PoolView) {
        let Ok(d) = &p.def else { return };
        let mut all: Vec<(IpNet, bool)> = d.prefixes.iter().map(|x| (*x, false)).collect();
        all.extend(p.retired.iter().map(|x| (*x, true)));
        for (px, retired) in all {
            let mut count = 0u64;
            for (net, node) in self.held_inside(&px) {
                if self.owner_of(&net) != Some(name) {
                    continue;
                }
                count += 1;
                v.allocations.push((net, node.clone()));
                for r in self.conflicts.get(node).into_iter().flatten() {
                    v.conflicts.push(ConflictView {
                        prefix: net.to_string(),
                        node: node.clone(),
                        claim: None,
                        reason: r.clone(),
                    });
                }
            }
            let capacity = if retired {
                0
            } else {
                1u128 << d.node_prefix_length.saturating_sub(px.prefix_len())
            };
            v.prefixes.push(PrefixView {
                prefix: px,
                capacity,
                allocated: count,
                retired,
            });
        }
    }

    /// Conflicting Nodes whose prefix overlaps the pool without fitting in it
    /// (for example a /56 written into a /64 pool from outside).
    fn fill_foreign_conflicts(&self, prefixes: &[IpNet], v: &mut PoolView) {
        for (node, reasons) in &self.conflicts {
            let Some(e) = self.nodes.get(node) else {
                continue;
            };
            for c in &e.cidrs {
                let overlapping = prefixes.iter().any(|x| cidr::overlaps(x, c));
                let contained = prefixes.iter().any(|x| x.contains(c));
                if overlapping && !contained {
                    for r in reasons {
                        v.conflicts.push(ConflictView {
                            prefix: c.to_string(),
                            node: node.clone(),
                            claim: None,
                            reason: r.clone(),
                        });
                    }
                }
            }
        }
    }

    /// Other valid pools whose prefixes overlap those of pool `name`.
    pub fn pool_overlaps(&self, name: &str) -> Vec<String> {
        match self.pools.get(name).map(|p| &p.def) {
            Some(Ok(d)) => self.overlapping_pools(name, &d.prefixes),
            _ => vec![],
        }
    }

    fn overlapping_pools(&self, name: &str, prefixes: &[IpNet]) -> Vec<String> {
        self.pools
            .iter()
            .filter(|(other, _)| *other != name)
            .filter(|(_, op)| {
                op.def.as_ref().is_ok_and(|od| {
                    od.prefixes
                        .iter()
                        .any(|a| prefixes.iter().any(|b| cidr::overlaps(a, b)))
                })
            })
            .map(|(other, _)| other.clone())
            .collect()
    }
}
