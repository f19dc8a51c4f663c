//! What a Node state does to the picture: watch events and lists are applied
//! to the ledger in the API server's order, and the Nodes that now need
//! prefixes are queued.

use std::time::Instant;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::{Resource, ResourceExt};
use tracing::{info, warn};

use super::events::Note;
use super::reconciler::Reconciler;
use crate::k8s::list_watch::Watched;
use crate::k8s::nodes::{self, NodeLite};
use crate::ledger::NodeSnapshot;

impl Reconciler {
    pub(super) fn on_node_event(&mut self, ev: Watched<NodeLite>) {
        match ev {
            Watched::Failed(e) => {
                self.metrics.error("WatchNodes");
                warn!("{e}");
            }
            Watched::Listed {
                items,
                resource_version,
            } => {
                let nodes = items.len();
                self.merge_node_list(items, resource_version);
                info!(nodes, "Node list complete; merged into the picture");
                self.nodes_synced = true;
                self.report_new_conflicts();
                self.after_sync();
            }
            Watched::Apply(n) => self.on_node_state(&n),
            Watched::Delete(n) => self.on_node_deleted(&n),
        }
    }

    /// Merges a complete, consistent list of Nodes (the watch's or a new
    /// leader's) into the picture and queues every Node without prefixes.
    pub(super) fn merge_node_list(&mut self, items: Vec<NodeLite>, list_rv: Option<u64>) {
        let snaps: Vec<NodeSnapshot> = items.into_iter().filter_map(nodes::into_snapshot).collect();
        let verify = self.ledger.replace_nodes(snaps, list_rv);
        self.verify_nodes(verify);
        self.pipeline.touch_all();
        self.enqueue_all_unallocated();
        self.status.mark();
    }

    fn on_node_state(&mut self, n: &NodeLite) {
        let Some(s) = nodes::snapshot(n) else { return };
        let name = s.name.clone();
        let had_conflict = self.ledger.conflict_of(&name).is_some();
        if !self.ledger.upsert_node(&s).changed {
            // Stale (older than what is held) or a heartbeat: nothing a
            // decision or a status reads has changed.
            return;
        }
        self.pipeline.touch(&name);
        match self.ledger.node_has_prefixes(&name) {
            Some(false) if !s.deleting => self.pipeline.push_waiting(&name, Instant::now()),
            // Written by someone else (our own write's response records the
            // latency, even when its watch event comes first).
            _ if !self.pipeline.is_in_flight(&name) => self.pipeline.filled_elsewhere(&name),
            _ => {}
        }
        if !had_conflict {
            self.report_conflict(&name, n.object_ref(&()));
        }
        self.status.mark();
    }

    fn on_node_deleted(&mut self, n: &NodeLite) {
        let name = n.name_any();
        let uid = n.metadata.uid.clone().unwrap_or_default();
        let rv = crate::ledger::parse_resource_version(n.metadata.resource_version.as_deref());
        for pool in self.ledger.remove_node(&name, &uid, rv) {
            self.metrics
                .releases
                .get_or_create(&self.metrics.pool(&pool))
                .inc();
        }
        self.pipeline.forget(&name);
        self.warned.forget_node(&name);
        // Freed space may serve Nodes that wait (only those: a mass deletion
        // must not re-plan every Node once per deleted Node).
        self.wake_waiting();
        self.status.mark();
    }

    pub(super) fn enqueue_all_unallocated(&mut self) {
        let mut names = self.ledger.unallocated_nodes();
        names.sort();
        let now = Instant::now();
        for n in names {
            self.pipeline.push_waiting(&n, now);
        }
        // Pools changed: claims that waited may be served now.
        self.wake_waiting_claims();
    }

    /// Space may have been freed (a reservation released): Nodes that were
    /// told to wait are planned again.
    pub(super) fn wake_waiting(&mut self) {
        for n in self.ledger.waiting_nodes() {
            self.pipeline.push(&n);
        }
    }

    /// Warns once about every Node newly found in conflict.
    pub(super) fn report_new_conflicts(&mut self) {
        for name in self.ledger.conflicted_nodes() {
            if !self.warned.was_conflict(&name) {
                let r = node_ref(&name, self.ledger.node_uid(&name));
                self.report_conflict(&name, r);
            }
        }
        let ledger = &self.ledger;
        self.warned
            .retain_conflicts(|n| ledger.conflict_of(n).is_some());
    }

    pub(super) fn report_conflict(&mut self, name: &str, node: ObjectReference) {
        if let Some(reasons) = self.ledger.conflict_of(name)
            && self.warned.first_conflict(name)
        {
            let msg = reasons.join("; ");
            warn!(node = name, "podCIDRs conflict: {msg}");
            self.events.send(Note::warning(
                node,
                "PrefixConflict",
                "Adopt",
                format!("{msg}. The Node is left as it is and its space is never handed out; delete and re-register the Node to fix it"),
            ));
        }
    }
}

pub(super) fn node_ref(name: &str, uid: Option<String>) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Node".into()),
        name: Some(name.into()),
        uid,
        ..Default::default()
    }
}
