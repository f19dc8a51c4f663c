//! LoadBalancer addresses: every Service's `status.loadBalancer.ingress` is
//! the record of the addresses it holds (as podCIDRs is a Node's), applied
//! in the API server's order; addresses are handed out from the prefixes of
//! bound `LoadBalancer` claims, lowest free first, one per family a Service
//! asks for, all in one status write, reserved until its outcome is known.
//! An address belongs to one Service: there is no sharing.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnet::IpNet;

use super::Ledger;
use super::order::{Order, Revision};
use super::records::Record;
use crate::alloc::Family;
use crate::alloc::addresses::{first_free, from_u128, usable, usable_count};
use crate::api::Purpose;

/// What the ledger needs to know of a Service.
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceSnapshot {
    /// `namespace/name`.
    pub key: String,
    pub uid: String,
    pub resource_version: Option<u64>,
    /// `spec.type` is LoadBalancer (of any class).
    pub load_balancer: bool,
    /// What it asks of this operator: `None` unless it is a LoadBalancer
    /// Service of the operator's class, not being deleted.
    pub wants: Option<Wants>,
    /// `status.loadBalancer.ingress[].ip`, as written (text that is not an
    /// address is left out).
    pub ingress: Vec<IpAddr>,
}

/// The addresses a LoadBalancer Service of the operator's class asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wants {
    /// `spec.ipFamilies`, in order: one address of each.
    pub families: Vec<Family>,
    /// Addresses asked for by name (`spec.loadBalancerIP` or the
    /// operator's annotation).
    pub requested: Vec<IpAddr>,
}

#[derive(Debug)]
pub(super) struct ServiceEntry {
    rev: Revision,
    load_balancer: bool,
    wants: Option<Wants>,
    ips: Vec<IpAddr>,
}

impl Record for ServiceEntry {
    fn rev(&self) -> &Revision {
        &self.rev
    }
}

/// Why a Service gets no address now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AddressWait {
    /// No bound LoadBalancer claim of this family.
    NoClaim(Family),
    /// Every LoadBalancer claim of this family is full.
    Exhausted { family: Family, claims: Vec<String> },
    /// The requested address is held by another Service.
    Taken { address: IpAddr, by: String },
    /// The requested address is in no LoadBalancer claim (or is a claim's
    /// network address, or of a family the Service does not ask for).
    Outside(IpAddr),
}

/// The answer to "what should this Service get?".
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AddressPlan {
    /// Write these addresses (reserved; claim of each) in one status write.
    Assign(Vec<(String, IpAddr)>),
    Wait(AddressWait),
    /// No longer a LoadBalancer: clear the addresses it still shows from
    /// the operator's claims.
    Release,
    Nothing,
}

impl Ledger {
    /// Applies a state of a Service unless a later one is held. Returns
    /// true when the addresses it holds changed.
    pub fn upsert_service(&mut self, s: &ServiceSnapshot) -> bool {
        let rev = Revision {
            uid: s.uid.clone(),
            rv: s.resource_version,
        };
        if self.services.admit(&s.key, &rev) == Order::Stale {
            return false;
        }
        let old_ips = self
            .services
            .insert(
                s.key.clone(),
                ServiceEntry {
                    rev,
                    load_balancer: s.load_balancer,
                    wants: s.wants.clone(),
                    ips: s.ingress.clone(),
                },
            )
            .map(|e| e.ips)
            .unwrap_or_default();
        if old_ips == s.ingress {
            return false;
        }
        for ip in &old_ips {
            self.unhold_address(&s.key, ip);
        }
        for ip in &s.ingress {
            if self
                .address_held
                .entry(*ip)
                .or_default()
                .insert(s.key.clone())
            {
                self.address_came(ip);
            }
        }
        true
    }

