//! The gate every plan passes: nothing is planned from an older picture of
//! the pools than of the object it is planned for. Nodes and PrefixClaims
//! both pass it (pure; the checks themselves are sent by
//! [`super::pool_checks`]).
//!
//! Nodes, claims and PrefixPools come from separate watches, and nothing
//! orders one watch's events against another's: a Node (or a claim)
//! created after a pool was deleted, changed or re-created can arrive
//! before the pool's events do. Planning it then would hand out space of
//! the old spec. So whatever waits to be planned takes a *stamp* when it
//! enters its lane's queue (and a new one when its state changes while
//! queued), and is planned only after a check of the pools *sent after that
//! stamp* found the ledger's pools current: a consistent list of every
//! pool's metadata whose pools the ledger holds, each at that revision or
//! a later one, with none the list lacks (so a pool created since is seen
//! as well as one changed or deleted), or else a full list merged into it.
//!
//! A check serves every stamp taken before it was sent, whichever lane took
//! it, so a burst of Nodes and claims costs one check per batch, not one
//! per object; an object stamped while a check is in flight gets a check
//! of its own at once (up to [`MAX_CHECKS_IN_FLIGHT`]) rather than waiting
//! for that one to answer first, so a lone object waits for one check, not
//! two. This compares revisions of pools with revisions of pools only:
//! nothing here relies on the order of one resource's `resourceVersion`s
//! against another's.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::k8s::errors::backoff;

/// Pool checks in flight at once, at most.
pub(crate) const MAX_CHECKS_IN_FLIGHT: usize = 4;

/// A stamp: taken by whatever waits for the gate, compared with the marks
/// of the checks that passed.
pub(crate) type Stamp = u64;

#[derive(Debug, Default)]
pub(crate) struct PoolGate {
    next_stamp: u64,
    /// The stamp taken last.
    newest: Option<Stamp>,
    /// Stamps below this may be planned.
    fresh_below: u64,
    /// The marks of the checks in flight (the stamps below each are what
    /// it serves).
    checking: BTreeSet<u64>,
    /// Some lane waits for a check this turn (see [`PoolGate::wait`]).
    wanted: bool,
    /// After a failed check, none is sent before this.
    retry_at: Option<Instant>,
    failures: u32,
}

impl PoolGate {
    /// A new stamp for something that starts waiting (or whose state
    /// changed while it waits): only a check sent after this covers it.
    pub(crate) fn stamp(&mut self) -> Stamp {
        let s = self.take();
        self.newest = Some(s);
        s
    }

    fn take(&mut self) -> u64 {
        let s = self.next_stamp;
        self.next_stamp += 1;
        s
    }

    /// Whether a check sent after `stamp` has passed.
    pub(crate) fn passed(&self, stamp: Stamp) -> bool {
        stamp < self.fresh_below
    }

    /// Whether `stamp` may be planned; if not, a check is asked for (see
    /// [`PoolGate::start_check`]).
    pub(crate) fn wait(&mut self, stamp: Stamp) -> bool {
        let passed = self.passed(stamp);
        if !passed {
            self.wanted = true;
        }
        passed
    }

    /// A mark when a check should be sent now: some lane waits for one
    /// (asked this turn with [`PoolGate::wait`]), something was stamped
    /// after every check in flight was sent, fewer than
    /// [`MAX_CHECKS_IN_FLIGHT`] are in flight and no failure asks to wait.
    /// The check serves every stamp taken so far; its answer is given back
    /// with the mark. The wish is used up either way: lanes ask again each
    /// turn they are still blocked.
    pub(crate) fn start_check(&mut self, now: Instant) -> Option<u64> {
        let wanted = std::mem::take(&mut self.wanted);
        let uncovered = match (self.checking.last(), self.newest) {
            (None, _) => true,
            (Some(&m), Some(n)) => n > m,
            (Some(_), None) => false,
        };
        if !wanted
            || !uncovered
            || self.checking.len() >= MAX_CHECKS_IN_FLIGHT
            || self.retry_at.is_some_and(|t| now < t)
        {
            return None;
        }
        // A fresh mark even if nothing was stamped since the last check.
        let mark = self.take();
        self.checking.insert(mark);
        self.retry_at = None;
        Some(mark)
    }

    /// The check sent with `mark` found the pools current (or made them
    /// so). Returns whether it freed anything: an answer to a forgotten
    /// check frees nothing.
    pub(crate) fn check_passed(&mut self, mark: u64) -> bool {
        if !self.checking.remove(&mark) {
            return false;
        }
        self.fresh_below = self.fresh_below.max(mark);
        self.failures = 0;
        true
    }

    /// The check sent with `mark` failed: the next waits out a backoff
    /// that grows with the failures in a row; returns it.
    pub(crate) fn check_failed(&mut self, mark: u64, now: Instant) -> Duration {
        let delay = backoff(self.failures.saturating_add(1));
        if self.checking.remove(&mark) {
            self.failures = self.failures.saturating_add(1);
            self.retry_at = Some(now + delay);
        }
        delay
    }

