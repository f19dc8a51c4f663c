//! The work queue of one kind of object — PrefixClaims, LoadBalancer
//! Services: which keys to look at, which have a request in flight, which
//! wait out a failure (with the same backoff as Node writes), and when the
//! next retry is due. Pure: the loop asks it which keys to act on and tells
//! it what happened. (Node writes have their own pipeline, `pipeline.rs`,
//! which also batches the pool check.)

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use crate::k8s::errors::backoff;

/// How soon a write whose outcome is unknown (a claim's bind, a Service's
/// status) is read back.
pub(crate) const FIRST_SETTLE: Duration = Duration::from_millis(200);
/// How soon it is read again while it still may land.
pub(crate) const SETTLE_AGAIN: Duration = Duration::from_secs(1);

#[derive(Debug, Default)]
pub(super) struct Lane {
    /// Keys to look at.
    queue: BTreeSet<String>,
    /// Keys with a request in flight.
    busy: BTreeSet<String>,
    /// Not before: keys whose last request failed (or that asked to be
    /// looked at again later).
    retry_at: BTreeMap<String, Instant>,
    /// Consecutive failures per key.
    failures: HashMap<String, u32>,
}

impl Lane {
    /// Look at `key` at the next dispatch.
    pub(super) fn push(&mut self, key: &str) {
        self.queue.insert(key.to_string());
    }

    pub(super) fn push_all(&mut self, keys: impl IntoIterator<Item = String>) {
        self.queue.extend(keys);
    }

    /// Up to `limit` queued keys to act on now, in order: those neither in
    /// flight nor waiting for a retry time, with the ones whose retry time
    /// has come. They leave the queue (so do the keys passed over: one in
    /// flight is looked at when its answer comes, one waiting when its
    /// retry is due); the rest stay queued. What the caller does not act
    /// on it gives back with [`Lane::push`]. Taking a few from a long
    /// queue costs those few, not the queue: a backlog of N keys served a
    /// few at a time stays linear.
    pub(super) fn take_ready(&mut self, now: Instant, limit: usize) -> Vec<String> {
        if !self.retry_at.is_empty() {
            let due: Vec<String> = self
                .retry_at
                .iter()
                .filter(|(_, t)| **t <= now)
                .map(|(k, _)| k.clone())
                .collect();
            for k in due {
                self.retry_at.remove(&k);
                self.queue.insert(k);
            }
        }
        let mut ready = Vec::new();
        while ready.len() < limit {
            let Some(k) = self.queue.pop_first() else {
                break;
            };
            if !self.busy.contains(&k) && !self.retry_at.contains_key(&k) {
                ready.push(k);
            }
        }
        ready
    }

    /// A request for `key` is in flight.
    pub(super) fn start(&mut self, key: &str) {
        self.busy.insert(key.to_string());
    }

    /// Its answer is in.
    pub(super) fn finish(&mut self, key: &str) {
        self.busy.remove(key);
    }

    pub(super) fn in_flight(&self) -> usize {
        self.busy.len()
    }

    /// A request for `key` succeeded: the next failure starts the backoff
    /// over.
    pub(super) fn succeeded(&mut self, key: &str) {
        self.failures.remove(key);
    }

    /// A request for `key` failed: it is looked at again after the backoff
    /// of its consecutive failures, which is returned.
    pub(super) fn failed(&mut self, key: &str, now: Instant) -> Duration {
        let n = self.failures.entry(key.to_string()).or_insert(0);
        *n = n.saturating_add(1);
        let delay = backoff(*n);
        self.retry_at.insert(key.to_string(), now + delay);
        delay
    }

    /// Look at `key` again at `when` (and not before).
    pub(super) fn retry_at(&mut self, key: &str, when: Instant) {
        self.retry_at.insert(key.to_string(), when);
    }

    /// Drop `key`'s pending retry (something else looks at it now).
    pub(super) fn cancel_retry(&mut self, key: &str) {
        self.retry_at.remove(key);
    }

    /// The object is gone or new: no failures, no retry remembered.
    pub(super) fn forget(&mut self, key: &str) {
        self.failures.remove(key);
        self.retry_at.remove(key);
    }

    /// The earliest retry time, for the loop's timer.
    pub(super) fn next_retry(&self) -> Option<Instant> {
        self.retry_at.values().min().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queued_keys_come_out_once_in_order_and_the_queue_empties() {
        let mut l = Lane::default();
        l.push("b");
        l.push("a");
        l.push("b");
        let now = Instant::now();
        assert_eq!(l.take_ready(now, usize::MAX), ["a", "b"]);
        assert!(l.take_ready(now, usize::MAX).is_empty());
    }

    #[test]
    fn a_limited_take_leaves_the_rest_queued_in_order() {
        let mut l = Lane::default();
        let now = Instant::now();
        l.push_all(["d", "c", "b", "a"].map(String::from));
        l.start("a");
        assert_eq!(
            l.take_ready(now, 2),
            ["b", "c"],
            "a in flight is passed over"
        );
        assert_eq!(l.take_ready(now, 0), Vec::<String>::new());
        assert_eq!(l.take_ready(now, 5), ["d"]);
        assert!(l.take_ready(now, 5).is_empty());
    }

    #[test]
    fn a_key_in_flight_is_not_handed_out_again_until_its_answer() {
        let mut l = Lane::default();
        let now = Instant::now();
        l.start("a");
        l.push("a");
        l.push("b");
        assert_eq!(l.take_ready(now, usize::MAX), ["b"]);
        assert_eq!(l.in_flight(), 1);
        l.finish("a");
        l.push("a");
        assert_eq!(l.take_ready(now, usize::MAX), ["a"]);
    }

    #[test]
    fn failures_back_off_and_come_back_when_due() {
        let mut l = Lane::default();
        let t0 = Instant::now();
        let first = l.failed("a", t0);
        let second = l.failed("a", t0);
        assert!(second > first, "{second:?} grows from {first:?}");
        assert_eq!(l.next_retry(), Some(t0 + second));
        l.push("a");
        assert!(
            l.take_ready(t0, usize::MAX).is_empty(),
            "waits out its backoff"
        );
        assert_eq!(
            l.take_ready(t0 + second, usize::MAX),
            ["a"],
            "due: comes back by itself"
        );
        assert_eq!(l.next_retry(), None);
        l.succeeded("a");
        assert_eq!(
            l.failed("a", t0),
            first,
            "a success starts the backoff over"
        );
    }

    #[test]
    fn a_retry_can_be_cancelled_or_forgotten() {
        let mut l = Lane::default();
        let t0 = Instant::now();
        l.failed("a", t0);
        l.cancel_retry("a");
        l.push("a");
        assert_eq!(l.take_ready(t0, usize::MAX), ["a"]);
        let first = l.failed("b", t0);
        l.failed("b", t0);
        l.forget("b");
        assert_eq!(l.next_retry(), None);
        assert_eq!(l.failed("b", t0), first, "forgotten failures");
    }

    #[test]
    fn a_later_look_is_scheduled_without_a_failure() {
        let mut l = Lane::default();
        let t0 = Instant::now();
        l.retry_at("a", t0 + Duration::from_secs(10));
        assert!(l.take_ready(t0, usize::MAX).is_empty());
        assert_eq!(
            l.take_ready(t0 + Duration::from_secs(10), usize::MAX),
            ["a"]
        );
    }
}
