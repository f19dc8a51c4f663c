//! The reconciler: Node podCIDRs, PrefixClaims (and their ServiceCIDRs),
//! LoadBalancer Services, and the pool and claim statuses.
//!
//! One task owns the [`Ledger`](crate::ledger::Ledger): watch events of
//! Nodes, PrefixPools, PrefixClaims, Services, ServiceCIDRs and IPAddresses
//! go in, reservations and writes come out. Writes run concurrently
//! (bounded); their answers come back to the same task, so the ledger needs
//! no lock and every reservation is decided against the latest picture.
//!
//! The task is three lanes over one core, and a loop that only routes:
//!
//! - [`core`]: what the lanes share — the ledger, settings, metrics,
//!   Events, which watches have listed, leadership — and the one gate
//!   every write passes; lanes tell each other what happened only through
//!   its wake-up flags;
//! - [`pools`]: what a PrefixPool state does to the shared picture;
//! - [`pool_gate`]: the gate every plan passes — nothing is planned from
//!   an older picture of the pools than of the Node or claim planned for —
//!   and [`pool_checks`], the checks it asks for, one batch serving both
//!   lanes;
//! - [`nodes`]: the Node lane — podCIDR writes, behind the pool gate;
//! - [`claims`]: the PrefixClaim lane — binds (behind the pool gate), the
//!   ServiceCIDRs claims own, their status;
//! - [`services`]: the LoadBalancer Service lane — ingress addresses;
//! - [`lane`]: the work queue claims and Services share (pure; Nodes have
//!   their own [`nodes`] pipeline, first come first planned, which also
//!   settles writes of unknown outcome), and
//!   [`lane_answer`]: what comes back to those two lanes;
//! - [`pool_status`]: the pools' statuses, what they say and their writes;
//! - [`reconciler`]: the loop;
//! - [`warned`], [`events`]: Warnings sent once, Events published off the
//!   loop.
//!
//! Every decision a lane takes is a pure function of the picture, tested
//! without an API server: `nodes::pipeline`, `claims::step`,
//! `claims::outcome`, `services::step`, `lane`, `pool_gate`, and the
//! ledger's plans.

mod claims;
mod core;
pub mod events;
mod lane;
mod lane_answer;
mod nodes;
mod pool_checks;
mod pool_gate;
mod pool_status;
mod pools;
mod reconciler;
mod services;
mod warned;

use std::time::Duration;

use kube::api::ListParams;
use kube::{Api, Client};

use crate::alloc::Family;
use crate::api::PrefixPool;
pub use crate::http::Health;
pub use claims::SERVICE_CIDR_GRACE;
pub use pool_status::STATUS_MANAGER;
pub use reconciler::run;

/// How the reconciler behaves.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Family listed first in a dual-stack Node's podCIDRs.
    pub primary_family: Family,
    /// Node writes in flight at once.
    pub max_concurrent_writes: usize,
    /// At most one status write per pool per interval.
    pub status_interval: Duration,
    /// How long a draining ServiceCIDR claim's prefix holds no ClusterIP
    /// before it is let go (see [`SERVICE_CIDR_GRACE`]).
    pub service_cidr_grace: Duration,
    /// Publish a Normal Event for every allocation.
    pub allocation_events: bool,
    /// Reporting instance in Events (the pod name).
    pub instance: String,
    /// With leader election: writes stop the moment this passes.
    pub lease_deadline: Option<crate::leader::Deadline>,
    /// Which LoadBalancer Services get addresses from LoadBalancer claims.
    pub load_balancer: crate::k8s::services::Classes,
}

/// The `spec.loadBalancerClass` the operator serves by default.
pub const LOAD_BALANCER_CLASS: &str = concat!(crate::api_group!(), "/load-balancer");

impl Default for Settings {
    fn default() -> Self {
        Settings {
            primary_family: Family::V6,
            max_concurrent_writes: 32,
            status_interval: Duration::from_secs(1),
            service_cidr_grace: SERVICE_CIDR_GRACE,
            allocation_events: true,
            instance: "prefix-operator".into(),
            lease_deadline: None,
            load_balancer: crate::k8s::services::Classes {
                class: LOAD_BALANCER_CLASS.into(),
                classless: false,
            },
        }
    }
}

/// Errors that stop the operator at start-up.
#[derive(thiserror::Error, Debug)]
pub enum StartError {
    #[error(
        "the PrefixPool CRD is not installed (prefixpools.ipam.prefix-operator.io not found); install it with `prefix-operator crd | kubectl apply -f -` or the Helm chart"
    )]
    CrdMissing,
    #[error(
        "the PrefixClaim CRD is not installed (prefixclaims.ipam.prefix-operator.io not found); apply it with `prefix-operator crd | kubectl apply --server-side -f -`, or `helm upgrade` the chart with crds.enabled (its default)"
    )]
    ClaimCrdMissing,
    #[error("cannot reach the Kubernetes API server: {0}")]
    Unreachable(#[source] kube::Error),
    #[error("not allowed to {0}: {1}")]
    Forbidden(&'static str, String),
}

/// Checks that the API server answers and the CRD is installed.
pub async fn preflight(client: &Client) -> Result<(), StartError> {
    let pools: Api<PrefixPool> = Api::all(client.clone());
    match pools.list_metadata(&ListParams::default().limit(1)).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => return Err(StartError::CrdMissing),
        Err(kube::Error::Api(s)) if s.code == 403 => {
            return Err(StartError::Forbidden("list prefixpools", s.message));
        }
        Err(e) => return Err(StartError::Unreachable(e)),
    }
    let claims: Api<crate::api::PrefixClaim> = Api::all(client.clone());
    match claims.list_metadata(&ListParams::default().limit(1)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Err(StartError::ClaimCrdMissing),
        Err(kube::Error::Api(s)) if s.code == 403 => {
            Err(StartError::Forbidden("list prefixclaims", s.message))
        }
        Err(e) => Err(StartError::Unreachable(e)),
    }
}