    /// A check in flight will never answer (its task died; which one is
    /// not known): every check in flight counts as failed, so that the next
    /// is sent after the backoff instead of waiting for an answer that does
    /// not come. Their late answers free nothing.
    pub(crate) fn check_lost(&mut self, now: Instant) -> Duration {
        let delay = backoff(self.failures.saturating_add(1));
        if !self.checking.is_empty() {
            self.checking.clear();
            self.failures = self.failures.saturating_add(1);
            self.retry_at = Some(now + delay);
        }
        delay
    }

    /// When a check may be sent again after a failure.
    pub(crate) fn retry_at(&self) -> Option<Instant> {
        self.retry_at
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_passes_before_a_check_sent_after_its_stamp() {
        let mut g = PoolGate::default();
        let now = Instant::now();
        let a = g.stamp();
        let b = g.stamp();
        assert!(!g.wait(a));
        let m = g.start_check(now).expect("a check");
        assert!(!g.wait(b));
        assert!(
            g.start_check(now).is_none(),
            "no second check while the one in flight covers every stamp"
        );
        // Stamped while the check is in flight: not covered by it, so it
        // gets a check of its own at once.
        let c = g.stamp();
        assert!(!g.wait(c));
        let m2 = g.start_check(now).expect("a check for c");
        assert!(g.check_passed(m));
        assert!(g.passed(a) && g.passed(b));
        assert!(!g.wait(c), "c waits for its own check");
        assert!(g.start_check(now).is_none(), "c's check is in flight");
        assert!(g.check_passed(m2));
        assert!(g.passed(c));
    }

    #[test]
    fn no_check_is_sent_unless_someone_waits() {
        let mut g = PoolGate::default();
        let now = Instant::now();
        let a = g.stamp();
        assert!(g.start_check(now).is_none(), "stamped, but nobody waits");
        assert!(!g.wait(a));
        assert!(g.start_check(now).is_some());
    }

    #[test]
    fn a_wish_is_used_up_by_the_turn_it_was_made_in() {
        let mut g = PoolGate::default();
        let now = Instant::now();
        let a = g.stamp();
        g.wait(a);
        let m = g.start_check(now).expect("a check");
        g.check_failed(m, now);
        assert!(
            g.start_check(now + Duration::from_secs(3600)).is_none(),
            "nobody asked again"
        );
        g.wait(a);
        assert!(g.start_check(now + Duration::from_secs(3600)).is_some());
    }

    #[test]
    fn checks_answered_out_of_order_free_what_each_covers() {
        let mut g = PoolGate::default();
        let now = Instant::now();
        let a = g.stamp();
        g.wait(a);
        let m1 = g.start_check(now).expect("a check");
        let b = g.stamp();
        g.wait(b);
        let m2 = g.start_check(now).expect("a check for b");
        assert!(g.check_passed(m2));
        assert!(g.passed(a) && g.passed(b), "the later check covers both");
        assert!(g.check_passed(m1), "the earlier one is still answered");
        assert!(g.passed(a) && g.passed(b), "and takes nothing back");
    }

    #[test]
    fn checks_in_flight_are_bounded() {
        let mut g = PoolGate::default();
        let now = Instant::now();
        let mut marks = vec![];
        let mut stamps = vec![];
        for _ in 0..MAX_CHECKS_IN_FLIGHT + 2 {
            let s = g.stamp();
            stamps.push(s);
            g.wait(s);
            if let Some(m) = g.start_check(now) {
                marks.push(m);
            }
        }
        assert_eq!(marks.len(), MAX_CHECKS_IN_FLIGHT);
        let last = marks.pop().expect("marks");
        assert!(g.check_passed(last));
        let passed = stamps.iter().filter(|s| g.passed(**s)).count();
        assert_eq!(passed, MAX_CHECKS_IN_FLIGHT, "stamped before the last mark");
        let later = g.stamp();
        g.wait(later);
        assert!(g.start_check(now).is_some(), "room again");
    }

    #[test]
    fn a_failed_check_waits_out_a_growing_backoff() {
        let mut g = PoolGate::default();
        let now = Instant::now();
        let a = g.stamp();
        g.wait(a);
        let m = g.start_check(now).expect("a check");
        let first = g.check_failed(m, now);
        assert_eq!(g.retry_at(), Some(now + first));
        g.wait(a);
        assert!(g.start_check(now + first / 2).is_none());
        g.wait(a);
        let m = g.start_check(now + first).expect("a check");
        let second = g.check_failed(m, now + first);
        assert!(second > first, "{second:?} grows from {first:?}");
        g.wait(a);
        let m = g.start_check(now + first + second).expect("a check");
        assert!(g.check_passed(m));
        assert!(g.passed(a));
        let b = g.stamp();
        g.wait(b);
        let m = g.start_check(now + first + second).expect("a check");
        assert_eq!(g.check_failed(m, now), first, "a pass starts it over");
    }

    #[test]
    fn a_lost_check_frees_nothing_and_its_late_answer_neither() {
        let mut g = PoolGate::default();
        let now = Instant::now();
        let a = g.stamp();
        g.wait(a);
        let old = g.start_check(now).expect("a check");
        let delay = g.check_lost(now);
        assert!(!g.check_passed(old), "forgotten");
        assert!(!g.passed(a));
        g.wait(a);
        let m = g.start_check(now + delay).expect("a new check");
        assert!(!g.check_passed(old));
        assert!(!g.passed(a), "the old answer does not pass the new check");
        assert!(g.check_passed(m));
        assert!(g.passed(a));
    }
}
