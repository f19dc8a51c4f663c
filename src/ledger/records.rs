//! The record keeping every kind of object in the ledger shares: the state
//! held under each name, moved only forward in the API server's order (see
//! [`super::order`]), the objects known deleted (tombstones) and the floor
//! of the latest complete list merged. Each kind keeps only its own meaning
//! over it: what a state holds and what a removal frees.
//!
//! The held records are read through the kind's own map (`Deref`): pools
//! and claims are read in name order, ClusterIPs by address range. Every
//! change to which objects are held goes through [`Records`], so that the
//! tombstones and the floor always agree with the map.

use std::borrow::Borrow;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::hash::Hash;
use std::ops::Deref;

use super::order::{self, Order, Revision, Tombstones};

/// A held state that knows where it sits in the API server's order.
pub(super) trait Record {
    fn rev(&self) -> &Revision;
}

/// The map a kind keeps its records in: a `HashMap` where nothing reads
/// them in order, a `BTreeMap` where something does.
pub(super) trait RecordMap: Default {
    type Key: Key;
    type Value: Record;
    fn with_capacity(n: usize) -> Self;
    fn record(&self, k: &Ref<Self>) -> Option<&Self::Value>;
    fn record_mut(&mut self, k: &Ref<Self>) -> Option<&mut Self::Value>;
    fn put(&mut self, k: Self::Key, v: Self::Value) -> Option<Self::Value>;
    fn take(&mut self, k: &Ref<Self>) -> Option<Self::Value>;
    fn records(&self) -> Box<dyn Iterator<Item = (&Self::Key, &Self::Value)> + '_>;
    fn records_mut(&mut self) -> Box<dyn Iterator<Item = &mut Self::Value> + '_>;
    /// Moves every record of `other` in.
    fn absorb(&mut self, other: Self);
}

/// What a kind keys its objects by: a name, or (IPAddresses) an address.
/// It is looked up by what it borrows as (a name by a `&str`).
pub(super) trait Key: Clone + Eq + Hash + Ord + Debug + Borrow<Self::Ref> {
    type Ref: ?Sized + Hash + Ord + ToOwned<Owned = Self>;
}

impl Key for String {
    type Ref = str;
}

impl Key for std::net::IpAddr {
    type Ref = std::net::IpAddr;
}

/// What the keys of map `M` are looked up by.
pub(super) type Ref<M> = <<M as RecordMap>::Key as Key>::Ref;

macro_rules! record_map {
    ($map:ident, $n:ident => $with_capacity:expr) => {
        impl<K: Key, T: Record> RecordMap for $map<K, T> {
            type Key = K;
            type Value = T;
            fn with_capacity($n: usize) -> Self {
                $with_capacity
            }
            fn record(&self, k: &K::Ref) -> Option<&T> {
                self.get(k)
            }
            fn record_mut(&mut self, k: &K::Ref) -> Option<&mut T> {
                self.get_mut(k)
            }
            fn put(&mut self, k: K, v: T) -> Option<T> {
                self.insert(k, v)
            }
            fn take(&mut self, k: &K::Ref) -> Option<T> {
                self.remove(k)
            }
            fn records(&self) -> Box<dyn Iterator<Item = (&K, &T)> + '_> {
                Box::new(self.iter())
            }
            fn records_mut(&mut self) -> Box<dyn Iterator<Item = &mut T> + '_> {
                Box::new(self.values_mut())
            }
            fn absorb(&mut self, other: Self) {
                self.extend(other);
            }
        }
    };
}

record_map!(HashMap, n => HashMap::with_capacity(n));
record_map!(BTreeMap, _n => BTreeMap::new());

/// The states held of one kind of object, by name, with its tombstones
/// and list floor.
#[derive(Debug)]
pub(super) struct Records<M: RecordMap> {
    map: M,
    /// Objects known deleted, so that late states of them are ignored.
    tombstones: Tombstones<M::Key>,
    /// `resourceVersion` of the latest complete list merged.
    floor: Option<u64>,
}

impl<M: RecordMap> Default for Records<M> {
    fn default() -> Self {
        Self {
            map: M::default(),
            tombstones: Tombstones::default(),
            floor: None,
        }
    }
}

impl<M: RecordMap> Deref for Records<M> {
    type Target = M;

    fn deref(&self) -> &M {
        &self.map
    }
}

impl<'a, M: RecordMap> IntoIterator for &'a Records<M>
where
    &'a M: IntoIterator,
{
    type Item = <&'a M as IntoIterator>::Item;
    type IntoIter = <&'a M as IntoIterator>::IntoIter;

    fn into_iter(self) -> Self::IntoIter {
        (&self.map).into_iter()
    }
}

impl<M: RecordMap> Records<M> {
    /// How a state `rev` of `key` relates to what is held (see
    /// [`order::order`]).
    pub fn order(&self, key: &Ref<M>, rev: &Revision) -> Order {
        let held = self.map.record(key).map(Record::rev);
        order::order(held, self.tombstones.get(key), self.floor, rev)
    }

