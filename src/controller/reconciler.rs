//! The loop: it owns the [`Core`] and the three lanes and only routes —
//! each turn, what arrived (a watch event, a lane's answer, a status
//! write's answer, a leadership change, the status tick) goes to its owner,
//! the wake-ups one lane raised for another are handed over, and every
//! lane dispatches what may be written now.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use kube::{Api, Client};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinError;
use tokio_util::task::AbortOnDropHandle;

use super::Health;
use super::Settings;
use super::claims::{self, ClaimLane};
use super::core::{Core, Wake};
use super::events::EventSink;
use super::nodes::{self, NodeLane};
use super::pool_checks::{PoolCheck, PoolChecks};
use super::pool_status::{PoolStatuses, Written};
use super::services::{self, ServiceLane};
use crate::k8s::claims::WatchedClaim;
use crate::k8s::list_watch::{self, Watched};
use crate::k8s::nodes::NodeLite;
use crate::k8s::pools::WatchedPool;
use crate::k8s::services::ServiceLite;
use crate::metrics::Metrics;
use k8s_openapi::api::networking::v1::{IPAddress, ServiceCIDR};

// Inputs live for one loop turn; boxing the larger variant buys nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Input {
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
    Nodes(nodes::Answer),
    Claims(claims::Answer),
    Services(services::Answer),
    PoolCheck(Result<PoolCheck, JoinError>),
    Input(Input),
    StatusWritten(Written),
    Leadership(bool),
    Tick,
    Timer,
}

impl Woke {
    /// The `kind` label of `prefix_operator_loop_turn_seconds`.
    fn kind(&self) -> &'static str {
        match self {
            Woke::Nodes(a) => a.kind(),
            Woke::Claims(a) => a.kind("claim_answer", "claim_relist"),
            Woke::Services(a) => a.kind("service_answer", "service_relist"),
            Woke::PoolCheck(_) => "pool_check",
            Woke::Input(i) => i.kind(),
            Woke::StatusWritten(_) => "status_written",
            Woke::Leadership(_) => "leadership",
            Woke::Tick => "status_tick",
            Woke::Timer => "timer",
        }
    }
}

