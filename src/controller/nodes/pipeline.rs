//! The write pipeline: which Node is planned next, which Nodes have a write
//! or a read in flight, how often each failed in a row, which writes have an
//! unknown outcome, and when a failed Node is tried again. It decides; the
//! reconciler does the I/O and asks the ledger what to write.

use std::collections::{HashMap, HashSet};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::Stream;
use ipnet::IpNet;
use tokio_util::time::{DelayQueue, delay_queue};

use super::queue::{Head, WriteQueue};
use crate::controller::pool_gate::PoolGate;
use crate::k8s::errors::{WriteOutcome, backoff};

/// The prefixes of a write, with the pool each came from.
pub type Picks = Vec<(String, IpNet)>;

/// A write whose outcome is unknown: the object written to and what was
/// written, reserved until a read of the Node settles it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unknown {
    pub uid: String,
    pub picks: Picks,
}

/// What to do next.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Plan this Node and write what the ledger picks.
    Plan(String),
    /// Read this Node to learn whether its write with an unknown outcome
    /// landed.
    Settle { node: String, unknown: Unknown },
    /// Nothing now (or nothing before a check of the pools, asked of the
    /// gate, passes).
    Idle,
}

/// What a failed write means for its reservation.
#[derive(Debug, PartialEq, Eq)]
pub enum AfterFailure {
    /// The Node is gone: free the reservation.
    Release,
    /// Refused after the server looked at the Node: keep the reservation
    /// until a read adopts whatever the Node holds.
    ReadBack,
    /// Not applied: free the reservation; the Node is queued again after
    /// this delay.
    RetryAfter(Duration),
    /// It may have landed: the reservation stays (as [`Unknown`]) and the
    /// Node is read back after this delay.
    SettleAfter(Duration),
}

#[derive(Default)]
pub struct Pipeline {
    queue: WriteQueue,
    in_flight: HashSet<String>,
    attempts: HashMap<String, u32>,
    uncertain: HashMap<String, Unknown>,
    retries: DelayQueue<String>,
    retry_keys: HashMap<String, delay_queue::Key>,
    /// When each Node waiting for its first prefixes was first seen, for
    /// the allocation latency.
    first_seen: HashMap<String, Instant>,
}

impl Pipeline {
    /// Queues `node` (unless queued already).
    pub fn push(&mut self, node: &str, gate: &mut PoolGate) {
        self.queue.push(node, gate);
    }

    /// Queues a Node that waits for prefixes, noting when it was first seen.
    pub fn push_waiting(&mut self, node: &str, now: Instant, gate: &mut PoolGate) {
        self.first_seen.entry(node.to_string()).or_insert(now);
        self.queue.push(node, gate);
    }

    /// The state of `node` changed (see [`WriteQueue::touch`]).
    pub fn touch(&mut self, node: &str, gate: &mut PoolGate) {
        self.queue.touch(node, gate);
    }

    /// Every Node's state changed: a re-list.
    pub fn touch_all(&mut self, gate: &mut PoolGate) {
        self.queue.touch_all(gate);
    }

    /// The next thing to do. A Node with a write or read in flight is
    /// skipped (it is queued again when that comes back, if needed).
    pub fn next(&mut self, gate: &mut PoolGate) -> Step {
        loop {
            match self.queue.pop_ready(gate) {
                Head::Ready(node) => {
                    if self.in_flight.contains(&node) {
                        continue;
                    }
                    return match self.uncertain.get(&node) {
                        Some(u) => Step::Settle {
                            unknown: u.clone(),
                            node,
                        },
                        None => Step::Plan(node),
                    };
                }
                Head::Blocked | Head::Empty => return Step::Idle,
            }
        }
    }

    /// A write or read of `node` was sent.
    pub fn begin(&mut self, node: &str) {
        self.in_flight.insert(node.to_string());
    }

    /// The write or read of `node` came back.
    pub fn end(&mut self, node: &str) {
        self.in_flight.remove(node);
    }

    pub fn is_in_flight(&self, node: &str) -> bool {
        self.in_flight.contains(node)
    }

