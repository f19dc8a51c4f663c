//! Node writes and reads, from plan to outcome: what the pipeline says to do
//! next is planned with the ledger and sent; answers come back here and are
//! applied in the API server's order like any other Node state.

use std::time::{Duration, Instant, SystemTime};

use kube::Resource;
use tracing::{debug, info, warn};

use super::NodeLane;
use super::pipeline::{AfterFailure, Picks, Step};
use crate::controller::core::Core;
use crate::controller::events::Note;
use crate::k8s::errors::{error_message, error_reason, write_outcome};
use crate::k8s::nodes::{self, NodeLite};
use crate::ledger::{Plan, Wait};

/// How long prefixes of a write with an unknown outcome, found not landed,
/// are kept from other Nodes: the API server may still hold the request
/// (its default request timeout is 60 s).
const UNKNOWN_WRITE_GRACE: Duration = Duration::from_secs(120);

/// Why a Node is read back.
pub(crate) enum ReadPurpose {
    /// Its write was refused: adopt whatever it holds, then retry later.
    Adopt {
        reason: &'static str,
        message: String,
    },
    /// A re-list did not show it, but the ledger's state of it may be later
    /// than the list: find out whether it still exists.
    Verify,
    /// Its write had an unknown outcome: find out whether it landed.
    Settle { picks: Picks },
}

/// A Node read back (a consistent GET).
pub(crate) struct ReadBack {
    node: String,
    /// The object the ledger held when the read was sent.
    uid: String,
    purpose: ReadPurpose,
    read: Result<Option<NodeLite>, kube::Error>,
}

pub(crate) struct WriteResult {
    node: String,
    /// The object the write was guarded to (the `metadata.uid` in its body).
    uid: String,
    pools: Picks,
    result: Result<NodeLite, kube::Error>,
}

impl NodeLane {
    /// Starts writes (and the reads they wait for) while there is room; a
    /// head waiting for the pool gate asks it for a check.
    pub(crate) fn dispatch(&mut self, core: &mut Core) {
        if !core.may_write() {
            return;
        }
        while self.writes.len() < core.settings.max_concurrent_writes {
            match self.pipeline.next(&mut core.gate) {
                Step::Idle => break,
                Step::Settle { node, unknown } => {
                    // Read the Node to learn whether the write landed.
                    let purpose = ReadPurpose::Settle {
                        picks: unknown.picks,
                    };
                    self.read_back(node, unknown.uid, purpose);
                }
                Step::Plan(node) => self.plan(core, node),
            }
        }
    }

    pub(super) fn plan(&mut self, core: &mut Core, node: String) {
        match core.ledger.plan(&node, core.settings.primary_family) {
            Plan::Nothing => {}
            Plan::Wait(Wait::NoPool) => debug!(node, "no PrefixPool selects this Node"),
            Plan::Wait(Wait::Exhausted { family, pools }) => {
                core.status.mark();
                if core.warned.first_wait(&node) {
                    warn!(node, pools = %pools.join(","), "no free {family} prefix; the Node waits");
                    core.events.send(Note::warning(
                        core.node_ref(&node),
                        "PoolExhausted",
                        "Allocate",
                        format!(
                            "no free {family} prefix in PrefixPool(s) {}; the Node waits without podCIDRs (nothing is written for any family, podCIDRs is write-once). Add a prefix to a pool to serve it",
                            pools.join(", ")
                        ),
                    ));
                }
            }
            Plan::Wait(Wait::FamilyGone {
                family,
                pools,
                until,
            }) => {
                core.status.mark();
                if core.warned.first_wait(&node) {
                    let secs = until
                        .duration_since(std::time::SystemTime::now())
                        .unwrap_or_default()
                        .as_secs();
                    let why = if pools.is_empty() {
                        format!(
                            "this replica started leading moments ago and cannot know whether a {family} PrefixPool selecting this Node was just deleted or re-created"
                        )
                    } else {
                        format!(
                            "{family} PrefixPool(s) {} selected this Node until moments ago",
                            pools.join(", ")
                        )
                    };
                    info!(node, pools = %pools.join(","), "no {family} PrefixPool selects this Node now; it waits {secs}s for one before being written without {family}");
                    core.events.send(Note::normal(
                        core.node_ref(&node),
                        "WaitingForFamily",
                        "Allocate",
                        format!(
                            "{why}; it waits up to {secs}s for a {family} pool to serve it (a pool re-created now does) before it is written without {family}, which podCIDRs being write-once would make final"
                        ),
                    ));
                }
            }
            Plan::Allocate(picks) => {
                let uid = core.ledger.node_uid(&node).unwrap_or_default();
                self.start_write(core, node, uid, picks);
            }
        }
    }