/// The loop's state, owned by one task.
struct Reconciler {
    core: Core,
    nodes: NodeLane,
    claims: ClaimLane,
    services: ServiceLane,
    /// The checks of the pools the gate asks for.
    checks: PoolChecks,
    statuses: PoolStatuses,
    /// True while no Node write is queued or in flight: allocation Events
    /// are published only then.
    idle: watch::Sender<bool>,
    leader: watch::Receiver<bool>,
    was_leader: bool,
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
    let nodes = NodeLane::new(&client);
    let claims = ClaimLane::new(&client);
    let services = ServiceLane::new(&client, settings.load_balancer.clone());
    let checks = PoolChecks::new(&client);
    // Our own list-watches: they hand out each list with its
    // resourceVersion, which the merge needs (see `list_watch`). Aborted
    // when the reconciler returns.
    let (_nodes, nodes_in) = watch_input(nodes.api(), "Nodes", 1024, Input::Node);
    let (_pools, pools_in) = watch_input(checks.pools_api(), "PrefixPools", 64, Input::Pool);
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
        core: Core::new(settings, metrics, health, events, leader.clone()),
        nodes,
        claims,
        services,
        checks,
        statuses: PoolStatuses::new(&client),
        idle: idle_tx,
        leader,
        was_leader,
    };
    if r.was_leader {
        r.core.ledger.start_leading(SystemTime::now());
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
        let mut tick = tokio::time::interval(self.core.settings.status_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut leader = self.leader.clone();
        loop {
            // Both are asked, every turn (`|`, not `||`).
            if self.core.ledger.set_time(SystemTime::now()) | self.core.ledger.take_freed() {
                // Held-back prefixes became free: whatever waits may fit now.
                self.core.wake.space_freed();
                self.core.status.mark();
            }
            self.hand_over_wakes();
            let wake = self.next_wake();
            let woke = tokio::select! {
                biased;
                () = &mut shutdown => {
                    self.nodes.drain_writes(&mut self.core).await;
                    return Ok(());
                }
                a = self.nodes.answer() => Woke::Nodes(a),
                a = self.claims.answer() => Woke::Claims(a),
                a = self.services.answer() => Woke::Services(a),
                c = self.checks.answer() => Woke::PoolCheck(c),
                Some((seen, input)) = inputs.next() => {
                    self.core.metrics.observe_input_wait(input.kind(), seen.elapsed());
                    Woke::Input(input)
                }
                w = self.statuses.answer() => Woke::StatusWritten(w),
                Ok(()) = leader.changed() => Woke::Leadership(*leader.borrow()),
                _ = tick.tick() => Woke::Tick,
                () = tokio::time::sleep(wake) => Woke::Timer,
            };
            // Everything from here to the end of the turn runs without
            // yielding: its length is how long every other input waits.
            let began = Instant::now();
            let kind = woke.kind();
            self.handle(woke);
            self.dispatch();
            self.core.metrics.observe_turn(kind, began.elapsed());
        }
    }

    /// One turn's input, to its owner.
    fn handle(&mut self, woke: Woke) {
        let core = &mut self.core;
        match woke {
            Woke::Nodes(a) => self.nodes.on_answer(core, a),
            Woke::Claims(a) => self.claims.on_answer(core, a),
            Woke::Services(a) => self.services.on_answer(core, a),
            Woke::PoolCheck(c) => self.checks.on_answer(core, c),
            Woke::Input(Input::Node(ev)) => self.nodes.on_node_event(core, ev),
            Woke::Input(Input::Pool(ev)) => core.on_pool_event(ev),
            Woke::Input(Input::Claim(ev)) => self.claims.on_claim_event(core, ev),
            Woke::Input(Input::ServiceCidr(ev)) => self.claims.on_service_cidr_event(core, ev),
            Woke::Input(Input::Address(ev)) => self.claims.on_address_event(core, ev),
            Woke::Input(Input::Service(ev)) => self.services.on_service_event(core, ev),
            Woke::StatusWritten(w) => self.statuses.on_written(core, w),
            Woke::Leadership(leading) => self.on_leadership(leading),
            Woke::Tick => {
                self.statuses.flush(core);
                self.services.publish_claim_gauges(core);
            }
            Woke::Timer => {}
        }
    }

    /// The end of a turn: wake-ups handed over, re-lists a new leader
    /// needs sent, and whatever may be written now dispatched.
    fn dispatch(&mut self) {
        self.hand_over_wakes();
        let core = &mut self.core;
        self.claims.report_claim_conflicts(core);
        self.nodes.maybe_relist(core);
        self.claims.maybe_relist_claims(core);
        self.services.maybe_relist_services(core);
        self.nodes.dispatch(core);
        self.claims.dispatch_claims(core);
        self.services.dispatch_services(core);
        // Last: the lanes have said whether they wait for the pool gate.
        self.checks.dispatch(core);
        // Dispatching may raise wake-ups too (a claim told to wait): they
        // are handed over at once.
        self.hand_over_wakes();
        self.nodes.publish_gauges(&self.core);
        let idle = self.nodes.idle();
        self.idle
            .send_if_modified(|v| std::mem::replace(v, idle) != idle);
    }

    /// What one lane's work means for the others (see [`Wake`]).
    fn hand_over_wakes(&mut self) {
        loop {
            let wake = std::mem::take(&mut self.core.wake);
            if wake == Wake::default() {
                return;
            }
            let core = &mut self.core;
            if wake.unallocated_nodes {
                self.nodes.enqueue_all_unallocated(core);
            }
            if wake.waiting_nodes {
                self.nodes.wake_waiting(core);
            }
            if wake.waiting_claims {
                self.claims.wake_waiting_claims();
            }
            if wake.pools_checked {
                self.claims.wake_gated_claims();
            }
            if wake.deleting_claims {
                self.claims.wake_deleting_claims(core);
            }
            if wake.waiting_services {
                self.services.wake_waiting_services();
            }
        }
    }

    /// How long the loop may sleep with nothing arriving: until the next
    /// held-back prefix is free, or a lane's retry time comes.
    fn next_wake(&self) -> Duration {
        let now = Instant::now();
        let release = self
            .core
            .ledger
            .next_release()
            .and_then(|t| t.duration_since(SystemTime::now()).ok())
            .unwrap_or(Duration::from_secs(3600));
        [
            self.nodes.next_wake(),
            self.core.gate.retry_at(),
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
        if leading == was {
            return;
        }
        let core = &mut self.core;
        self.nodes.on_leadership(core, leading);
        if leading {
            // Every kind is re-read before the first write.
            core.relist.claims = true;
            core.relist.services = true;
            core.status.mark();
        } else {
            // Only the leader publishes pool gauges.
            for name in core.ledger.pool_names() {
                core.metrics.forget_pool(&name);
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
