//! A kubelet-like Node status writer, so that every correctness run has the
//! traffic real clusters have (DESIGN.md, invariant 6): kubelets,
//! cloud-controller-manager and node-problem-detector patch `nodes/status`
//! all the time, and each patch is a new resourceVersion of the Node that the
//! operator's watch delivers — with whatever `spec.podCIDRs` the Node held
//! at that moment, possibly none, possibly after the operator's own write
//! has already been answered (issue 10).
//!
//! What it sends, per Node of ours (name starts with `name_prefix`):
//! - right after the Node appears, `registration_patches` status patches in
//!   quick succession, as kubelet's first status update (addresses,
//!   capacity, nodeInfo, Ready=False), cloud-controller-manager (addresses)
//!   and node-problem-detector (its conditions) do, then kubelet's Ready=True;
//! - then a heartbeat every 10–40 s (a random period per Node, like
//!   kubelet's `nodeStatusUpdateFrequency` plus jitter): a strategic-merge
//!   patch of the Ready condition's `lastHeartbeatTime`;
//! - optionally ("hot" mode) heartbeats to Nodes that still have no podCIDRs
//!   at a fixed total rate, to make the race with the operator's write as
//!   likely as possible. `hot_frontier` narrows the targets to the lowest
//!   names without podCIDRs, which is where the operator writes next (it
//!   serves a backlog in name order and a burst in creation order).
//!
//! Why our own writer and not kwok: kwok's heartbeat is the same kind of
//! status patch, so it would exercise nothing more; ours gives controlled
//! rates and timing for the race (registration right at appearance, the hot
//! mode aimed at the Nodes being written) and needs no further Go toolchain
//! step in `e2e/controlplane/build.sh`.
//!
//! Bounded: every task ends on [`KubeletSim::stop`], at the deadline, or
//! when the sim is dropped (tasks abort); requests go only to the API server
//! of the given client (the loopback control plane) and at most
//! `max_in_flight` of each kind at once.
//!
//! This file and its parts under `kubelet/` only use crates the operator's
//! own test suite has, so `tests/kubelet_traffic.rs` includes it with
//! `#[path]` (hence the `#[path]` on the parts: the same file from both).

#[path = "kubelet/counters.rs"]
mod counters;
#[path = "kubelet/patches.rs"]
mod patches;

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Patch, PatchParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event, watcher};
use kube::{Api, Client};
use rand::Rng;
use serde_json::Value;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

pub use counters::{Counters, Sent};
use patches::{heartbeat_patch, registration_patch};

/// Field manager of every patch sent here.
pub const FIELD_MANAGER: &str = "kubelet-sim";

/// How the writer behaves.
#[derive(Clone, Debug)]
pub struct KubeletConfig {
    /// Nodes whose name starts with this are ours; others are left alone.
    pub name_prefix: String,
    /// Heartbeat period range; each Node draws its own period in it.
    pub heartbeat: (Duration, Duration),
    /// Status patches sent right after a Node appears.
    pub registration_patches: usize,
    /// Longest random gap between two registration patches.
    pub registration_gap: Duration,
    /// Total rate (patches/s) at Nodes without podCIDRs; 0 turns it off.
    pub hot_rate: f64,
    /// With `hot_rate`: aim at the `hot_frontier` lowest names without
    /// podCIDRs; 0 picks among all of them.
    pub hot_frontier: usize,
    /// Registration and heartbeat patches in flight at once (beyond that
    /// they wait), and hot patches in flight at once (beyond that they are
    /// skipped): two budgets, so that heartbeats of thousands of Nodes do
    /// not starve the hot stream.
    pub max_in_flight: usize,
    /// Everything stops this long after start, stop or not.
    pub deadline: Duration,
}

impl Default for KubeletConfig {
    fn default() -> Self {
        KubeletConfig {
            name_prefix: String::new(),
            heartbeat: (Duration::from_secs(10), Duration::from_secs(40)),
            registration_patches: 3,
            registration_gap: Duration::from_millis(20),
            hot_rate: 0.0,
            hot_frontier: 0,
            max_in_flight: 64,
            deadline: Duration::from_secs(1800),
        }
    }
}

