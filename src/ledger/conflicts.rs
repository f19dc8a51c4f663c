//! Which held prefixes overlap, and the Nodes in conflict because of it
//! (with another Node, or with a pool's reserved range).

use std::collections::BTreeSet;

use ipnet::IpNet;

use super::{Ledger, key};
use crate::alloc::cidr;

impl Ledger {
    /// Names of Nodes holding a prefix that overlaps `net`.
    pub(super) fn holders_overlapping(&self, net: &IpNet) -> BTreeSet<String> {
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

    /// Held prefixes inside `net`, with their holders.
    pub(super) fn held_inside<'a>(
        &'a self,
        net: &IpNet,
    ) -> impl Iterator<Item = (IpNet, &'a String)> + 'a {
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

    pub(super) fn refresh_conflict(&mut self, node: &str) {
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
                let Ok(def) = &p.def else { continue };
                for r in def.reserved.iter().filter(|r| cidr::overlaps(r, c)) {
                    reasons.push(format!(
                        "{c} overlaps reserved range {r} of PrefixPool {pname}"
                    ));
                }
            }
            for (claim, p) in self.claims_overlapping(c) {
                reasons.push(format!("{c} overlaps {p} of PrefixClaim {claim}"));
            }
            reasons.extend(self.address_conflicts(c, None));
        }
        if reasons.is_empty() {
            self.conflicts.remove(node);
        } else {
            self.conflicts.insert(node.to_string(), reasons);
        }
    }

    pub(super) fn refresh_all_conflicts(&mut self) {
        self.claim_conflicts_dirty = true;
        self.conflicts.clear();
        let names: Vec<String> = self.nodes.keys().cloned().collect();
        for n in names {
            self.refresh_conflict(&n);
        }
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

    /// Notes that something now held at `net` may change a claim's
    /// conflicts.
    pub(super) fn touch_claims(&mut self, net: &IpNet) {
        if !self.claim_conflicts_dirty && !self.claims_overlapping(net).is_empty() {
            self.claim_conflicts_dirty = true;
        }
    }

    /// Bound claims whose conflicts changed since the last call (a Node,
    /// a reserved range, another claim or a Service address over its
    /// prefix came or went), with what they collide with now (empty: the
    /// conflict ended). Claims gone since are forgotten.
    pub fn take_claim_conflict_changes(&mut self) -> Vec<(String, Vec<String>)> {
        if !std::mem::take(&mut self.claim_conflicts_dirty) {
            return vec![];
        }
        let mut changed = vec![];
        let names: Vec<String> = self.claims.keys().cloned().collect();
        for name in &names {
            let now = self.claim_conflicts(name);
            let before = self
                .claim_conflicts_reported
                .get(name)
                .map(Vec::as_slice)
                .unwrap_or_default();
            if now.as_slice() != before {
                changed.push((name.clone(), now.clone()));
            }
            if now.is_empty() {
                self.claim_conflicts_reported.remove(name);
            } else {
                self.claim_conflicts_reported.insert(name.clone(), now);
            }
        }
        let claims = &self.claims;
        self.claim_conflicts_reported
            .retain(|n, _| claims.contains_key(n));
        changed
    }
}
