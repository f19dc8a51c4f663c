//! PrefixClaims, from watch event to bound prefix and back: what a claim
//! state does to the picture, the one step each claim takes next, and the
//! requests that carry the steps out. Each claim has at most one request in
//! flight; its answer comes back to the reconciler's loop like a watch
//! event, so the ledger (the one owner of free space) decides every bind.
//!
//! A bind is guarded like a Node write: the prefix is reserved in the
//! ledger first, the pools are checked to be current, and the status write
//! carries the claim's `resourceVersion`, so it lands on the state the
//! choice was made for or not at all. `status.prefix` is write-once (a CEL
//! rule of the CRD), so no later write can move a bound prefix.
//!
//! A claim of purpose `ServiceCIDR` gets a ServiceCIDR of its own name,
//! carrying the operator's finalizer. Deleting the claim deletes the
//! ServiceCIDR (the API server then allocates nothing more from it); the
//! prefix stays claimed until no ClusterIP inside remains on the watch
//! and a grace has passed (see [`super::service_cidrs`]), then the
//! ServiceCIDR is let go, and the claim after it.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::networking::v1::{IPAddress, ServiceCIDR};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{Api, Resource, ResourceExt};
use tokio::task::JoinSet;
use tracing::{info, warn};

use super::claim_status::{self, ClaimFacts, Consumer};
use super::claim_step::{CidrView, Facts, Request, Step, next_step};
use super::events::Note;
use super::lane::Lane;
use super::reconciler::Reconciler;
use crate::api::{PrefixClaim, PrefixClaimStatus, Purpose};
use crate::k8s::claims::{self as edge, WatchedClaim};
use crate::k8s::errors::{
    WriteOutcome, as_leader, bounded_request as bounded, error_message, error_reason, write_outcome,
};
use crate::k8s::list_watch::{self, Watched};
use crate::k8s::pools::{self, WatchedPool};
use crate::ledger::{ClaimPlan, ClaimWait};

enum Answer {
    Pools(Result<pools::Revisions, kube::Error>),
    PoolList(Result<(Vec<WatchedPool>, Option<String>), kube::Error>),
    Claim(Result<PrefixClaim, kube::Error>),
    Read(Result<Option<PrefixClaim>, kube::Error>),
    ServiceCidr(Result<ServiceCIDR, kube::Error>),
    Done(Result<(), kube::Error>),
    Addresses(Result<Vec<String>, kube::Error>),
}

impl Answer {
    /// The error this answer carries, if it is one.
    fn error(&self) -> Option<&kube::Error> {
        match self {
            Answer::Pools(Err(e))
            | Answer::PoolList(Err(e))
            | Answer::Claim(Err(e))
            | Answer::Read(Err(e))
            | Answer::ServiceCidr(Err(e))
            | Answer::Done(Err(e))
            | Answer::Addresses(Err(e)) => Some(e),
            _ => None,
        }
    }
}

/// A request on its way: its answer.
type Pending = std::pin::Pin<Box<dyn std::future::Future<Output = Answer> + Send>>;

pub(super) struct Done {
    claim: String,
    request: Request,
    answer: Answer,
}

/// Every claim list a new leader reads before its first write.
pub(super) type ClaimList = Result<(Vec<WatchedClaim>, Option<String>), kube::Error>;

/// The claims' share of the reconciler's state.
pub(super) struct Claims {
    pub(super) api: Api<PrefixClaim>,
    service_cidrs_api: Api<ServiceCIDR>,
    addresses_api: Api<IPAddress>,
    guarded_pools: Api<WatchedPool>,
    pools_api: Api<crate::api::PrefixPool>,
    /// Each claim as last taken into the ledger (objects that decode).
    objects: HashMap<String, PrefixClaim>,
    /// ServiceCIDRs by name, as watched.
    pub(super) service_cidrs: HashMap<String, ServiceCIDR>,
    pub(super) synced: bool,
    /// The IPAddress list-watch has delivered its first list.
    pub(super) addresses_synced: bool,
    /// ServiceCIDRs known deleted (late answers do not revive them).
    gone_cidrs: crate::ledger::order::Tombstones,
    /// Since when a draining claim's prefix has held no ClusterIP (see
    /// [`super::service_cidrs`]).
    pub(super) quiet_since: HashMap<String, Instant>,
    pub(super) cidrs_synced: bool,
    /// Claims to look at, in flight, waiting out a failure.
    pub(super) lane: Lane,
    /// Why an unbound claim waits, as last planned.
    waits: HashMap<String, ClaimWait>,
    /// Waiting claims to plan again (space may have freed).
    replan: BTreeSet<String>,
    /// Last Warning sent per claim (sent once per distinct reason).
    warned: HashMap<String, String>,
    pub(super) tasks: JoinSet<Done>,
    /// Set when leadership was gained: re-list claims before any write.
    pub(super) needs_relist: bool,
    pub(super) lists: JoinSet<ClaimList>,
}