struct Shared {
    api: Api<Node>,
    cfg: KubeletConfig,
    counters: Arc<Counters>,
    stop: watch::Receiver<bool>,
    deadline: Instant,
    /// While set, heartbeats are not sent (their clocks keep running).
    paused: AtomicBool,
    /// Nodes whose life task started, with the number behind their address.
    started: Mutex<HashMap<String, u32>>,
    /// Our Nodes last seen without podCIDRs, in name order.
    empty: Mutex<BTreeSet<String>>,
    in_flight: Arc<Semaphore>,
    hot_in_flight: Arc<Semaphore>,
    tasks: Mutex<JoinSet<()>>,
}

/// The running writer; dropping it aborts every task.
pub struct KubeletSim {
    shared: Arc<Shared>,
    stop_tx: watch::Sender<bool>,
}

impl KubeletSim {
    /// Starts the Node watch (which starts the registration and heartbeats
    /// of every Node of ours it sees) and the hot loop.
    pub fn start(client: &Client, cfg: KubeletConfig) -> KubeletSim {
        let (stop_tx, stop) = watch::channel(false);
        let shared = Arc::new(Shared {
            api: Api::all(client.clone()),
            deadline: Instant::now() + cfg.deadline,
            in_flight: Arc::new(Semaphore::new(cfg.max_in_flight.max(1))),
            hot_in_flight: Arc::new(Semaphore::new(cfg.max_in_flight.max(1))),
            cfg,
            counters: Arc::default(),
            stop,
            paused: AtomicBool::new(false),
            started: Mutex::default(),
            empty: Mutex::default(),
            tasks: Mutex::new(JoinSet::new()),
        });
        spawn(&shared, watch_nodes(shared.clone()));
        spawn(&shared, hot_loop(shared.clone()));
        KubeletSim { shared, stop_tx }
    }

    /// Tells the writer that `name` was just created: its registration
    /// patches start now rather than when the watch shows it.
    pub fn appeared(&self, name: &str) {
        start_node(&self.shared, name);
    }

    /// The counters, live.
    pub fn counters(&self) -> Arc<Counters> {
        self.shared.counters.clone()
    }

    /// Nodes whose registration and heartbeats were started.
    pub fn nodes(&self) -> usize {
        lock(&self.shared.started).len()
    }

    /// Stops or resumes the heartbeats (registration and hot patches go on).
    pub fn pause_heartbeats(&self, paused: bool) {
        self.shared.paused.store(paused, Ordering::Relaxed);
    }

