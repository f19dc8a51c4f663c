//! The node reconciler and the pool status writer.
//!
//! One task owns the [`Ledger`]: watch events of Nodes and PrefixPools go in,
//! reservations and writes come out. Writes run concurrently (bounded); their
//! results come back to the same task, so the ledger needs no lock and every
//! reservation is decided against the latest picture.

pub mod events;
pub mod list_watch;
pub mod nodes;
pub mod pools;
pub mod queue;
pub mod status;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use futures::{Stream, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::ListParams;
use kube::{Api, Client, Resource, ResourceExt};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

use crate::alloc::Family;
use crate::api::{PrefixPool, PrefixPoolStatus};
use crate::ledger::{Ledger, NodeSnapshot, Plan, Revision, Wait};
use crate::metrics::Metrics;
use events::{EventSink, Note};
use list_watch::Watched;
use nodes::NodeLite;
use pools::WatchedPool;
use queue::{Head, WriteQueue};

/// How the reconciler behaves.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Family listed first in a dual-stack Node's podCIDRs.
    pub primary_family: Family,
    /// Node writes in flight at once.
    pub max_concurrent_writes: usize,
    /// At most one status write per pool per interval.
    pub status_interval: Duration,
    /// Publish a Normal Event for every allocation.
    pub allocation_events: bool,
    /// Reporting instance in Events (the pod name).
    pub instance: String,
    /// With leader election: writes stop the moment this passes.
    pub lease_deadline: Option<crate::leader::Deadline>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            primary_family: Family::V6,
            max_concurrent_writes: 32,
            status_interval: Duration::from_secs(1),
            allocation_events: true,
            instance: "prefix-operator".into(),
            lease_deadline: None,
        }
    }
}

/// State shared with the HTTP endpoints.
#[derive(Default)]
pub struct Health {
    /// True once the first full lists of Nodes and PrefixPools are in.
    pub ready: AtomicBool,
}

/// Errors that stop the operator at start-up.
#[derive(thiserror::Error, Debug)]
pub enum StartError {
    #[error(
        "the PrefixPool CRD is not installed (prefixpools.ipam.prefix-operator.io not found); install it with `prefix-operator crd | kubectl apply -f -` or the Helm chart"
    )]
    CrdMissing,
    #[error("cannot reach the Kubernetes API server: {0}")]
    Unreachable(#[source] kube::Error),
    #[error("not allowed to {0}: {1}")]
    Forbidden(&'static str, String),
}

/// Checks that the API server answers and the CRD is installed.
pub async fn preflight(client: &Client) -> Result<(), StartError> {
    let pools: Api<PrefixPool> = Api::all(client.clone());
    match pools.list_metadata(&ListParams::default().limit(1)).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Err(StartError::CrdMissing),
        Err(kube::Error::Api(s)) if s.code == 403 => {
            Err(StartError::Forbidden("list prefixpools", s.message))
        }
        Err(e) => Err(StartError::Unreachable(e)),
    }
}

// Inputs live for one loop turn; boxing the larger variant buys nothing.
#[allow(clippy::large_enum_variant)]
enum Input {
    Node(Watched<NodeLite>),
    Pool(Watched<WatchedPool>),
}

/// The answer to a check of the pools (see [`queue`]), sent with `mark`.
enum PoolCheck {
    /// Every pool's revision, from one consistent list of metadata.
    Revisions {
        mark: u64,
        result: Result<(Vec<(String, Revision)>, Option<u64>), kube::Error>,
    },
    /// The ledger was behind: every pool, from one consistent list.
    Full {
        mark: u64,
        result: Result<(Vec<WatchedPool>, Option<String>), kube::Error>,
    },
}

/// Why a Node is read back.
enum ReadPurpose {
    /// Its write was refused: adopt whatever it holds, then retry later.
    Adopt {
        reason: &'static str,
        message: String,
    },
    /// A re-list did not show it, but the ledger's state of it may be later
    /// than the list: find out whether it still exists.
    Verify,
    /// Its write had an unknown outcome: find out whether it landed.
    Settle { picks: Vec<(String, ipnet::IpNet)> },
}

/// A Node read back (a consistent GET).
struct ReadBack {
    node: String,
    /// The object the ledger held when the read was sent.
    uid: String,
    purpose: ReadPurpose,
    read: Result<Option<NodeLite>, kube::Error>,
}

struct WriteResult {
    node: String,
    /// The object the write was guarded to (its UID `test`).
    uid: String,
    pools: Vec<(String, ipnet::IpNet)>,
    result: Result<NodeLite, kube::Error>,
}