impl Claims {
    pub(super) fn new(client: &kube::Client) -> Self {
        Claims {
            api: Api::all(client.clone()),
            service_cidrs_api: Api::all(client.clone()),
            addresses_api: Api::all(client.clone()),
            guarded_pools: Api::all(client.clone()),
            pools_api: Api::all(client.clone()),
            objects: HashMap::new(),
            service_cidrs: HashMap::new(),
            synced: false,
            addresses_synced: false,
            quiet_since: HashMap::new(),
            gone_cidrs: Default::default(),
            cidrs_synced: false,
            lane: Lane::default(),
            waits: HashMap::new(),
            replan: BTreeSet::new(),
            warned: HashMap::new(),
            tasks: JoinSet::new(),
            needs_relist: false,
            lists: JoinSet::new(),
        }
    }

    pub(super) fn service_cidrs_api(&self) -> Api<ServiceCIDR> {
        self.service_cidrs_api.clone()
    }

    /// ServiceCIDR `s` is gone: remembered so, and forgotten if it is the
    /// object held under its name.
    fn service_cidr_gone(&mut self, s: &ServiceCIDR) {
        let name = s.name_any();
        let rev = crate::ledger::Revision {
            uid: s.metadata.uid.clone().unwrap_or_default(),
            rv: Some(rv_of(s)),
        };
        self.gone_cidrs.bury(&name, rev);
        if self
            .service_cidrs
            .get(&name)
            .is_some_and(|held| held.metadata.uid == s.metadata.uid)
        {
            self.service_cidrs.remove(&name);
        }
    }

    pub(super) fn addresses_api(&self) -> Api<IPAddress> {
        self.addresses_api.clone()
    }

    /// When the loop must wake for a claim whose retry is due.
    pub(super) fn next_retry(&self) -> Option<Instant> {
        self.lane.next_retry()
    }

    pub(super) fn push(&mut self, name: &str) {
        self.lane.push(name);
    }
}

impl Reconciler {
    pub(super) fn on_claim_event(&mut self, ev: Watched<WatchedClaim>) {
        match ev {
            Watched::Failed(e) => {
                self.metrics.error("WatchPrefixClaims");
                warn!("{e}");
            }
            Watched::Listed {
                items,
                resource_version,
            } => {
                info!(claims = items.len(), "PrefixClaim list complete");
                self.merge_claim_list(&items, resource_version);
                self.claims.synced = true;
                self.after_sync();
            }
            Watched::Apply(c) => self.apply_claim(&c),
            Watched::Delete(c) => {
                let name = c.name_any();
                let uid = c.meta().uid.clone().unwrap_or_default();
                let rv =
                    crate::ledger::parse_resource_version(c.meta().resource_version.as_deref());
                self.forget_claim(&name, &uid, rv);
            }
        }
    }

    fn forget_claim(&mut self, name: &str, uid: &str, rv: Option<u64>) {
        let held_uid = self.ledger.claim_state(name).map(|s| s.uid);
        if self.ledger.remove_claim(name, uid, rv) {
            info!(claim = name, "PrefixClaim gone; its prefix is free");
            self.after_space_freed();
        }
        if held_uid.is_none_or(|u| u == uid) && self.ledger.claim_state(name).is_none() {
            self.claims.objects.remove(name);
            self.claims.waits.remove(name);
            self.claims.warned.remove(name);
            self.claims.lane.forget(name);
            self.claims.quiet_since.remove(name);
        }
    }

    fn merge_claim_list(&mut self, items: &[WatchedClaim], resource_version: Option<u64>) {
        let snaps: Vec<_> = items.iter().map(edge::decode).collect();
        let removed = self.ledger.replace_claims(&snaps, resource_version);
        for name in &removed {
            self.claims.objects.remove(name);
            self.claims.waits.remove(name);
        }
        for c in items {
            self.take_claim_object(c);
        }
        if !removed.is_empty() {
            self.after_space_freed();
        }
        for name in self.ledger.claim_names() {
            self.claims.push(&name);
        }
        self.status.mark();
    }

