//! PrefixClaims, from watch event to bound prefix and back: what a claim
//! state does to the picture, the one step each claim takes next, and the
//! requests that carry the steps out. Each claim has at most one request in
//! flight; its answer comes back to the reconciler's loop like a watch
//! event, so the ledger (the one owner of free space) decides every bind.
//!
//! A bind is guarded like a Node write: it waits for the pool gate (a
//! check of the pools sent after the claim was seen passed — the same
//! checks the Node lane waits for, see [`crate::controller::pool_gate`]),
//! the prefix is reserved in the ledger, and the status write
//! carries the claim's `resourceVersion`, so it lands on the state the
//! choice was made for or not at all. `status.prefix` is write-once (a CEL
//! rule of the CRD), so no later write can move a bound prefix.
//!
//! A claim of purpose `ServiceCIDR` gets a ServiceCIDR of its own name,
//! carrying the operator's finalizer. Deleting the claim deletes the
//! ServiceCIDR (the API server then allocates nothing more from it); the
//! prefix stays claimed until no ClusterIP inside remains on the watch
//! and a grace has passed (see [`cidrs`]), then the
//! ServiceCIDR is let go, and the claim after it.
//!
//! - [`input`]: what a claim state does to the picture, and which claims
//!   are queued;
//! - [`cidrs`]: ServiceCIDRs and the ClusterIPs inside a claim's prefix;
//! - [`requests`]: the next request of each queued claim ([`step`] decides
//!   it, pure), and sending it;
//! - [`answers`]: what each answer does;
//! - [`status`]: the status a claim shows (pure).

mod answers;
mod cidrs;
mod input;
mod outcome;
mod requests;
mod status;
mod step;

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use k8s_openapi::api::networking::v1::{IPAddress, ServiceCIDR};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{Api, ResourceExt};
use tokio::task::JoinSet;
use tracing::warn;

use super::core::Core;
use super::lane::Lane;
use super::pool_gate::Stamp;
use crate::api::PrefixClaim;
use crate::k8s::claims::WatchedClaim;
use crate::ledger::ClaimWait;
pub use cidrs::SERVICE_CIDR_GRACE;
use step::Request;

pub(crate) enum Reply {
    Claim(Result<PrefixClaim, kube::Error>),
    Read(Result<Option<PrefixClaim>, kube::Error>),
    ServiceCidr(Result<ServiceCIDR, kube::Error>),
    Done(Result<(), kube::Error>),
    Addresses(Result<Vec<String>, kube::Error>),
}

impl Reply {
    /// The error this answer carries, if it is one.
    fn error(&self) -> Option<&kube::Error> {
        match self {
            Reply::Claim(Err(e))
            | Reply::Read(Err(e))
            | Reply::ServiceCidr(Err(e))
            | Reply::Done(Err(e))
            | Reply::Addresses(Err(e)) => Some(e),
            _ => None,
        }
    }
}

/// A request on its way: its answer.
type Pending = std::pin::Pin<Box<dyn std::future::Future<Output = Reply> + Send>>;

pub(crate) struct Done {
    claim: String,
    request: Request,
    answer: Reply,
}

/// Every claim list a new leader reads before its first write.
pub(crate) type ClaimList = Result<(Vec<WatchedClaim>, Option<String>), kube::Error>;

/// What came back to the lane.
pub(crate) type Answer = super::lane_answer::Answer<Done, ClaimList>;

/// The PrefixClaim lane's state.
pub(crate) struct ClaimLane {
    pub(crate) api: Api<PrefixClaim>,
    service_cidrs_api: Api<ServiceCIDR>,
    addresses_api: Api<IPAddress>,
    /// Each claim as last taken into the ledger (objects that decode).
    objects: HashMap<String, PrefixClaim>,
    /// ServiceCIDRs by name, as watched.
    pub(crate) service_cidrs: HashMap<String, ServiceCIDR>,
    /// ServiceCIDRs known deleted (late answers do not revive them).
    gone_cidrs: crate::ledger::order::Tombstones,
    /// Since when a draining claim's prefix has held no ClusterIP (see
    /// [`cidrs`]).
    pub(crate) quiet_since: HashMap<String, Instant>,
    /// Claims to look at, in flight, waiting out a failure.
    pub(crate) lane: Lane,
    /// Why an unbound claim waits, as last planned.
    waits: HashMap<String, ClaimWait>,
    /// Waiting claims to plan again (space may have freed).
    replan: BTreeSet<String>,
    /// Claims that wait for the pool gate before a bind, with their stamp.
    gated: HashMap<String, Stamp>,
    /// Last Warning sent per claim (sent once per distinct reason).
    warned: HashMap<String, String>,
    pub(crate) tasks: JoinSet<Done>,
    pub(crate) lists: JoinSet<ClaimList>,
}

impl ClaimLane {
    pub(crate) fn new(client: &kube::Client) -> Self {
        ClaimLane {
            api: Api::all(client.clone()),
            service_cidrs_api: Api::all(client.clone()),
            addresses_api: Api::all(client.clone()),
            objects: HashMap::new(),
            service_cidrs: HashMap::new(),
            quiet_since: HashMap::new(),
            gone_cidrs: Default::default(),
            lane: Lane::default(),
            waits: HashMap::new(),
            replan: BTreeSet::new(),
            gated: HashMap::new(),
            warned: HashMap::new(),
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
            Answer::Done(Ok(d)) => self.on_claim_done(core, d),
            Answer::Done(Err(e)) => warn!("claim task failed: {e}"),
            Answer::List(Ok(l)) => self.on_claim_relist(core, l),
            Answer::List(Err(e)) => warn!("claim re-list task failed: {e}"),
        }
    }

    pub(crate) fn service_cidrs_api(&self) -> Api<ServiceCIDR> {
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

    pub(crate) fn addresses_api(&self) -> Api<IPAddress> {
        self.addresses_api.clone()
    }

    /// When the loop must wake for a claim whose retry is due.
    pub(crate) fn next_retry(&self) -> Option<Instant> {
        self.lane.next_retry()
    }

    pub(crate) fn push(&mut self, name: &str) {
        self.lane.push(name);
    }

    /// A check of the pools passed: claims waiting for the gate look
    /// again (those it covers bind).
    pub(crate) fn wake_gated_claims(&mut self) {
        self.lane.push_all(self.gated.keys().cloned());
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
