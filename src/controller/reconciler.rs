//! The reconciler's state and its event loop: a short dispatch over what
//! arrived (a watch event, a write's or read's answer, a pool check, a due
//! retry, a leadership change, the status tick), then planning whatever may
//! be written now.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{Api, Client};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinError, JoinSet};
use tokio_util::task::AbortOnDropHandle;
use tracing::{info, warn};

use super::claims::Claims;
use super::events::EventSink;
use super::pipeline::Pipeline;
use super::pool_input::PoolCheck;
use super::services::Services;
use super::status::Due;
use super::status_writer::StatusWriter;
use super::warned::Warned;
use super::writes::{ReadBack, WriteResult};
use super::{Health, Settings};
use crate::api::PrefixPool;
use crate::k8s::claims::WatchedClaim;
use crate::k8s::errors::{backoff, error_message, error_reason};
use crate::k8s::list_watch::{self, Watched};
use crate::k8s::nodes::NodeLite;
use crate::k8s::pools::WatchedPool;
use crate::k8s::services::ServiceLite;
use crate::ledger::Ledger;
use crate::metrics::Metrics;
use k8s_openapi::api::networking::v1::{IPAddress, ServiceCIDR};

// Inputs live for one loop turn; boxing the larger variant buys nothing.
#[allow(clippy::large_enum_variant)]
pub(super) enum Input {
    Node(Watched<NodeLite>),
    Pool(Watched<WatchedPool>),
    Claim(Watched<WatchedClaim>),
    ServiceCidr(Watched<ServiceCIDR>),
    Address(Watched<IPAddress>),
    Service(Watched<ServiceLite>),
}

impl Input {
    fn kind(&self) -> &'static str {
        match self {
            Input::Node(_) => "node_event",
            Input::Pool(_) => "pool_event",
            Input::Claim(_) => "claim_event",
            Input::ServiceCidr(_) => "service_cidr_event",
            Input::Address(_) => "ip_address_event",
            Input::Service(_) => "service_event",
        }
    }
}

/// What woke the loop for one turn.
#[allow(clippy::large_enum_variant)]
enum Woke {
    Write(Result<WriteResult, JoinError>),
    ReadBack(Result<ReadBack, JoinError>),
    PoolCheck(Result<PoolCheck, JoinError>),
    NodeList(Result<NodeList, JoinError>),
    Claim(Result<super::claims::Done, JoinError>),
    ClaimList(Result<super::claims::ClaimList, JoinError>),
    Service(Result<super::services::Done, JoinError>),
    ServiceList(Result<super::services::ServiceList, JoinError>),
    Input(Input),
    Retry(String),
    StatusWritten(Result<(Due, Result<PrefixPool, kube::Error>), JoinError>),
    Leadership(bool),
    Tick,
    Timer,
}

impl Woke {
    /// The `kind` label of `prefix_operator_loop_turn_seconds`.
    fn kind(&self) -> &'static str {
        match self {
            Woke::Write(_) => "write_answer",
            Woke::ReadBack(_) => "read_back",
            Woke::PoolCheck(_) => "pool_check",
            Woke::NodeList(_) => "node_relist",
            Woke::Claim(_) => "claim_answer",
            Woke::ClaimList(_) => "claim_relist",
            Woke::Service(_) => "service_answer",
            Woke::ServiceList(_) => "service_relist",
            Woke::Input(i) => i.kind(),
            Woke::Retry(_) => "retry",
            Woke::StatusWritten(_) => "status_written",
            Woke::Leadership(_) => "leadership",
            Woke::Tick => "status_tick",
            Woke::Timer => "timer",
        }
    }
}

/// A re-list of every Node (after leadership was gained).
pub(super) type NodeList = Result<(Vec<NodeLite>, Option<String>), kube::Error>;

