//! LoadBalancer Services, from watch event to `status.loadBalancer.ingress`
//! and back: what a Service state does to the picture, the one write each
//! Service needs next, and its answer. As for Nodes and claims, addresses
//! are reserved in the ledger before the write, the write carries the
//! Service's `resourceVersion` (it lands on the state it was planned for,
//! or not at all), and its answer comes back to the loop.

mod answers;
mod step;

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

use kube::Api;
use tokio::task::JoinSet;
use tracing::{info, warn};

use super::core::Core;
use super::events::Note;
use super::lane::Lane;
use crate::k8s::errors::{as_leader, bounded_request as bounded, error_message};
use crate::k8s::list_watch::Watched;
use crate::k8s::services::{self as edge, Classes, ServiceLite};
use crate::ledger::{AddressPlan, AddressWait};
use step::{Purpose, wait_reason};

pub(crate) struct Done {
    key: String,
    rv: String,
    purpose: Purpose,
    answer: Result<Option<ServiceLite>, kube::Error>,
    /// The answer is a read-back of a write with an unknown outcome.
    settle: bool,
}

/// What came back to the lane.
pub(crate) type Answer = super::lane_answer::Answer<Done, ServiceList>;

/// The LoadBalancer Service lane's state.
pub(crate) struct ServiceLane {
    pub(crate) classes: Classes,
    client: kube::Client,
    /// Name and namespace of each Service key, and its last object (for the
    /// write's resourceVersion and Events).
    objects: HashMap<String, ServiceLite>,
    /// Services to look at, in flight, waiting out a failure.
    lane: Lane,
    /// Services told to wait, and why (Events once per reason).
    waits: HashMap<String, String>,
    /// The last unparsable request reported per Service.
    warned: HashMap<String, String>,
    /// Addresses changed since the gauges were last published.
    gauges_dirty: bool,
    pub(crate) tasks: JoinSet<Done>,
    pub(crate) lists: JoinSet<ServiceList>,
}

/// Every Service, read by a new leader before its first write.
pub(crate) type ServiceList = Result<(Vec<ServiceLite>, Option<String>), kube::Error>;

impl ServiceLane {
    pub(crate) fn new(client: &kube::Client, classes: Classes) -> Self {
        ServiceLane {
            classes,
            client: client.clone(),
            objects: HashMap::new(),
            lane: Lane::default(),
            waits: HashMap::new(),
            warned: HashMap::new(),
            gauges_dirty: false,
            tasks: JoinSet::new(),
            lists: JoinSet::new(),
        }
    }

    /// The next answer of a request in flight (pending while there is none).
    pub(crate) async fn answer(&mut self) -> Answer {
        super::lane_answer::next(&mut self.tasks, &mut self.lists).await
    }

    pub(crate) fn on_answer(&mut self, core: &mut Core, a: Answer) {
        match a {
            Answer::Done(Ok(d)) => self.on_service_done(core, d),
            Answer::Done(Err(e)) => warn!("Service task failed: {e}"),
            Answer::List(Ok(l)) => self.on_service_relist(core, l),
            Answer::List(Err(e)) => warn!("Service re-list task failed: {e}"),
        }
    }

    pub(crate) fn next_retry(&self) -> Option<Instant> {
        self.lane.next_retry()
    }

    pub(super) fn api(&self, key: &str) -> Option<(Api<ServiceLite>, String)> {
        let (ns, name) = key.split_once('/')?;
        Some((Api::namespaced(self.client.clone(), ns), name.to_string()))
    }
}

impl ServiceLane {
    pub(super) fn on_service_event(&mut self, core: &mut Core, ev: Watched<ServiceLite>) {
        match ev {
            Watched::Failed(e) => {
                core.metrics.error("WatchServices");
                warn!("{e}");
            }
            Watched::Listed {
                items,
                resource_version,
            } => {
                info!(services = items.len(), "Service list complete");
                let classes = self.classes.clone();
                let snaps: Vec<_> = items.iter().map(|s| edge::snapshot(s, &classes)).collect();
                let removed = core.ledger.replace_services(&snaps, resource_version);
                for k in &removed {
                    self.objects.remove(k);
                    self.waits.remove(k);
                }
                for s in items {
                    self.take_service(core, s);
                }
                self.lane.push_all(core.ledger.service_keys());
                core.synced.services = true;
                self.addresses_changed(core);
            }
            Watched::Apply(s) => {
                if self.apply_service(core, &s) {
                    self.addresses_changed(core);
                }
            }
            Watched::Delete(s) => {
                let key = edge::key_of(&s.metadata);
                let uid = s.metadata.uid.clone().unwrap_or_default();
                let rv =
                    crate::ledger::parse_resource_version(s.metadata.resource_version.as_deref());
                if core.ledger.remove_service(&key, &uid, rv) {
                    info!(service = %key, "Service gone; its LoadBalancer addresses are free");
                    self.addresses_changed(core);
                }
                if core.ledger.service_revision(&key).is_none() {
                    self.objects.remove(&key);
                    self.waits.remove(&key);
                    self.warned.remove(&key);
                    self.lane.forget(&key);
                }
            }
        }
    }