    /// Feeds a claim state to the ledger (and the object to the cache when
    /// the ledger took it).
    fn apply_claim(&mut self, c: &WatchedClaim) {
        let snap = edge::decode(c);
        if let Err(e) = &c.0 {
            self.metrics.error("DecodePrefixClaim");
            warn!(claim = %snap.name, "PrefixClaim does not decode: {}", e.error);
        }
        let before = self.ledger.claim_state(&snap.name);
        let moved = self.ledger.upsert_claim(&snap);
        self.take_claim_object(c);
        let after = self.ledger.claim_state(&snap.name);
        if before != after {
            self.claims.push(&snap.name);
        }
        if moved {
            self.status.mark();
            self.report_new_conflicts();
            self.after_space_freed();
            self.wake_waiting_services();
        }
    }

    /// Caches the object when the ledger holds exactly its revision.
    fn take_claim_object(&mut self, c: &WatchedClaim) {
        let Ok(obj) = &c.0 else { return };
        let name = obj.name_any();
        let rv = crate::ledger::parse_resource_version(obj.metadata.resource_version.as_deref());
        if self.ledger.claim_state(&name).is_some_and(|s| {
            Some(s.uid.as_str()) == obj.metadata.uid.as_deref() && s.resource_version == rv
        }) {
            self.claims.objects.insert(name, obj.clone());
        }
    }

    /// Deleted claims that wait for their Services to let go look again.
    pub(super) fn wake_deleting_claims(&mut self) {
        for name in self.ledger.claim_names() {
            if self.ledger.claim_state(&name).is_some_and(|s| s.deleting) {
                self.claims.push(&name);
            }
        }
    }

    /// Space was freed: waiting Nodes and claims are planned again.
    fn after_space_freed(&mut self) {
        self.wake_waiting();
        self.wake_waiting_claims();
        self.status.mark();
    }

    /// Claims told to wait for space are planned again.
    pub(super) fn wake_waiting_claims(&mut self) {
        // The recorded wait stays for the status until the next plan
        // replaces it; `replan` lets that plan happen.
        let waiting: Vec<String> = self.claims.waits.keys().cloned().collect();
        for n in waiting {
            self.claims.replan.insert(n.clone());
            self.claims.push(&n);
        }
    }

    pub(super) fn on_service_cidr_event(&mut self, ev: Watched<ServiceCIDR>) {
        let touched: Vec<String> = match ev {
            Watched::Failed(e) => {
                self.metrics.error("WatchServiceCIDRs");
                warn!("{e}");
                vec![]
            }
            Watched::Listed { items, .. } => {
                let mut names: Vec<String> = self.claims.service_cidrs.keys().cloned().collect();
                self.claims.service_cidrs = items.into_iter().map(|s| (s.name_any(), s)).collect();
                names.extend(self.claims.service_cidrs.keys().cloned());
                self.claims.cidrs_synced = true;
                self.after_sync();
                names
            }
            Watched::Apply(s) => {
                let name = s.name_any();
                let uid = s.metadata.uid.clone().unwrap_or_default();
                // A write's answer can come after the watch told of the
                // object's end: an object known gone, or one the answer
                // shows deleted with no finalizer left (the API server
                // removed it), is not taken back in; nor is a state older
                // than the one held.
                let ended = s.metadata.deletion_timestamp.is_some() && s.finalizers().is_empty();
                let older = self.claims.service_cidrs.get(&name).is_some_and(|held| {
                    held.metadata.uid == s.metadata.uid && rv_of(held) >= rv_of(&s)
                });
                let dead = self
                    .claims
                    .gone_cidrs
                    .get(&name)
                    .is_some_and(|g| g.uid == uid);
                // (The answer to the write that takes the last finalizer
                // off carries the state it was made for: its
                // resourceVersion is not later than the one held.)
                if dead || (older && !ended) {
                    return;
                }
                if ended {
                    self.claims.service_cidr_gone(&s);
                } else {
                    self.claims.service_cidrs.insert(name.clone(), s);
                }
                vec![name]
            }
            Watched::Delete(s) => {
                self.claims.service_cidr_gone(&s);
                vec![s.name_any()]
            }
        };
        for name in touched {
            if self.ledger.claim_state(&name).is_some() {
                self.claims.push(&name);
            }
        }
    }