/// The reconciler's state, owned by one task.
struct Reconciler {
    settings: Settings,
    nodes_api: Api<NodeLite>,
    pools_api: Api<PrefixPool>,
    guarded_pools: Api<WatchedPool>,
    ledger: Ledger,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    events: EventSink,
    /// True while no Node write is queued or in flight: allocation Events
    /// are published only then.
    idle: watch::Sender<bool>,
    queue: WriteQueue,
    pool_checks: JoinSet<PoolCheck>,
    first_seen: HashMap<String, Instant>,
    attempts: HashMap<String, u32>,
    /// Nodes told they wait, so the Warning is sent once per wait.
    warned_waiting: HashSet<String>,
    warned_conflict: HashSet<String>,
    writes: JoinSet<WriteResult>,
    reads: JoinSet<ReadBack>,
    in_flight: HashSet<String>,
    /// Writes whose outcome is unknown, by Node: the object written to and
    /// the prefixes, which stay reserved until a read of the Node settles
    /// the outcome (see `Ledger::settle_unknown`).
    uncertain: HashMap<String, (String, Vec<(String, ipnet::IpNet)>)>,
    retry_tx: mpsc::UnboundedSender<String>,
    nodes_synced: bool,
    pools_synced: bool,
    /// Last status written (or read) per pool.
    last_status: HashMap<String, PrefixPoolStatus>,
    status_dirty: bool,
    status_writes: JoinSet<(String, PrefixPoolStatus, Result<PrefixPool, kube::Error>)>,
    status_in_flight: HashSet<String>,
    invalid_reported: HashMap<String, String>,
    leader: watch::Receiver<bool>,
    /// Set when leadership was just gained: re-list before the first write.
    needs_resync: bool,
}

/// Runs the reconciler until `shutdown` resolves. `leader` tells whether this
/// replica may write (always true without leader election).
pub async fn run(
    client: Client,
    settings: Settings,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    leader: watch::Receiver<bool>,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let nodes_api: Api<NodeLite> = Api::all(client.clone());
    let pools_api: Api<PrefixPool> = Api::all(client.clone());
    let guarded_pools: Api<WatchedPool> = Api::all(client.clone());

    // Our own list-watches: they hand out each list with its
    // resourceVersion, which the merge needs (see `list_watch`).
    let (node_tx, node_rx) = mpsc::channel(1024);
    let (pool_tx, pool_rx) = mpsc::channel(64);
    let _node_loop = AbortOnDrop(tokio::spawn(list_watch::run(
        nodes_api.clone(),
        "Nodes",
        node_tx,
    )));
    let _pool_loop = AbortOnDrop(tokio::spawn(list_watch::run(
        guarded_pools.clone(),
        "PrefixPools",
        pool_tx,
    )));
    let inputs = futures::stream::select(
        tokio_stream_of(node_rx).map(Input::Node),
        tokio_stream_of(pool_rx).map(Input::Pool),
    );

    let (retry_tx, retry_rx) = mpsc::unbounded_channel();
    let (idle_tx, idle_rx) = watch::channel(false);
    let events = EventSink::start(client.clone(), &settings.instance, metrics.clone(), idle_rx);
    let mut r = Reconciler {
        settings,
        nodes_api,
        pools_api,
        guarded_pools,
        ledger: Ledger::new(),
        metrics,
        health,
        events,
        idle: idle_tx,
        queue: WriteQueue::default(),
        pool_checks: JoinSet::new(),
        first_seen: HashMap::new(),
        attempts: HashMap::new(),
        warned_waiting: HashSet::new(),
        warned_conflict: HashSet::new(),
        writes: JoinSet::new(),
        reads: JoinSet::new(),
        in_flight: HashSet::new(),
        uncertain: HashMap::new(),
        retry_tx,
        nodes_synced: false,
        pools_synced: false,
        last_status: HashMap::new(),
        status_dirty: false,
        status_writes: JoinSet::new(),
        status_in_flight: HashSet::new(),
        invalid_reported: HashMap::new(),
        needs_resync: false,
        leader,
    };
    r.main_loop(inputs, retry_rx, shutdown).await
}