    /// Feeds a Service state to the ledger; true when the addresses it
    /// holds changed.
    pub(super) fn apply_service(&mut self, core: &mut Core, s: &ServiceLite) -> bool {
        let snap = edge::snapshot(s, &self.classes);
        let bad = edge::unparsable_requests(s);
        if snap.wants.is_some() && !bad.is_empty() {
            let msg = format!(
                "requested address(es) {} are not IP addresses and are ignored",
                bad.join(", ")
            );
            let text = format!("InvalidRequestedAddress: {msg}");
            if self.warned.get(&snap.key) != Some(&text) {
                self.warned.insert(snap.key.clone(), text);
                warn!(service = %snap.key, "{msg}");
                let r = core.service_ref(&snap.key);
                core.events.send(Note::warning(
                    r,
                    "InvalidRequestedAddress",
                    "AllocateLoadBalancerAddress",
                    msg,
                ));
            }
        }
        let moved = core.ledger.upsert_service(&snap);
        let key = snap.key.clone();
        self.take_service(core, s.clone());
        self.lane.push(&key);
        moved
    }

    pub(super) fn take_service(&mut self, core: &mut Core, s: ServiceLite) {
        let key = edge::key_of(&s.metadata);
        let rv = crate::ledger::parse_resource_version(s.metadata.resource_version.as_deref());
        if core
            .ledger
            .service_revision(&key)
            .is_some_and(|(uid, held)| {
                Some(uid.as_str()) == s.metadata.uid.as_deref() && held == rv
            })
        {
            self.objects.insert(key, s);
        }
    }

    /// Addresses were taken or freed: waiting Services are planned again,
    /// deleted LoadBalancer claims look again, the gauges follow.
    pub(super) fn addresses_changed(&mut self, core: &mut Core) {
        let waiting: Vec<String> = self.waits.keys().cloned().collect();
        self.lane.push_all(waiting);
        core.wake.deleting_claims = true;
        self.gauges_dirty = true;
    }

    /// Publishes the per-claim address gauges, at most once per status
    /// tick (not on every write answer of a burst).
    pub(super) fn publish_claim_gauges(&mut self, core: &mut Core) {
        if !std::mem::take(&mut self.gauges_dirty) {
            return;
        }
        for (claim, (usable, held)) in core.ledger.claim_address_counts() {
            core.metrics.publish_claim(&claim, usable, held);
        }
    }

    /// Bound LoadBalancer claims appeared or went: waiting Services may be
    /// served now.
    pub(crate) fn wake_waiting_services(&mut self) {
        let waiting: Vec<String> = self.waits.keys().cloned().collect();
        self.lane.push_all(waiting);
    }

    pub(super) fn dispatch_services(&mut self, core: &mut Core) {
        if !(core.may_write() && core.synced.services) {
            return;
        }
        // As many writes in flight as for Nodes; the rest wait their turn
        // in the queue (taken only as room frees, not all every turn).
        loop {
            let room = core
                .settings
                .max_concurrent_writes
                .saturating_sub(self.lane.in_flight());
            let ready = self.lane.take_ready(Instant::now(), room);
            if ready.is_empty() {
                return;
            }
            for key in ready {
                self.plan_one(core, key);
            }
        }
    }

    /// What Service `key` gets (the ledger decides), written.
    fn plan_one(&mut self, core: &mut Core, key: String) {
        match core.ledger.plan_service(&key) {
            AddressPlan::Nothing => {
                self.waits.remove(&key);
            }
            AddressPlan::Wait(w) => self.service_waits(core, &key, &w),
            AddressPlan::Assign(picks) => {
                self.waits.remove(&key);
                self.write_service(core, key, Purpose::Assign(picks));
            }
            AddressPlan::Release => self.write_service(core, key, Purpose::Release),
        }
    }

    pub(super) fn service_waits(&mut self, core: &mut Core, key: &str, w: &AddressWait) {
        let (reason, msg) = wait_reason(w);
        let text = format!("{reason}: {msg}");
        if self.waits.get(key) == Some(&text) {
            return;
        }
        self.waits.insert(key.to_string(), text);
        warn!(service = key, reason, "{msg}");
        let r = core.service_ref(key);
        core.events
            .send(Note::warning(r, reason, "AllocateLoadBalancerAddress", msg));
    }

    pub(super) fn write_service(&mut self, core: &mut Core, key: String, purpose: Purpose) {
        let Some((api, name)) = self.api(&key) else {
            return;
        };
        let rv = self
            .objects
            .get(&key)
            .and_then(|o| o.metadata.resource_version.clone())
            .unwrap_or_default();
        let ips: Vec<IpAddr> = match &purpose {
            Purpose::Assign(picks) => picks.iter().map(|(_, a)| *a).collect(),
            Purpose::Release => vec![],
        };
        self.lane.start(&key);
        core.metrics.service_writes.inc();
        let deadline = core.settings.lease_deadline.clone();
        self.tasks.spawn(async move {
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

    /// A new leader reads every Service before its first write.
    pub(super) fn maybe_relist_services(&mut self, core: &mut Core) {
        if !core.relist.services || !core.is_leader() || !self.lists.is_empty() {
            return;
        }
        let api: Api<ServiceLite> = Api::all(self.client.clone());
        self.lists
            .spawn(async move { bounded(crate::k8s::list_watch::list_all(&api)).await });
    }

    pub(super) fn on_service_relist(&mut self, core: &mut Core, list: ServiceList) {
        match list {
            Ok((items, rv)) => {
                if core.relist.services {
                    let rv = crate::ledger::parse_resource_version(rv.as_deref());
                    core.relist.services = false;
                    self.on_service_event(
                        core,
                        Watched::Listed {
                            items,
                            resource_version: rv,
                        },
                    );
                }
            }
            Err(e) => {
                core.request_failed(&e);
                warn!("re-listing Services failed: {}", error_message(&e));
            }
        }
    }
}
