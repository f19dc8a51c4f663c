//! A model of what the API server holds for Nodes: objects with UIDs and
//! resourceVersions, write-once podCIDRs, finalizers, and the watch events,
//! write answers and reads it hands out. The model is the truth the
//! invariants are checked against.

use std::collections::{BTreeMap, VecDeque};

use prefix_operator::ledger::NodeSnapshot;

#[derive(Clone, Debug)]
pub struct Obj {
    pub uid: String,
    pub rv: u64,
    pub labels: BTreeMap<String, String>,
    pub cidrs: Vec<String>,
    pub deleting: bool,
    pub finalizer: bool,
    /// Who wrote podCIDRs: the operator, or another writer (by hand).
    pub by_operator: bool,
    /// Heartbeat counter: changes nothing the ledger reads.
    pub beats: u64,
}

impl Obj {
    pub fn snapshot(&self, name: &str) -> NodeSnapshot {
        NodeSnapshot {
            name: name.to_string(),
            uid: self.uid.clone(),
            resource_version: Some(self.rv),
            labels: self.labels.clone(),
            pod_cidrs: self.cidrs.clone(),
            deleting: self.deleting,
            address_families: vec![],
        }
    }
}

/// What the watch delivers, in the server's order.
#[derive(Clone, Debug)]
pub enum WatchMsg {
    Apply(NodeSnapshot),
    Delete { name: String, uid: String, rv: u64 },
}

/// The answer to a podCIDRs write.
#[derive(Clone, Debug)]
pub enum Answer {
    Written(NodeSnapshot),
    /// 422 (write-once, UID precondition failed): the Node is read back.
    Refused,
    /// 404.
    Gone,
    /// No answer: it may or may not have landed.
    Unknown,
}

#[derive(Default)]
pub struct Server {
    rv: u64,
    uids: u64,
    pub nodes: BTreeMap<String, Obj>,
    pub watch: VecDeque<WatchMsg>,
}

impl Server {
    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    fn emit(&mut self, name: &str) {
        if let Some(o) = self.nodes.get(name) {
            self.watch.push_back(WatchMsg::Apply(o.snapshot(name)));
        }
    }

    /// Creates `name` unless it exists (a re-create after a delete gets a
    /// new UID).
    pub fn create(&mut self, name: &str, selected: bool, finalizer: bool) {
        if self.nodes.contains_key(name) {
            return;
        }
        self.uids += 1;
        let mut labels = BTreeMap::new();
        if selected {
            labels.insert("pool".to_string(), "p".to_string());
        }
        let obj = Obj {
            uid: format!("uid-{}", self.uids),
            rv: self.next_rv(),
            labels,
            cidrs: vec![],
            deleting: false,
            finalizer,
            by_operator: false,
            beats: 0,
        };
        self.nodes.insert(name.to_string(), obj);
        self.emit(name);
    }

    /// A status-only patch (kubelet heartbeat, addresses, conditions).
    pub fn heartbeat(&mut self, name: &str) {
        let rv = self.next_rv();
        if let Some(o) = self.nodes.get_mut(name) {
            o.rv = rv;
            o.beats += 1;
            self.emit(name);
        }
    }

    pub fn toggle_label(&mut self, name: &str) {
        let rv = self.next_rv();
        if let Some(o) = self.nodes.get_mut(name) {
            o.rv = rv;
            if o.labels.remove("pool").is_none() {
                o.labels.insert("pool".into(), "p".into());
            }
            self.emit(name);
        }
    }

    /// Another writer sets podCIDRs (only onto an empty Node: write-once).
    pub fn foreign_write(&mut self, name: &str, cidr: &str) {
        let rv = self.next_rv();
        if let Some(o) = self.nodes.get_mut(name)
            && o.cidrs.is_empty()
        {
            o.rv = rv;
            o.cidrs = vec![cidr.to_string()];
            o.by_operator = false;
            self.emit(name);
        }
    }

    /// Deletes `name`: with a finalizer it only gets a deletion timestamp.
    pub fn delete(&mut self, name: &str) {
        let Some(o) = self.nodes.get(name) else {
            return;
        };
        if o.finalizer {
            let rv = self.next_rv();
            if let Some(o) = self.nodes.get_mut(name) {
                o.deleting = true;
                o.rv = rv;
            }
            self.emit(name);
        } else {
            self.remove(name);
        }
    }

    /// Removes the finalizer of a deleting Node: the object goes.
    pub fn finalize(&mut self, name: &str) {
        if self.nodes.get(name).is_some_and(|o| o.deleting) {
            self.remove(name);
        }
    }

    fn remove(&mut self, name: &str) {
        let rv = self.next_rv();
        if let Some(o) = self.nodes.remove(name) {
            self.watch.push_back(WatchMsg::Delete {
                name: name.to_string(),
                uid: o.uid,
                rv,
            });
        }
    }

    /// Applies the operator's guarded podCIDRs write (UID precondition + write-once).
    pub fn apply_write(&mut self, name: &str, uid: &str, cidrs: &[String]) -> Answer {
        let rv = self.rv + 1;
        let Some(o) = self.nodes.get_mut(name) else {
            return Answer::Gone;
        };
        if o.uid != uid {
            return Answer::Refused;
        }
        if !o.cidrs.is_empty() {
            // Writing the same value again passes the write-once rule.
            return if o.cidrs == cidrs {
                Answer::Written(o.snapshot(name))
            } else {
                Answer::Refused
            };
        }
        self.rv = rv;
        o.rv = rv;
        o.cidrs = cidrs.to_vec();
        o.by_operator = true;
        let snap = o.snapshot(name);
        self.emit(name);
        Answer::Written(snap)
    }

    /// A consistent GET.
    pub fn get(&self, name: &str) -> Option<NodeSnapshot> {
        self.nodes.get(name).map(|o| o.snapshot(name))
    }

    /// The latest resourceVersion handed out (a list's resourceVersion).
    pub fn rv(&self) -> u64 {
        self.rv
    }

    /// A consistent list.
    pub fn list(&self) -> Vec<NodeSnapshot> {
        self.nodes.iter().map(|(n, o)| o.snapshot(n)).collect()
    }
}