impl Reconciler {
    async fn main_loop(
        &mut self,
        inputs: impl Stream<Item = Input>,
        mut retry_rx: mpsc::UnboundedReceiver<String>,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        tokio::pin!(inputs);
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(self.settings.status_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut leader = self.leader.clone();
        let mut was_leader = *leader.borrow();
        loop {
            if self.ledger.set_time(SystemTime::now()) {
                // Held-back prefixes became free: waiting Nodes may fit now.
                for n in self.ledger.waiting_nodes() {
                    self.enqueue(&n);
                }
                self.status_dirty = true;
            }
            let next_release = self
                .ledger
                .next_release()
                .and_then(|t| t.duration_since(SystemTime::now()).ok())
                .unwrap_or(Duration::from_secs(3600));
            // A pool check that failed is sent again then.
            let next_wake = self
                .queue
                .retry_at()
                .map(|t| t.saturating_duration_since(Instant::now()))
                .map_or(next_release, |d| d.min(next_release));
            tokio::select! {
                biased;
                () = &mut shutdown => {
                    info!("shutting down; waiting for {} write(s) in flight", self.writes.len());
                    while let Some(res) = self.writes.join_next().await {
                        if let Ok(w) = res { self.on_write(w); }
                    }
                    return Ok(());
                }
                Some(res) = self.writes.join_next(), if !self.writes.is_empty() => {
                    match res {
                        Ok(w) => self.on_write(w),
                        Err(e) => warn!("write task failed: {e}"),
                    }
                }
                Some(res) = self.reads.join_next(), if !self.reads.is_empty() => {
                    match res {
                        Ok(a) => self.on_read_back(a),
                        Err(e) => warn!("read-back task failed: {e}"),
                    }
                }
                Some(res) = self.pool_checks.join_next(), if !self.pool_checks.is_empty() => {
                    match res {
                        Ok(c) => self.on_pool_check(c),
                        Err(e) => warn!("pool check task failed: {e}"),
                    }
                }
                Some(input) = inputs.next() => {
                    match input {
                        Input::Node(ev) => self.on_node_event(ev),
                        Input::Pool(ev) => self.on_pool_event(ev),
                    }
                }
                Some(node) = retry_rx.recv() => self.enqueue(&node),
                Some(res) = self.status_writes.join_next(), if !self.status_writes.is_empty() => {
                    if let Ok((pool, st, result)) = res {
                        self.status_in_flight.remove(&pool);
                        match result {
                            Ok(stored) => {
                                self.last_status.insert(pool, st);
                                // The stored object is the latest state of
                                // the pool: taking it in keeps the pool
                                // checks from finding the ledger behind.
                                self.apply_pool(&kube::core::DeserializeGuard(Ok(stored)));
                            }
                            Err(e) => {
                                self.metrics.error(error_reason(&e));
                                warn!(%pool, "status write failed: {}", error_message(&e));
                                self.status_dirty = true;
                            }
                        }
                    }
                }
                Ok(()) = leader.changed() => {
                    let now = *leader.borrow();
                    if now && !was_leader {
                        info!("became leader; re-reading every Node before the first write");
                        self.needs_resync = true;
                        self.status_dirty = true;
                    }
                    if !now && was_leader {
                        self.drop_uncertain();
                        // Only the leader publishes pool gauges.
                        for name in self.ledger.pool_names() {
                            self.metrics.forget_pool(&name);
                        }
                    }
                    was_leader = now;
                }
                _ = tick.tick() => self.flush_status(),
                () = tokio::time::sleep(next_wake + Duration::from_millis(1)) => {}
            }
            if self.needs_resync && self.is_leader() && self.nodes_synced {
                self.resync_nodes().await;
            }
            self.dispatch();
            self.metrics.writes_in_flight.set(self.writes.len() as i64);
            self.metrics.queued_nodes.set(self.queue.len() as i64);
            let idle = self.queue.is_empty() && self.writes.is_empty();
            self.idle
                .send_if_modified(|v| std::mem::replace(v, idle) != idle);
        }
    }

    fn is_leader(&self) -> bool {
        *self.leader.borrow()
            && self
                .settings
                .lease_deadline
                .as_ref()
                .is_none_or(crate::leader::within)
    }

    fn synced(&self) -> bool {
        self.nodes_synced && self.pools_synced
    }

    /// Re-lists every Node (a consistent read, in pages) and merges it into
    /// the picture.
    async fn resync_nodes(&mut self) {
        match list_watch::list_all(&self.nodes_api).await {
            Ok((items, list_rv)) => {
                let snaps: Vec<NodeSnapshot> = items.iter().filter_map(nodes::snapshot).collect();
                let list_rv = crate::ledger::parse_resource_version(list_rv.as_deref());
                let verify = self.ledger.replace_nodes(&snaps, list_rv);
                self.verify_nodes(verify);
                self.queue.touch_all();
                self.needs_resync = false;
                self.enqueue_all_unallocated();
                self.status_dirty = true;
            }
            Err(e) => {
                self.metrics.error(error_reason(&e));
                warn!("re-listing Nodes failed, will retry: {}", error_message(&e));
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }

    fn enqueue(&mut self, node: &str) {
        self.queue.push(node);
    }

    fn enqueue_all_unallocated(&mut self) {
        let mut names = self.ledger.unallocated_nodes();
        names.sort();
        for n in names {
            self.first_seen
                .entry(n.clone())
                .or_insert_with(Instant::now);
            self.enqueue(&n);
        }
    }

    fn on_node_event(&mut self, ev: Watched<NodeLite>) {
        match ev {
            Watched::Failed(e) => {
                self.metrics.error("WatchNodes");
                warn!("{e}");
            }
            Watched::Listed {
                items: listed,
                resource_version,
            } => {
                let snaps: Vec<NodeSnapshot> = listed.iter().filter_map(nodes::snapshot).collect();
                info!(
                    nodes = snaps.len(),
                    "Node list complete; merged into the picture"
                );
                let verify = self.ledger.replace_nodes(&snaps, resource_version);
                self.verify_nodes(verify);
                self.queue.touch_all();
                self.nodes_synced = true;
                self.report_new_conflicts();
                self.after_sync();
                self.enqueue_all_unallocated();
                self.status_dirty = true;
            }
            Watched::Apply(n) => {
                let Some(s) = nodes::snapshot(&n) else { return };
                let name = s.name.clone();
                let had_conflict = self.ledger.conflict_of(&name).is_some();
                let change = self.ledger.upsert_node(&s);
                if !change.changed {
                    // Stale (older than what is held) or a heartbeat: nothing
                    // a decision or a status reads has changed.
                    return;
                }
                self.queue.touch(&name);
                match self.ledger.node_has_prefixes(&name) {
                    Some(false) if !s.deleting => {
                        self.first_seen
                            .entry(name.clone())
                            .or_insert_with(Instant::now);
                        self.enqueue(&name);
                    }
                    // Written by someone else (our own write's response records
                    // the latency, even when its watch event comes first).
                    _ if !self.in_flight.contains(&name) => {
                        self.first_seen.remove(&name);
                    }
                    _ => {}
                }
                if !had_conflict {
                    self.report_conflict(&name, n.object_ref(&()));
                }
                self.status_dirty = true;
            }
            Watched::Delete(n) => {
                let name = n.name_any();
                let uid = n.metadata.uid.clone().unwrap_or_default();
                let rv =
                    crate::ledger::parse_resource_version(n.metadata.resource_version.as_deref());
                for pool in self.ledger.remove_node(&name, &uid, rv) {
                    self.metrics
                        .releases
                        .get_or_create(&self.metrics.pool(&pool))
                        .inc();
                }
                self.first_seen.remove(&name);
                self.warned_waiting.remove(&name);
                self.warned_conflict.remove(&name);
                self.attempts.remove(&name);
                // Freed space may serve Nodes that wait (only those: a mass
                // deletion must not re-plan every Node once per deleted Node).
                for n in self.ledger.waiting_nodes() {
                    self.enqueue(&n);
                }
                self.status_dirty = true;
            }
        }
    }

    /// Warns once about every Node newly found in conflict.
    fn report_new_conflicts(&mut self) {
        for name in self.ledger.conflicted_nodes() {
            if !self.warned_conflict.contains(&name) {
                let r = node_ref(&name, self.ledger.node_uid(&name));
                self.report_conflict(&name, r);
            }
        }
        self.warned_conflict
            .retain(|n| self.ledger.conflict_of(n).is_some());
    }

    fn report_conflict(&mut self, name: &str, node: k8s_openapi::api::core::v1::ObjectReference) {
        if let Some(reasons) = self.ledger.conflict_of(name)
            && self.warned_conflict.insert(name.to_string())
        {
            let msg = reasons.join("; ");
            warn!(node = name, "podCIDRs conflict: {msg}");
            self.events.send(Note::warning(
                node,
                "PrefixConflict",
                "Adopt",
                format!("{msg}. The Node is left as it is and its space is never handed out; delete and re-register the Node to fix it"),
            ));
        }
    }

    fn after_sync(&mut self) {
        if self.synced() && !self.health.ready.swap(true, Ordering::SeqCst) {
            info!("initial sync complete; ready");
        }
    }

    fn on_pool_event(&mut self, ev: Watched<WatchedPool>) {
        match ev {
            Watched::Failed(e) => {
                // The list-watch retries by itself. Pool events may be
                // missed meanwhile: the pool checks before every write
                // batch catch that (see `queue`).
                self.metrics.error("WatchPrefixPools");
                warn!("{e}");
            }
            Watched::Listed {
                items,
                resource_version,
            } => {
                info!(pools = items.len(), "PrefixPool list complete; merged into the picture");
                self.merge_pool_list(&items, resource_version);
                self.pools_synced = true;
                self.after_sync();
            }
            Watched::Apply(p) => {
                if !self.apply_pool(&p) {
                    // Stale, our own status write coming back, or a label
                    // change.
                    return;
                }
                self.report_new_conflicts();
                self.enqueue_all_unallocated();
                self.status_dirty = true;
            }
            Watched::Delete(p) => {
                let name = p.name_any();
                let uid = p.meta().uid.clone().unwrap_or_default();
                let rv = crate::ledger::parse_resource_version(p.meta().resource_version.as_deref());
                if self.ledger.remove_pool(&name, &uid, rv) {
                    self.forget_pool(&name);
                    self.status_dirty = true;
                    self.enqueue_all_unallocated();
                }
            }
        }
    }

    /// Merges a complete list of pools (from the watch's re-list or a pool
    /// check) into the picture.
    fn merge_pool_list(&mut self, items: &[WatchedPool], resource_version: Option<u64>) {
        let decoded: Vec<_> = items.iter().map(pools::decode).collect();
        let snaps: Vec<_> = decoded.iter().map(|(s, _)| s.clone()).collect();
        for name in self.ledger.replace_pools(&snaps, resource_version) {
            self.forget_pool(&name);
        }
        for (snap, status) in decoded {
            if let Some(st) = status {
                self.last_status.insert(snap.name.clone(), st);
            }
            self.report_pool_error(&snap.name, &snap.uid);
        }
        self.report_new_conflicts();
        self.enqueue_all_unallocated();
        self.status_dirty = true;
    }

    fn forget_pool(&mut self, name: &str) {
        self.last_status.remove(name);
        self.invalid_reported.remove(name);
        self.metrics.forget_pool(name);
    }

    /// Feeds a pool to the ledger; false when nothing the picture reads
    /// changed.
    fn apply_pool(&mut self, obj: &WatchedPool) -> bool {
        let (snap, status) = pools::decode(obj);
        if let Err(e) = &obj.0 {
            // A pool that does not even decode is reported, not fatal.
            self.metrics.error("DecodePrefixPool");
            warn!(pool = %snap.name, "PrefixPool does not decode: {}", e.error);
        }
        if let Some(st) = status {
            // The status as last seen: another replica's writes too, so
            // that a new leader compares with what is there.
            self.last_status.insert(snap.name.clone(), st);
        }
        if !self.ledger.upsert_pool(&snap) {
            return false;
        }
        self.report_pool_error(&snap.name, &snap.uid);
        true
    }

    /// Warns once per distinct reason why pool `name` serves nothing.
    fn report_pool_error(&mut self, name: &str, uid: &str) {
        let Some(err) = self.ledger.pool_error(name).map(str::to_string) else {
            self.invalid_reported.remove(name);
            return;
        };
        if self.invalid_reported.get(name) == Some(&err) {
            return;
        }
        warn!(pool = name, "invalid PrefixPool: {err}");
        self.invalid_reported.insert(name.to_string(), err.clone());
        let pool = k8s_openapi::api::core::v1::ObjectReference {
            api_version: Some(PrefixPool::api_version(&()).into_owned()),
            kind: Some(PrefixPool::kind(&()).into_owned()),
            name: Some(name.into()),
            uid: Some(uid.into()),
            ..Default::default()
        };
        self.events
            .send(Note::warning(pool, "InvalidSpec", "Validate", err));
    }

    /// Sends a check of the pools that serves every Node queued so far.
    fn start_pool_check(&mut self, mark: u64) {
        let api = self.pools_api.clone();
        self.pool_checks.spawn(async move {
            PoolCheck::Revisions {
                mark,
                result: pools::list_revisions(&api).await,
            }
        });
    }

    fn on_pool_check(&mut self, c: PoolCheck) {
        match c {
            PoolCheck::Revisions {
                mark,
                result: Ok((listed, list_rv)),
            } => {
                if self.ledger.pools_current(&listed, list_rv) {
                    self.queue.check_passed(mark);
                } else {
                    // Pool events not seen yet: read the pools whole.
                    debug!("the picture of pools is behind the API server; listing them");
                    let api = self.guarded_pools.clone();
                    self.pool_checks.spawn(async move {
                        PoolCheck::Full {
                            mark,
                            result: list_watch::list_all(&api).await,
                        }
                    });
                }
            }
            PoolCheck::Full {
                mark,
                result: Ok((items, list_rv)),
            } => {
                let rv = crate::ledger::parse_resource_version(list_rv.as_deref());
                self.merge_pool_list(&items, rv);
                self.queue.check_passed(mark);
            }
            PoolCheck::Revisions {
                mark,
                result: Err(e),
            }
            | PoolCheck::Full {
                mark,
                result: Err(e),
            } => {
                self.metrics.error(error_reason(&e));
                let delay = backoff(self.queue.failures() + 1);
                warn!(
                    "checking PrefixPools before writing failed, retrying in {delay:?}: {}",
                    error_message(&e)
                );
                self.queue.check_failed(mark, Instant::now(), delay);
            }
        }
    }

    /// Starts writes for queued Nodes while there is room.
    fn dispatch(&mut self) {
        if !self.synced() || !self.is_leader() || self.needs_resync {
            return;
        }
        while self.writes.len() < self.settings.max_concurrent_writes {
            let node = match self.queue.pop_ready() {
                Head::Ready(n) => n,
                Head::Blocked => {
                    if let Some(mark) = self.queue.start_check(Instant::now()) {
                        self.start_pool_check(mark);
                    }
                    break;
                }
                Head::Empty => break,
            };
            if self.in_flight.contains(&node) {
                continue;
            }
            if let Some((uid, picks)) = self.uncertain.get(&node).cloned() {
                // Read the Node to learn whether the write landed.
                self.read_back(node, uid, ReadPurpose::Settle { picks });
                continue;
            }
            match self.ledger.plan(&node, self.settings.primary_family) {
                Plan::Nothing => {}
                Plan::Wait(Wait::NoPool) => {
                    debug!(node, "no PrefixPool selects this Node");
                }
                Plan::Wait(Wait::Exhausted { family, pools }) => {
                    self.status_dirty = true;
                    if self.warned_waiting.insert(node.clone()) {
                        warn!(node, ?pools, "no free {family} prefix; the Node waits");
                        self.events.send(Note::warning(
                            node_ref(&node, self.ledger.node_uid(&node)),
                            "PoolExhausted",
                            "Allocate",
                            format!(
                                "no free {family} prefix in PrefixPool(s) {}; the Node waits without podCIDRs (nothing is written for any family, podCIDRs is write-once). Add a prefix to a pool to serve it",
                                pools.join(", ")
                            ),
                        ));
                    }
                }
                Plan::Allocate(picks) => {
                    let uid = self.ledger.node_uid(&node).unwrap_or_default();
                    self.start_write(node, uid, picks);
                }
            }
        }
    }

    fn start_write(&mut self, node: String, uid: String, picks: Vec<(String, ipnet::IpNet)>) {
        let cidrs: Vec<String> = picks.iter().map(|(_, n)| n.to_string()).collect();
        let api = self.nodes_api.clone();
        self.in_flight.insert(node.clone());
        self.metrics.node_writes.inc();
        let deadline = self.settings.lease_deadline.clone();
        self.writes.spawn(async move {
            // Last look before sending: a leader past its deadline must not write.
            let result = if deadline.as_ref().is_some_and(|d| !crate::leader::within(d)) {
                Err(kube::Error::Api(
                    kube::core::Status::failure(
                        "leadership lapsed before the write was sent",
                        "NotLeader",
                    )
                    .with_code(403)
                    .boxed(),
                ))
            } else {
                nodes::write_pod_cidrs(&api, &node, &uid, &cidrs).await
            };
            WriteResult {
                node,
                uid,
                pools: picks,
                result,
            }
        });
    }

    fn on_write(&mut self, w: WriteResult) {
        self.in_flight.remove(&w.node);
        match w.result {
            Ok(n) => {
                match nodes::snapshot(&n) {
                    Some(s) => {
                        self.ledger.commit(&s);
                    }
                    None => {
                        self.ledger.release(&w.node);
                    }
                }
                self.attempts.remove(&w.node);
                self.warned_waiting.remove(&w.node);
                let latency = self.first_seen.remove(&w.node).map(|t| t.elapsed());
                if let Some(l) = latency {
                    self.metrics.allocation_latency.observe(l.as_secs_f64());
                }
                let written: Vec<String> = w
                    .pools
                    .iter()
                    .map(|(p, n)| format!("{n} from {p}"))
                    .collect();
                for (pool, prefix) in &w.pools {
                    self.metrics
                        .allocations
                        .get_or_create(&self.metrics.pool(pool))
                        .inc();
                    info!(node = %w.node, %pool, %prefix, latency_ms = latency.map(|l| l.as_millis() as u64), "allocated");
                }
                if self.settings.allocation_events {
                    self.events.send(Note::normal(
                        n.object_ref(&()),
                        "PrefixAllocated",
                        "Allocate",
                        format!("podCIDRs set to {}", written.join(", ")),
                    ));
                }
                self.status_dirty = true;
            }
            Err(e) => {
                let reason = error_reason(&e);
                self.metrics.error(reason);
                match write_outcome(&e) {
                    WriteOutcome::Gone => {
                        self.ledger.release(&w.node);
                        self.wake_waiting();
                        debug!(node = %w.node, "Node gone before its write landed");
                    }
                    WriteOutcome::Refused => {
                        // Someone else wrote podCIDRs, or the Node was re-created:
                        // read it back and adopt whatever it holds, then free ours.
                        // The reservation and the in-flight mark stay until the
                        // read comes back (see `on_adopted`), off the event loop.
                        let message = error_message(&e);
                        info!(node = %w.node, "write refused ({message}); re-reading the Node to adopt it");
                        self.read_back(w.node, w.uid, ReadPurpose::Adopt { reason, message });
                    }
                    WriteOutcome::NotApplied => {
                        self.ledger.release(&w.node);
                        self.wake_waiting();
                        self.retry_later(&w.node, reason, &error_message(&e));
                    }
                    WriteOutcome::Unknown => {
                        // The write may have landed and only its answer got
                        // lost: keep the reservation until a read of the Node
                        // tells (after a backoff: the server may be down).
                        self.uncertain
                            .insert(w.node.clone(), (w.uid.clone(), w.pools.clone()));
                        self.retry_later(
                            &w.node,
                            reason,
                            &format!("{} (result unknown; the prefixes stay reserved until the Node is read back)", error_message(&e)),
                        );
                    }
                }
            }
        }
    }

    /// Re-queues `node` after an exponential backoff.
    fn retry_later(&mut self, node: &str, reason: &str, message: &str) {
        let attempt = self.attempts.entry(node.to_string()).or_insert(0);
        *attempt += 1;
        let delay = backoff(*attempt);
        warn!(
            node,
            "writing podCIDRs failed ({reason}), retrying in {delay:?}: {message}"
        );
        let tx = self.retry_tx.clone();
        let node = node.to_string();
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            let _ = tx.send(node);
        });
    }

    /// Reads Node `node` back (off the event loop); the answer comes to
    /// [`Reconciler::on_read_back`]. The in-flight mark keeps the Node from
    /// being planned meanwhile.
    fn read_back(&mut self, node: String, uid: String, purpose: ReadPurpose) {
        self.in_flight.insert(node.clone());
        let api = self.nodes_api.clone();
        self.reads.spawn(async move {
            let read = api.get_opt(&node).await;
            ReadBack {
                node,
                uid,
                purpose,
                read,
            }
        });
    }

    /// Nodes a re-list did not show but whose state in the ledger may be
    /// later than the list: read each back.
    fn verify_nodes(&mut self, names: Vec<String>) {
        for name in names {
            if self.in_flight.contains(&name) {
                continue;
            }
            let uid = self.ledger.node_uid(&name).unwrap_or_default();
            info!(node = %name, "not in the re-list but known later; reading it back");
            self.read_back(name, uid, ReadPurpose::Verify);
        }
    }

    /// A Node read back: adopt whatever it holds (in the API server's order,
    /// like any other state) or forget it if that object is gone. After a
    /// refused write, free our reservation and try again later (still
    /// without podCIDRs — for example an admission policy refuses the write
    /// — it must not be retried at once).
    fn on_read_back(&mut self, a: ReadBack) {
        let name = a.node.as_str();
        self.in_flight.remove(name);
        match a.read {
            Ok(Some(n)) => {
                if let Some(s) = nodes::snapshot(&n) {
                    if self.ledger.upsert_node(&s).changed {
                        self.queue.touch(name);
                    }
                    if self.ledger.node_has_prefixes(name) == Some(true) {
                        // Filled by someone else: no latency of ours to record.
                        self.first_seen.remove(name);
                    }
                    self.report_conflict(name, n.object_ref(&()));
                }
            }
            Ok(None) => {
                self.ledger.remove_node_if_uid(name, &a.uid);
            }
            Err(e) => {
                self.metrics.error(error_reason(&e));
                let message = error_message(&e);
                warn!(node = name, "re-reading Node failed: {message}");
                if let ReadPurpose::Settle { .. } = a.purpose {
                    // Still unknown: the reservation stays; read again later.
                    self.retry_later(name, error_reason(&e), &message);
                    return;
                }
            }
        }
        self.status_dirty = true;
        match a.purpose {
            ReadPurpose::Adopt { reason, message } => {
                self.ledger.release(name);
                self.wake_waiting();
                self.retry_later(name, reason, &message);
            }
            ReadPurpose::Verify => self.enqueue(name),
            ReadPurpose::Settle { picks } => {
                self.uncertain.remove(name);
                let until = SystemTime::now() + UNKNOWN_WRITE_GRACE;
                if self.ledger.settle_unknown(name, &a.uid, &picks, until) {
                    info!(
                        node = name,
                        "the write with an unknown outcome did not land; planning the Node again (its prefixes are held back for {UNKNOWN_WRITE_GRACE:?} in case it still lands)"
                    );
                    self.enqueue(name);
                }
                self.wake_waiting();
            }
        }
    }

    /// Space may have been freed (a reservation released): Nodes that were
    /// told to wait are planned again.
    fn wake_waiting(&mut self) {
        for n in self.ledger.waiting_nodes() {
            self.enqueue(&n);
        }
    }

    /// Leadership is gone: writes with an unknown outcome are not ours to
    /// send again. The next leader re-reads every Node, and so does this
    /// replica if it leads again, so whatever landed is seen there.
    fn drop_uncertain(&mut self) {
        for (node, _) in std::mem::take(&mut self.uncertain) {
            self.ledger.release(&node);
        }
    }

    /// Writes the status of every pool whose view changed, at most one write
    /// per pool in flight.
    fn flush_status(&mut self) {
        if !self.status_dirty || !self.synced() || !self.is_leader() {
            return;
        }
        self.status_dirty = false;
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        for (name, view) in self.ledger.pool_views() {
            self.publish_pool_metrics(&name, &view);
            if self.status_in_flight.contains(&name) {
                self.status_dirty = true;
                continue;
            }
            let prev: &[Condition] = self
                .last_status
                .get(&name)
                .map(|s| s.conditions.as_slice())
                .unwrap_or(&[]);
            let st = status::build_status(&view, prev, &now);
            if self.last_status.get(&name) == Some(&st) {
                continue;
            }
            self.status_in_flight.insert(name.clone());
            self.metrics.status_writes.inc();
            let api = self.pools_api.clone();
            self.status_writes.spawn(async move {
                let r = tokio::time::timeout(
                    Duration::from_secs(10),
                    status::apply_status(&api, &name, &st),
                )
                .await
                .unwrap_or_else(|_| Err(kube::Error::Service("status write timed out".into())));
                (name, st, r)
            });
        }
    }

    fn publish_pool_metrics(&self, name: &str, v: &crate::ledger::PoolView) {
        let l = self.metrics.pool(name);
        self.metrics
            .capacity
            .get_or_create(&l)
            .set(v.capacity as f64);
        self.metrics
            .available
            .get_or_create(&l)
            .set(v.available as f64);
        self.metrics
            .allocated
            .get_or_create(&l)
            .set(v.allocations.len() as i64);
        self.metrics.waiting.get_or_create(&l).set(v.waiting as i64);
        self.metrics
            .unroutable
            .get_or_create(&l)
            .set(v.unroutable as i64);
        self.metrics
            .held_back
            .get_or_create(&l)
            .set(v.held_back.len() as i64);
        self.metrics.exhausted.get_or_create(&l).set(i64::from(
            v.error.is_none() && (v.available == 0 || v.waiting > 0),
        ));
        self.metrics
            .conflicts
            .get_or_create(&l)
            .set((v.conflicts.len() + v.overlapping_pools.len()) as i64);
    }
}

fn node_ref(name: &str, uid: Option<String>) -> k8s_openapi::api::core::v1::ObjectReference {
    k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Node".into()),
        name: Some(name.into()),
        uid,
        ..Default::default()
    }
}

