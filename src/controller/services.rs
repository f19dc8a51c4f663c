//! LoadBalancer Services, from watch event to `status.loadBalancer.ingress`
//! and back: what a Service state does to the picture, the one write each
//! Service needs next, and its answer. As for Nodes and claims, addresses
//! are reserved in the ledger before the write, the write carries the
//! Service's `resourceVersion` (it lands on the state it was planned for,
//! or not at all), and its answer comes back to the loop.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Api;
use tokio::task::JoinSet;
use tracing::{info, warn};

use super::events::Note;
use super::lane::Lane;
use super::reconciler::Reconciler;
use super::service_step::{Answered, Outcome, Purpose, outcome, wait_reason};
use crate::k8s::errors::{
    as_leader, bounded_request as bounded, error_message, error_reason, write_outcome,
};
use crate::k8s::list_watch::Watched;
use crate::k8s::services::{self as edge, Classes, ServiceLite};
use crate::ledger::{AddressPlan, AddressWait};

pub(super) struct Done {
    key: String,
    rv: String,
    purpose: Purpose,
    answer: Result<Option<ServiceLite>, kube::Error>,
    /// The answer is a read-back of a write with an unknown outcome.
    settle: bool,
}

/// The Services' share of the reconciler's state.
pub(super) struct Services {
    pub(super) classes: Classes,
    client: kube::Client,
    /// Name and namespace of each Service key, and its last object (for the
    /// write's resourceVersion and Events).
    objects: HashMap<String, ServiceLite>,
    pub(super) synced: bool,
    /// Services to look at, in flight, waiting out a failure.
    lane: Lane,
    /// Services told to wait, and why (Events once per reason).
    waits: HashMap<String, String>,
    /// The last unparsable request reported per Service.
    warned: HashMap<String, String>,
    /// Addresses changed since the gauges were last published.
    gauges_dirty: bool,
    pub(super) tasks: JoinSet<Done>,
    /// Set when leadership was gained: re-list Services before any write.
    pub(super) needs_relist: bool,
    pub(super) lists: JoinSet<ServiceList>,
}

/// Every Service, read by a new leader before its first write.
pub(super) type ServiceList = Result<(Vec<ServiceLite>, Option<String>), kube::Error>;

impl Services {
    pub(super) fn new(client: &kube::Client, classes: Classes) -> Self {
        Services {
            classes,
            client: client.clone(),
            objects: HashMap::new(),
            synced: false,
            lane: Lane::default(),
            waits: HashMap::new(),
            warned: HashMap::new(),
            gauges_dirty: false,
            tasks: JoinSet::new(),
            needs_relist: false,
            lists: JoinSet::new(),
        }
    }

    pub(super) fn next_retry(&self) -> Option<Instant> {
        self.lane.next_retry()
    }

    fn api(&self, key: &str) -> Option<(Api<ServiceLite>, String)> {
        let (ns, name) = key.split_once('/')?;
        Some((Api::namespaced(self.client.clone(), ns), name.to_string()))
    }
}

impl Reconciler {
    pub(super) fn on_service_event(&mut self, ev: Watched<ServiceLite>) {
        match ev {
            Watched::Failed(e) => {
                self.metrics.error("WatchServices");
                warn!("{e}");
            }
            Watched::Listed {
                items,
                resource_version,
            } => {
                info!(services = items.len(), "Service list complete");
                let classes = self.services.classes.clone();
                let snaps: Vec<_> = items.iter().map(|s| edge::snapshot(s, &classes)).collect();
                let removed = self.ledger.replace_services(&snaps, resource_version);
                for k in &removed {
                    self.services.objects.remove(k);
                    self.services.waits.remove(k);
                }
                for s in items {
                    self.take_service(s);
                }
                self.services.lane.push_all(self.ledger.service_keys());
                self.services.synced = true;
                self.addresses_changed();
            }
            Watched::Apply(s) => {
                if self.apply_service(&s) {
                    self.addresses_changed();
                }
            }
            Watched::Delete(s) => {
                let key = edge::key_of(&s.metadata);
                let uid = s.metadata.uid.clone().unwrap_or_default();
                let rv =
                    crate::ledger::parse_resource_version(s.metadata.resource_version.as_deref());
                if self.ledger.remove_service(&key, &uid, rv) {
                    info!(service = %key, "Service gone; its LoadBalancer addresses are free");
                    self.addresses_changed();
                }
                if self.ledger.service_revision(&key).is_none() {
                    self.services.objects.remove(&key);
                    self.services.waits.remove(&key);
                    self.services.warned.remove(&key);
                    self.services.lane.forget(&key);
                }
            }
        }
    }