    /// The write landed; returns how long the Node waited for it.
    pub fn written(&mut self, node: &str, now: Instant) -> Option<Duration> {
        self.attempts.remove(node);
        self.first_seen
            .remove(node)
            .map(|t| now.saturating_duration_since(t))
    }

    /// Someone else gave `node` its prefixes: no latency of ours to record.
    pub fn filled_elsewhere(&mut self, node: &str) {
        self.first_seen.remove(node);
    }

    /// The Node is gone.
    pub fn forget(&mut self, node: &str) {
        self.first_seen.remove(node);
        self.attempts.remove(node);
    }

    /// Decides what a failed write of `node` (to object `uid`, with
    /// `picks`) means.
    pub fn write_failed(
        &mut self,
        node: &str,
        uid: &str,
        picks: &Picks,
        outcome: WriteOutcome,
    ) -> AfterFailure {
        match outcome {
            WriteOutcome::Gone => AfterFailure::Release,
            WriteOutcome::Refused => AfterFailure::ReadBack,
            WriteOutcome::NotApplied => AfterFailure::RetryAfter(self.retry_later(node)),
            WriteOutcome::Unknown => {
                self.uncertain.insert(
                    node.to_string(),
                    Unknown {
                        uid: uid.to_string(),
                        picks: picks.clone(),
                    },
                );
                AfterFailure::SettleAfter(self.retry_later(node))
            }
        }
    }

    /// Queues `node` again after a backoff that grows with its failures in
    /// a row; returns the delay. Needs the tokio timer (the reconciler's
    /// runtime).
    pub fn retry_later(&mut self, node: &str) -> Duration {
        let attempt = self.attempts.entry(node.to_string()).or_insert(0);
        *attempt += 1;
        let delay = backoff(*attempt);
        match self.retry_keys.get(node) {
            Some(k) => self.retries.reset(k, delay),
            None => {
                let k = self.retries.insert(node.to_string(), delay);
                self.retry_keys.insert(node.to_string(), k);
            }
        }
        delay
    }

    /// The outcome of `node`'s write is known now.
    pub fn settled(&mut self, node: &str) {
        self.uncertain.remove(node);
    }