    /// Claims whose conflicts changed (something now covers their prefix,
    /// or no longer does): their status is written again (`Ready=False`,
    /// reason `Conflict`), a Warning names what collides, and the pools'
    /// `status.conflicts` list them. Nothing is taken from the claim.
    pub(super) fn report_claim_conflicts(&mut self) {
        if !self.claims_ready() {
            return;
        }
        for (name, conflicts) in self.ledger.take_claim_conflict_changes() {
            self.status.mark();
            self.claims.push(&name);
            if conflicts.is_empty() {
                info!(claim = %name, "the claim's prefix no longer collides");
                continue;
            }
            warn!(claim = %name, "the claim's prefix collides: {}", conflicts.join("; "));
            let claim_ref = self.claim_ref(&name);
            self.events.send(Note::warning(
                claim_ref,
                "PrefixConflict",
                "Allocate",
                format!(
                    "{}; the claim keeps its prefix (nothing is taken away) and shows Ready=False until what covers it is removed",
                    conflicts.join("; ")
                ),
            ));
        }
    }

    /// Whether claims may be acted on: the leader, with every watch synced.
    fn claims_ready(&self) -> bool {
        self.synced()
            && self.claims.synced
            && self.claims.cidrs_synced
            && self.is_leader()
            && !self.needs_resync
            && !self.claims.needs_relist
    }

    /// Sends the next request of every queued claim that has none in
    /// flight and is not waiting out a failure.
    pub(super) fn dispatch_claims(&mut self) {
        if !self.claims_ready() {
            return;
        }
        for name in self.claims.lane.take_ready(Instant::now()) {
            if let Some(req) = self.next_request(&name) {
                self.send(name, req);
            }
        }
    }

    /// The one thing claim `name` needs next, if any ([`next_step`] decides
    /// from the ledger's picture); a status that only needs writing is sent
    /// as such.
    fn next_request(&mut self, name: &str) -> Option<Request> {
        let st = self.ledger.claim_state(name)?;
        let lb_deleting = st.deleting && st.purpose == Some(Purpose::LoadBalancer);
        let facts = Facts {
            state: &st,
            cidr: self
                .claims
                .service_cidrs
                .get(name)
                .map(|sc| CidrView::of(sc, &st.uid)),
            waiting: self.claims.waits.contains_key(name),
            replan: self.claims.replan.contains(name),
            services_synced: self.services.synced,
            services_inside: lb_deleting
                && st
                    .prefix
                    .is_some_and(|p| !self.ledger.services_inside(&p).is_empty()),
        };
        match next_step(&facts) {
            Step::Nothing => None,
            Step::Send(Request::CheckPools) => {
                // The plan this asks for is the one `replan` wanted.
                self.claims.replan.remove(name);
                Some(Request::CheckPools)
            }
            Step::Send(req) => Some(req),
            Step::Status(consumer) => {
                if consumer == Consumer::ServiceCidrTaken {
                    self.warn_claim_once(
                        name,
                        "ServiceCIDRNameTaken",
                        format!("a ServiceCIDR named {name} exists and is not this claim's; the claimed prefix stays unused until it is gone"),
                    );
                }
                self.status_if_changed(name, consumer)
            }
            Step::WhenDrained(then) => match st.prefix {
                Some(p) if self.drained(name, p) => Some(then),
                _ => self.status_if_changed(name, Consumer::ServiceCidrDraining),
            },
        }
    }

    /// The status claim `name` should show now.
    fn desired_status(&self, name: &str, consumer: Consumer) -> Option<PrefixClaimStatus> {
        let st = self.ledger.claim_state(name)?;
        let obj = self.claims.objects.get(name);
        let prev = obj
            .and_then(|o| o.status.as_ref())
            .map(|s| s.conditions.clone())
            .unwrap_or_default();
        let conflicts = self.ledger.claim_conflicts(name);
        let facts = ClaimFacts {
            name,
            state: &st,
            generation: obj.and_then(|o| o.metadata.generation).unwrap_or_default(),
            wait: self.claims.waits.get(name),
            conflicts: &conflicts,
            consumer,
        };
        Some(claim_status::build(&facts, &prev, &now()))
    }