    /// Feeds a Service state to the ledger; true when the addresses it
    /// holds changed.
    fn apply_service(&mut self, s: &ServiceLite) -> bool {
        let snap = edge::snapshot(s, &self.services.classes);
        let bad = edge::unparsable_requests(s);
        if snap.wants.is_some() && !bad.is_empty() {
            let msg = format!(
                "requested address(es) {} are not IP addresses and are ignored",
                bad.join(", ")
            );
            let text = format!("InvalidRequestedAddress: {msg}");
            if self.services.warned.get(&snap.key) != Some(&text) {
                self.services.warned.insert(snap.key.clone(), text);
                warn!(service = %snap.key, "{msg}");
                let r = self.service_ref(&snap.key);
                self.events.send(Note::warning(
                    r,
                    "InvalidRequestedAddress",
                    "AllocateLoadBalancerAddress",
                    msg,
                ));
            }
        }
        let moved = self.ledger.upsert_service(&snap);
        let key = snap.key.clone();
        self.take_service(s.clone());
        self.services.lane.push(&key);
        moved
    }

    fn take_service(&mut self, s: ServiceLite) {
        let key = edge::key_of(&s.metadata);
        let rv = crate::ledger::parse_resource_version(s.metadata.resource_version.as_deref());
        if self
            .ledger
            .service_revision(&key)
            .is_some_and(|(uid, held)| {
                Some(uid.as_str()) == s.metadata.uid.as_deref() && held == rv
            })
        {
            self.services.objects.insert(key, s);
        }
    }

    /// Addresses were taken or freed: waiting Services are planned again,
    /// deleted LoadBalancer claims look again, the gauges follow.
    fn addresses_changed(&mut self) {
        let waiting: Vec<String> = self.services.waits.keys().cloned().collect();
        self.services.lane.push_all(waiting);
        self.wake_deleting_claims();
        self.services.gauges_dirty = true;
    }

    /// Publishes the per-claim address gauges, at most once per status
    /// tick (not on every write answer of a burst).
    pub(super) fn publish_claim_gauges(&mut self) {
        if !std::mem::take(&mut self.services.gauges_dirty) {
            return;
        }
        for (claim, (usable, held)) in self.ledger.claim_address_counts() {
            self.metrics.publish_claim(&claim, usable, held);
        }
    }

    /// Bound LoadBalancer claims appeared or went: waiting Services may be
    /// served now.
    pub(super) fn wake_waiting_services(&mut self) {
        let waiting: Vec<String> = self.services.waits.keys().cloned().collect();
        self.services.lane.push_all(waiting);
    }

    pub(super) fn dispatch_services(&mut self) {
        if !self.synced()
            || !self.services.synced
            || !self.is_leader()
            || self.needs_resync
            || self.claims.needs_relist
            || self.services.needs_relist
        {
            return;
        }
        let ready = self.services.lane.take_ready(Instant::now());
        let mut rest = ready.into_iter();
        for key in rest.by_ref() {
            // As many writes in flight as for Nodes; the rest wait their turn.
            if self.services.lane.in_flight() >= self.settings.max_concurrent_writes {
                self.services.lane.push(&key);
                break;
            }
            match self.ledger.plan_service(&key) {
                AddressPlan::Nothing => {
                    self.services.waits.remove(&key);
                }
                AddressPlan::Wait(w) => self.service_waits(&key, &w),
                AddressPlan::Assign(picks) => {
                    self.services.waits.remove(&key);
                    self.write_service(key, Purpose::Assign(picks));
                }
                AddressPlan::Release => self.write_service(key, Purpose::Release),
            }
        }
        self.services.lane.push_all(rest);
    }

    fn service_waits(&mut self, key: &str, w: &AddressWait) {
        let (reason, msg) = wait_reason(w);
        let text = format!("{reason}: {msg}");
        if self.services.waits.get(key) == Some(&text) {
            return;
        }
        self.services.waits.insert(key.to_string(), text);
        warn!(service = key, reason, "{msg}");
        let r = self.service_ref(key);
        self.events
            .send(Note::warning(r, reason, "AllocateLoadBalancerAddress", msg));
    }

    fn write_service(&mut self, key: String, purpose: Purpose) {
        let Some((api, name)) = self.services.api(&key) else {
            return;
        };
        let rv = self
            .services
            .objects
            .get(&key)
            .and_then(|o| o.metadata.resource_version.clone())
            .unwrap_or_default();
        let ips: Vec<IpAddr> = match &purpose {
            Purpose::Assign(picks) => picks.iter().map(|(_, a)| *a).collect(),
            Purpose::Release => vec![],
        };
        self.services.lane.start(&key);
        self.metrics.service_writes.inc();
        let deadline = self.settings.lease_deadline.clone();
        self.services.tasks.spawn(async move {
            let lapsed = deadline.as_ref().is_some_and(|d| !crate::leader::within(d));
            let write = edge::write_ingress(&api, &name, &rv, &ips);
            let answer = as_leader(lapsed, write).await.map(Some);
            Done {
                key,
                rv,
                purpose,
                answer,
                settle: false,
            }
        });
    }