    pub(super) fn start_write(&mut self, core: &mut Core, node: String, uid: String, picks: Picks) {
        let cidrs: Vec<String> = picks.iter().map(|(_, n)| n.to_string()).collect();
        let pools: Vec<String> = picks.iter().map(|(p, _)| p.clone()).collect();
        let api = self.nodes_api.clone();
        self.pipeline.begin(&node);
        core.metrics.node_writes.inc();
        let deadline = core.settings.lease_deadline.clone();
        self.writes.spawn(async move {
            // Last look before sending: a leader past its deadline must not write.
            let result = if deadline.as_ref().is_some_and(|d| !crate::leader::within(d)) {
                Err(crate::k8s::errors::not_leader())
            } else {
                let at = k8s_openapi::jiff::Timestamp::now()
                    .strftime("%Y-%m-%dT%H:%M:%SZ")
                    .to_string();
                let w = nodes::PodCidrsWrite {
                    uid: &uid,
                    cidrs: &cidrs,
                    pools: &pools,
                    at: &at,
                };
                nodes::write_pod_cidrs(&api, &node, &w).await
            };
            WriteResult {
                node,
                uid,
                pools: picks,
                result,
            }
        });
    }

    pub(super) fn on_write(&mut self, core: &mut Core, w: WriteResult) {
        self.pipeline.end(&w.node);
        match w.result {
            Ok(n) => self.on_written(core, &w.node, &w.pools, &n),
            Err(e) => {
                let reason = core.request_failed(&e);
                let message = error_message(&e);
                match self
                    .pipeline
                    .write_failed(&w.node, &w.uid, &w.pools, write_outcome(&e))
                {
                    AfterFailure::Release => {
                        core.ledger.release(&w.node);
                        self.wake_waiting(core);
                        debug!(node = %w.node, "Node gone before its write landed");
                    }
                    AfterFailure::ReadBack => {
                        // Someone else wrote podCIDRs, or the Node was
                        // re-created: read it back and adopt whatever it
                        // holds, then free ours. The reservation and the
                        // in-flight mark stay until the read comes back.
                        info!(node = %w.node, "write refused ({message}); re-reading the Node to adopt it");
                        let purpose = ReadPurpose::Adopt { reason, message };
                        self.read_back(w.node, w.uid, purpose);
                    }
                    AfterFailure::RetryAfter(delay) => {
                        core.ledger.release(&w.node);
                        self.wake_waiting(core);
                        warn_retry(&w.node, reason, delay, &message);
                    }
                    AfterFailure::SettleAfter(delay) => {
                        // It may have landed and only its answer got lost:
                        // the reservation stays until a read of the Node
                        // tells (after a backoff: the server may be down).
                        let message = format!(
                            "{message} (result unknown; the prefixes stay reserved until the Node is read back)"
                        );
                        warn_retry(&w.node, reason, delay, &message);
                    }
                }
            }
        }
    }

    pub(super) fn on_written(&mut self, core: &mut Core, node: &str, picks: &Picks, n: &NodeLite) {
        match nodes::snapshot(n) {
            Some(s) => {
                core.ledger.commit(&s);
            }
            None => {
                core.ledger.release(node);
            }
        }
        core.warned.served(node);
        let latency = self.pipeline.written(node, Instant::now());
        if let Some(l) = latency {
            core.metrics.allocation_latency.observe(l.as_secs_f64());
        }
        for (pool, prefix) in picks {
            core.metrics
                .allocations
                .get_or_create(&core.metrics.pool(pool))
                .inc();
            info!(node, %pool, %prefix, latency_ms = latency.map(|l| l.as_millis() as u64), "allocated");
        }
        if core.settings.allocation_events {
            let written: Vec<String> = picks.iter().map(|(p, n)| format!("{n} from {p}")).collect();
            core.events.send(Note::normal(
                n.object_ref(&()),
                "PrefixAllocated",
                "Allocate",
                format!("podCIDRs set to {}", written.join(", ")),
            ));
        }
        core.status.mark();
    }