/// A task aborted when this is dropped (the reconciler's own loops must not
/// outlive it).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The receiver as a stream (ends when every sender is gone).
fn tokio_stream_of<T: Send + 'static>(
    rx: mpsc::Receiver<T>,
) -> impl Stream<Item = T> + Send + 'static {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|v| (v, rx)) })
}

/// How long prefixes of a write with an unknown outcome, found not landed,
/// are kept from other Nodes: the API server may still hold the request
/// (its default request timeout is 60 s).
const UNKNOWN_WRITE_GRACE: Duration = Duration::from_secs(120);

fn backoff(attempt: u32) -> Duration {
    let ms = 100u64.saturating_mul(1u64 << attempt.min(9));
    Duration::from_millis(ms.min(30_000))
}

/// What a failed write means for its reservation.
#[derive(Debug, PartialEq, Eq)]
enum WriteOutcome {
    /// The Node is gone.
    Gone,
    /// The server refused this write after looking at the Node (write-once,
    /// UID test, admission): it did not land, but the Node may hold
    /// something else now.
    Refused,
    /// Refused before it was processed (authn/authz, bad request, throttled).
    NotApplied,
    /// No answer, or a server error: it may or may not have landed.
    Unknown,
}

fn write_outcome(e: &kube::Error) -> WriteOutcome {
    match e {
        kube::Error::Api(s) => match s.code {
            404 => WriteOutcome::Gone,
            409 | 422 => WriteOutcome::Refused,
            403 if s.reason == "Invalid" => WriteOutcome::Refused,
            400 | 401 | 403 | 429 => WriteOutcome::NotApplied,
            _ => WriteOutcome::Unknown,
        },
        _ => WriteOutcome::Unknown,
    }
}

