//! The work queue of one kind of object — PrefixClaims, LoadBalancer
//! Services: which keys to look at, which have a request in flight, which
//! wait out a failure (with the same backoff as Node writes), and when the
//! next retry is due. Pure: the loop asks it which keys to act on and tells
//! it what happened. (Node writes have their own pipeline, `pipeline.rs`,
//! which also batches the pool check.)

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use crate::k8s::errors::backoff;

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

    /// The queued keys to act on now, in order: those neither in flight nor
    /// waiting for a retry time, with the ones whose retry time has come.
    /// The queue is emptied; what the caller does not act on it gives back
    /// with [`Lane::push`].
    pub(super) fn take_ready(&mut self, now: Instant) -> Vec<String> {
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
        std::mem::take(&mut self.queue)
            .into_iter()
            .filter(|k| !self.busy.contains(k) && !self.retry_at.contains_key(k))
            .collect()
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
        assert_eq!(l.take_ready(now), ["a", "b"]);
        assert!(l.take_ready(now).is_empty());
    }

    #[test]
    fn a_key_in_flight_is_not_handed_out_again_until_its_answer() {
        let mut l = Lane::default();
        let now = Instant::now();
        l.start("a");
        l.push("a");
        l.push("b");
        assert_eq!(l.take_ready(now), ["b"]);
        assert_eq!(l.in_flight(), 1);
        l.finish("a");
        l.push("a");
        assert_eq!(l.take_ready(now), ["a"]);
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
        assert!(l.take_ready(t0).is_empty(), "waits out its backoff");
        assert_eq!(
            l.take_ready(t0 + second),
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
        assert_eq!(l.take_ready(t0), ["a"]);
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
        assert!(l.take_ready(t0).is_empty());
        assert_eq!(l.take_ready(t0 + Duration::from_secs(10)), ["a"]);
    }
}