    fn unhold_address(&mut self, key: &str, ip: &IpAddr) {
        if let Some(set) = self.address_held.get_mut(ip) {
            let was = set.remove(key);
            if set.is_empty() {
                self.address_held.remove(ip);
            }
            if was {
                self.address_went(ip);
            }
        }
    }

    /// Forgets Service `key` if it is still the object `uid`; its addresses
    /// are free. Returns true when it held some.
    pub fn remove_service(&mut self, key: &str, uid: &str, rv: Option<u64>) -> bool {
        let dead = Revision {
            uid: uid.to_string(),
            rv,
        };
        let Some(e) = self.services.remove(key, dead) else {
            return false;
        };
        self.release_service(key);
        for ip in &e.ips {
            self.unhold_address(key, ip);
        }
        !e.ips.is_empty()
    }

    /// Merges a complete list of Services taken at `list_rv`. Returns the
    /// keys removed.
    pub fn replace_services(
        &mut self,
        services: &[ServiceSnapshot],
        list_rv: Option<u64>,
    ) -> Vec<String> {
        let listed: BTreeSet<&str> = services.iter().map(|s| s.key.as_str()).collect();
        let Some(gone) = self
            .services
            .list_gone(|k| listed.contains(k.as_str()), list_rv)
        else {
            return vec![];
        };
        let mut removed = vec![];
        for (k, rev) in gone {
            self.remove_service(&k, &rev.uid, rev.rv);
            removed.push(k);
        }
        for s in services {
            self.upsert_service(s);
        }
        self.services.raise_floor(list_rv);
        removed
    }

    /// The bound LoadBalancer claims of `family`, by name.
    fn lb_claims(&self, family: Family) -> Vec<(&str, IpNet)> {
        self.claims
            .iter()
            .filter_map(|(n, e)| {
                let d = e.def.as_ref().ok()?;
                let p = e.prefix?;
                (d.purpose == Purpose::LoadBalancer && !e.deleting && Family::of(&p) == family)
                    .then_some((n.as_str(), p))
            })
            .collect()
    }

    /// The claim an address may be handed out from, if any: a bound
    /// LoadBalancer claim (not being deleted) containing it, the claim's
    /// network address (and IPv4 broadcast) excepted.
    fn claim_of_address(&self, ip: &IpAddr) -> Option<&str> {
        let fam = if ip.is_ipv6() { Family::V6 } else { Family::V4 };
        self.lb_claims(fam)
            .into_iter()
            .find(|(_, p)| p.contains(ip) && usable(p, *ip))
            .map(|(n, _)| n)
    }

    fn address_taken(&self, ip: &IpAddr, by_other_than: &str) -> Option<String> {
        if let Some(a) = self.cluster_ips.get(ip) {
            return Some(a.holder());
        }
        if let Some(holders) = self.address_held.get(ip)
            && let Some(h) = holders.iter().find(|h| *h != by_other_than)
        {
            return Some(h.clone());
        }
        self.address_reservations
            .iter()
            .find(|(k, picks)| *k != by_other_than && picks.iter().any(|(_, a)| a == ip))
            .map(|(k, _)| k.clone())
    }

    /// The lowest free usable address of claim prefix `p`: one walk over
    /// the addresses held inside it, in order (no copy of them).
    fn first_free_address(&self, p: &IpNet) -> Option<IpAddr> {
        let (first, last) = crate::alloc::cidr::range(p);
        let (lo, hi) = (from_u128(p, first), from_u128(p, last));
        let reserved: BTreeSet<IpAddr> = self
            .address_reservations
            .values()
            .flatten()
            .map(|(_, a)| *a)
            .filter(|a| p.contains(a))
            .collect();
        first_free(p, self.address_held.range(lo..=hi).map(|(a, _)| *a), |a| {
            reserved.contains(a) || self.cluster_ips.contains_key(a)
        })
    }

