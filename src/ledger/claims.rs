//! PrefixClaims in the ledger: their states in the API server's order, the
//! prefix each holds (its `status.prefix`, written once), the choice of a
//! free prefix for an unbound claim, and its reservation until the status
//! write's outcome is known. A claimed prefix is marked in every pool it
//! overlaps, so no Node and no other claim is ever given space inside it.

use ipnet::IpNet;
use kube::core::SelectorExt;

use super::order::{Order, Revision};
use super::records::Record;
use super::{ClaimSnapshot, Ledger};
use crate::alloc::cidr;
use crate::api::{ClaimDefinition, PoolChoice, Purpose, SpecError};

#[derive(Debug)]
pub(super) struct ClaimEntry {
    rev: Revision,
    pub(super) def: Result<ClaimDefinition, SpecError>,
    /// The prefix held (parsed `status.prefix`).
    pub(super) prefix: Option<IpNet>,
    /// `status.prefix` text that is not a CIDR.
    garbage: Option<String>,
    pool: Option<String>,
    pub(super) deleting: bool,
    finalized: bool,
}

impl Record for ClaimEntry {
    fn rev(&self) -> &Revision {
        &self.rev
    }
}

/// What the reconciler needs to know of one claim.
#[derive(Clone, Debug, PartialEq)]
pub struct ClaimState {
    pub uid: String,
    pub resource_version: Option<u64>,
    pub prefix: Option<IpNet>,
    /// `status.prefix` holds text that is not a CIDR.
    pub garbage: Option<String>,
    pub pool: Option<String>,
    pub purpose: Option<Purpose>,
    /// Why the spec cannot be served.
    pub error: Option<String>,
    pub deleting: bool,
    pub finalized: bool,
    /// A status write of a reserved prefix is in flight.
    pub reserved: bool,
}

/// Why a claim gets nothing now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClaimWait {
    /// No valid pool of the claim's family matches it.
    NoPool(String),
    /// No matching pool has a free prefix of that length.
    Exhausted { pools: Vec<String> },
}

/// The answer to "what should this claim get?".
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClaimPlan {
    /// Write this prefix (reserved) of this pool into the claim's status.
    Bind {
        pool: String,
        prefix: IpNet,
    },
    Wait(ClaimWait),
    /// Nothing: bound, being deleted, invalid, unknown or reserved.
    Nothing,
}

/// A claim as a pool's status lists it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ClaimView {
    pub prefix: IpNet,
    pub claim: String,
    pub purpose: String,
}

impl Ledger {
    /// Applies a state of a claim unless a later one is held. Returns true
    /// when the prefix it holds changed.
    pub fn upsert_claim(&mut self, c: &ClaimSnapshot) -> bool {
        let rev = c.revision();
        let replaces = match self.claims.admit(&c.name, &rev) {
            Order::Stale => return false,
            Order::Replaces => true,
            Order::New | Order::Newer => false,
        };
        let (mut prefix, mut garbage) = match c.prefix.as_deref().map(cidr::parse_lenient) {
            None => (None, None),
            Some(Ok(n)) => (Some(n), None),
            Some(Err(_)) => (None, c.prefix.clone()),
        };
        let mut pool = c.pool.clone();
        // The held record (of a replaced object, its prefix is freed).
        let old = self.claims.get(&c.name);
        let old_prefix = old.and_then(|o| o.prefix);
        if let Some(o) = old.filter(|_| !replaces)
            && (o.prefix.is_some() || o.garbage.is_some())
            && prefix.is_none()
            && garbage.is_none()
        {
            // status.prefix is write-once: an empty one after a set one is
            // a stale state (or a status wiped by hand). Keep the prefix.
            prefix = o.prefix;
            garbage = o.garbage.clone();
            pool = pool.or(o.pool.clone());
        }
        self.claims.insert(
            c.name.clone(),
            ClaimEntry {
                rev,
                def: c.def.clone(),
                prefix,
                garbage,
                pool,
                deleting: c.deleting,
                finalized: c.finalized,
            },
        );
        if old_prefix == prefix {
            return false;
        }
        if let Some(o) = old_prefix {
            self.unmark_everywhere(&o);
            self.freed = true;
        }
        if let Some(n) = prefix {
            self.mark_everywhere(&n);
        }
        self.refresh_all_conflicts();
        true
    }