    /// Stops every task and waits for them (at most 15 s: a patch in flight
    /// has a 10 s timeout); returns what was sent.
    pub async fn stop(self) -> Sent {
        let _ = self.stop_tx.send(true);
        let mut tasks = std::mem::take(&mut *lock(&self.shared.tasks));
        let _ = tokio::time::timeout(Duration::from_secs(15), async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        tasks.abort_all();
        self.shared.counters.snapshot()
    }
}

impl Drop for KubeletSim {
    fn drop(&mut self) {
        let _ = self.stop_tx.send(true);
        lock(&self.shared.tasks).abort_all();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn spawn(sh: &Arc<Shared>, f: impl Future<Output = ()> + Send + 'static) {
    lock(&sh.tasks).spawn(f);
}

impl Shared {
    /// Resolves on stop or at the deadline.
    async fn done(&self) {
        let mut rx = self.stop.clone();
        tokio::select! {
            _ = rx.wait_for(|s| *s) => {}
            () = tokio::time::sleep_until(self.deadline) => {}
        }
    }

    fn is_done(&self) -> bool {
        *self.stop.borrow() || Instant::now() >= self.deadline
    }

    /// Sleeps `d`; false when stopped meanwhile.
    async fn nap(&self, d: Duration) -> bool {
        tokio::select! {
            () = self.done() => false,
            () = tokio::time::sleep(d) => !self.is_done(),
        }
    }

    /// One status patch; counted in `ok` or `failed`. Returns false when
    /// the Node is gone.
    async fn send(&self, name: &str, patch: &Patch<Value>, ok: &AtomicU64) -> bool {
        let pp = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        let r = tokio::time::timeout(
            Duration::from_secs(10),
            self.api.patch_status(name, &pp, patch),
        )
        .await;
        match r {
            Ok(Ok(_)) => {
                ok.fetch_add(1, Ordering::Relaxed);
                true
            }
            Ok(Err(kube::Error::Api(s))) if s.code == 404 => {
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
                false
            }
            _ => {
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
                true
            }
        }
    }
}

/// A random number in [0, 1) (the thread's generator is not held across
/// an await: it cannot move between threads).
fn frac() -> f64 {
    rand::rng().random()
}

/// Starts `name`'s registration and heartbeats once.
fn start_node(sh: &Arc<Shared>, name: &str) {
    let index = {
        let mut started = lock(&sh.started);
        if started.contains_key(name) || sh.is_done() {
            return;
        }
        let i = started.len() as u32 + 1;
        started.insert(name.to_string(), i);
        i
    };
    spawn(sh, node_life(sh.clone(), name.to_string(), index));
}

/// Registration patches, then heartbeats until stopped.
async fn node_life(sh: Arc<Shared>, name: String, index: u32) {
    for step in 0..sh.cfg.registration_patches {
        let gap = sh.cfg.registration_gap.mul_f64(frac());
        if step > 0 && !sh.nap(gap).await {
            return;
        }
        let permit = sh.in_flight.acquire().await;
        let p = registration_patch(&name, index, step);
        let alive = sh.send(&name, &p, &sh.counters.registration).await;
        drop(permit);
        if !alive {
            return;
        }
    }
    let (lo, hi) = sh.cfg.heartbeat;
    let period = lo + (hi.saturating_sub(lo)).mul_f64(frac());
    // A random phase, so that Nodes registered together do not beat together.
    let mut wait = period.mul_f64(frac());
    loop {
        if !sh.nap(wait).await {
            return;
        }
        wait = period;
        if sh.paused.load(Ordering::Relaxed) {
            continue;
        }
        let permit = sh.in_flight.acquire().await;
        let alive = sh
            .send(&name, &heartbeat_patch(), &sh.counters.heartbeats)
            .await;
        drop(permit);
        if !alive {
            return;
        }
    }
}

/// Keeps `empty` and starts Nodes of ours as the watch shows them.
async fn watch_nodes(sh: Arc<Shared>) {
    let cfg = watcher::Config::default().page_size(500);
    let stream = watcher(sh.api.clone(), cfg).default_backoff();
    futures::pin_mut!(stream);
    loop {
        let ev = tokio::select! {
            () = sh.done() => return,
            ev = stream.next() => ev,
        };
        let Some(Ok(ev)) = ev else { continue };
        match ev {
            Event::Apply(n) | Event::InitApply(n) => {
                let Some(name) = n.metadata.name.clone() else {
                    continue;
                };
                if !name.starts_with(&sh.cfg.name_prefix) {
                    continue;
                }
                let has = n
                    .spec
                    .and_then(|s| s.pod_cidrs)
                    .is_some_and(|c| !c.is_empty());
                let mut empty = lock(&sh.empty);
                if has {
                    empty.remove(&name);
                } else {
                    empty.insert(name.clone());
                }
                drop(empty);
                start_node(&sh, &name);
            }
            Event::Delete(n) => {
                if let Some(name) = n.metadata.name {
                    lock(&sh.empty).remove(&name);
                }
            }
            Event::Init | Event::InitDone => {}
        }
    }
}

/// Patches Nodes without podCIDRs at `hot_rate` per second in all.
async fn hot_loop(sh: Arc<Shared>) {
    if sh.cfg.hot_rate <= 0.0 {
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / sh.cfg.hot_rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            () = sh.done() => return,
            _ = tick.tick() => {}
        }
        let Some(target) = hot_target(&sh) else {
            continue;
        };
        let Ok(permit) = sh.hot_in_flight.clone().try_acquire_owned() else {
            sh.counters.skipped.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        let s = sh.clone();
        spawn(&sh, async move {
            s.send(&target, &heartbeat_patch(), &s.counters.hot).await;
            drop(permit);
        });
    }
}

fn hot_target(sh: &Shared) -> Option<String> {
    let empty = lock(&sh.empty);
    let n = match sh.cfg.hot_frontier {
        0 => empty.len(),
        k => empty.len().min(k),
    };
    if n == 0 {
        return None;
    }
    empty.iter().nth(rand::rng().random_range(0..n)).cloned()
}
