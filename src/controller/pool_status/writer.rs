//! The status writer's bookkeeping: the status each pool holds (as written
//! or last read), whether the picture changed since the last flush, and
//! which pools have a write in flight. It decides which statuses to write;
//! the reconciler sends them by server-side apply ([`apply_status`]).

use std::collections::{HashMap, HashSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::Api;
use kube::api::{Patch, PatchParams};

use super::build::build_status;
use crate::api::{API_VERSION, PrefixPool, PrefixPoolStatus};
use crate::ledger::PoolView;

/// Field manager of the status writer.
pub const STATUS_MANAGER: &str = "prefix-operator-status";

#[derive(Debug, Default)]
pub struct StatusWriter {
    /// Last status written (or read) per pool name, with the UID of the
    /// object that holds it: a pool re-created under the same name holds
    /// nothing of its predecessor's.
    last: HashMap<String, (String, PrefixPoolStatus)>,
    dirty: bool,
    in_flight: HashSet<String>,
}

impl StatusWriter {
    /// Something a status shows may have changed.
    pub fn mark(&mut self) {
        self.dirty = true;
    }

    pub fn is_dirty(&self) -> bool {
        self.dirty
    }

    /// The status the pool object `uid` named `name` holds, as read
    /// (another replica's writes too, so that a new leader compares with
    /// what is there); `None` when it has none.
    pub fn seen(&mut self, name: &str, uid: &str, status: Option<PrefixPoolStatus>) {
        // The DHCPv6 binding is another writer's: compared with it, the
        // status this writer computes would always look different.
        let mut status = status.unwrap_or_default();
        status.delegation = None;
        self.last
            .insert(name.to_string(), (uid.to_string(), status));
    }

    pub fn forget(&mut self, name: &str) {
        self.last.remove(name);
    }

    /// The statuses to write now, given every pool's view: those that differ
    /// from what the pool holds and have no write in flight (those stay due
    /// for the next flush). The ones returned are in flight from here on.
    pub fn due(&mut self, views: &[(String, PoolView)], now: &Time) -> Vec<Due> {
        self.dirty = false;
        let mut out = vec![];
        for (name, view) in views {
            if self.in_flight.contains(name) {
                self.dirty = true;
                continue;
            }
            let held = self
                .last
                .get(name)
                .filter(|(uid, _)| *uid == view.uid)
                .map(|(_, st)| st);
            let prev: &[Condition] = held.map(|s| s.conditions.as_slice()).unwrap_or(&[]);
            let st = build_status(view, prev, now);
            if held == Some(&st) {
                continue;
            }
            self.in_flight.insert(name.clone());
            out.push(Due {
                pool: name.clone(),
                uid: view.uid.clone(),
                status: st,
            });
        }
        out
    }

    /// The write of `due` landed.
    pub fn written(&mut self, due: Due) {
        self.in_flight.remove(&due.pool);
        self.last.insert(due.pool, (due.uid, due.status));
    }

    /// The write to pool `name` failed: it is due again.
    pub fn failed(&mut self, name: &str) {
        self.in_flight.remove(name);
        self.dirty = true;
    }
}

/// A status to write: to the pool object `uid` named `pool`.
#[derive(Debug, Clone)]
pub struct Due {
    pub pool: String,
    pub uid: String,
    pub status: PrefixPoolStatus,
}

/// Writes a due status to its pool by server-side apply.
///
/// There is no precondition on the UID: the API server ignores
/// `metadata.uid` in an apply to the status subresource (seen with
/// kube-apiserver 1.36). A status computed for a pool deleted and re-created
/// under its name in between lands on the new object; the writer then still
/// finds the new object's status due (it keys what pools hold by UID) and
/// corrects it at the next flush.
pub async fn apply_status(api: &Api<PrefixPool>, due: &Due) -> Result<PrefixPool, kube::Error> {
    let body = serde_json::json!({
        "apiVersion": API_VERSION,
        "kind": "PrefixPool",
        "metadata": { "name": due.pool },
        "status": due.status,
    });
    api.patch_status(
        &due.pool,
        &PatchParams::apply(STATUS_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alloc::Family;

    fn now() -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(1_000).expect("valid"))
    }

    fn view(allocated: usize) -> PoolView {
        PoolView {
            uid: "uid-p".into(),
            generation: 1,
            family: Some(Family::V6),
            capacity: 4,
            available: 4 - allocated as u128,
            allocations: (0..allocated)
                .map(|i| {
                    (
                        format!("2001:db8:0:{i}::/64").parse().expect("cidr"),
                        format!("n{i}"),
                    )
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn an_unchanged_status_is_not_written_again() {
        let mut w = StatusWriter::default();
        let views = vec![("p".to_string(), view(1))];
        let due = w.due(&views, &now());
        assert_eq!(due.len(), 1);
        w.written(due.into_iter().next().expect("one"));
        w.mark();
        assert!(w.due(&views, &now()).is_empty());
        assert!(!w.is_dirty());
    }

    #[test]
    fn a_pool_with_a_write_in_flight_stays_due() {
        let mut w = StatusWriter::default();
        let first = w.due(&[("p".to_string(), view(1))], &now());
        assert_eq!(first.len(), 1);
        let next = vec![("p".to_string(), view(2))];
        assert!(
            w.due(&next, &now()).is_empty(),
            "one write per pool at a time"
        );
        assert!(w.is_dirty(), "and it is written once that one is back");
        w.failed("p");
        assert_eq!(w.due(&next, &now()).len(), 1);
    }

    #[test]
    fn a_status_read_from_the_pool_counts_as_held() {
        let mut w = StatusWriter::default();
        let views = vec![("p".to_string(), view(1))];
        let st = w.due(&views, &now()).remove(0).status;
        w.failed("p");
        w.seen("p", "uid-p", Some(st));
        assert!(w.due(&views, &now()).is_empty(), "another replica wrote it");
        w.forget("p");
        assert_eq!(w.due(&views, &now()).len(), 1);
    }

    #[test]
    fn a_pool_recreated_under_the_same_name_gets_its_status_written() {
        let mut w = StatusWriter::default();
        let views = vec![("p".to_string(), view(0))];
        let first = w.due(&views, &now()).remove(0);
        w.written(first);
        assert!(w.due(&views, &now()).is_empty());
        // The new object has no status yet; its view is the same as the old one's.
        w.seen("p", "uid-q", None);
        let mut again = view(0);
        again.uid = "uid-q".into();
        let due = w.due(&[("p".to_string(), again)], &now());
        assert_eq!(due.len(), 1, "the new pool must not inherit the old status");
        assert_eq!(due[0].uid, "uid-q");
    }

    #[test]
    fn a_status_held_by_an_older_object_is_not_compared() {
        let mut w = StatusWriter::default();
        let views = vec![("p".to_string(), view(1))];
        let st = w.due(&views, &now()).remove(0).status;
        w.failed("p");
        w.seen("p", "uid-old", Some(st));
        assert_eq!(w.due(&views, &now()).len(), 1);
    }
}
