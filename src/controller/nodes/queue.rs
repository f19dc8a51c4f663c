//! The queue of Nodes to plan, and the gate that keeps a plan from using an
//! older picture of the pools than of the Node.
//!
//! Nodes and PrefixPools come from two watches, and nothing orders one
//! watch's events against the other's: a Node created after a pool was
//! deleted, changed or re-created can arrive before the pool's events do.
//! Planning it then would hand out space of the old spec. So every Node is
//! stamped when it enters the queue (and again when its state changes while
//! queued), and is planned only after a check of the pools *sent after that
//! stamp* found the ledger's pools current: a consistent list of every
//! pool's metadata whose pools the ledger holds, each at that revision or a
//! later one, with none the list lacks (so a pool created since is seen as
//! well as one changed or deleted), or else a full list merged into it. A
//! check serves every Node stamped before it was sent, so a burst of Nodes
//! costs one check per batch, not one per Node; a Node queued while a check
//! is in flight gets a check of its own at once (up to
//! [`MAX_CHECKS_IN_FLIGHT`]) rather than waiting for that one to answer
//! first, so a lone Node waits for one check, not two.
//! This compares revisions of pools with revisions of pools only: nothing
//! here relies on the order of one resource's `resourceVersion`s against
//! another's.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Pool checks in flight at once, at most.
pub const MAX_CHECKS_IN_FLIGHT: usize = 4;

/// Nodes waiting to be planned, in arrival order.
#[derive(Debug, Default)]
pub struct WriteQueue {
    order: VecDeque<String>,
    /// The stamp of every queued Node.
    stamps: HashMap<String, u64>,
    next_stamp: u64,
    /// The stamp of the Node queued or changed last.
    newest: Option<u64>,
    /// Nodes stamped below this may be planned.
    fresh_below: u64,
    /// The marks of the pool checks in flight (the stamps below each are
    /// the Nodes it serves).
    checking: BTreeSet<u64>,
    /// After a failed check, none is sent before this.
    retry_at: Option<Instant>,
    failures: u32,
}

/// What the head of the queue allows.
#[derive(Debug, PartialEq, Eq)]
pub enum Head {
    /// This Node may be planned now (it has left the queue).
    Ready(String),
    /// The head waits for a pool check.
    Blocked,
    Empty,
}

impl WriteQueue {
    /// Queues `node` unless it is queued already.
    pub fn push(&mut self, node: &str) {
        if !self.stamps.contains_key(node) {
            let s = self.stamp();
            self.newest = Some(s);
            self.stamps.insert(node.to_string(), s);
            self.order.push_back(node.to_string());
        }
    }

    /// The state of `node` changed: if queued, it now needs a check sent
    /// after this.
    pub fn touch(&mut self, node: &str) {
        if self.stamps.contains_key(node) {
            let s = self.stamp();
            self.newest = Some(s);
            self.stamps.insert(node.to_string(), s);
        }
    }

    /// Every queued Node's state changed (a re-list of Nodes).
    pub fn touch_all(&mut self) {
        let s = self.stamp();
        self.newest = Some(s);
        for v in self.stamps.values_mut() {
            *v = s;
        }
    }

