//! What the API server held over time, as seen by watches on Nodes,
//! PrefixPools and PrefixClaims (plus the answers to the run's own writes):
//! every podCIDRs value each Node UID had and the revision of its first
//! write, its labels over time, who wrote its podCIDRs, every spec each
//! pool UID had (with revisions), and when each claim was bound. The checks
//! read this, never the operator.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Result;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event, watcher};
use kube::{Api, Client};
use prefix_operator::api::{PrefixPool, PrefixPoolSpec};

use super::model::Labels;

/// The field manager of the run's own podCIDRs writes ("another writer").
pub const HAND_MANAGER: &str = "randomized-hand";

#[derive(Clone, Debug)]
pub struct NodeRec {
    pub name: String,
    pub first_seen: Instant,
    /// The first non-empty podCIDRs seen, and when.
    pub cidrs: Option<(Vec<String>, Instant)>,
    /// The lowest resourceVersion seen with podCIDRs (the write itself once
    /// the watch delivered it, even after a later list), with its labels.
    pub write: Option<(u64, Labels)>,
    /// Label sets in the order seen, each with when it was first seen.
    pub labels: Vec<(Instant, Labels)>,
    /// The run wrote this UID's podCIDRs by hand and the write landed.
    pub hand: bool,
    /// The managedFields manager that owns spec.podCIDRs, when seen.
    pub writer: Option<String>,
    pub gone: Option<Instant>,
    rv: u64,
}

impl NodeRec {
    /// Written by the run rather than the operator.
    pub fn is_hand(&self) -> bool {
        self.hand || self.writer.as_deref() == Some(HAND_MANAGER)
    }

    /// The labels in effect at `t` (the first set if `t` is earlier).
    pub fn labels_at(&self, t: Instant) -> Option<&(Instant, Labels)> {
        self.labels
            .iter()
            .rev()
            .find(|(at, _)| *at <= t)
            .or(self.labels.first())
    }
}

#[derive(Clone, Debug)]
pub struct PoolVersion {
    pub from: Instant,
    /// The resourceVersion it was first seen at (exact for the run's own
    /// writes and watch events; 0 unknown).
    pub rv: u64,
    pub spec: PrefixPoolSpec,
}

#[derive(Clone, Debug)]
pub struct PoolRec {
    pub name: String,
    pub versions: Vec<PoolVersion>,
    pub gone: Option<Instant>,
    /// The revision of the delete, when a watch event told it.
    pub gone_rv: Option<u64>,
    rv: u64,
}

impl PoolRec {
    /// When version `i` stopped being in effect (None: still is).
    pub fn until(&self, i: usize) -> Option<Instant> {
        self.versions.get(i + 1).map(|v| v.from).or(self.gone)
    }
}

#[derive(Default)]
pub struct Record {
    pub nodes: HashMap<String, NodeRec>,
    pub pools: HashMap<String, PoolRec>,
    pub claims: HashMap<String, super::claim_rec::ClaimRec>,
    /// Invariant (b) breaches seen as they happened.
    pub violations: Vec<String>,
    /// Spans in which the operator may act on a stale picture (a replica
    /// frozen, kube-apiserver or etcd down): start, end (None: ongoing).
    pub disturbed: Vec<(Instant, Option<Instant>)>,
}