/// The reconciler's state, owned by one task.
pub(super) struct Reconciler {
    pub(super) settings: Settings,
    pub(super) nodes_api: Api<NodeLite>,
    pub(super) pools_api: Api<PrefixPool>,
    pub(super) guarded_pools: Api<WatchedPool>,
    pub(super) ledger: Ledger,
    pub(super) metrics: Arc<Metrics>,
    pub(super) health: Arc<Health>,
    pub(super) events: EventSink,
    /// True while no Node write is queued or in flight: allocation Events
    /// are published only then.
    idle: watch::Sender<bool>,
    pub(super) pipeline: Pipeline,
    pub(super) warned: Warned,
    /// Nodes warned about a podCIDR in an expired delegated prefix.
    pub(super) renumber_warned: std::collections::HashSet<(String, ipnet::IpNet)>,
    pub(super) status: StatusWriter,
    pub(super) writes: JoinSet<WriteResult>,
    pub(super) reads: JoinSet<ReadBack>,
    pub(super) pool_checks: JoinSet<PoolCheck>,
    status_writes: JoinSet<(Due, Result<PrefixPool, kube::Error>)>,
    pub(super) node_lists: JoinSet<NodeList>,
    pub(super) claims: Claims,
    pub(super) services: Services,
    pub(super) nodes_synced: bool,
    pub(super) pools_synced: bool,
    leader: watch::Receiver<bool>,
    was_leader: bool,
    /// Set when leadership was just gained: re-list before the first write.
    pub(super) needs_resync: bool,
    /// Re-lists of Nodes failed in a row, and when the next may be sent.
    pub(super) resync_failures: u32,
    pub(super) resync_at: Option<Instant>,
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
    let guarded_pools: Api<WatchedPool> = Api::all(client.clone());
    let claims = Claims::new(&client);
    let services = Services::new(&client, settings.load_balancer.clone());
    // Our own list-watches: they hand out each list with its
    // resourceVersion, which the merge needs (see `list_watch`). Aborted
    // when the reconciler returns.
    let (_nodes, nodes_in) = watch_input(nodes_api.clone(), "Nodes", 1024, Input::Node);
    let (_pools, pools_in) = watch_input(guarded_pools.clone(), "PrefixPools", 64, Input::Pool);
    let (_claims, claims_in) =
        watch_input(Api::all(client.clone()), "PrefixClaims", 64, Input::Claim);
    let (_cidrs, cidrs_in) = watch_input(
        claims.service_cidrs_api(),
        "ServiceCIDRs",
        64,
        Input::ServiceCidr,
    );
    let (_addrs, addrs_in) =
        watch_input(claims.addresses_api(), "IPAddresses", 256, Input::Address);
    let (_svcs, svcs_in) = watch_input(Api::all(client.clone()), "Services", 256, Input::Service);
    let inputs =
        futures::stream::select_all([nodes_in, pools_in, claims_in, cidrs_in, addrs_in, svcs_in]);
    let (idle_tx, idle_rx) = watch::channel(false);
    let was_leader = *leader.borrow();
    let events = EventSink::start(client.clone(), &settings.instance, metrics.clone(), idle_rx);
    let mut r = Reconciler {
        settings,
        nodes_api,
        pools_api: Api::all(client),
        guarded_pools,
        ledger: Ledger::new(),
        metrics,
        health,
        events,
        idle: idle_tx,
        pipeline: Pipeline::default(),
        warned: Warned::default(),
        renumber_warned: Default::default(),
        status: StatusWriter::default(),
        writes: JoinSet::new(),
        reads: JoinSet::new(),
        pool_checks: JoinSet::new(),
        status_writes: JoinSet::new(),
        node_lists: JoinSet::new(),
        claims,
        services,
        nodes_synced: false,
        pools_synced: false,
        was_leader,
        leader,
        needs_resync: false,
        resync_failures: 0,
        resync_at: None,
    };
    if r.was_leader {
        r.ledger.start_leading(SystemTime::now());
    }
    r.main_loop(inputs, shutdown).await
}