    /// Decides what Service `key` gets and, when it gets addresses,
    /// reserves them. The caller writes them and calls
    /// [`Ledger::commit_service`] or [`Ledger::release_service`].
    pub fn plan_service(&mut self, key: &str) -> AddressPlan {
        let Some(e) = self.services.get(key) else {
            return AddressPlan::Nothing;
        };
        if self.address_reservations.contains_key(key) {
            return AddressPlan::Nothing;
        }
        let Some(w) = e.wants.clone() else {
            let ours = e.ips.iter().any(|ip| self.claim_of_address(ip).is_some());
            return if !e.load_balancer && ours {
                AddressPlan::Release
            } else {
                AddressPlan::Nothing
            };
        };
        if !e.ips.is_empty() {
            return AddressPlan::Nothing;
        }
        for r in &w.requested {
            let fam = if r.is_ipv6() { Family::V6 } else { Family::V4 };
            if !w.families.contains(&fam) {
                return AddressPlan::Wait(AddressWait::Outside(*r));
            }
        }
        let mut picks: Vec<(String, IpAddr)> = vec![];
        for fam in &w.families {
            let asked = w
                .requested
                .iter()
                .find(|r| r.is_ipv6() == (*fam == Family::V6));
            if let Some(r) = asked {
                let Some(claim) = self.claim_of_address(r) else {
                    return AddressPlan::Wait(AddressWait::Outside(*r));
                };
                if let Some(by) = self.address_taken(r, key) {
                    return AddressPlan::Wait(AddressWait::Taken { address: *r, by });
                }
                picks.push((claim.to_string(), *r));
                continue;
            }
            let claims = self.lb_claims(*fam);
            if claims.is_empty() {
                return AddressPlan::Wait(AddressWait::NoClaim(*fam));
            }
            let found = claims
                .iter()
                .find_map(|(n, p)| self.first_free_address(p).map(|a| (n.to_string(), a)));
            match found {
                Some(pick) => picks.push(pick),
                None => {
                    return AddressPlan::Wait(AddressWait::Exhausted {
                        family: *fam,
                        claims: claims.iter().map(|(n, _)| n.to_string()).collect(),
                    });
                }
            }
        }
        if picks.is_empty() {
            return AddressPlan::Nothing;
        }
        self.address_reservations
            .insert(key.to_string(), picks.clone());
        AddressPlan::Assign(picks)
    }

    /// The status write for `written.key` landed.
    pub fn commit_service(&mut self, written: &ServiceSnapshot) {
        self.upsert_service(written);
        self.release_service(&written.key);
    }

    /// Drops the reservation of Service `key`.
    pub fn release_service(&mut self, key: &str) -> bool {
        self.address_reservations.remove(key).is_some()
    }

    pub fn service_keys(&self) -> Vec<String> {
        self.services.keys().cloned().collect()
    }

    /// The UID of the Service held under `key`, and its resourceVersion.
    pub fn service_revision(&self, key: &str) -> Option<(String, Option<u64>)> {
        self.services
            .get(key)
            .map(|e| (e.rev.uid.clone(), e.rev.rv))
    }

    /// Services holding an address inside `prefix`.
    pub fn services_inside(&self, prefix: &IpNet) -> Vec<String> {
        let mut out: BTreeSet<String> = BTreeSet::new();
        for (ip, holders) in &self.address_held {
            if prefix.contains(ip) {
                out.extend(holders.iter().cloned());
            }
        }
        out.into_iter().collect()
    }

    /// Per LoadBalancer claim: (usable addresses, addresses held).
    pub fn claim_address_counts(&self) -> BTreeMap<String, (u128, u64)> {
        let mut out = BTreeMap::new();
        for fam in [Family::V6, Family::V4] {
            for (n, p) in self.lb_claims(fam) {
                let (first, last) = crate::alloc::cidr::range(&p);
                let held = self
                    .address_held
                    .range(from_u128(&p, first)..=from_u128(&p, last))
                    .count() as u64;
                out.insert(n.to_string(), (usable_count(&p), held));
            }
        }
        out
    }
}
