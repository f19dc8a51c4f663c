//! Which Warnings were already sent, so that each is sent once per episode:
//! a Node told it waits (until it is served), a Node found in conflict
//! (until the conflict is gone), a pool found invalid (once per reason), a
//! pool found overlapping others (once per set of others).

use std::collections::{HashMap, HashSet};

#[derive(Debug, Default)]
pub struct Warned {
    waiting: HashSet<String>,
    conflict: HashSet<String>,
    invalid: HashMap<String, String>,
    overlaps: HashMap<String, Vec<String>>,
}

impl Warned {
    /// True the first time `node` is told it waits.
    pub fn first_wait(&mut self, node: &str) -> bool {
        self.waiting.insert(node.to_string())
    }

    /// `node` no longer waits.
    pub fn served(&mut self, node: &str) {
        self.waiting.remove(node);
    }

    /// True the first time `node` is reported in conflict.
    pub fn first_conflict(&mut self, node: &str) -> bool {
        self.conflict.insert(node.to_string())
    }

    pub fn was_conflict(&self, node: &str) -> bool {
        self.conflict.contains(node)
    }

    /// Keeps only the conflicts still in force (the next one of a Node is
    /// reported again).
    pub fn retain_conflicts(&mut self, still: impl Fn(&str) -> bool) {
        self.conflict.retain(|n| still(n));
    }

    /// True when pool `pool` was not reported invalid for this reason yet.
    pub fn first_invalid(&mut self, pool: &str, reason: &str) -> bool {
        if self.invalid.get(pool).is_some_and(|r| r == reason) {
            return false;
        }
        self.invalid.insert(pool.to_string(), reason.to_string());
        true
    }

    /// Pool `pool` is valid again, or gone.
    pub fn valid(&mut self, pool: &str) {
        self.invalid.remove(pool);
    }

    /// True when pool `pool` overlaps `others` (sorted) and was not
    /// reported for this set yet; an empty set ends the episode.
    pub fn first_overlap(&mut self, pool: &str, others: &[String]) -> bool {
        if others.is_empty() {
            self.overlaps.remove(pool);
            return false;
        }
        if self.overlaps.get(pool).is_some_and(|o| o == others) {
            return false;
        }
        self.overlaps.insert(pool.to_string(), others.to_vec());
        true
    }

    /// Pool `pool` is gone.
    pub fn forget_pool(&mut self, pool: &str) {
        self.invalid.remove(pool);
        self.overlaps.remove(pool);
    }

    /// Node `node` is gone.
    pub fn forget_node(&mut self, node: &str) {
        self.waiting.remove(node);
        self.conflict.remove(node);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_warning_is_sent_once_per_episode() {
        let mut w = Warned::default();
        assert!(w.first_wait("a"));
        assert!(!w.first_wait("a"));
        w.served("a");
        assert!(w.first_wait("a"), "a new wait");
        assert!(w.first_conflict("a"));
        assert!(!w.first_conflict("a"));
        w.retain_conflicts(|_| false);
        assert!(w.first_conflict("a"), "a new conflict");
        assert!(w.first_invalid("p", "bad prefix"));
        assert!(!w.first_invalid("p", "bad prefix"));
        assert!(w.first_invalid("p", "another reason"));
        w.valid("p");
        assert!(w.first_invalid("p", "another reason"));
        w.forget_node("a");
        assert!(!w.was_conflict("a"));
        let ab = vec!["a".to_string(), "b".to_string()];
        assert!(w.first_overlap("p", &ab[..1]));
        assert!(!w.first_overlap("p", &ab[..1]));
        assert!(w.first_overlap("p", &ab), "another pool overlaps too");
        assert!(!w.first_overlap("p", &[]));
        assert!(w.first_overlap("p", &ab), "a new episode");
        w.forget_pool("p");
        assert!(w.first_overlap("p", &ab));
    }
}