    /// Forgets claim `name` if it is still the object `uid`; its prefix is
    /// free again. Returns true when it held one.
    pub fn remove_claim(&mut self, name: &str, uid: &str, rv: Option<u64>) -> bool {
        let dead = Revision {
            uid: uid.to_string(),
            rv,
        };
        let Some(e) = self.claims.remove(name, dead) else {
            return false;
        };
        self.release_claim(name);
        let Some(n) = e.prefix else { return false };
        self.unmark_everywhere(&n);
        self.freed = true;
        self.refresh_all_conflicts();
        true
    }

    /// Merges a complete list of claims taken at `list_rv` (see
    /// [`Ledger::replace_pools`]). Returns the names removed.
    pub fn replace_claims(
        &mut self,
        claims: &[ClaimSnapshot],
        list_rv: Option<u64>,
    ) -> Vec<String> {
        let listed: std::collections::HashSet<&str> =
            claims.iter().map(|c| c.name.as_str()).collect();
        let Some(gone) = self
            .claims
            .list_gone(|n| listed.contains(n.as_str()), list_rv)
        else {
            return vec![];
        };
        let mut removed = vec![];
        for (name, rev) in gone {
            self.remove_claim(&name, &rev.uid, rev.rv);
            removed.push(name);
        }
        for c in claims {
            self.upsert_claim(c);
        }
        self.claims.raise_floor(list_rv);
        removed
    }

    pub fn claim_names(&self) -> Vec<String> {
        self.claims.keys().cloned().collect()
    }

    pub fn claim_state(&self, name: &str) -> Option<ClaimState> {
        let e = self.claims.get(name)?;
        Some(ClaimState {
            uid: e.rev.uid.clone(),
            resource_version: e.rev.rv,
            prefix: e.prefix,
            garbage: e.garbage.clone(),
            pool: e.pool.clone(),
            purpose: e.def.as_ref().ok().map(|d| d.purpose),
            error: e.def.as_ref().err().map(|e| e.0.clone()),
            deleting: e.deleting,
            finalized: e.finalized,
            reserved: self.claim_reservations.contains_key(name),
        })
    }

    /// Decides what claim `name` gets and, when it gets something, reserves
    /// it. The caller then writes it and calls [`Ledger::commit_claim`] or
    /// [`Ledger::release_claim`].
    pub fn plan_claim(&mut self, name: &str) -> ClaimPlan {
        let Some(e) = self.claims.get(name) else {
            return ClaimPlan::Nothing;
        };
        let Ok(def) = &e.def else {
            return ClaimPlan::Nothing;
        };
        if e.deleting
            || e.prefix.is_some()
            || e.garbage.is_some()
            || self.claim_reservations.contains_key(name)
        {
            return ClaimPlan::Nothing;
        }
        let cands = self.claim_candidates(def);
        if cands.is_empty() {
            return ClaimPlan::Wait(ClaimWait::NoPool(match &def.pools {
                PoolChoice::Named(p) => match self.pools.get(p).map(|e| &e.def) {
                    None => format!("PrefixPool {p} does not exist"),
                    Some(Err(err)) => format!("PrefixPool {p} serves nothing: {err}"),
                    Some(Ok(d)) => format!(
                        "PrefixPool {p} is {}, the claim asks for {}",
                        d.family, def.family
                    ),
                },
                PoolChoice::Selected(_) => {
                    format!("no valid {} PrefixPool matches poolSelector", def.family)
                }
            }));
        }
        let len = def.prefix_length;
        let found = cands.iter().find_map(|p| {
            let s = self.pools.get(*p)?.space.as_ref()?;
            s.first_free_block(len).map(|n| (p.to_string(), n))
        });
        match found {
            Some((pool, prefix)) => {
                self.mark_everywhere(&prefix);
                self.claim_reservations
                    .insert(name.to_string(), (pool.clone(), prefix));
                ClaimPlan::Bind { pool, prefix }
            }
            None => ClaimPlan::Wait(ClaimWait::Exhausted {
                pools: cands.iter().map(|s| s.to_string()).collect(),
            }),
        }
    }

