//! What the three lanes (Nodes, PrefixClaims, Services) share: the
//! [`Ledger`], the settings, metrics, Events and pool statuses, whether
//! this replica leads and every watch has listed — and the one gate every
//! write passes, [`Core::may_write`].
//!
//! A lane never reaches into another lane. When what it did matters to
//! another (space freed, pools changed, a claim bound), it raises a flag in
//! [`Wake`]; the loop hands the flags to the lanes at the end of the turn,
//! before anything is dispatched.

use std::sync::Arc;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Resource;
use tokio::sync::watch;
use tracing::{info, warn};

use super::events::{EventSink, Note};
use super::pool_gate::PoolGate;
use super::pool_status::writer::StatusWriter;
use super::warned::Warned;
use super::{Health, Settings};
use crate::api::{PrefixClaim, PrefixPool};
use crate::ledger::Ledger;
use crate::metrics::Metrics;

/// Which watches have delivered their first list.
#[derive(Debug, Default)]
pub(crate) struct Synced {
    pub(crate) nodes: bool,
    pub(crate) pools: bool,
    pub(crate) claims: bool,
    pub(crate) addresses: bool,
    pub(crate) service_cidrs: bool,
    pub(crate) services: bool,
}

/// A new leader's re-lists still to be read (set when leadership is
/// gained): no lane writes before all of them are in.
#[derive(Debug, Default)]
pub(crate) struct Relist {
    pub(crate) nodes: bool,
    pub(crate) claims: bool,
    pub(crate) services: bool,
}

impl Relist {
    fn pending(&self) -> bool {
        self.nodes || self.claims || self.services
    }
}

/// What one lane's work means for the others, collected during a turn.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Wake {
    /// Space was freed: Nodes told to wait are planned again.
    pub(crate) waiting_nodes: bool,
    /// Pools changed: every Node without prefixes is queued.
    pub(crate) unallocated_nodes: bool,
    /// Space was freed or pools changed: claims told to wait look again.
    pub(crate) waiting_claims: bool,
    /// Service addresses were freed: deleted LoadBalancer claims look again.
    pub(crate) deleting_claims: bool,
    /// LoadBalancer claims were bound or went: waiting Services look again.
    pub(crate) waiting_services: bool,
    /// A check of the pools passed: claims waiting for it look again.
    pub(crate) pools_checked: bool,
}

impl Wake {
    /// Space was freed (a prefix released): everything that waits for
    /// space looks again.
    pub(crate) fn space_freed(&mut self) {
        self.waiting_nodes = true;
        self.waiting_claims = true;
    }

    /// Pools changed: every Node without prefixes and every waiting claim.
    pub(crate) fn pools_changed(&mut self) {
        self.unallocated_nodes = true;
        self.waiting_claims = true;
    }
}

/// The state the lanes share, owned by the loop's task.
pub(crate) struct Core {
    pub(crate) settings: Settings,
    pub(crate) ledger: Ledger,
    pub(crate) metrics: Arc<Metrics>,
    health: Arc<Health>,
    pub(crate) events: EventSink,
    pub(crate) status: StatusWriter,
    pub(crate) warned: Warned,
    leader: watch::Receiver<bool>,
    pub(crate) synced: Synced,
    pub(crate) relist: Relist,
    pub(crate) wake: Wake,
    /// The pool check every plan waits for.
    pub(crate) gate: PoolGate,
}

impl Core {
    pub(crate) fn new(
        settings: Settings,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
        events: EventSink,
        leader: watch::Receiver<bool>,
    ) -> Self {
        Core {
            settings,
            ledger: Ledger::new(),
            metrics,
            health,
            events,
            status: StatusWriter::default(),
            warned: Warned::default(),
            leader,
            synced: Synced::default(),
            relist: Relist::default(),
            wake: Wake::default(),
            gate: PoolGate::default(),
        }
    }

    /// Counts a failed request by its reason. A write the API server's fence
    /// refused (another replica holds the Lease the API server sees) also
    /// ends this replica's writing at once: it steps down and waits to be
    /// elected again, so that the ones after it are never sent.
    pub(crate) fn request_failed(&self, e: &kube::Error) -> &'static str {
        let reason = crate::k8s::errors::error_reason(e);
        self.metrics.error(reason);
        if reason == "Fenced" {
            if let Some(d) = &self.settings.lease_deadline {
                crate::leader::fence(d);
            }
            tracing::warn!(
                "the API server's fence refused a write: another replica holds the Lease; stop writing ({})",
                crate::k8s::errors::error_message(e)
            );
        }
        reason
    }

    /// This replica leads and its lease has not lapsed.
    pub(crate) fn is_leader(&self) -> bool {
        *self.leader.borrow()
            && self
                .settings
                .lease_deadline
                .as_ref()
                .is_none_or(crate::leader::within)
    }

    /// Every Node, pool and claim is known: only then may anything be
    /// written (a claim's prefix is as much a record as a Node's). Service
    /// addresses too: no prefix is carved before every live ClusterIP is
    /// known.
    pub(crate) fn synced(&self) -> bool {
        let s = &self.synced;
        s.nodes && s.pools && s.claims && s.addresses
    }

    /// The gate every lane's writes pass: the leader, every watch the
    /// picture needs listed, and no re-list of a new leader outstanding.
    pub(crate) fn may_write(&self) -> bool {
        self.synced() && self.is_leader() && !self.relist.pending()
    }

    /// Reports ready once the picture is complete.
    pub(crate) fn after_sync(&mut self) {
        use std::sync::atomic::Ordering;
        if self.synced() && !self.health.ready.swap(true, Ordering::SeqCst) {
            info!("initial sync complete; ready");
        }
    }

    /// Warns once about every Node newly found in conflict.
    pub(crate) fn report_new_conflicts(&mut self) {
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

    /// Warns once that Node `name` holds podCIDRs in conflict.
    pub(crate) fn report_conflict(&mut self, name: &str, node: ObjectReference) {
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

    pub(crate) fn node_ref(&self, name: &str) -> ObjectReference {
        node_ref(name, self.ledger.node_uid(name))
    }

    pub(crate) fn claim_ref(&self, name: &str) -> ObjectReference {
        ObjectReference {
            api_version: Some(PrefixClaim::api_version(&()).into_owned()),
            kind: Some(PrefixClaim::kind(&()).into_owned()),
            name: Some(name.into()),
            uid: self.ledger.claim_state(name).map(|s| s.uid),
            ..Default::default()
        }
    }

    pub(crate) fn service_ref(&self, key: &str) -> ObjectReference {
        let (ns, name) = key.split_once('/').unwrap_or(("", key));
        ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Service".into()),
            namespace: Some(ns.into()),
            name: Some(name.into()),
            uid: self.ledger.service_revision(key).map(|(u, _)| u),
            ..Default::default()
        }
    }
}

pub(crate) fn node_ref(name: &str, uid: Option<String>) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Node".into()),
        name: Some(name.into()),
        uid,
        ..Default::default()
    }
}

pub(crate) fn pool_ref(name: &str, uid: Option<String>) -> ObjectReference {
    ObjectReference {
        api_version: Some(PrefixPool::api_version(&()).into_owned()),
        kind: Some(PrefixPool::kind(&()).into_owned()),
        name: Some(name.into()),
        uid,
        ..Default::default()
    }
}