    pub(super) fn on_service_done(&mut self, d: Done) {
        let key = d.key;
        self.services.lane.finish(&key);
        let snap = match &d.answer {
            Ok(Some(obj)) => Some(edge::snapshot(obj, &self.services.classes)),
            _ => None,
        };
        let answered = match &d.answer {
            Ok(Some(obj)) => Ok(Some(Answered {
                ingress: snap
                    .as_ref()
                    .map(|s| s.ingress.as_slice())
                    .unwrap_or_default(),
                resource_version: obj.metadata.resource_version.as_deref(),
            })),
            Ok(None) => Ok(None),
            Err(e) => Err(write_outcome(e)),
        };
        match (
            outcome(&d.purpose, &d.rv, d.settle, answered),
            d.answer,
            snap,
        ) {
            (Outcome::SettleAgain, _, _) => {
                // Still at the state written to: it may yet land.
                self.settle_service(key, d.rv, d.purpose, Duration::from_secs(1));
            }
            (Outcome::Commit { assigned }, Ok(Some(obj)), Some(snap)) => {
                self.services.lane.succeeded(&key);
                self.ledger.commit_service(&snap);
                self.take_service(obj);
                if assigned && let Purpose::Assign(picks) = &d.purpose {
                    let list: Vec<String> = picks
                        .iter()
                        .map(|(c, a)| format!("{a} (PrefixClaim {c})"))
                        .collect();
                    info!(service = %key, addresses = %list.join(", "), "LoadBalancer addresses assigned");
                    let r = self.service_ref(&key);
                    self.events.send(Note::normal(
                        r,
                        "LoadBalancerAddressAssigned",
                        "AllocateLoadBalancerAddress",
                        format!("assigned {}", list.join(", ")),
                    ));
                }
                self.addresses_changed();
                self.services.lane.push(&key);
            }
            (Outcome::Gone, _, _) => {
                // Gone: nothing held; the watch's Delete does the rest.
                self.ledger.release_service(&key);
                self.addresses_changed();
            }
            (Outcome::ReadBack, Err(e), _) => {
                // It may have landed: the reservation stays until a read
                // settles it.
                self.metrics.error(error_reason(&e));
                warn!(service = %key, "LoadBalancer status write outcome unknown, reading back: {}", error_message(&e));
                self.settle_service(key, d.rv, d.purpose, Duration::from_millis(200));
            }
            (Outcome::Retry, Err(e), _) => {
                self.ledger.release_service(&key);
                self.metrics.error(error_reason(&e));
                let delay = self.services.lane.failed(&key, Instant::now());
                warn!(service = %key, "LoadBalancer status write failed, retrying in {delay:?}: {}", error_message(&e));
                self.addresses_changed();
            }
            (o, _, _) => {
                // outcome() gives Commit only for an object, ReadBack and
                // Retry only for an error.
                warn!(service = %key, "unexpected outcome {o:?} of a LoadBalancer status write; looking again");
                self.services.lane.push(&key);
            }
        }
    }

    fn settle_service(&mut self, key: String, rv: String, purpose: Purpose, after: Duration) {
        let Some((api, name)) = self.services.api(&key) else {
            return;
        };
        self.services.lane.start(&key);
        self.services.tasks.spawn(async move {
            tokio::time::sleep(after).await;
            Done {
                answer: bounded(crate::k8s::list_watch::read_by_name(&api, &name)).await,
                key,
                rv,
                purpose,
                settle: true,
            }
        });
    }

    /// A new leader reads every Service before its first write.
    pub(super) fn maybe_relist_services(&mut self) {
        if !self.services.needs_relist || !self.is_leader() || !self.services.lists.is_empty() {
            return;
        }
        let api: Api<ServiceLite> = Api::all(self.services.client.clone());
        self.services
            .lists
            .spawn(async move { bounded(crate::k8s::list_watch::list_all(&api)).await });
    }

    pub(super) fn on_service_relist(&mut self, list: ServiceList) {
        match list {
            Ok((items, rv)) => {
                if self.services.needs_relist {
                    let rv = crate::ledger::parse_resource_version(rv.as_deref());
                    self.services.needs_relist = false;
                    self.on_service_event(Watched::Listed {
                        items,
                        resource_version: rv,
                    });
                }
            }
            Err(e) => {
                self.metrics.error(error_reason(&e));
                warn!("re-listing Services failed: {}", error_message(&e));
            }
        }
    }

    fn service_ref(&self, key: &str) -> ObjectReference {
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
