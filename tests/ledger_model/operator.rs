//! The operator's side of the model: the ledger, driven as the reconciler
//! drives it — plans sent as writes, answers, adoption and verification
//! reads, unknown outcomes kept and re-sent, re-lists and leadership
//! changes — with every message delivered whenever the test says.

use std::collections::{BTreeMap, HashSet};

use ipnet::IpNet;
use prefix_operator::alloc::Family;
use prefix_operator::ledger::{Ledger, NodeSnapshot, Plan};

use super::server::Answer;

pub type Picks = Vec<(String, IpNet)>;

#[derive(Clone, Debug)]
pub struct Write {
    pub node: String,
    pub uid: String,
    pub picks: Picks,
}

impl Write {
    pub fn cidrs(&self) -> Vec<String> {
        self.picks.iter().map(|(_, n)| n.to_string()).collect()
    }
}

#[derive(Clone, Debug)]
pub enum Why {
    /// After a refused write: adopt, release.
    Adopt,
    /// A Node a re-list did not show.
    Verify,
    /// A write with an unknown outcome: did it land?
    Settle(Picks),
}

#[derive(Clone, Debug)]
pub struct Read {
    pub node: String,
    pub uid: String,
    pub why: Why,
}

#[derive(Default)]
pub struct Operator {
    pub ledger: Ledger,
    /// Sent, not yet applied by the server.
    pub sent: Vec<Write>,
    /// Applied (or failed), answer not yet delivered.
    pub answers: Vec<(Write, Answer)>,
    /// Sent, not yet served.
    pub reads: Vec<Read>,
    /// Served, answer not yet delivered.
    pub read_answers: Vec<(Read, Option<NodeSnapshot>)>,
    pub uncertain: BTreeMap<String, (String, Picks)>,
    /// A list taken by the watcher's re-list, not yet delivered; the watch
    /// waits behind it.
    pub relist: Option<(Vec<NodeSnapshot>, u64)>,
    /// After a leadership change: no plan before the resync is in.
    pub needs_resync: bool,
    /// UIDs whose prefixes written by another writer the ledger was told of.
    pub aware: HashSet<String>,
}

impl Operator {
    /// Every state handed to the ledger goes through here.
    pub fn tell(&mut self, s: &NodeSnapshot) {
        if !s.pod_cidrs.is_empty() {
            self.aware.insert(s.uid.clone());
        }
    }

    pub fn plan(&mut self, node: &str) -> Option<Picks> {
        if self.needs_resync {
            return None;
        }
        match self.ledger.plan(node, Family::V6) {
            Plan::Allocate(picks) => {
                let uid = self.ledger.node_uid(node).unwrap_or_default();
                self.sent.push(Write {
                    node: node.to_string(),
                    uid,
                    picks: picks.clone(),
                });
                Some(picks)
            }
            _ => None,
        }
    }

    pub fn deliver_answer(&mut self, w: Write, a: Answer) {
        match a {
            Answer::Written(s) => {
                self.tell(&s);
                self.ledger.commit(&s);
            }
            Answer::Refused => self.reads.push(Read {
                node: w.node,
                uid: w.uid,
                why: Why::Adopt,
            }),
            Answer::Gone => {
                self.ledger.release(&w.node);
            }
            Answer::Unknown => {
                self.uncertain.insert(w.node, (w.uid, w.picks));
            }
        }
    }

    pub fn deliver_read(&mut self, r: Read, got: Option<NodeSnapshot>) {
        match got {
            Some(s) => {
                self.tell(&s);
                self.ledger.upsert_node(&s);
            }
            None => {
                self.ledger.remove_node_if_uid(&r.node, &r.uid);
            }
        }
        match r.why {
            Why::Adopt => {
                self.ledger.release(&r.node);
            }
            Why::Verify => {}
            Why::Settle(picks) => {
                self.uncertain.remove(&r.node);
                // The model's clock never moves: held back for good.
                let until = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1);
                self.ledger.settle_unknown(&r.node, &r.uid, &picks, until);
            }
        }
    }

    /// Merges a list (re-list or resync; `list_rv` when its
    /// resourceVersion is known) and reads back what it asks for.
    pub fn deliver_list(&mut self, list: Vec<NodeSnapshot>, list_rv: Option<u64>) {
        for s in &list {
            self.tell(s);
        }
        for node in self.ledger.replace_nodes(list, list_rv) {
            let uid = self.ledger.node_uid(&node).unwrap_or_default();
            self.reads.push(Read {
                node,
                uid,
                why: Why::Verify,
            });
        }
    }

    /// Reads back a Node whose write had an unknown outcome, as the
    /// reconciler does (the reservation stays until the answer).
    pub fn settle(&mut self, node: &str) {
        if self.needs_resync || self.reads.iter().any(|r| r.node == node) {
            return;
        }
        if let Some((uid, picks)) = self.uncertain.get(node).cloned() {
            self.reads.push(Read {
                node: node.to_string(),
                uid,
                why: Why::Settle(picks),
            });
        }
    }

    /// Leadership moved away (and will come back): unknown outcomes are
    /// dropped and a resync must come in before the next plan.
    pub fn lose_leadership(&mut self) {
        for (node, _) in std::mem::take(&mut self.uncertain) {
            self.ledger.release(&node);
        }
        self.needs_resync = true;
    }
}