    /// The status that binds `prefix` of `pool` to claim `name`.
    fn bind_status(&self, name: &str, pool: &str, prefix: ipnet::IpNet) -> PrefixClaimStatus {
        let Some(mut st) = self.ledger.claim_state(name) else {
            return PrefixClaimStatus::default();
        };
        st.prefix = Some(prefix);
        st.pool = Some(pool.to_string());
        let obj = self.claims.objects.get(name);
        let prev = obj
            .and_then(|o| o.status.as_ref())
            .map(|s| s.conditions.clone())
            .unwrap_or_default();
        let consumer = if st.purpose == Some(Purpose::ServiceCIDR) {
            Consumer::ServiceCidrPending
        } else {
            Consumer::None
        };
        let facts = ClaimFacts {
            name,
            state: &st,
            generation: obj.and_then(|o| o.metadata.generation).unwrap_or_default(),
            wait: None,
            conflicts: &[],
            consumer,
        };
        claim_status::build(&facts, &prev, &now())
    }

    fn status_if_changed(&mut self, name: &str, consumer: Consumer) -> Option<Request> {
        let consumer_again = consumer.clone();
        let want = self.desired_status(name, consumer)?;
        let have = self
            .claims
            .objects
            .get(name)
            .and_then(|o| o.status.as_ref());
        (have != Some(&want)).then_some(Request::Status(consumer_again))
    }

    fn send(&mut self, name: String, req: Request) {
        if self.ledger.claim_state(&name).is_none() {
            // Gone while the step before was in flight: nothing to do.
            return;
        }
        let answer = match &req {
            Request::Settle { rv } => {
                let rv = rv.clone();
                self.settle_claim(name, rv, Duration::ZERO);
                return;
            }
            Request::CheckPools | Request::ListPools | Request::CheckAddresses => {
                self.claim_read(&req)
            }
            Request::CreateServiceCidr
            | Request::ServiceCidrFinalizer { .. }
            | Request::DeleteServiceCidr => self.service_cidr_write(&name, &req),
            _ => self.claim_write(&name, &req),
        };
        let Some(answer) = answer else {
            return;
        };
        self.claims.lane.start(&name);
        self.metrics.claim_requests.inc();
        self.claims.tasks.spawn(async move {
            Done {
                answer: answer.await,
                claim: name,
                request: req,
            }
        });
    }

