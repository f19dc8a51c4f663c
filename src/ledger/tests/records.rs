//! The record keeper every kind shares: states only move forward, the
//! deleted stay deleted, lists remove what they miss and raise the floor.

use std::collections::BTreeMap;

use crate::ledger::order::{Order, Revision};
use crate::ledger::records::{Record, Records};

#[derive(Debug, PartialEq)]
struct Entry(Revision);

impl Record for Entry {
    fn rev(&self) -> &Revision {
        &self.0
    }
}

type Recs = Records<BTreeMap<String, Entry>>;

fn rev(uid: &str, rv: u64) -> Revision {
    Revision {
        uid: uid.into(),
        rv: Some(rv),
    }
}

/// Applies `r` of `name` as a kind does: admitted, then held.
fn apply(recs: &mut Recs, name: &str, r: Revision) -> Order {
    let ord = recs.admit(name, &r);
    if ord != Order::Stale {
        recs.insert(name.into(), Entry(r));
    }
    ord
}

fn held(recs: &Recs, name: &str) -> Option<Revision> {
    recs.get(name).map(|e| e.0.clone())
}

#[test]
fn a_stale_update_is_refused() {
    let mut r = Recs::default();
    assert_eq!(apply(&mut r, "a", rev("u1", 10)), Order::New);
    assert_eq!(apply(&mut r, "a", rev("u1", 12)), Order::Newer);
    assert_eq!(apply(&mut r, "a", rev("u1", 11)), Order::Stale);
    assert_eq!(apply(&mut r, "a", rev("u1", 12)), Order::Stale);
    assert_eq!(held(&r, "a"), Some(rev("u1", 12)));
    assert_eq!(r.len(), 1);
}

#[test]
fn a_later_object_replaces_and_buries_the_held_one() {
    let mut r = Recs::default();
    apply(&mut r, "a", rev("u1", 10));
    assert_eq!(apply(&mut r, "a", rev("u2", 20)), Order::Replaces);
    assert_eq!(r.tombstone("a"), Some(&rev("u1", 10)));
    assert_eq!(held(&r, "a"), Some(rev("u2", 20)));
    // A late state of the replaced object never comes back.
    assert_eq!(apply(&mut r, "a", rev("u1", 30)), Order::Stale);
    assert_eq!(held(&r, "a"), Some(rev("u2", 20)));
}

#[test]
fn after_a_delete_an_older_re_add_is_refused() {
    let mut r = Recs::default();
    apply(&mut r, "a", rev("u1", 10));
    let gone = r.remove("a", rev("u1", 15));
    assert_eq!(gone, Some(Entry(rev("u1", 10))));
    assert!(r.is_empty());
    assert_eq!(apply(&mut r, "a", rev("u1", 12)), Order::Stale);
    assert_eq!(apply(&mut r, "a", rev("u0", 14)), Order::Stale);
    assert!(r.is_empty());
    // A later object of the name is new.
    assert_eq!(apply(&mut r, "a", rev("u2", 16)), Order::New);
}

#[test]
fn a_delete_of_another_object_keeps_the_held_one() {
    let mut r = Recs::default();
    apply(&mut r, "a", rev("u2", 20));
    assert_eq!(r.remove("a", rev("u1", 15)), None);
    assert_eq!(held(&r, "a"), Some(rev("u2", 20)));
    assert_eq!(r.take("a"), Some(Entry(rev("u2", 20))));
    assert_eq!(r.tombstone("a"), Some(&rev("u2", 20)));
}

#[test]
fn the_list_floor_refuses_older_states_of_names_not_held() {
    let mut r = Recs::default();
    apply(&mut r, "a", rev("ua", 10));
    assert_eq!(r.list_gone(|_| true, Some(50)), Some(vec![]));
    r.raise_floor(Some(50));
    assert_eq!(r.floor(), Some(50));
    assert_eq!(apply(&mut r, "b", rev("ub", 49)), Order::Stale);
    assert_eq!(apply(&mut r, "b", rev("ub", 51)), Order::New);
    // A held name still moves forward below the floor's reach.
    assert_eq!(apply(&mut r, "a", rev("ua", 11)), Order::Newer);
    // An older list is ignored whole; one without a version leaves
    // the floor.
    assert_eq!(r.list_gone(|_| false, Some(40)), None);
    r.raise_floor(Some(40));
    r.raise_floor(None);
    assert_eq!(r.floor(), Some(50));
}

#[test]
fn a_list_merge_removes_what_it_misses_unless_later() {
    let mut r = Recs::default();
    apply(&mut r, "listed", rev("u1", 10));
    apply(&mut r, "missing", rev("u2", 20));
    apply(&mut r, "later", rev("u3", 40));
    let gone = r.list_gone(|k| k == "listed", Some(30)).unwrap();
    assert_eq!(gone, vec![("missing".to_string(), rev("u2", 20))]);
    for (k, dead) in gone {
        assert!(r.remove(k.as_str(), dead).is_some());
    }
    r.raise_floor(Some(30));
    let names: Vec<&String> = r.keys().collect();
    assert_eq!(names, ["later", "listed"]);
    // The removed one is buried; without the list's version every
    // missing one is gone.
    assert_eq!(apply(&mut r, "missing", rev("u2", 21)), Order::Stale);
    let all = r.list_gone(|_| false, None).unwrap();
    assert_eq!(all.len(), 2);
}

#[test]
fn a_bulk_merge_orders_each_listed_state() {
    let mut r = Recs::default();
    apply(&mut r, "a", rev("ua", 10));
    apply(&mut r, "b", rev("ub", 10));
    apply(&mut r, "kept", rev("uk", 10));
    let listed = [
        ("a".to_string(), Entry(rev("ua", 5))),
        ("b".to_string(), Entry(rev("ub2", 12))),
        ("c".to_string(), Entry(rev("uc", 11))),
    ];
    let mut seen = vec![];
    r.merge_bulk(listed, |ord, held, fresh| {
        seen.push(ord);
        if ord == Order::Stale {
            held
        } else {
            Some(fresh)
        }
    });
    assert_eq!(seen, [Order::Stale, Order::Replaces, Order::New]);
    assert_eq!(held(&r, "a"), Some(rev("ua", 10)));
    assert_eq!(held(&r, "b"), Some(rev("ub2", 12)));
    assert_eq!(r.tombstone("b"), Some(&rev("ub", 10)));
    assert_eq!(held(&r, "kept"), Some(rev("uk", 10)));
    assert_eq!(r.len(), 4);
}
