//! What a Node state does to the picture: watch events and lists are applied
//! to the ledger in the API server's order, and the Nodes that now need
//! prefixes are queued.

use std::time::Instant;

use kube::{Resource, ResourceExt};
use tracing::{info, warn};

use super::NodeLane;
use crate::controller::core::Core;
use crate::k8s::list_watch::Watched;
use crate::k8s::nodes::{self, NodeLite};
use crate::ledger::NodeSnapshot;

impl NodeLane {
    pub(crate) fn on_node_event(&mut self, core: &mut Core, ev: Watched<NodeLite>) {
        match ev {
            Watched::Failed(e) => {
                core.metrics.error("WatchNodes");
                warn!("{e}");
            }
            Watched::Listed {
                items,
                resource_version,
            } => {
                let nodes = items.len();
                self.merge_node_list(core, items, resource_version);
                info!(nodes, "Node list complete; merged into the picture");
                core.synced.nodes = true;
                core.report_new_conflicts();
                core.after_sync();
            }
            Watched::Apply(n) => self.on_node_state(core, &n),
            Watched::Delete(n) => self.on_node_deleted(core, &n),
        }
    }

    /// Merges a complete, consistent list of Nodes (the watch's or a new
    /// leader's) into the picture and queues every Node without prefixes.
    pub(super) fn merge_node_list(
        &mut self,
        core: &mut Core,
        items: Vec<NodeLite>,
        list_rv: Option<u64>,
    ) {
        let snaps: Vec<NodeSnapshot> = items.into_iter().filter_map(nodes::into_snapshot).collect();
        let verify = core.ledger.replace_nodes(snaps, list_rv);
        self.verify_nodes(core, verify);
        self.pipeline.touch_all(&mut core.gate);
        self.enqueue_all_unallocated(core);
        core.status.mark();
    }

    pub(super) fn on_node_state(&mut self, core: &mut Core, n: &NodeLite) {
        let Some(s) = nodes::snapshot(n) else { return };
        let name = s.name.clone();
        let had_conflict = core.ledger.conflict_of(&name).is_some();
        if !core.ledger.upsert_node(&s).changed {
            // Stale (older than what is held) or a heartbeat: nothing a
            // decision or a status reads has changed.
            return;
        }
        self.pipeline.touch(&name, &mut core.gate);
        match core.ledger.node_has_prefixes(&name) {
            Some(false) if !s.deleting => {
                self.pipeline
                    .push_waiting(&name, Instant::now(), &mut core.gate)
            }
            // Written by someone else (our own write's response records the
            // latency, even when its watch event comes first).
            _ if !self.pipeline.is_in_flight(&name) => self.pipeline.filled_elsewhere(&name),
            _ => {}
        }
        if !had_conflict {
            core.report_conflict(&name, n.object_ref(&()));
        }
        core.status.mark();
    }

    pub(super) fn on_node_deleted(&mut self, core: &mut Core, n: &NodeLite) {
        let name = n.name_any();
        let uid = n.metadata.uid.clone().unwrap_or_default();
        let rv = crate::ledger::parse_resource_version(n.metadata.resource_version.as_deref());
        for pool in core.ledger.remove_node(&name, &uid, rv) {
            core.metrics
                .releases
                .get_or_create(&core.metrics.pool(&pool))
                .inc();
        }
        self.pipeline.forget(&name);
        core.warned.forget_node(&name);
        // Freed space may serve Nodes that wait (only those: a mass deletion
        // must not re-plan every Node once per deleted Node).
        self.wake_waiting(core);
        core.status.mark();
    }

    pub(crate) fn enqueue_all_unallocated(&mut self, core: &mut Core) {
        let mut names = core.ledger.unallocated_nodes();
        names.sort();
        let now = Instant::now();
        for n in names {
            self.pipeline.push_waiting(&n, now, &mut core.gate);
        }
        // Pools changed: claims that waited may be served now.
        core.wake.waiting_claims = true;
    }

    /// Space may have been freed (a reservation released): Nodes that were
    /// told to wait are planned again.
    pub(crate) fn wake_waiting(&mut self, core: &mut Core) {
        for n in core.ledger.waiting_nodes() {
            self.pipeline.push(&n, &mut core.gate);
        }
    }
}
