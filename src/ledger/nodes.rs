//! Nodes in the ledger: states applied in the API server's order (see
//! [`super::order`]), removals, list merges, and the index of held prefixes.

use std::collections::HashSet;

use ipnet::IpNet;

use super::order::{Order, Revision};
use super::{Ledger, NodeChange, NodeEntry, NodeSnapshot, key};

impl Ledger {
    /// Applies a state of a Node — from a watch event, a write's answer or a
    /// read — unless the ledger already holds a later one (see [`order`]).
    pub fn upsert_node(&mut self, n: &NodeSnapshot) -> NodeChange {
        match self.nodes.admit(&n.name, &n.revision()) {
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
        next.keep_written(e);
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
        if e.has_prefixes() {
            self.end_pending_writes_of(name);
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
        // Only the object that died: a later one under the name stays.
        let owners = self.remove_node_if_uid(name, uid);
        self.nodes.bury(name, dead);
        owners
    }

    /// Forgets the held object of `name` as deleted, freeing its prefixes
    /// (or holding them back). Returns the pools they belonged to.
    fn remove_held_node(&mut self, name: &str) -> Vec<String> {
        self.waiting.remove(name);
        let Some(old) = self.nodes.take(name) else {
            return vec![];
        };
        let owners: Vec<String> = old
            .cidrs
            .iter()
            .filter_map(|c| self.owner_of(c).map(str::to_string))
            .collect();
        self.conflicts.remove(name);
        // A write pending for the object that is gone tests its UID: it
        // cannot land on a later object of the same name.
        self.end_pending_writes_of(name);
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
    pub fn replace_nodes(&mut self, nodes: Vec<NodeSnapshot>, list_rv: Option<u64>) -> Vec<String> {
        let listed: HashSet<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
        let Some(unlisted) = self
            .nodes
            .list_gone(|n| listed.contains(n.as_str()), list_rv)
        else {
            // Older than a list already merged: everything in it is known.
            return vec![];
        };
        let latest_listed = nodes.iter().filter_map(|n| n.resource_version).max();
        let (to_verify, vanished): (Vec<_>, Vec<_>) = unlisted.into_iter().partition(|(_, r)| {
            list_rv.is_none() && r.rv.is_some_and(|rv| latest_listed.is_none_or(|l| rv > l))
        });
        for (name, _) in vanished {
            // Deleted while the watch was down.
            self.remove_held_node(&name);
        }
        // The list is taken whole and moved into the picture: with
        // thousands of Nodes, a copy of every Node's labels would be most
        // of the operator's peak memory. Kept unlisted Nodes (to be read
        // back) stay as they are.
        let listed = nodes.into_iter().map(NodeEntry::from_owned);
        self.nodes
            .merge_bulk(listed, |ord, held, mut fresh| match (ord, held) {
                (Order::Stale, held) => held,
                (Order::Newer, Some(h)) => {
                    fresh.keep_written(&h);
                    Some(fresh)
                }
                _ => Some(fresh),
            });
        self.nodes.raise_floor(list_rv);
        self.reindex_nodes();
        to_verify.into_iter().map(|(name, _)| name).collect()
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
        self.end_settled_pending_writes();
        self.rebuild_spaces();
        self.refresh_all_conflicts();
        self.prune_all_retired();
    }

    fn hold(&mut self, node: &str, c: &IpNet) {
        self.touch_claims(c);
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
        self.touch_claims(c);
        let k = key(c);
        if let Some(set) = self.held.get_mut(&k) {
            set.remove(node);
            if set.is_empty() {
                self.held.remove(&k);
            }
        }
        self.unmark_everywhere(c);
    }
}