/// The server's message of an API error, or the error's text.
pub fn error_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => other.to_string(),
    }
}

/// A short, stable name of an error, used as the metric label.
pub fn error_reason(e: &kube::Error) -> &'static str {
    match e {
        kube::Error::Api(s) => match s.code {
            400 => "BadRequest",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "NotFound",
            409 => "Conflict",
            422 => "Invalid",
            429 => "TooManyRequests",
            500..=599 => "ServerError",
            _ => "ApiError",
        },
        kube::Error::HyperError(_) | kube::Error::Service(_) => "Transport",
        kube::Error::SerdeError(_) => "Decode",
        _ => "Other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_definite_refusals_free_a_reservation() {
        let api = |code: u16, reason: &str| {
            kube::Error::Api(
                kube::core::Status::failure("x", reason)
                    .with_code(code)
                    .boxed(),
            )
        };
        assert_eq!(write_outcome(&api(404, "NotFound")), WriteOutcome::Gone);
        assert_eq!(write_outcome(&api(422, "Invalid")), WriteOutcome::Refused);
        assert_eq!(
            write_outcome(&api(403, "Forbidden")),
            WriteOutcome::NotApplied
        );
        assert_eq!(
            write_outcome(&api(429, "TooManyRequests")),
            WriteOutcome::NotApplied
        );
        assert_eq!(
            write_outcome(&api(500, "InternalError")),
            WriteOutcome::Unknown
        );
        assert_eq!(write_outcome(&api(504, "Timeout")), WriteOutcome::Unknown);
        assert_eq!(
            write_outcome(&kube::Error::Service("reset".into())),
            WriteOutcome::Unknown
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(1), Duration::from_millis(200));
        assert!(backoff(3) > backoff(2));
        assert_eq!(backoff(40), Duration::from_secs(30));
    }
}