fn rv_of(m: &kube::api::ObjectMeta) -> u64 {
    m.resource_version
        .as_deref()
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

/// The manager owning `f:podCIDRs` in managedFields.
pub fn pod_cidrs_writer(n: &Node) -> Option<String> {
    n.metadata.managed_fields.iter().flatten().find_map(|m| {
        let f = m.fields_v1.as_ref()?;
        serde_json::to_string(&f.0)
            .ok()?
            .contains("\"f:podCIDRs\"")
            .then(|| m.manager.clone().unwrap_or_default())
    })
}

/// How long a healthy operator may take to see a change (a watch event,
/// or a re-list after reconnecting with backoff).
pub const SEE_WITHIN: Duration = Duration::from_secs(5);

impl Record {
    /// Whether an operator that ran undisturbed had time to see a change
    /// made at `from` before it acted at `at`: some stretch of at least
    /// [`SEE_WITHIN`] in between with no replica frozen and the control
    /// plane up.
    pub fn saw_by(&self, from: Instant, at: Instant) -> bool {
        if at <= from {
            return false;
        }
        let mut spans: Vec<(Instant, Instant)> = self
            .disturbed
            .iter()
            .map(|(s, e)| (*s, e.unwrap_or(at).max(*s)))
            .filter(|(s, e)| *e > from && *s < at)
            .collect();
        spans.sort();
        let mut free_from = from;
        for (s, e) in spans {
            if s > free_from && s - free_from >= SEE_WITHIN {
                return true;
            }
            free_from = free_from.max(e);
        }
        at > free_from && at - free_from >= SEE_WITHIN
    }

    /// Opens a disturbed span; returns its index for [`Record::calm`].
    pub fn disturb(&mut self) -> usize {
        self.disturbed.push((Instant::now(), None));
        self.disturbed.len() - 1
    }

    pub fn calm(&mut self, i: usize) {
        if let Some(d) = self.disturbed.get_mut(i) {
            d.1.get_or_insert(Instant::now());
        }
    }

    /// Records `n` unless an equal or newer version of it was recorded.
    pub fn observe_node(&mut self, n: &Node, now: Instant) {
        let Some(uid) = n.metadata.uid.clone() else {
            return;
        };
        let rv = rv_of(&n.metadata);
        let name = n.metadata.name.clone().unwrap_or_default();
        let labels: Labels = n.metadata.labels.clone().unwrap_or_default();
        let rec = self.nodes.entry(uid.clone()).or_insert_with(|| NodeRec {
            name: name.clone(),
            first_seen: now,
            cidrs: None,
            write: None,
            labels: vec![],
            hand: false,
            writer: None,
            gone: None,
            rv: 0,
        });
        let has_cidrs = n
            .spec
            .as_ref()
            .and_then(|s| s.pod_cidrs.as_ref())
            .is_some_and(|c| !c.is_empty());
        // An older version may arrive after a newer list: it still tells
        // the write's revision.
        if has_cidrs && rv != 0 && rec.write.as_ref().is_none_or(|(w, _)| rv < *w) {
            rec.write = Some((rv, labels.clone()));
        }
        if rv != 0 && rv <= rec.rv {
            return;
        }
        rec.rv = rv;
        if rec.labels.last().map(|l| &l.1) != Some(&labels) {
            rec.labels.push((now, labels));
        }
        let cidrs = n
            .spec
            .as_ref()
            .and_then(|s| s.pod_cidrs.clone())
            .unwrap_or_default();
        if let Some(w) = pod_cidrs_writer(n) {
            rec.writer = Some(w);
        }
        match (&rec.cidrs, cidrs.is_empty()) {
            (None, false) => rec.cidrs = Some((cidrs, now)),
            (Some((old, _)), false) if *old != cidrs => self.violations.push(format!(
                "(b) Node {name} uid {uid}: podCIDRs changed from {old:?} to {cidrs:?}"
            )),
            (Some((old, _)), true) => self.violations.push(format!(
                "(b) Node {name} uid {uid}: podCIDRs went from {old:?} to empty at rv {rv}"
            )),
            _ => {}
        }
    }

    pub fn node_gone(&mut self, uid: &str, now: Instant) {
        if let Some(r) = self.nodes.get_mut(uid) {
            r.gone.get_or_insert(now);
        }
    }

    /// Records `p`'s spec unless an equal or newer version was recorded.
    pub fn observe_pool(&mut self, p: &PrefixPool, now: Instant) {
        let Some(uid) = p.metadata.uid.clone() else {
            return;
        };
        let rv = rv_of(&p.metadata);
        let rec = self.pools.entry(uid).or_insert_with(|| PoolRec {
            name: p.metadata.name.clone().unwrap_or_default(),
            versions: vec![],
            gone: None,
            gone_rv: None,
            rv: 0,
        });
        if rv != 0 && rv <= rec.rv {
            return;
        }
        rec.rv = rv;
        if rec.versions.last().map(|v| &v.spec) != Some(&p.spec) {
            rec.versions.push(PoolVersion {
                from: now,
                rv,
                spec: p.spec.clone(),
            });
        }
    }

    pub fn pool_gone(&mut self, uid: &str, rv: u64, now: Instant) {
        if let Some(r) = self.pools.get_mut(uid) {
            r.gone.get_or_insert(now);
            if rv != 0 {
                r.gone_rv.get_or_insert(rv);
            }
        }
    }
}

/// The shared record and the watches (Nodes, pools, claims) feeding it.
#[derive(Clone)]
pub struct History {
    rec: Arc<Mutex<Record>>,
    tasks: Arc<Vec<tokio::task::AbortHandle>>,
}

impl History {
    /// Starts the three watches and waits for their first lists.
    pub async fn start(client: &Client) -> Result<History> {
        let rec = Arc::new(Mutex::new(Record::default()));
        let synced = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let nodes = spawn_watch(
            Api::<Node>::all(client.clone()),
            rec.clone(),
            synced.clone(),
            |r, n: &Node, now| r.observe_node(n, now),
            |r, uid, _, now| r.node_gone(uid, now),
        );
        let pools = spawn_watch(
            Api::<PrefixPool>::all(client.clone()),
            rec.clone(),
            synced.clone(),
            |r, p: &PrefixPool, now| r.observe_pool(p, now),
            |r, uid, rv, now| r.pool_gone(uid, rv, now),
        );
        let claims = spawn_watch(
            Api::<prefix_operator::api::PrefixClaim>::all(client.clone()),
            rec.clone(),
            synced.clone(),
            |r, c, now| r.observe_claim(c, now),
            |r, uid, _, now| r.claim_gone(uid, now),
        );
        let h = History {
            rec,
            tasks: Arc::new(vec![nodes, pools, claims]),
        };
        crate::cluster::poll(
            "the history watches to list",
            Duration::from_secs(60),
            || {
                let s = synced.clone();
                async move { (s.load(std::sync::atomic::Ordering::SeqCst) >= 3).then_some(()) }
            },
        )
        .await?;
        Ok(h)
    }

    pub fn lock(&self) -> MutexGuard<'_, Record> {
        self.rec.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The run's own hand write of `uid` landed.
    pub fn mark_hand(&self, uid: &str) {
        if let Some(r) = self.lock().nodes.get_mut(uid) {
            r.hand = true;
        }
    }
}

impl Drop for History {
    fn drop(&mut self) {
        if Arc::strong_count(&self.tasks) == 1 {
            self.tasks.iter().for_each(|t| t.abort());
        }
    }
}

type Seen<K> = fn(&mut Record, &K, Instant);
type Gone = fn(&mut Record, &str, u64, Instant);

fn spawn_watch<K>(
    api: Api<K>,
    rec: Arc<Mutex<Record>>,
    synced: Arc<std::sync::atomic::AtomicUsize>,
    seen: Seen<K>,
    gone: Gone,
) -> tokio::task::AbortHandle
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + k8s_openapi::serde::de::DeserializeOwned
        + Send
        + 'static,
{
    let task = tokio::spawn(async move {
        let stream = watcher(api, watcher::Config::default()).default_backoff();
        futures::pin_mut!(stream);
        let mut first = true;
        while let Some(ev) = stream.next().await {
            let Ok(ev) = ev else { continue };
            let now = Instant::now();
            let mut r = rec.lock().unwrap_or_else(|e| e.into_inner());
            match ev {
                Event::Apply(o) | Event::InitApply(o) => seen(&mut r, &o, now),
                Event::Delete(o) => {
                    // A DELETED event carries the revision of the delete.
                    if let Some(uid) = o.meta().uid.as_deref() {
                        gone(&mut r, uid, rv_of(o.meta()), now);
                    }
                }
                Event::InitDone if first => {
                    first = false;
                    synced.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                Event::Init | Event::InitDone => {}
            }
        }
    });
    task.abort_handle()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saw_by_needs_an_undisturbed_stretch() {
        let t0 = Instant::now();
        let s = |n: u64| t0 + Duration::from_secs(n);
        let mut r = Record::default();
        assert!(r.saw_by(s(0), s(6)));
        assert!(!r.saw_by(s(0), s(3)));
        // Frozen from 1 s to 20 s: a change at 2 s was not seen by 22 s.
        r.disturbed.push((s(1), Some(s(20))));
        assert!(!r.saw_by(s(2), s(22)));
        assert!(r.saw_by(s(2), s(26)));
        // An ongoing disturbance hides everything after it began.
        r.disturbed.push((s(30), None));
        assert!(!r.saw_by(s(31), s(100)));
    }
}
