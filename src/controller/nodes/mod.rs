//! The Node lane: podCIDRs, from watch event to write to outcome.
//!
//! - [`input`]: what a Node state does to the picture, and which Nodes are
//!   queued;
//! - [`writes`]: Node writes and reads, from plan to outcome;
//! - [`pipeline`], [`queue`]: what is written next, retries, outcomes not
//!   known yet, each Node behind the pool gate (pure, unit-tested; the gate
//!   and its checks are shared with claims: `controller::pool_gate`).
//!
//! Its state is its own; what it shares (the ledger, metrics, Events) is
//! the [`Core`] every method is handed.

mod input;
mod pipeline;
mod queue;
mod writes;

use std::time::{Instant, SystemTime};

use kube::{Api, Client};
use tokio::task::{JoinError, JoinSet};
use tracing::{info, warn};

use super::core::Core;
use crate::k8s::errors::{backoff, error_message};
use crate::k8s::list_watch;
use crate::k8s::nodes::NodeLite;
use pipeline::Pipeline;
use writes::{ReadBack, WriteResult};

/// A re-list of every Node (after leadership was gained).
pub(crate) type NodeList = Result<(Vec<NodeLite>, Option<String>), kube::Error>;

/// What came back to the Node lane.
// Answers live for one loop turn; boxing the larger variant buys nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Answer {
    Write(Result<WriteResult, JoinError>),
    ReadBack(Result<ReadBack, JoinError>),
    List(Result<NodeList, JoinError>),
    /// A Node's retry time has come.
    Retry(String),
}

impl Answer {
    /// The `kind` label of `prefix_operator_loop_turn_seconds`.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Answer::Write(_) => "write_answer",
            Answer::ReadBack(_) => "read_back",
            Answer::List(_) => "node_relist",
            Answer::Retry(_) => "retry",
        }
    }
}

/// The Node lane's state.
pub(crate) struct NodeLane {
    nodes_api: Api<NodeLite>,
    pipeline: Pipeline,
    writes: JoinSet<WriteResult>,
    reads: JoinSet<ReadBack>,
    lists: JoinSet<NodeList>,
    /// Re-lists of Nodes failed in a row, and when the next may be sent.
    list_failures: u32,
    list_at: Option<Instant>,
}

impl NodeLane {
    pub(crate) fn new(client: &Client) -> Self {
        NodeLane {
            nodes_api: Api::all(client.clone()),
            pipeline: Pipeline::default(),
            writes: JoinSet::new(),
            reads: JoinSet::new(),
            lists: JoinSet::new(),
            list_failures: 0,
            list_at: None,
        }
    }

    pub(crate) fn api(&self) -> Api<NodeLite> {
        self.nodes_api.clone()
    }

    /// The next answer of a request in flight, or a retry come due
    /// (pending while there is none).
    pub(crate) async fn answer(&mut self) -> Answer {
        tokio::select! {
            biased;
            Some(r) = self.writes.join_next(), if !self.writes.is_empty() => Answer::Write(r),
            Some(r) = self.reads.join_next(), if !self.reads.is_empty() => Answer::ReadBack(r),
            Some(r) = self.lists.join_next(), if !self.lists.is_empty() => Answer::List(r),
            node = self.pipeline.next_retry() => Answer::Retry(node),
        }
    }

    pub(crate) fn on_answer(&mut self, core: &mut Core, a: Answer) {
        match a {
            Answer::Write(Ok(w)) => self.on_write(core, w),
            Answer::Write(Err(e)) => warn!("write task failed: {e}"),
            Answer::ReadBack(Ok(r)) => self.on_read_back(core, r),
            Answer::ReadBack(Err(e)) => warn!("read-back task failed: {e}"),
            Answer::List(Ok(l)) => self.on_list(core, l),
            Answer::List(Err(e)) => warn!("Node re-list task failed: {e}"),
            Answer::Retry(node) => self.pipeline.push(&node, &mut core.gate),
        }
    }

    /// Writes answered at shutdown: the ledger learns their outcome.
    pub(crate) async fn drain_writes(&mut self, core: &mut Core) {
        info!(
            "shutting down; waiting for {} write(s) in flight",
            self.writes.len()
        );
        while let Some(res) = self.writes.join_next().await {
            if let Ok(w) = res {
                self.on_write(core, w);
            }
        }
    }

    /// When the lane must be looked at again with nothing arriving: a
    /// failed re-list may be sent again.
    pub(crate) fn next_wake(&self) -> Option<Instant> {
        self.list_at
    }

    /// No Node write is queued or in flight (allocation Events are
    /// published only then).
    pub(crate) fn idle(&self) -> bool {
        self.pipeline.queue_is_empty() && self.writes.is_empty()
    }

    pub(crate) fn publish_gauges(&self, core: &Core) {
        core.metrics.writes_in_flight.set(self.writes.len() as i64);
        core.metrics.queued_nodes.set(self.pipeline.queued() as i64);
    }

    /// Leadership gained: every Node is re-read before the first write.
    /// Lost: reservations of writes whose outcome is open are released.
    pub(crate) fn on_leadership(&mut self, core: &mut Core, leading: bool) {
        if leading {
            info!("became leader; re-reading every Node before the first write");
            core.ledger.start_leading(SystemTime::now());
            core.relist.nodes = true;
            self.list_at = None;
        } else {
            for node in self.pipeline.drop_uncertain() {
                core.ledger.release(&node);
            }
        }
    }

    /// Sends the re-list of Nodes a new leader needs, unless one is in
    /// flight or a failure asks to wait.
    pub(crate) fn maybe_relist(&mut self, core: &Core) {
        let due = self.list_at.is_none_or(|t| Instant::now() >= t);
        if !core.relist.nodes || !core.is_leader() || !core.synced.nodes || !due {
            return;
        }
        if self.lists.is_empty() {
            let api = self.nodes_api.clone();
            self.lists
                .spawn(async move { list_watch::list_all(&api).await });
        }
    }

    /// A new leader's re-list came back.
    fn on_list(&mut self, core: &mut Core, list: NodeList) {
        match list {
            Ok((items, rv)) => {
                self.list_failures = 0;
                self.list_at = None;
                if core.relist.nodes {
                    let rv = crate::ledger::parse_resource_version(rv.as_deref());
                    self.merge_node_list(core, items, rv);
                    core.relist.nodes = false;
                }
            }
            Err(e) => {
                core.request_failed(&e);
                self.list_failures = self.list_failures.saturating_add(1);
                let delay = backoff(self.list_failures);
                warn!(
                    "re-listing Nodes failed, retrying in {delay:?}: {}",
                    error_message(&e)
                );
                self.list_at = Some(Instant::now() + delay);
            }
        }
    }
}
