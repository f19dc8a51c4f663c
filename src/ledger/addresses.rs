//! Service addresses the API server handed out: every IPAddress object
//! (`networking.k8s.io/v1`, one per ClusterIP, created by kube-apiserver's
//! allocator) and every LoadBalancer ingress address a Service shows.
//!
//! Each one inside pool space is held like a hand-written podCIDR: no Node
//! prefix and no claim is carved over it, whoever handed it out and however
//! late the ServiceCIDR it came from was deleted (kube-apiserver allocates
//! from a ServiceCIDR its informer still shows, which can be one already
//! gone). An address that lies inside a Node's prefix, or inside a claim
//! that does not hand out such addresses, is a conflict, reported on both.

use std::collections::BTreeSet;
use std::net::IpAddr;

use ipnet::IpNet;

use super::Ledger;
use super::order::{Order, Revision};
use super::records::Record;
use crate::alloc::cidr;
use crate::api::Purpose;

/// What the ledger needs to know of an IPAddress object.
#[derive(Clone, Debug, PartialEq)]
pub struct AddressSnapshot {
    /// The object's name: the address, canonical.
    pub name: String,
    pub uid: String,
    pub resource_version: Option<u64>,
    /// The Service it was handed to (`namespace/name` of `spec.parentRef`).
    pub service: Option<String>,
}

#[derive(Debug)]
pub(super) struct AddressEntry {
    rev: Revision,
    service: Option<String>,
}

impl Record for AddressEntry {
    fn rev(&self) -> &Revision {
        &self.rev
    }
}

impl AddressEntry {
    /// Who holds it, for messages.
    pub(super) fn holder(&self) -> String {
        match &self.service {
            Some(s) => format!("ClusterIP of Service {s}"),
            None => "a ClusterIP".into(),
        }
    }
}

/// The single-address prefix of `ip`.
pub(super) fn host(ip: &IpAddr) -> IpNet {
    IpNet::from(*ip)
}

impl Ledger {
    /// Applies a state of an IPAddress unless a later one is held. Returns
    /// true when the addresses held changed. An object whose name is not an
    /// address (no conformant server makes one) is ignored.
    pub fn upsert_address(&mut self, a: &AddressSnapshot) -> bool {
        let Ok(ip) = a.name.parse::<IpAddr>() else {
            return false;
        };
        let rev = Revision {
            uid: a.uid.clone(),
            rv: a.resource_version,
        };
        if self.cluster_ips.admit(&ip, &rev) == Order::Stale {
            return false;
        }
        let entry = AddressEntry {
            rev,
            service: a.service.clone(),
        };
        if self.cluster_ips.insert(ip, entry).is_some() {
            return false;
        }
        self.address_came(&ip);
        true
    }

    /// Forgets IPAddress `name` if it is still the object `uid`. Returns
    /// true when it was held. (Its tombstone is kept by address: a name
    /// that is not one is of no object the ledger takes in.)
    pub fn remove_address(&mut self, name: &str, uid: &str, rv: Option<u64>) -> bool {
        let Ok(ip) = name.parse::<IpAddr>() else {
            return false;
        };
        let dead = Revision {
            uid: uid.to_string(),
            rv,
        };
        self.forget_address(&ip, dead)
    }

    fn forget_address(&mut self, ip: &IpAddr, dead: Revision) -> bool {
        if self.cluster_ips.remove(ip, dead).is_none() {
            return false;
        }
        self.address_went(ip);
        true
    }

    /// Merges a complete list of IPAddresses taken at `list_rv`.
    pub fn replace_addresses(&mut self, items: &[AddressSnapshot], list_rv: Option<u64>) {
        let listed: BTreeSet<&str> = items.iter().map(|a| a.name.as_str()).collect();
        let is_listed = |ip: &IpAddr| listed.contains(ip.to_string().as_str());
        let Some(gone) = self.cluster_ips.list_gone(is_listed, list_rv) else {
            return;
        };
        for (ip, rev) in gone {
            self.forget_address(&ip, rev);
        }
        for a in items {
            self.upsert_address(a);
        }
        self.cluster_ips.raise_floor(list_rv);
    }

    /// An address is held now: its space is kept, and whatever it lands in
    /// is looked at again for conflicts.
    pub(super) fn address_came(&mut self, ip: &IpAddr) {
        let h = host(ip);
        self.mark_everywhere(&h);
        self.address_touched(&h);
    }

    /// An address is no longer held (by one holder).
    pub(super) fn address_went(&mut self, ip: &IpAddr) {
        let h = host(ip);
        self.unmark_everywhere(&h);
        if self
            .pools
            .values()
            .any(|p| p.space.as_ref().is_some_and(|s| s.overlaps(&h)))
        {
            self.freed = true;
        }
        self.address_touched(&h);
    }

    fn address_touched(&mut self, h: &IpNet) {
        self.touch_claims(h);
        for node in self.holders_overlapping(h) {
            self.refresh_conflict(&node);
        }
    }

    /// Every Service address held (ClusterIPs and LoadBalancer ingress),
    /// once per holder, for rebuilding the pools' free space.
    pub(super) fn held_address_nets(&self) -> Vec<IpNet> {
        let cluster = self.cluster_ips.keys().map(host);
        let ingress = self
            .address_held
            .iter()
            .flat_map(|(ip, holders)| std::iter::repeat_n(host(ip), holders.len()));
        cluster.chain(ingress).collect()
    }

    /// Whether any ClusterIP (IPAddress) lies inside `net`.
    pub fn cluster_ips_inside(&self, net: &IpNet) -> Vec<IpAddr> {
        let (lo, hi) = bounds(net);
        self.cluster_ips.range(lo..=hi).map(|(ip, _)| *ip).collect()
    }

    /// Why Service addresses inside `net` collide with it, for a holder
    /// that hands out ClusterIPs (`ServiceCIDR`), LoadBalancer addresses
    /// (`LoadBalancer`) or neither (a Node, a `Static` claim): at most one
    /// reason per kind, counting the addresses and naming the first.
    pub(super) fn address_conflicts(&self, net: &IpNet, serves: Option<Purpose>) -> Vec<String> {
        let (lo, hi) = bounds(net);
        let mut out = vec![];
        if serves != Some(Purpose::ServiceCIDR) {
            let mut inside = self.cluster_ips.range(lo..=hi);
            if let Some((ip, e)) = inside.next() {
                let n = 1 + inside.count();
                let of = e
                    .service
                    .as_deref()
                    .map(|s| format!(" of Service {s}"))
                    .unwrap_or_default();
                out.push(format!(
                    "{net} holds {n} ClusterIP(s) handed out by the API server, first {ip}{of}"
                ));
            }
        }
        if serves != Some(Purpose::LoadBalancer) {
            let mut inside = self.address_held.range(lo..=hi);
            if let Some((ip, holders)) = inside.next() {
                let n = 1 + inside.count();
                let of = holders.iter().next().cloned().unwrap_or_default();
                out.push(format!(
                    "{net} holds {n} LoadBalancer address(es) of Services, first {ip} of Service {of}"
                ));
            }
        }
        out
    }
}

/// The first and last address of `net`, as addresses.
fn bounds(net: &IpNet) -> (IpAddr, IpAddr) {
    let (first, last) = cidr::range(net);
    let to = |v: u128| match net {
        IpNet::V4(_) => IpAddr::V4(std::net::Ipv4Addr::from(v as u32)),
        IpNet::V6(_) => IpAddr::V6(std::net::Ipv6Addr::from(v)),
    };
    (to(first), to(last))
}