    /// Whether leadership lapsed, asked when a write is about to be sent.
    fn lapse_check(&self) -> impl Fn() -> bool + Send + 'static {
        let deadline = self.settings.lease_deadline.clone();
        move || deadline.as_ref().is_some_and(|d| !crate::leader::within(d))
    }

    /// The reads a claim's step may need: pools, or the IPAddresses.
    fn claim_read(&self, req: &Request) -> Option<Pending> {
        Some(match req {
            Request::CheckPools => {
                let api = self.claims.pools_api.clone();
                Box::pin(async move { Answer::Pools(bounded(pools::list_revisions(&api)).await) })
            }
            Request::ListPools => {
                let api = self.claims.guarded_pools.clone();
                Box::pin(async move { Answer::PoolList(bounded(list_watch::list_all(&api)).await) })
            }
            Request::CheckAddresses => {
                let api = self.claims.addresses_api.clone();
                Box::pin(async move { Answer::Addresses(bounded(edge::ip_addresses(&api)).await) })
            }
            _ => return None,
        })
    }

    /// A write of claim `name` itself: its finalizer or its status.
    fn claim_write(&self, name: &str, req: &Request) -> Option<Pending> {
        let obj = self.claims.objects.get(name).cloned();
        let rv = obj
            .as_ref()
            .and_then(|o| o.metadata.resource_version.clone())
            .unwrap_or_default();
        let finalizers = obj
            .as_ref()
            .map(|o| o.finalizers().to_vec())
            .unwrap_or_default();
        let api = self.claims.api.clone();
        let lapsed = self.lapse_check();
        let n = name.to_string();
        Some(match req {
            Request::AddFinalizer => Box::pin(async move {
                let n = name_of(&obj);
                let write = edge::add_finalizer(&api, &n, &rv, &finalizers);
                Answer::Claim(as_leader(lapsed(), write).await)
            }),
            Request::RemoveFinalizer => Box::pin(async move {
                let n = name_of(&obj);
                let write = edge::remove_finalizer(&api, &n, &rv, &finalizers);
                Answer::Claim(as_leader(lapsed(), write).await)
            }),
            Request::Bind { rv, status } => {
                let (status, rv) = (status.clone(), rv.clone());
                Box::pin(async move {
                    let write = edge::write_status(&api, &n, Some(&rv), &status);
                    Answer::Claim(as_leader(lapsed(), write).await)
                })
            }
            Request::Status(consumer) => {
                let status = self.desired_status(name, consumer.clone())?;
                Box::pin(async move {
                    let write = edge::write_status(&api, &n, None, &status);
                    Answer::Claim(as_leader(lapsed(), write).await)
                })
            }
            _ => return None,
        })
    }

    /// A write of the ServiceCIDR of claim `name`.
    fn service_cidr_write(&self, name: &str, req: &Request) -> Option<Pending> {
        let api = self.claims.service_cidrs_api.clone();
        let lapsed = self.lapse_check();
        let ours = self.claims.service_cidrs.get(name).cloned();
        Some(match req {
            Request::CreateServiceCidr => {
                let obj = self.claims.objects.get(name)?;
                let prefix = self.ledger.claim_state(name)?.prefix?;
                let sc = edge::service_cidr_for(obj, &prefix.to_string());
                Box::pin(async move {
                    let write = edge::create_service_cidr(&api, &sc);
                    Answer::ServiceCidr(as_leader(lapsed(), write).await)
                })
            }
            Request::ServiceCidrFinalizer { keep } => {
                let (sc, keep) = (ours?, *keep);
                Box::pin(async move {
                    let write = edge::set_service_cidr_finalizer(&api, &sc, keep);
                    Answer::ServiceCidr(as_leader(lapsed(), write).await)
                })
            }
            Request::DeleteServiceCidr => {
                let uid = ours?.metadata.uid?;
                let n = name.to_string();
                Box::pin(async move {
                    let write = edge::delete_service_cidr(&api, &n, &uid);
                    Answer::Done(as_leader(lapsed(), write).await)
                })
            }
            _ => return None,
        })
    }

    pub(super) fn on_claim_done(&mut self, d: Done) {
        let name = d.claim;
        self.claims.lane.finish(&name);
        match (d.request, d.answer) {
            (Request::CheckPools, Answer::Pools(Ok((listed, list_rv)))) => {
                if self.ledger.pools_current(&listed, list_rv) {
                    self.bind(name);
                } else {
                    self.send(name, Request::ListPools);
                }
                return;
            }
            (Request::ListPools, Answer::PoolList(Ok((items, rv)))) => {
                let rv = crate::ledger::parse_resource_version(rv.as_deref());
                self.merge_pool_list(&items, rv);
                self.bind(name);
                return;
            }
            (Request::Bind { rv, .. }, Answer::Claim(result)) => {
                self.on_bind_answer(name, rv, result);
                return;
            }
            (Request::Settle { rv }, Answer::Read(result)) => {
                self.on_settle(name, rv, result);
                return;
            }
            (_, Answer::Claim(Ok(obj))) => {
                self.claims.lane.succeeded(&name);
                self.apply_claim(&kube::core::DeserializeGuard(Ok(obj)));
            }
            (Request::CreateServiceCidr, Answer::ServiceCidr(Ok(sc))) => {
                self.claims.lane.succeeded(&name);
                let claim_ref = self.claim_ref(&name);
                self.events.send(Note::normal(
                    claim_ref,
                    "ServiceCIDRCreated",
                    "Serve",
                    format!("created ServiceCIDR {name} for {}", cidrs_of(&sc)),
                ));
                self.on_service_cidr_event(Watched::Apply(sc));
            }
            (Request::ServiceCidrFinalizer { keep }, Answer::ServiceCidr(Ok(sc))) => {
                self.claims.lane.succeeded(&name);
                if !keep {
                    info!(claim = %name, "no ClusterIP left in ServiceCIDR {name} for the grace; let it go");
                }
                self.on_service_cidr_event(Watched::Apply(sc));
            }
            (Request::CheckAddresses, Answer::Addresses(Ok(addresses))) => {
                self.claims.lane.succeeded(&name);
                self.on_addresses_checked(name, &addresses);
                return;
            }
            (Request::DeleteServiceCidr, Answer::Done(Ok(()))) => {
                self.claims.lane.succeeded(&name);
                info!(claim = %name, "deleted its ServiceCIDR; the prefix is freed once the API server lets it go");
            }
            (req, answer) => {
                if let Some(e) = answer.error() {
                    self.claim_failed(&name, &format!("{req:?}"), e);
                }
                return;
            }
        }
        self.claims.push(&name);
    }

    /// The last step before a deleted ServiceCIDR claim's finalizer goes:
    /// no IPAddress may remain inside its prefix.
    fn on_addresses_checked(&mut self, name: String, addresses: &[String]) {
        let prefix = self.ledger.claim_state(&name).and_then(|s| s.prefix);
        let held: Vec<&String> = addresses
            .iter()
            .filter(|a| {
                a.parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| prefix.is_some_and(|p| p.contains(&ip)))
            })
            .collect();
        if held.is_empty() {
            self.send(name, Request::RemoveFinalizer);
            return;
        }
        // No ServiceCIDR covers them any more (one deleted without
        // kube-controller-manager's finalizer), but Services still hold
        // them: the prefix stays claimed.
        let msg = format!(
            "{} Service address(es) inside the prefix are still held (for example {}); the prefix is freed once they are released",
            held.len(),
            held[0]
        );
        self.warn_claim_once(&name, "AddressesInUse", msg);
        self.claims
            .lane
            .retry_at(&name, Instant::now() + ADDRESS_RECHECK);
    }

    fn claim_failed(&mut self, name: &str, what: &str, e: &kube::Error) {
        self.metrics.error(error_reason(e));
        let delay = self.claims.lane.failed(name, Instant::now());
        warn!(
            claim = name,
            request = what,
            "failed, retrying in {delay:?}: {}",
            error_message(e)
        );
    }

    /// The pools are current: choose the claim's prefix and write it.
    fn bind(&mut self, name: String) {
        match self.ledger.plan_claim(&name) {
            ClaimPlan::Nothing => self.claims.push(&name),
            ClaimPlan::Wait(w) => {
                let (reason, msg) = match &w {
                    ClaimWait::NoPool(why) => ("NoPool", why.clone()),
                    ClaimWait::Exhausted { pools } => (
                        "PoolExhausted",
                        format!(
                            "no free prefix of the claimed length in PrefixPool(s) {}; the claim waits",
                            pools.join(", ")
                        ),
                    ),
                };
                self.claims.waits.insert(name.clone(), w);
                self.warn_claim_once(&name, reason, msg);
                self.claims.push(&name);
            }
            ClaimPlan::Bind { pool, prefix } => {
                self.claims.waits.remove(&name);
                let rv = self
                    .claims
                    .objects
                    .get(&name)
                    .and_then(|o| o.metadata.resource_version.clone())
                    .unwrap_or_default();
                info!(claim = %name, %pool, %prefix, "binding");
                let status = self.bind_status(&name, &pool, prefix);
                self.send(
                    name,
                    Request::Bind {
                        rv,
                        status: Box::new(status),
                    },
                );
            }
        }
    }

    fn on_bind_answer(
        &mut self,
        name: String,
        rv: String,
        result: Result<PrefixClaim, kube::Error>,
    ) {
        match result {
            Ok(obj) => {
                self.claims.lane.succeeded(&name);
                let snap = edge::decode(&kube::core::DeserializeGuard(Ok(obj.clone())));
                self.ledger.commit_claim(&snap);
                self.take_claim_object(&kube::core::DeserializeGuard(Ok(obj)));
                if let Some(p) = snap.prefix.as_deref() {
                    self.metrics.claims_bound.inc();
                    let r = self.claim_ref(&name);
                    self.events.send(Note::normal(
                        r,
                        "PrefixClaimed",
                        "Bind",
                        format!(
                            "claimed {p} from PrefixPool {}",
                            snap.pool.as_deref().unwrap_or("?")
                        ),
                    ));
                }
                self.status.mark();
                self.report_new_conflicts();
                self.wake_waiting_services();
                self.claims.push(&name);
            }
            Err(e) => match write_outcome(&e) {
                WriteOutcome::Unknown => {
                    // It may have landed: keep the reservation and read the
                    // claim back (the write carried `rv`, so it can land
                    // only while the claim is still at that state).
                    self.claim_failed(&name, "Bind", &e);
                    self.claims.lane.cancel_retry(&name);
                    self.settle_claim(name, rv, Duration::from_millis(200));
                }
                _ => {
                    // Refused (the claim changed since, or is gone): not
                    // landed. The watch brings the claim's newer state.
                    self.ledger.release_claim(&name);
                    self.after_space_freed();
                    self.claim_failed(&name, "Bind", &e);
                }
            },
        }
    }

    fn on_settle(
        &mut self,
        name: String,
        rv: String,
        read: Result<Option<PrefixClaim>, kube::Error>,
    ) {
        match read {
            Ok(Some(obj)) => {
                let now_rv = obj.metadata.resource_version.clone().unwrap_or_default();
                let bound = obj.status.as_ref().is_some_and(|s| s.prefix.is_some());
                if bound || now_rv != rv {
                    // Landed, or the claim moved on so it never can.
                    let snap = edge::decode(&kube::core::DeserializeGuard(Ok(obj.clone())));
                    self.ledger.commit_claim(&snap);
                    self.take_claim_object(&kube::core::DeserializeGuard(Ok(obj)));
                    self.after_space_freed();
                    self.claims.lane.succeeded(&name);
                    self.claims.push(&name);
                } else {
                    // Still at the state written to: the request may yet
                    // land. Keep the reservation and look again.
                    self.settle_claim(name.clone(), rv.clone(), Duration::from_secs(1));
                }
            }
            Ok(None) => {
                self.ledger.release_claim(&name);
                self.after_space_freed();
            }
            Err(e) => {
                self.metrics.error(error_reason(&e));
                self.settle_claim(name.clone(), rv.clone(), Duration::from_secs(1));
            }
        }
    }

    /// Reads claim `name` back after `after`, to learn whether its bind
    /// written onto `rv` landed (the reservation stays meanwhile).
    fn settle_claim(&mut self, name: String, rv: String, after: Duration) {
        self.claims.lane.start(&name);
        let api = self.claims.api.clone();
        self.claims.tasks.spawn(async move {
            tokio::time::sleep(after).await;
            Done {
                answer: Answer::Read(bounded(list_watch::read_by_name(&api, &name)).await),
                claim: name,
                request: Request::Settle { rv },
            }
        });
    }

    fn warn_claim_once(&mut self, name: &str, reason: &'static str, message: String) {
        let key = format!("{reason}: {message}");
        if self.claims.warned.get(name) == Some(&key) {
            return;
        }
        self.claims.warned.insert(name.to_string(), key);
        warn!(claim = name, reason, "{message}");
        let r = self.claim_ref(name);
        self.events.send(Note::warning(r, reason, "Bind", message));
    }

    pub(super) fn claim_ref(&self, name: &str) -> ObjectReference {
        ObjectReference {
            api_version: Some(PrefixClaim::api_version(&()).into_owned()),
            kind: Some(PrefixClaim::kind(&()).into_owned()),
            name: Some(name.into()),
            uid: self.ledger.claim_state(name).map(|s| s.uid),
            ..Default::default()
        }
    }

    /// A new leader reads every claim before its first write.
    pub(super) fn maybe_relist_claims(&mut self) {
        if !self.claims.needs_relist || !self.is_leader() || !self.claims.lists.is_empty() {
            return;
        }
        let api: Api<WatchedClaim> = Api::all(self.claims.api.clone().into_client());
        self.claims
            .lists
            .spawn(async move { bounded(list_watch::list_all(&api)).await });
    }

    pub(super) fn on_claim_relist(&mut self, list: ClaimList) {
        match list {
            Ok((items, rv)) => {
                if self.claims.needs_relist {
                    let rv = crate::ledger::parse_resource_version(rv.as_deref());
                    self.merge_claim_list(&items, rv);
                    self.claims.needs_relist = false;
                }
            }
            Err(e) => {
                self.metrics.error(error_reason(&e));
                warn!("re-listing PrefixClaims failed: {}", error_message(&e));
            }
        }
    }

    /// Leadership lost: reservations of binds whose outcome is open stay
    /// until their read settles them; nothing new is sent.
    pub(super) fn on_claims_leadership(&mut self, leading: bool) {
        if leading {
            self.claims.needs_relist = true;
        }
    }
}

/// How often a deleted claim looks again for Service addresses inside its
/// prefix.
const ADDRESS_RECHECK: Duration = Duration::from_secs(2);

/// `resourceVersion` as the API server's order (0: not comparable).
fn rv_of(sc: &ServiceCIDR) -> u64 {
    crate::ledger::parse_resource_version(sc.metadata.resource_version.as_deref()).unwrap_or(0)
}

fn name_of(obj: &Option<PrefixClaim>) -> String {
    obj.as_ref().map(|o| o.name_any()).unwrap_or_default()
}

fn cidrs_of(sc: &ServiceCIDR) -> String {
    sc.spec
        .as_ref()
        .and_then(|s| s.cidrs.as_ref())
        .map(|c| c.join(","))
        .unwrap_or_default()
}

/// Now, to the second (a status must not differ from the stored one only
/// in sub-second digits the API server drops).
fn now() -> Time {
    let secs = k8s_openapi::jiff::Timestamp::now().as_second();
    Time(k8s_openapi::jiff::Timestamp::from_second(secs).unwrap_or_default())
}
