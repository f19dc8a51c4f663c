//! What each answer to a claim's request does: a bind that landed, was
//! refused or has an unknown outcome (read back until it settles), a
//! ServiceCIDR written, the last look for ClusterIPs
//! before a deleted claim lets go.

use std::time::Instant;

use tracing::{info, warn};

use super::outcome::{After, Shown, after};
use super::step::Request;
use super::{ADDRESS_RECHECK, ClaimLane, Done, Reply, cidrs_of};
use crate::api::PrefixClaim;
use crate::controller::core::Core;
use crate::controller::events::Note;
use crate::k8s::claims as edge;
use crate::k8s::errors::{error_message, write_outcome};
use crate::k8s::list_watch::Watched;
use crate::ledger::{ClaimPlan, ClaimWait};

impl ClaimLane {
    pub(super) fn on_claim_done(&mut self, core: &mut Core, d: Done) {
        let name = d.claim;
        self.lane.finish(&name);
        let shown = shown(&d.answer);
        match (after(&d.request, &shown), d.answer) {
            (After::Bound, Reply::Claim(Ok(obj))) => self.bound(core, name, obj),
            (After::Settled, Reply::Read(Ok(Some(obj)))) => {
                // Landed, or the claim moved on so it never can.
                self.commit(core, obj);
                self.after_space_freed(core);
                self.lane.succeeded(&name);
                self.push(&name);
            }
            (After::Settle(delay), answer) => {
                match (answer.error(), &d.request) {
                    // A read-back that failed leaves the count of failures
                    // as it was: only the bind failed.
                    (Some(e), Request::Settle { .. }) => {
                        core.request_failed(e);
                    }
                    (Some(e), _) => self.claim_failed(core, &name, "Bind", e),
                    (None, _) => {}
                }
                // It may have landed (the write carried the claim's
                // resourceVersion, so it can land only while the claim is
                // still at that state): the reservation stays.
                self.lane.cancel_retry(&name);
                if let Request::Bind { rv, .. } | Request::Settle { rv } = d.request {
                    self.settle_claim(name, rv, delay);
                }
            }
            (After::Release, _) => {
                core.ledger.release_claim(&name);
                self.after_space_freed(core);
            }
            (After::ReleaseAndRetry, answer) => {
                // Not landed; the watch brings the claim's newer state.
                core.ledger.release_claim(&name);
                self.after_space_freed(core);
                if let Some(e) = answer.error() {
                    self.claim_failed(core, &name, "Bind", e);
                }
            }
            (After::Next, answer) => self.answered(core, name, d.request, answer),
            (_, answer) => {
                if let Some(e) = answer.error() {
                    self.claim_failed(core, &name, &format!("{:?}", d.request), e);
                }
            }
        }
    }

    /// A request other than a bind or its read-back succeeded.
    pub(super) fn answered(
        &mut self,
        core: &mut Core,
        name: String,
        request: Request,
        answer: Reply,
    ) {
        self.lane.succeeded(&name);
        match (request, answer) {
            (_, Reply::Claim(Ok(obj))) => {
                self.apply_claim(core, &kube::core::DeserializeGuard(Ok(obj)));
            }
            (Request::CreateServiceCidr, Reply::ServiceCidr(Ok(sc))) => {
                let claim_ref = core.claim_ref(&name);
                core.events.send(Note::normal(
                    claim_ref,
                    "ServiceCIDRCreated",
                    "Serve",
                    format!("created ServiceCIDR {name} for {}", cidrs_of(&sc)),
                ));
                self.on_service_cidr_event(core, Watched::Apply(sc));
            }
            (Request::ServiceCidrFinalizer { keep }, Reply::ServiceCidr(Ok(sc))) => {
                if !keep {
                    info!(claim = %name, "no ClusterIP left in ServiceCIDR {name} for the grace; let it go");
                }
                self.on_service_cidr_event(core, Watched::Apply(sc));
            }
            (Request::CheckAddresses, Reply::Addresses(Ok(addresses))) => {
                self.on_addresses_checked(core, name, &addresses);
                return;
            }
            (Request::DeleteServiceCidr, Reply::Done(Ok(()))) => {
                info!(claim = %name, "deleted its ServiceCIDR; the prefix is freed once the API server lets it go");
            }
            (req, _) => warn!(claim = %name, "unexpected answer to {req:?}; looking again"),
        }
        self.push(&name);
    }