    /// Valid pools a claim may be carved from, best first.
    fn claim_candidates(&self, def: &ClaimDefinition) -> Vec<&str> {
        let mut v: Vec<(&str, i32)> = self
            .pools
            .iter()
            .filter_map(|(name, p)| {
                let d = p.def.as_ref().ok()?;
                p.space.as_ref()?;
                let chosen = match &def.pools {
                    PoolChoice::Named(n) => n == name,
                    PoolChoice::Selected(sel) => sel.matches(&p.labels),
                };
                (chosen && d.family == def.family).then_some((name.as_str(), d.priority))
            })
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        v.into_iter().map(|(n, _)| n).collect()
    }

    /// The status write for claim `name` landed with `written`.
    pub fn commit_claim(&mut self, written: &ClaimSnapshot) {
        self.upsert_claim(written);
        self.release_claim(&written.name);
    }

    /// Drops the reservation of claim `name`. Returns true when one was held.
    pub fn release_claim(&mut self, name: &str) -> bool {
        let Some((_, n)) = self.claim_reservations.remove(name) else {
            return false;
        };
        self.unmark_everywhere(&n);
        self.freed = true;
        true
    }

    /// Claims whose prefix overlaps `net`, with their prefix.
    pub(super) fn claims_overlapping(&self, net: &IpNet) -> Vec<(&str, IpNet)> {
        self.claims
            .iter()
            .filter_map(|(n, e)| Some((n.as_str(), e.prefix?)))
            .filter(|(_, p)| cidr::overlaps(p, net))
            .collect()
    }

    /// Why claim `name`'s prefix collides: with a Node's prefix, a reserved
    /// range or another claim (only hand-written statuses can do that).
    pub fn claim_conflicts(&self, name: &str) -> Vec<String> {
        let Some(e) = self.claims.get(name) else {
            return vec![];
        };
        let Some(net) = e.prefix else {
            return vec![];
        };
        let purpose = e.def.as_ref().ok().map(|d| d.purpose);
        let mut out = vec![];
        for node in self.holders_overlapping(&net) {
            let theirs = self
                .nodes
                .get(&node)
                .and_then(|e| e.cidrs.iter().find(|x| cidr::overlaps(x, &net)))
                .map(|x| x.to_string())
                .unwrap_or_default();
            out.push(format!("{net} overlaps {theirs} of Node {node}"));
        }
        for (other, p) in self.claims_overlapping(&net) {
            if other != name {
                out.push(format!("{net} overlaps {p} of PrefixClaim {other}"));
            }
        }
        for (pname, p) in &self.pools {
            let Ok(def) = &p.def else { continue };
            for r in def.reserved.iter().filter(|r| cidr::overlaps(r, &net)) {
                out.push(format!(
                    "{net} overlaps reserved range {r} of PrefixPool {pname}"
                ));
            }
        }
        out.extend(self.address_conflicts(&net, purpose));
        out
    }

    /// Claims whose prefix belongs to pool `name` (the best pool containing
    /// it, as for node prefixes), sorted by prefix.
    pub(super) fn claims_of_pool(&self, name: &str) -> Vec<ClaimView> {
        let mut v: Vec<ClaimView> = self
            .claims
            .iter()
            .filter_map(|(c, e)| {
                let p = e.prefix?;
                (self.owner_of(&p) == Some(name)).then(|| ClaimView {
                    prefix: p,
                    claim: c.clone(),
                    purpose: e
                        .def
                        .as_ref()
                        .map(|d| d.purpose.as_str().to_string())
                        .unwrap_or_default(),
                })
            })
            .collect();
        v.sort();
        v
    }
}