    fn stamp(&mut self) -> u64 {
        let s = self.next_stamp;
        self.next_stamp += 1;
        s
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Takes the head if a passed check covers it.
    pub fn pop_ready(&mut self) -> Head {
        let Some(head) = self.order.front() else {
            return Head::Empty;
        };
        match self.stamps.get(head) {
            Some(&s) if s >= self.fresh_below => Head::Blocked,
            _ => {
                let node = self.order.pop_front().unwrap_or_default();
                self.stamps.remove(&node);
                Head::Ready(node)
            }
        }
    }

    /// A mark when a pool check should be sent now: the head waits for one,
    /// some Node was stamped after every check in flight was sent, fewer
    /// than [`MAX_CHECKS_IN_FLIGHT`] are in flight and no failure asks to
    /// wait. The check serves every Node stamped so far; its answer is
    /// given back with the mark.
    pub fn start_check(&mut self, now: Instant) -> Option<u64> {
        let blocked = self
            .order
            .front()
            .and_then(|h| self.stamps.get(h))
            .is_some_and(|&s| s >= self.fresh_below);
        let uncovered = match (self.checking.last(), self.newest) {
            (None, _) => true,
            (Some(&m), Some(n)) => n > m,
            (Some(_), None) => false,
        };
        if !blocked
            || !uncovered
            || self.checking.len() >= MAX_CHECKS_IN_FLIGHT
            || self.retry_at.is_some_and(|t| now < t)
        {
            return None;
        }
        // A fresh mark even if nothing was stamped since the last check.
        let mark = self.stamp();
        self.checking.insert(mark);
        self.retry_at = None;
        Some(mark)
    }

    /// The check sent with `mark` found the pools current (or made them
    /// so). An answer to a forgotten check frees nothing.
    pub fn check_passed(&mut self, mark: u64) {
        if self.checking.remove(&mark) {
            self.fresh_below = self.fresh_below.max(mark);
            self.failures = 0;
        }
    }

    /// The check sent with `mark` failed; the next waits `delay` (grown by
    /// the caller's backoff from [`WriteQueue::failures`]).
    pub fn check_failed(&mut self, mark: u64, now: Instant, delay: Duration) {
        if self.checking.remove(&mark) {
            self.failures = self.failures.saturating_add(1);
            self.retry_at = Some(now + delay);
        }
    }

    /// Checks failed in a row.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// When a check may be sent again after a failure.
    pub fn retry_at(&self) -> Option<Instant> {
        self.retry_at
    }

    /// A check in flight will never answer (its task died; which one is
    /// not known): every check in flight counts as failed, so that the next
    /// is sent after `delay` instead of Nodes waiting for an answer that
    /// does not come. Their late answers free nothing.
    pub fn check_lost(&mut self, now: Instant, delay: Duration) {
        if !self.checking.is_empty() {
            self.checking.clear();
            self.failures = self.failures.saturating_add(1);
            self.retry_at = Some(now + delay);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(q: &mut WriteQueue) -> Vec<String> {
        let mut out = vec![];
        while let Head::Ready(n) = q.pop_ready() {
            out.push(n);
        }
        out
    }

    #[test]
    fn nothing_is_planned_before_a_check_sent_after_it_was_queued() {
        let mut q = WriteQueue::default();
        let now = Instant::now();
        q.push("a");
        q.push("b");
        assert_eq!(q.pop_ready(), Head::Blocked);
        let m = q.start_check(now).expect("a check");
        assert!(
            q.start_check(now).is_none(),
            "no second check while the one in flight covers every Node"
        );
        // Queued while the check is in flight: not covered by it, so it
        // gets a check of its own at once.
        q.push("c");
        let m2 = q.start_check(now).expect("a check for c");
        assert!(q.start_check(now).is_none());
        q.check_passed(m);
        assert_eq!(drain(&mut q), vec!["a", "b"]);
        assert_eq!(q.pop_ready(), Head::Blocked, "c waits for its own check");
        q.check_passed(m2);
        assert_eq!(drain(&mut q), vec!["c"]);
        assert_eq!(q.pop_ready(), Head::Empty);
    }

    #[test]
    fn checks_answered_out_of_order_free_what_each_covers() {
        let mut q = WriteQueue::default();
        let now = Instant::now();
        q.push("a");
        let m1 = q.start_check(now).expect("a check");
        q.push("b");
        let m2 = q.start_check(now).expect("a check for b");
        q.check_passed(m2);
        assert_eq!(drain(&mut q), vec!["a", "b"], "the later check covers both");
        q.check_passed(m1);
        assert_eq!(q.pop_ready(), Head::Empty);
    }

    #[test]
    fn checks_in_flight_are_bounded() {
        let mut q = WriteQueue::default();
        let now = Instant::now();
        let mut marks = vec![];
        for i in 0..MAX_CHECKS_IN_FLIGHT + 2 {
            q.push(&format!("n{i}"));
            if let Some(m) = q.start_check(now) {
                marks.push(m);
            }
        }
        assert_eq!(marks.len(), MAX_CHECKS_IN_FLIGHT);
        let last = marks.pop().expect("marks");
        q.check_passed(last);
        assert_eq!(
            drain(&mut q).len(),
            MAX_CHECKS_IN_FLIGHT,
            "stamped before the last mark"
        );
        q.push("later");
        assert!(q.start_check(now).is_some(), "room again");
    }

    #[test]
    fn a_change_while_queued_needs_a_later_check() {
        let mut q = WriteQueue::default();
        let now = Instant::now();
        q.push("a");
        let m = q.start_check(now).expect("a check");
        q.touch("a");
        q.check_passed(m);
        assert_eq!(
            q.pop_ready(),
            Head::Blocked,
            "changed after the check was sent"
        );
        q.touch("unqueued");
        assert_eq!(q.len(), 1, "touch does not queue");
        let m = q.start_check(now).expect("a check");
        q.touch_all();
        q.check_passed(m);
        assert_eq!(q.pop_ready(), Head::Blocked, "a re-list after the check");
    }

    #[test]
    fn a_node_is_queued_once() {
        let mut q = WriteQueue::default();
        q.push("a");
        q.push("a");
        assert_eq!(q.len(), 1);
        let m = q.start_check(Instant::now()).expect("a check");
        q.check_passed(m);
        assert_eq!(drain(&mut q), vec!["a"]);
        q.push("a");
        assert_eq!(q.pop_ready(), Head::Blocked, "queued again: a new stamp");
    }

    #[test]
    fn a_failed_check_waits_before_the_next() {
        let mut q = WriteQueue::default();
        let now = Instant::now();
        q.push("a");
        let m = q.start_check(now).expect("a check");
        q.check_failed(m, now, Duration::from_secs(1));
        assert_eq!(q.failures(), 1);
        assert!(q.start_check(now + Duration::from_millis(500)).is_none());
        let m = q
            .start_check(now + Duration::from_secs(1))
            .expect("a check");
        q.check_passed(m);
        assert_eq!(q.failures(), 0);
        assert_eq!(drain(&mut q), vec!["a"]);
    }

    #[test]
    fn a_lost_check_frees_nothing_and_its_late_answer_neither() {
        let mut q = WriteQueue::default();
        let now = Instant::now();
        q.push("a");
        let old = q.start_check(now).expect("a check");
        q.check_lost(now, Duration::ZERO);
        assert_eq!(q.failures(), 1);
        q.check_passed(old);
        assert_eq!(q.pop_ready(), Head::Blocked);
        let m = q.start_check(now).expect("a new check");
        q.check_passed(old);
        assert_eq!(
            q.pop_ready(),
            Head::Blocked,
            "the old answer does not pass the new check"
        );
        q.check_passed(m);
        assert_eq!(drain(&mut q), vec!["a"]);
    }
}