    /// The last step before a deleted ServiceCIDR claim's finalizer goes:
    /// no IPAddress may remain inside its prefix.
    pub(super) fn on_addresses_checked(
        &mut self,
        core: &mut Core,
        name: String,
        addresses: &[String],
    ) {
        let prefix = core.ledger.claim_state(&name).and_then(|s| s.prefix);
        let held: Vec<&String> = addresses
            .iter()
            .filter(|a| {
                a.parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| prefix.is_some_and(|p| p.contains(&ip)))
            })
            .collect();
        if held.is_empty() {
            self.send(core, name, Request::RemoveFinalizer);
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
        self.warn_claim_once(core, &name, "AddressesInUse", msg);
        self.lane.retry_at(&name, Instant::now() + ADDRESS_RECHECK);
    }

    pub(super) fn claim_failed(
        &mut self,
        core: &mut Core,
        name: &str,
        what: &str,
        e: &kube::Error,
    ) {
        core.request_failed(e);
        let delay = self.lane.failed(name, Instant::now());
        warn!(
            claim = name,
            request = what,
            "failed, retrying in {delay:?}: {}",
            error_message(e)
        );
    }

    /// The pools are current: choose the claim's prefix and write it.
    pub(super) fn bind(&mut self, core: &mut Core, name: String) {
        match core.ledger.plan_claim(&name) {
            ClaimPlan::Nothing => self.push(&name),
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
                self.waits.insert(name.clone(), w);
                self.warn_claim_once(core, &name, reason, msg);
                self.push(&name);
            }
            ClaimPlan::Bind { pool, prefix } => {
                self.waits.remove(&name);
                let rv = self
                    .objects
                    .get(&name)
                    .and_then(|o| o.metadata.resource_version.clone())
                    .unwrap_or_default();
                info!(claim = %name, %pool, %prefix, "binding");
                let status = self.bind_status(core, &name, &pool, prefix);
                self.send(
                    core,
                    name,
                    Request::Bind {
                        rv,
                        status: Box::new(status),
                    },
                );
            }
        }
    }

    /// The bind landed: the claim as answered is the record.
    pub(super) fn bound(&mut self, core: &mut Core, name: String, obj: PrefixClaim) {
        self.lane.succeeded(&name);
        let snap = self.commit(core, obj);
        if let Some(p) = snap.prefix.as_deref() {
            core.metrics.claims_bound.inc();
            let r = core.claim_ref(&name);
            core.events.send(Note::normal(
                r,
                "PrefixClaimed",
                "Bind",
                format!(
                    "claimed {p} from PrefixPool {}",
                    snap.pool.as_deref().unwrap_or("?")
                ),
            ));
        }
        core.status.mark();
        core.report_new_conflicts();
        core.wake.waiting_services = true;
        self.push(&name);
    }

    /// Takes a claim as answered into the ledger (a bind's outcome) and
    /// the cache.
    pub(super) fn commit(
        &mut self,
        core: &mut Core,
        obj: PrefixClaim,
    ) -> crate::ledger::ClaimSnapshot {
        let snap = edge::decode(&kube::core::DeserializeGuard(Ok(obj.clone())));
        core.ledger.commit_claim(&snap);
        self.take_claim_object(core, &kube::core::DeserializeGuard(Ok(obj)));
        snap
    }

    pub(super) fn warn_claim_once(
        &mut self,
        core: &mut Core,
        name: &str,
        reason: &'static str,
        message: String,
    ) {
        let key = format!("{reason}: {message}");
        if self.warned.get(name) == Some(&key) {
            return;
        }
        self.warned.insert(name.to_string(), key);
        warn!(claim = name, reason, "{message}");
        let r = core.claim_ref(name);
        core.events.send(Note::warning(r, reason, "Bind", message));
    }
}

/// What an answer showed, for [`after`].
fn shown(answer: &Reply) -> Shown {
    match answer {
        Reply::Read(Ok(read)) => Shown::ReadBack(read.as_ref().map(|obj| {
            let bound = obj.status.as_ref().is_some_and(|s| s.prefix.is_some());
            let rv = obj.metadata.resource_version.clone().unwrap_or_default();
            (bound, rv)
        })),
        other => match other.error() {
            Some(e) => Shown::Failed(write_outcome(e)),
            None => Shown::Answered,
        },
    }
}