    /// Leadership is gone: writes with an unknown outcome are not this
    /// replica's to settle any more. Returns their Nodes (whose
    /// reservations the caller frees).
    pub fn drop_uncertain(&mut self) -> Vec<String> {
        self.uncertain.drain().map(|(n, _)| n).collect()
    }

    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    pub fn queue_is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Polls for the next Node whose retry is due (pending while none is
    /// scheduled).
    fn poll_retry(&mut self, cx: &mut Context<'_>) -> Poll<String> {
        match Stream::poll_next(std::pin::Pin::new(&mut self.retries), cx) {
            Poll::Ready(Some(expired)) => {
                let node = expired.into_inner();
                self.retry_keys.remove(&node);
                Poll::Ready(node)
            }
            Poll::Ready(None) | Poll::Pending => Poll::Pending,
        }
    }

    /// The next Node whose retry is due.
    pub async fn next_retry(&mut self) -> String {
        std::future::poll_fn(|cx| self.poll_retry(cx)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn picks() -> Picks {
        vec![("p".into(), "2001:db8::/64".parse().expect("cidr"))]
    }

    /// Passes a check sent after everything queued so far.
    fn ready(p: &mut Pipeline, g: &mut PoolGate) {
        assert_eq!(p.next(g), Step::Idle, "the head waits for a check");
        let m = g.start_check(Instant::now()).expect("a check asked for");
        assert!(g.check_passed(m));
    }

    #[tokio::test]
    async fn a_node_is_planned_after_the_pool_check() {
        let mut p = Pipeline::default();
        let mut g = PoolGate::default();
        let now = Instant::now();
        p.push_waiting("a", now, &mut g);
        assert_eq!(p.next(&mut g), Step::Idle, "a check comes first");
        let m = g.start_check(now).expect("asked for");
        assert_eq!(p.next(&mut g), Step::Idle);
        assert!(g.start_check(now).is_none(), "one check covers it");
        assert!(g.check_passed(m));
        assert_eq!(p.next(&mut g), Step::Plan("a".into()));
        assert_eq!(p.next(&mut g), Step::Idle);
    }

    #[tokio::test]
    async fn nodes_in_flight_are_skipped() {
        let mut p = Pipeline::default();
        let mut g = PoolGate::default();
        p.begin("a");
        p.push("a", &mut g);
        p.push("b", &mut g);
        ready(&mut p, &mut g);
        assert_eq!(p.next(&mut g), Step::Plan("b".into()));
        p.end("a");
        assert!(!p.is_in_flight("a"));
    }

    #[tokio::test]
    async fn an_unknown_outcome_is_settled_by_a_read_not_written_again() {
        let mut p = Pipeline::default();
        let mut g = PoolGate::default();
        let after = p.write_failed("a", "u1", &picks(), WriteOutcome::Unknown);
        assert!(matches!(after, AfterFailure::SettleAfter(_)));
        p.push("a", &mut g);
        ready(&mut p, &mut g);
        assert_eq!(
            p.next(&mut g),
            Step::Settle {
                node: "a".into(),
                unknown: Unknown {
                    uid: "u1".into(),
                    picks: picks()
                }
            }
        );
        p.settled("a");
        p.push("a", &mut g);
        ready(&mut p, &mut g);
        assert_eq!(p.next(&mut g), Step::Plan("a".into()));
    }

    #[tokio::test]
    async fn failures_map_to_what_happens_to_the_reservation() {
        let mut p = Pipeline::default();
        assert_eq!(
            p.write_failed("a", "u", &picks(), WriteOutcome::Gone),
            AfterFailure::Release
        );
        assert_eq!(
            p.write_failed("a", "u", &picks(), WriteOutcome::Refused),
            AfterFailure::ReadBack
        );
        let AfterFailure::RetryAfter(first) =
            p.write_failed("a", "u", &picks(), WriteOutcome::NotApplied)
        else {
            panic!("not applied: retried");
        };
        let AfterFailure::RetryAfter(second) =
            p.write_failed("a", "u", &picks(), WriteOutcome::NotApplied)
        else {
            panic!("not applied: retried");
        };
        assert!(second > first, "the backoff grows");
        assert_eq!(p.written("a", Instant::now()), None);
        assert_eq!(p.retry_later("a"), first, "a success resets it");
    }

    #[tokio::test]
    async fn leadership_lost_drops_unknown_outcomes() {
        let mut p = Pipeline::default();
        let mut g = PoolGate::default();
        p.write_failed("a", "u", &picks(), WriteOutcome::Unknown);
        assert_eq!(p.drop_uncertain(), vec!["a".to_string()]);
        p.push("a", &mut g);
        ready(&mut p, &mut g);
        assert_eq!(p.next(&mut g), Step::Plan("a".into()));
    }

    #[tokio::test]
    async fn the_latency_counts_from_first_seen() {
        let mut p = Pipeline::default();
        let mut g = PoolGate::default();
        let t0 = Instant::now();
        p.push_waiting("a", t0, &mut g);
        p.push_waiting("a", t0 + Duration::from_secs(5), &mut g);
        assert_eq!(
            p.written("a", t0 + Duration::from_secs(7)),
            Some(Duration::from_secs(7))
        );
        p.push_waiting("b", t0, &mut g);
        p.filled_elsewhere("b");
        assert_eq!(p.written("b", t0), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_comes_back_once_after_its_delay() {
        let mut p = Pipeline::default();
        let d = p.retry_later("a");
        p.retry_later("b");
        let t0 = tokio::time::Instant::now();
        let first = p.next_retry().await;
        assert_eq!(first, "a");
        assert!(tokio::time::Instant::now() - t0 >= d);
        assert_eq!(p.next_retry().await, "b");
        p.retry_later("a");
        p.retry_later("a");
        assert_eq!(p.next_retry().await, "a");
        let again = tokio::time::timeout(Duration::from_secs(60), p.next_retry()).await;
        assert!(again.is_err(), "rescheduled, not queued twice");
    }
}
