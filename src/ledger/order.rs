//! The API server's own order of a Node's states, so that the picture never
//! goes backwards.
//!
//! States of a Node reach the ledger from three streams that interleave
//! freely: the watch (in order), the answers to our own writes, and reads
//! (adoption reads, lists). Each state carries the object's UID and
//! `resourceVersion`. What we rely on:
//!
//! - `resourceVersion`s of objects of one resource are decimal integers that
//!   grow with every write (KEP-5504, "comparable resource versions", a
//!   guarantee since Kubernetes 1.35; every etcd-backed API server before it
//!   already served etcd revisions). So of two states of Nodes with the same
//!   name, the one with the larger `resourceVersion` is the later one, even
//!   across UIDs: a Node re-created under the same name has a larger one than
//!   anything its predecessor had.
//! - A UID never comes back once its object is deleted.
//! - `spec.podCIDRs` is write-once: for one UID it never shrinks, so an empty
//!   value after a non-empty one can only be stale.
//!
//! A `resourceVersion` that is not such an integer (no conformant server
//! sends one) makes the state "unordered": it is applied, but the write-once
//! rule still keeps its prefixes from shrinking.

use std::borrow::Borrow;
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

/// Parses a `resourceVersion` as the API server's order (KEP-5504 form: a
/// positive decimal integer without leading zeros).
pub fn parse_resource_version(rv: Option<&str>) -> Option<u64> {
    let s = rv?;
    if s.is_empty() || s.starts_with('0') || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Where one state of a Node sits in the API server's order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revision {
    pub uid: String,
    /// `None`: not comparable (see the module notes).
    pub rv: Option<u64>,
}

/// How an incoming state relates to what the ledger holds for its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// Later than what is held, same object: apply it.
    Newer,
    /// A later object under the same name: the held one was deleted.
    Replaces,
    /// Nothing is held under the name: a new Node.
    New,
    /// Not later than what is held (or of a deleted object): ignore it.
    Stale,
}

/// Decides how `incoming` relates to the held state `held` and the
/// tombstone `gone` of the name (the last object known deleted). `floor` is
/// the `resourceVersion` of the latest complete list merged: a name held by
/// nothing then had no object at the floor, so a state of it from before
/// the floor is of an object deleted since.
pub fn order(
    held: Option<&Revision>,
    gone: Option<&Revision>,
    floor: Option<u64>,
    incoming: &Revision,
) -> Order {
    if let Some(g) = gone
        && (g.uid == incoming.uid || before_or_at(incoming.rv, g.rv))
    {
        return Order::Stale;
    }
    match held {
        None if before_or_at(incoming.rv, floor) => Order::Stale,
        None => Order::New,
        Some(h) if h.uid == incoming.uid => match (h.rv, incoming.rv) {
            (Some(a), Some(b)) if b <= a => Order::Stale,
            _ => Order::Newer,
        },
        Some(h) => {
            if before_or_at(incoming.rv, h.rv) {
                Order::Stale
            } else {
                Order::Replaces
            }
        }
    }
}

/// True when both are known and `a` is not later than `b`.
fn before_or_at(a: Option<u64>, b: Option<u64>) -> bool {
    matches!((a, b), (Some(a), Some(b)) if a <= b)
}

/// Objects known deleted, by name, so that a late answer or read of a
/// deleted Node cannot bring it back. Bounded: the oldest records go first
/// (a request in flight for longer than it takes to delete this many other
/// Nodes does not exist). Names are strings, or what a kind keys its
/// objects by (an IPAddress by its address).
#[derive(Debug)]
pub struct Tombstones<K = String> {
    by_name: HashMap<K, Revision>,
    order: VecDeque<K>,
}

impl<K> Default for Tombstones<K> {
    fn default() -> Self {
        Self {
            by_name: HashMap::new(),
            order: VecDeque::new(),
        }
    }
}

/// Tombstones kept at most.
pub const MAX_TOMBSTONES: usize = 65_536;

impl<K: Hash + Eq> Tombstones<K> {
    pub fn get<Q>(&self, name: &Q) -> Option<&Revision>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.by_name.get(name)
    }

    /// Records that `rev` of `name` is gone (replacing an older record).
    pub fn bury<Q>(&mut self, name: &Q, rev: Revision)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        if let Some(old) = self.by_name.get(name)
            && before_or_at(rev.rv, old.rv)
            && old.uid != rev.uid
        {
            // A later object of this name is already known deleted.
            return;
        }
        if self.by_name.insert(name.to_owned(), rev).is_none() {
            self.order.push_back(name.to_owned());
        }
        while self.order.len() > MAX_TOMBSTONES {
            if let Some(oldest) = self.order.pop_front() {
                self.by_name.remove::<K>(&oldest);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rev(uid: &str, rv: u64) -> Revision {
        Revision {
            uid: uid.into(),
            rv: Some(rv),
        }
    }

    #[test]
    fn resource_versions_parse_only_in_the_comparable_form() {
        assert_eq!(parse_resource_version(Some("4711")), Some(4711));
        for bad in ["", "0", "012", "12a", "-3", "1.5"] {
            assert_eq!(parse_resource_version(Some(bad)), None, "{bad}");
        }
        assert_eq!(parse_resource_version(None), None);
    }

    #[test]
    fn same_object_moves_only_forward() {
        let held = rev("u1", 10);
        assert_eq!(order(Some(&held), None, None, &rev("u1", 11)), Order::Newer);
        assert_eq!(order(Some(&held), None, None, &rev("u1", 10)), Order::Stale);
        assert_eq!(order(Some(&held), None, None, &rev("u1", 9)), Order::Stale);
    }

    #[test]
    fn a_later_uid_replaces_and_an_earlier_one_is_stale() {
        let held = rev("u2", 20);
        assert_eq!(
            order(Some(&held), None, None, &rev("u3", 21)),
            Order::Replaces
        );
        assert_eq!(order(Some(&held), None, None, &rev("u1", 19)), Order::Stale);
        assert_eq!(order(None, None, None, &rev("u1", 1)), Order::New);
    }

    #[test]
    fn a_deleted_uid_never_comes_back() {
        let gone = rev("u1", 30);
        assert_eq!(order(None, Some(&gone), None, &rev("u1", 31)), Order::Stale);
        assert_eq!(order(None, Some(&gone), None, &rev("u0", 29)), Order::Stale);
        assert_eq!(order(None, Some(&gone), None, &rev("u2", 31)), Order::New);
    }

    #[test]
    fn a_name_nothing_held_at_the_last_list_is_stale_before_it() {
        assert_eq!(order(None, None, Some(50), &rev("u9", 49)), Order::Stale);
        assert_eq!(order(None, None, Some(50), &rev("u9", 51)), Order::New);
    }

    #[test]
    fn unordered_states_apply() {
        let held = rev("u1", 10);
        let unordered = Revision {
            uid: "u1".into(),
            rv: None,
        };
        assert_eq!(order(Some(&held), None, None, &unordered), Order::Newer);
    }

    #[test]
    fn tombstones_are_bounded_and_keep_the_latest() {
        let mut t = Tombstones::default();
        t.bury("a", rev("u2", 20));
        t.bury("a", rev("u1", 10));
        assert_eq!(
            t.get("a"),
            Some(&rev("u2", 20)),
            "an older death is ignored"
        );
        for i in 0..(MAX_TOMBSTONES + 10) {
            t.bury(&format!("n{i}"), rev("x", i as u64 + 100));
        }
        assert_eq!(t.len(), MAX_TOMBSTONES);
        assert!(t.get("a").is_none(), "the oldest went first");
    }
}