    /// The same, and when `rev` is of a later object under the name, the
    /// held one is buried (it was deleted before this one was created).
    /// The held record stays for the caller to replace with
    /// [`Records::insert`].
    pub fn admit(&mut self, key: &Ref<M>, rev: &Revision) -> Order {
        let ord = self.order(key, rev);
        if ord == Order::Replaces
            && let Some(held) = self.map.record(key)
        {
            let dead = held.rev().clone();
            self.tombstones.bury(key, dead);
        }
        ord
    }

    /// Holds `record` under `key`: a state [`Records::admit`] let in, or an
    /// update of the held one. Returns the record it replaces.
    pub fn insert(&mut self, key: M::Key, record: M::Value) -> Option<M::Value> {
        self.map.put(key, record)
    }

    /// The held record, to update in place (with a state admitted).
    pub fn get_mut(&mut self, key: &Ref<M>) -> Option<&mut M::Value> {
        self.map.record_mut(key)
    }

    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut M::Value> {
        self.map.records_mut()
    }

    /// The object `dead` of `key` is gone: it is buried, and forgotten if
    /// it is the one held (a later object of the name stays). Returns the
    /// record forgotten.
    pub fn remove(&mut self, key: &Ref<M>, dead: Revision) -> Option<M::Value> {
        let held = self
            .map
            .record(key)
            .is_some_and(|e| e.rev().uid == dead.uid);
        self.tombstones.bury(key, dead);
        if held { self.map.take(key) } else { None }
    }

    /// Forgets the object held under `key` as deleted (at the state held).
    pub fn take(&mut self, key: &Ref<M>) -> Option<M::Value> {
        let old = self.map.take(key)?;
        self.tombstones.bury(key, old.rev().clone());
        Some(old)
    }

    /// Records that `dead` of `key` is gone, whatever is held.
    pub fn bury(&mut self, key: &Ref<M>, dead: Revision) {
        self.tombstones.bury(key, dead);
    }

    /// The tombstone of `key`, if any.
    #[cfg(test)]
    pub fn tombstone(&self, key: &Ref<M>) -> Option<&Revision> {
        self.tombstones.get(key)
    }

    #[cfg(test)]
    pub fn floor(&self) -> Option<u64> {
        self.floor
    }

    /// The first step of merging a complete, consistent list taken at
    /// `list_rv`: the held records it leaves out (`is_listed` false) and
    /// that are not later than it, with their revisions — deleted while
    /// no watch saw it, unless the kind knows better. `None` when the list
    /// is older than one merged already: everything in it is known.
    ///
    /// The caller removes those, applies the listed states, then calls
    /// [`Records::raise_floor`] (not before: listed states not held yet
    /// are not later than the list).
    pub fn list_gone(
        &self,
        is_listed: impl Fn(&M::Key) -> bool,
        list_rv: Option<u64>,
    ) -> Option<Vec<(M::Key, Revision)>> {
        if let (Some(r), Some(floor)) = (list_rv, self.floor)
            && r < floor
        {
            return None;
        }
        let gone = self
            .map
            .records()
            .filter(|(k, e)| !is_listed(k) && !later_than(e.rev().rv, list_rv))
            .map(|(k, e)| (k.clone(), e.rev().clone()))
            .collect();
        Some(gone)
    }

    /// The last step of merging a list taken at `list_rv`: a name held by
    /// nothing now had no object then, so states of it from before are of
    /// an object deleted since.
    pub fn raise_floor(&mut self, list_rv: Option<u64>) {
        if list_rv.is_some() {
            self.floor = list_rv.max(self.floor);
        }
    }

    /// Merges listed states in bulk, each ordered against the record held
    /// under its name, without a copy: `merge` is given the order, the
    /// held record (taken out) and the listed one, and returns what is to
    /// be held (none: nothing). A replaced record is buried first. Records
    /// not listed stay as they are.
    pub fn merge_bulk(
        &mut self,
        listed: impl IntoIterator<Item = (M::Key, M::Value)>,
        mut merge: impl FnMut(Order, Option<M::Value>, M::Value) -> Option<M::Value>,
    ) {
        let listed = listed.into_iter();
        let mut before = std::mem::take(&mut self.map);
        let mut next = M::with_capacity(listed.size_hint().0);
        for (key, fresh) in listed {
            let held = before.take(key.borrow());
            let held_rev = held.as_ref().map(Record::rev);
            let ord = order::order(
                held_rev,
                self.tombstones.get(key.borrow()),
                self.floor,
                fresh.rev(),
            );
            if ord == Order::Replaces
                && let Some(h) = &held
            {
                self.tombstones.bury(key.borrow(), h.rev().clone());
            }
            if let Some(e) = merge(ord, held, fresh) {
                next.put(key, e);
            }
        }
        next.absorb(before);
        self.map = next;
    }
}

/// True when both are known and `a` is later than `b`.
pub(super) fn later_than(a: Option<u64>, b: Option<u64>) -> bool {
    matches!((a, b), (Some(a), Some(b)) if a > b)
}