impl Reconciler {
    async fn main_loop(
        &mut self,
        inputs: impl Stream<Item = (Instant, Input)>,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        tokio::pin!(inputs);
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(self.settings.status_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut leader = self.leader.clone();
        loop {
            // Both are asked, every turn (`|`, not `||`).
            if self.ledger.set_time(SystemTime::now()) | self.ledger.take_freed() {
                // Held-back prefixes became free: waiting Nodes may fit now.
                self.wake_waiting();
                self.wake_waiting_claims();
                self.status.mark();
            }
            let wake = self.next_wake();
            let woke = tokio::select! {
                biased;
                () = &mut shutdown => {
                    info!("shutting down; waiting for {} write(s) in flight", self.writes.len());
                    while let Some(res) = self.writes.join_next().await {
                        if let Ok(w) = res { self.on_write(w); }
                    }
                    return Ok(());
                }
                Some(res) = self.writes.join_next(), if !self.writes.is_empty() => Woke::Write(res),
                Some(res) = self.reads.join_next(), if !self.reads.is_empty() => Woke::ReadBack(res),
                Some(res) = self.pool_checks.join_next(), if !self.pool_checks.is_empty() => Woke::PoolCheck(res),
                Some(res) = self.node_lists.join_next(), if !self.node_lists.is_empty() => Woke::NodeList(res),
                Some(res) = self.claims.tasks.join_next(), if !self.claims.tasks.is_empty() => Woke::Claim(res),
                Some(res) = self.claims.lists.join_next(), if !self.claims.lists.is_empty() => Woke::ClaimList(res),
                Some(res) = self.services.tasks.join_next(), if !self.services.tasks.is_empty() => Woke::Service(res),
                Some(res) = self.services.lists.join_next(), if !self.services.lists.is_empty() => Woke::ServiceList(res),
                Some((seen, input)) = inputs.next() => {
                    self.metrics.observe_input_wait(input.kind(), seen.elapsed());
                    Woke::Input(input)
                }
                node = self.pipeline.next_retry() => Woke::Retry(node),
                Some(res) = self.status_writes.join_next(), if !self.status_writes.is_empty() => Woke::StatusWritten(res),
                Ok(()) = leader.changed() => Woke::Leadership(*leader.borrow()),
                _ = tick.tick() => Woke::Tick,
                () = tokio::time::sleep(wake) => Woke::Timer,
            };
            // Everything from here to the end of the turn runs without
            // yielding: its length is how long every other input waits.
            let began = Instant::now();
            let kind = woke.kind();
            self.handle(woke);
            self.report_claim_conflicts();
            self.maybe_resync();
            self.maybe_relist_claims();
            self.maybe_relist_services();
            self.dispatch();
            self.dispatch_claims();
            self.dispatch_services();
            self.metrics.writes_in_flight.set(self.writes.len() as i64);
            self.metrics.queued_nodes.set(self.pipeline.queued() as i64);
            let idle = self.pipeline.queue_is_empty() && self.writes.is_empty();
            self.idle
                .send_if_modified(|v| std::mem::replace(v, idle) != idle);
            self.metrics.observe_turn(kind, began.elapsed());
        }
    }

    /// One turn's input, handled.
    fn handle(&mut self, woke: Woke) {
        match woke {
            Woke::Write(Ok(w)) => self.on_write(w),
            Woke::Write(Err(e)) => warn!("write task failed: {e}"),
            Woke::ReadBack(Ok(a)) => self.on_read_back(a),
            Woke::ReadBack(Err(e)) => warn!("read-back task failed: {e}"),
            Woke::PoolCheck(Ok(c)) => self.on_pool_check(c),
            Woke::PoolCheck(Err(e)) => {
                let delay = self.pipeline.check_lost(Instant::now());
                warn!("pool check task failed, checking again in {delay:?}: {e}");
            }
            Woke::NodeList(Ok(l)) => self.on_resync(l),
            Woke::NodeList(Err(e)) => warn!("Node re-list task failed: {e}"),
            Woke::Claim(Ok(d)) => self.on_claim_done(d),
            Woke::Claim(Err(e)) => warn!("claim task failed: {e}"),
            Woke::ClaimList(Ok(l)) => self.on_claim_relist(l),
            Woke::ClaimList(Err(e)) => warn!("claim re-list task failed: {e}"),
            Woke::Service(Ok(d)) => self.on_service_done(d),
            Woke::Service(Err(e)) => warn!("Service task failed: {e}"),
            Woke::ServiceList(Ok(l)) => self.on_service_relist(l),
            Woke::ServiceList(Err(e)) => warn!("Service re-list task failed: {e}"),
            Woke::Input(Input::Node(ev)) => self.on_node_event(ev),
            Woke::Input(Input::Pool(ev)) => self.on_pool_event(ev),
            Woke::Input(Input::Claim(ev)) => self.on_claim_event(ev),
            Woke::Input(Input::ServiceCidr(ev)) => self.on_service_cidr_event(ev),
            Woke::Input(Input::Address(ev)) => self.on_address_event(ev),
            Woke::Input(Input::Service(ev)) => self.on_service_event(ev),
            Woke::Retry(node) => self.pipeline.push(&node),
            Woke::StatusWritten(Ok((due, result))) => self.on_status_written(due, result),
            Woke::StatusWritten(Err(_)) => {}
            Woke::Leadership(leading) => self.on_leadership(leading),
            Woke::Tick => {
                self.flush_status();
                self.publish_claim_gauges();
            }
            Woke::Timer => {}
        }
    }

    /// How long the loop may sleep with nothing arriving: until the next
    /// held-back prefix is free, or a failed pool check or re-list may be
    /// sent again.
    fn next_wake(&self) -> Duration {
        let now = Instant::now();
        let release = self
            .ledger
            .next_release()
            .and_then(|t| t.duration_since(SystemTime::now()).ok())
            .unwrap_or(Duration::from_secs(3600));
        [
            self.pipeline.check_retry_at(),
            self.resync_at,
            self.claims.next_retry(),
            self.services.next_retry(),
        ]
        .into_iter()
        .flatten()
        .map(|t| t.saturating_duration_since(now))
        .fold(release, Duration::min)
            + Duration::from_millis(1)
    }

    fn on_leadership(&mut self, leading: bool) {
        let was = std::mem::replace(&mut self.was_leader, leading);
        if leading != was {
            self.on_claims_leadership(leading);
            if leading {
                self.services.needs_relist = true;
            }
        }
        if leading && !was {
            info!("became leader; re-reading every Node before the first write");
            self.ledger.start_leading(SystemTime::now());
            self.needs_resync = true;
            self.resync_at = None;
            self.status.mark();
        }
        if !leading && was {
            for node in self.pipeline.drop_uncertain() {
                self.ledger.release(&node);
            }
            // Only the leader publishes pool gauges.
            for name in self.ledger.pool_names() {
                self.metrics.forget_pool(&name);
            }
        }
    }

    /// Sends the re-list of Nodes a new leader needs, unless one is in
    /// flight or a failure asks to wait.
    fn maybe_resync(&mut self) {
        let due = self.resync_at.is_none_or(|t| Instant::now() >= t);
        if !self.needs_resync || !self.is_leader() || !self.nodes_synced || !due {
            return;
        }
        if self.node_lists.is_empty() {
            let api = self.nodes_api.clone();
            self.node_lists
                .spawn(async move { list_watch::list_all(&api).await });
        }
    }

    /// A new leader's re-list came back.
    fn on_resync(&mut self, list: NodeList) {
        match list {
            Ok((items, rv)) => {
                self.resync_failures = 0;
                self.resync_at = None;
                if self.needs_resync {
                    self.merge_node_list(
                        items,
                        crate::ledger::parse_resource_version(rv.as_deref()),
                    );
                    self.needs_resync = false;
                }
            }
            Err(e) => {
                self.metrics.error(error_reason(&e));
                self.resync_failures = self.resync_failures.saturating_add(1);
                let delay = backoff(self.resync_failures);
                warn!(
                    "re-listing Nodes failed, retrying in {delay:?}: {}",
                    error_message(&e)
                );
                self.resync_at = Some(Instant::now() + delay);
            }
        }
    }

    pub(super) fn is_leader(&self) -> bool {
        *self.leader.borrow()
            && self
                .settings
                .lease_deadline
                .as_ref()
                .is_none_or(crate::leader::within)
    }

    /// Every Node, pool and claim is known: only then may anything be
    /// written (a claim's prefix is as much a record as a Node's).
    pub(super) fn synced(&self) -> bool {
        // Service addresses too: no prefix is carved before every live
        // ClusterIP is known.
        self.nodes_synced && self.pools_synced && self.claims.synced && self.claims.addresses_synced
    }

    pub(super) fn after_sync(&mut self) {
        use std::sync::atomic::Ordering;
        if self.synced() && !self.health.ready.swap(true, Ordering::SeqCst) {
            info!("initial sync complete; ready");
        }
    }

    /// Writes the status of every pool whose view changed, at most one write
    /// per pool in flight, and publishes the pool gauges.
    fn flush_status(&mut self) {
        if !self.status.is_dirty() || !self.synced() || !self.is_leader() {
            return;
        }
        let now = Time(k8s_openapi::jiff::Timestamp::now());
        let views = self.ledger.pool_views();
        for (name, view) in &views {
            self.metrics.publish_pool(name, view);
            self.warn_renumbering(name, view);
        }
        for due in self.status.due(&views, &now) {
            self.metrics.status_writes.inc();
            let api = self.pools_api.clone();
            self.status_writes.spawn(async move {
                let r = tokio::time::timeout(
                    Duration::from_secs(10),
                    super::status::apply_status(&api, &due),
                )
                .await
                .unwrap_or_else(|_| Err(kube::Error::Service("status write timed out".into())));
                (due, r)
            });
        }
    }

    /// A Warning Event on each Node of a delegated pool whose podCIDR lies
    /// in an expired delegated prefix, once per Node and prefix (the pool's
    /// `Renumbering` condition lists them all).
    fn warn_renumbering(&mut self, pool: &str, view: &crate::ledger::PoolView) {
        for r in &view.on_expired {
            if !self.renumber_warned.insert((r.node.clone(), r.prefix)) {
                continue;
            }
            let until = r
                .valid_until
                .as_ref()
                .map(|t| format!(" at {}", t.0))
                .unwrap_or_default();
            let msg = format!(
                "podCIDR {} lies in {}, delegated to PrefixPool {pool} by DHCPv6, whose valid lifetime ended{until}: that space no longer routes to the cluster. podCIDRs are write-once: drain this Node, delete it and let it register again to get a prefix of the current delegation",
                r.prefix, r.block
            );
            let node = super::node_input::node_ref(&r.node, self.ledger.node_uid(&r.node));
            self.events.send(super::events::Note::warning(
                node,
                "DelegatedPrefixExpired",
                "Renumber",
                msg,
            ));
        }
    }

    fn on_status_written(&mut self, due: Due, result: Result<PrefixPool, kube::Error>) {
        let pool = due.pool.clone();
        match result {
            Ok(stored) => {
                self.status.written(due);
                // The stored object is the latest state of the pool: taking
                // it in keeps the pool checks from finding the ledger behind.
                self.apply_pool(&kube::core::DeserializeGuard(Ok(stored)));
            }
            Err(e) => {
                self.metrics.error(error_reason(&e));
                self.metrics.status_write_errors.inc();
                warn!(%pool, "status write failed: {}", error_message(&e));
                self.status.failed(&pool);
            }
        }
    }
}

/// The receiver as a stream (ends when every sender is gone).
/// A list-watch of `api` (its task aborted when the handle drops) and its
/// events as the loop's inputs, each wrapped by `input`.
fn watch_input<K>(
    api: Api<K>,
    what: &'static str,
    capacity: usize,
    input: fn(Watched<K>) -> Input,
) -> (AbortOnDropHandle<()>, BoxStream<'static, (Instant, Input)>)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    let (tx, rx) = mpsc::channel(capacity);
    let task = AbortOnDropHandle::new(tokio::spawn(list_watch::run(api, what, tx)));
    let events = stream_of(rx).map(move |(t, ev)| (t, input(ev))).boxed();
    (task, events)
}

fn stream_of<T: Send + 'static>(rx: mpsc::Receiver<T>) -> impl Stream<Item = T> + Send + 'static {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|v| (v, rx)) })
}
