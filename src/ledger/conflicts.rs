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
        }
        if reasons.is_empty() {
            self.conflicts.remove(node);
        } else {
            self.conflicts.insert(node.to_string(), reasons);
        }
    }

    pub(super) fn refresh_all_conflicts(&mut self) {
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
}
