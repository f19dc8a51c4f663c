//! The one request each queued claim needs next, and sending it: the step
//! is decided by [`super::step::next_step`] from the ledger's picture, the
//! status a claim should show by [`super::status::build`]; the request runs
//! off the loop and its answer comes back as a [`Done`].

use std::time::{Duration, Instant};

use kube::ResourceExt;

use super::status::{self as claim_status, ClaimFacts, Consumer};
use super::step::{CidrView, Facts, Request, Step, next_step};
use super::{ClaimLane, Done, Pending, Reply, name_of, now};
use crate::api::{PrefixClaimStatus, Purpose};
use crate::controller::core::Core;
use crate::k8s::claims as edge;
use crate::k8s::errors::{as_leader, bounded_request as bounded};
use crate::k8s::list_watch;

impl ClaimLane {
    /// Whether claims may be acted on: the leader, with every watch synced.
    pub(super) fn claims_ready(&self, core: &Core) -> bool {
        core.may_write() && core.synced.service_cidrs
    }

    /// Sends the next request of every queued claim that has none in
    /// flight and is not waiting out a failure.
    pub(crate) fn dispatch_claims(&mut self, core: &mut Core) {
        if !self.claims_ready(core) {
            return;
        }
        // Claims behind the gate ask for a check every turn they still
        // wait (a failed check is sent again only while someone asks).
        for stamp in self.gated.values() {
            core.gate.wait(*stamp);
        }
        for name in self.lane.take_ready(Instant::now(), usize::MAX) {
            if let Some(req) = self.next_request(core, &name) {
                self.send(core, name, req);
            }
        }
    }

    /// The one thing claim `name` needs next, if any ([`next_step`] decides
    /// from the ledger's picture); a status that only needs writing is sent
    /// as such.
    pub(super) fn next_request(&mut self, core: &mut Core, name: &str) -> Option<Request> {
        let st = core.ledger.claim_state(name)?;
        let lb_deleting = st.deleting && st.purpose == Some(Purpose::LoadBalancer);
        let facts = Facts {
            state: &st,
            cidr: self
                .service_cidrs
                .get(name)
                .map(|sc| CidrView::of(sc, &st.uid)),
            waiting: self.waits.contains_key(name),
            replan: self.replan.contains(name),
            services_synced: core.synced.services,
            services_inside: lb_deleting
                && st
                    .prefix
                    .is_some_and(|p| !core.ledger.services_inside(&p).is_empty()),
        };
        match next_step(&facts) {
            Step::Nothing => None,
            Step::Plan => {
                self.plan_when_gate_passes(core, name);
                None
            }
            Step::Send(req) => Some(req),
            Step::Status(consumer) => {
                if consumer == Consumer::ServiceCidrTaken {
                    self.warn_claim_once(
                        core,
                        name,
                        "ServiceCIDRNameTaken",
                        format!("a ServiceCIDR named {name} exists and is not this claim's; the claimed prefix stays unused until it is gone"),
                    );
                }
                self.status_if_changed(core, name, consumer)
            }
            Step::WhenDrained(then) => match st.prefix {
                Some(p) if self.drained(core, name, p) => Some(then),
                _ => self.status_if_changed(core, name, Consumer::ServiceCidrDraining),
            },
        }
    }

    /// The status claim `name` should show now.
    pub(super) fn desired_status(
        &self,
        core: &Core,
        name: &str,
        consumer: Consumer,
    ) -> Option<PrefixClaimStatus> {
        let st = core.ledger.claim_state(name)?;
        let obj = self.objects.get(name);
        let prev = obj
            .and_then(|o| o.status.as_ref())
            .map(|s| s.conditions.clone())
            .unwrap_or_default();
        let conflicts = core.ledger.claim_conflicts(name);
        let facts = ClaimFacts {
            name,
            state: &st,
            generation: obj.and_then(|o| o.metadata.generation).unwrap_or_default(),
            wait: self.waits.get(name),
            conflicts: &conflicts,
            consumer,
        };
        Some(claim_status::build(&facts, &prev, &now()))
    }

    /// The status that binds `prefix` of `pool` to claim `name`.
    pub(super) fn bind_status(
        &self,
        core: &Core,
        name: &str,
        pool: &str,
        prefix: ipnet::IpNet,
    ) -> PrefixClaimStatus {
        let Some(mut st) = core.ledger.claim_state(name) else {
            return PrefixClaimStatus::default();
        };
        st.prefix = Some(prefix);
        st.pool = Some(pool.to_string());
        let obj = self.objects.get(name);
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

    pub(super) fn status_if_changed(
        &mut self,
        core: &mut Core,
        name: &str,
        consumer: Consumer,
    ) -> Option<Request> {
        let consumer_again = consumer.clone();
        let want = self.desired_status(core, name, consumer)?;
        let have = self.objects.get(name).and_then(|o| o.status.as_ref());
        (have != Some(&want)).then_some(Request::Status(consumer_again))
    }

    pub(super) fn send(&mut self, core: &mut Core, name: String, req: Request) {
        if core.ledger.claim_state(&name).is_none() {
            // Gone while the step before was in flight: nothing to do.
            return;
        }
        let answer = match &req {
            Request::Settle { rv } => {
                let rv = rv.clone();
                self.settle_claim(name, rv, Duration::ZERO);
                return;
            }
            Request::CheckAddresses => self.addresses_read(),
            Request::CreateServiceCidr
            | Request::ServiceCidrFinalizer { .. }
            | Request::DeleteServiceCidr => self.service_cidr_write(core, &name, &req),
            _ => self.claim_write(core, &name, &req),
        };
        let Some(answer) = answer else {
            return;
        };
        self.lane.start(&name);
        core.metrics.claim_requests.inc();
        self.tasks.spawn(async move {
            Done {
                answer: answer.await,
                claim: name,
                request: req,
            }
        });
    }

    /// Whether leadership lapsed, asked when a write is about to be sent.
    pub(super) fn lapse_check(&self, core: &Core) -> impl Fn() -> bool + Send + 'static {
        let deadline = core.settings.lease_deadline.clone();
        move || deadline.as_ref().is_some_and(|d| !crate::leader::within(d))
    }