    /// Reads Node `node` back (off the event loop); the answer comes to
    /// [`NodeLane::on_read_back`]. The in-flight mark keeps the Node from
    /// being planned meanwhile.
    pub(super) fn read_back(&mut self, node: String, uid: String, purpose: ReadPurpose) {
        self.pipeline.begin(&node);
        let api = self.nodes_api.clone();
        self.reads.spawn(async move {
            let read = api.get_opt(&node).await;
            ReadBack {
                node,
                uid,
                purpose,
                read,
            }
        });
    }

    /// Nodes a re-list did not show but whose state in the ledger may be
    /// later than the list: read each back.
    pub(super) fn verify_nodes(&mut self, core: &mut Core, names: Vec<String>) {
        for name in names {
            if self.pipeline.is_in_flight(&name) {
                continue;
            }
            let uid = core.ledger.node_uid(&name).unwrap_or_default();
            info!(node = %name, "not in the re-list but known later; reading it back");
            self.read_back(name, uid, ReadPurpose::Verify);
        }
    }

    /// A Node read back: adopt whatever it holds (in the API server's order,
    /// like any other state) or forget it if that object is gone. After a
    /// refused write, free our reservation and try again later (still
    /// without podCIDRs — for example an admission policy refuses the write
    /// — it must not be retried at once).
    pub(super) fn on_read_back(&mut self, core: &mut Core, a: ReadBack) {
        let name = a.node.as_str();
        self.pipeline.end(name);
        match a.read {
            Ok(Some(n)) => {
                if let Some(s) = nodes::snapshot(&n) {
                    if core.ledger.upsert_node(&s).changed {
                        self.pipeline.touch(name, &mut core.gate);
                    }
                    if core.ledger.node_has_prefixes(name) == Some(true) {
                        // Filled by someone else: no latency of ours to record.
                        self.pipeline.filled_elsewhere(name);
                    }
                    core.report_conflict(name, n.object_ref(&()));
                }
            }
            Ok(None) => {
                core.ledger.remove_node_if_uid(name, &a.uid);
            }
            Err(e) => {
                core.request_failed(&e);
                let message = error_message(&e);
                warn!(node = name, "re-reading Node failed: {message}");
                if let ReadPurpose::Settle { .. } = a.purpose {
                    // Still unknown: the reservation stays; read again later.
                    let delay = self.pipeline.retry_later(name);
                    warn_retry(name, error_reason(&e), delay, &message);
                    return;
                }
            }
        }
        core.status.mark();
        match a.purpose {
            ReadPurpose::Adopt { reason, message } => {
                core.ledger.release(name);
                self.wake_waiting(core);
                let delay = self.pipeline.retry_later(name);
                warn_retry(name, reason, delay, &message);
            }
            ReadPurpose::Verify => self.pipeline.push(name, &mut core.gate),
            ReadPurpose::Settle { picks } => {
                self.pipeline.settled(name);
                let until = SystemTime::now() + UNKNOWN_WRITE_GRACE;
                if core.ledger.settle_unknown(name, &a.uid, &picks, until) {
                    info!(
                        node = name,
                        "the write with an unknown outcome did not land; planning the Node again (its prefixes are held back for {UNKNOWN_WRITE_GRACE:?} in case it still lands)"
                    );
                    self.pipeline.push(name, &mut core.gate);
                }
                self.wake_waiting(core);
            }
        }
    }
}

fn warn_retry(node: &str, reason: &str, delay: Duration, message: &str) {
    warn!(
        node,
        "writing podCIDRs failed ({reason}), retrying in {delay:?}: {message}"
    );
}
