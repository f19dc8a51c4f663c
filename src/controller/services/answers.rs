//! What the answer to a Service's write does ([`super::step::outcome`]
//! decides, pure): committed, gone, read back until it settles, or retried.

use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::step::{Answered, Outcome, Purpose, outcome};
use super::{Done, ServiceLane};
use crate::controller::core::Core;
use crate::controller::events::Note;
use crate::controller::lane::{FIRST_SETTLE, SETTLE_AGAIN};
use crate::k8s::errors::{bounded_request as bounded, error_message, write_outcome};
use crate::k8s::services as edge;

impl ServiceLane {
    pub(super) fn on_service_done(&mut self, core: &mut Core, d: Done) {
        let key = d.key;
        self.lane.finish(&key);
        let snap = match &d.answer {
            Ok(Some(obj)) => Some(edge::snapshot(obj, &self.classes)),
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
                self.settle_service(key, d.rv, d.purpose, SETTLE_AGAIN);
            }
            (Outcome::Commit { assigned }, Ok(Some(obj)), Some(snap)) => {
                self.lane.succeeded(&key);
                core.ledger.commit_service(&snap);
                self.take_service(core, obj);
                if assigned && let Purpose::Assign(picks) = &d.purpose {
                    let list: Vec<String> = picks
                        .iter()
                        .map(|(c, a)| format!("{a} (PrefixClaim {c})"))
                        .collect();
                    info!(service = %key, addresses = %list.join(", "), "LoadBalancer addresses assigned");
                    let r = core.service_ref(&key);
                    core.events.send(Note::normal(
                        r,
                        "LoadBalancerAddressAssigned",
                        "AllocateLoadBalancerAddress",
                        format!("assigned {}", list.join(", ")),
                    ));
                }
                self.addresses_changed(core);
                self.lane.push(&key);
            }
            (Outcome::Gone, _, _) => {
                // Gone: nothing held; the watch's Delete does the rest.
                core.ledger.release_service(&key);
                self.addresses_changed(core);
            }
            (Outcome::ReadBack, Err(e), _) => {
                // It may have landed: the reservation stays until a read
                // settles it.
                core.request_failed(&e);
                warn!(service = %key, "LoadBalancer status write outcome unknown, reading back: {}", error_message(&e));
                self.settle_service(key, d.rv, d.purpose, FIRST_SETTLE);
            }
            (Outcome::Retry, Err(e), _) => {
                core.ledger.release_service(&key);
                core.request_failed(&e);
                let delay = self.lane.failed(&key, Instant::now());
                warn!(service = %key, "LoadBalancer status write failed, retrying in {delay:?}: {}", error_message(&e));
                self.addresses_changed(core);
            }
            (o, _, _) => {
                // outcome() gives Commit only for an object, ReadBack and
                // Retry only for an error.
                warn!(service = %key, "unexpected outcome {o:?} of a LoadBalancer status write; looking again");
                self.lane.push(&key);
            }
        }
    }

    pub(super) fn settle_service(
        &mut self,
        key: String,
        rv: String,
        purpose: Purpose,
        after: Duration,
    ) {
        let Some((api, name)) = self.api(&key) else {
            return;
        };
        self.lane.start(&key);
        self.tasks.spawn(async move {
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
}