    /// Before a deleted claim lets go: the IPAddresses.
    pub(super) fn addresses_read(&self) -> Option<Pending> {
        let api = self.addresses_api.clone();
        Some(Box::pin(async move {
            Reply::Addresses(bounded(edge::ip_addresses(&api)).await)
        }))
    }

    /// Claim `name` is to be planned: once a check of the pools sent after
    /// it was seen has passed (the gate the Node lane waits for too), its
    /// prefix is chosen and bound; until then it waits, and the gate is
    /// asked for a check. A claim whose state changes takes a new stamp.
    fn plan_when_gate_passes(&mut self, core: &mut Core, name: &str) {
        let stamp = *self
            .gated
            .entry(name.to_string())
            .or_insert_with(|| core.gate.stamp());
        if core.gate.wait(stamp) {
            self.gated.remove(name);
            // The plan this makes is the one `replan` wanted.
            self.replan.remove(name);
            self.bind(core, name.to_string());
        }
    }

    /// A write of claim `name` itself: its finalizer or its status.
    pub(super) fn claim_write(&self, core: &Core, name: &str, req: &Request) -> Option<Pending> {
        let obj = self.objects.get(name).cloned();
        let rv = obj
            .as_ref()
            .and_then(|o| o.metadata.resource_version.clone())
            .unwrap_or_default();
        let finalizers = obj
            .as_ref()
            .map(|o| o.finalizers().to_vec())
            .unwrap_or_default();
        let api = self.api.clone();
        let lapsed = self.lapse_check(core);
        let n = name.to_string();
        Some(match req {
            Request::AddFinalizer => Box::pin(async move {
                let n = name_of(&obj);
                let write = edge::add_finalizer(&api, &n, &rv, &finalizers);
                Reply::Claim(as_leader(lapsed(), write).await)
            }),
            Request::RemoveFinalizer => Box::pin(async move {
                let n = name_of(&obj);
                let write = edge::remove_finalizer(&api, &n, &rv, &finalizers);
                Reply::Claim(as_leader(lapsed(), write).await)
            }),
            Request::Bind { rv, status } => {
                let (status, rv) = (status.clone(), rv.clone());
                Box::pin(async move {
                    let write = edge::write_status(&api, &n, Some(&rv), &status);
                    Reply::Claim(as_leader(lapsed(), write).await)
                })
            }
            Request::Status(consumer) => {
                let status = self.desired_status(core, name, consumer.clone())?;
                Box::pin(async move {
                    let write = edge::write_status(&api, &n, None, &status);
                    Reply::Claim(as_leader(lapsed(), write).await)
                })
            }
            _ => return None,
        })
    }

    /// A write of the ServiceCIDR of claim `name`.
    pub(super) fn service_cidr_write(
        &self,
        core: &Core,
        name: &str,
        req: &Request,
    ) -> Option<Pending> {
        let api = self.service_cidrs_api.clone();
        let lapsed = self.lapse_check(core);
        let ours = self.service_cidrs.get(name).cloned();
        Some(match req {
            Request::CreateServiceCidr => {
                let obj = self.objects.get(name)?;
                let prefix = core.ledger.claim_state(name)?.prefix?;
                let sc = edge::service_cidr_for(obj, &prefix.to_string());
                Box::pin(async move {
                    let write = edge::create_service_cidr(&api, &sc);
                    Reply::ServiceCidr(as_leader(lapsed(), write).await)
                })
            }
            Request::ServiceCidrFinalizer { keep } => {
                let (sc, keep) = (ours?, *keep);
                Box::pin(async move {
                    let write = edge::set_service_cidr_finalizer(&api, &sc, keep);
                    Reply::ServiceCidr(as_leader(lapsed(), write).await)
                })
            }
            Request::DeleteServiceCidr => {
                let uid = ours?.metadata.uid?;
                let n = name.to_string();
                Box::pin(async move {
                    let write = edge::delete_service_cidr(&api, &n, &uid);
                    Reply::Done(as_leader(lapsed(), write).await)
                })
            }
            _ => return None,
        })
    }

    /// Reads claim `name` back after `after`, to learn whether its bind
    /// written onto `rv` landed (the reservation stays meanwhile).
    pub(super) fn settle_claim(&mut self, name: String, rv: String, after: Duration) {
        self.lane.start(&name);
        let api = self.api.clone();
        self.tasks.spawn(async move {
            tokio::time::sleep(after).await;
            Done {
                answer: Reply::Read(bounded(list_watch::read_by_name(&api, &name)).await),
                claim: name,
                request: Request::Settle { rv },
            }
        });
    }
}
