//! Prometheus metrics (prometheus-client, OpenMetrics text).
//!
//! Here the metrics, their labels and how the operator sets them;
//! [`register`] names and describes each one in the registry. [`serve`]
//! serves them over HTTPS to callers the API server authorizes
//! ([`review`]), with a certificate from [`tls`].

mod register;
pub mod review;
pub mod serve;
pub mod tls;

use std::sync::atomic::{AtomicI64, AtomicU64};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabel {
    pub pool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ClaimLabel {
    pub claim: String,
}

/// What `build_info` says about the binary.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub version: String,
    /// The Kubernetes API the binary was built for (k8s-openapi feature).
    pub kubernetes_api: String,
}

/// What woke the reconciler's loop for one turn.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

fn turn_histogram() -> Histogram {
    Histogram::new([
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    ])
}

/// The HTTP status a refused request for /metrics got.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CodeLabel {
    pub code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

/// Every metric the operator exports.
pub struct Metrics {
    pub registry: Registry,
    pub allocations: Family<PoolLabel, Counter>,
    pub releases: Family<PoolLabel, Counter>,
    pub allocation_latency: Histogram,
    pub capacity: Family<PoolLabel, Gauge<f64, AtomicU64>>,
    pub allocated: Family<PoolLabel, Gauge<i64, AtomicI64>>,
    pub available: Family<PoolLabel, Gauge<f64, AtomicU64>>,
    pub exhausted: Family<PoolLabel, Gauge<i64, AtomicI64>>,
    pub conflicts: Family<PoolLabel, Gauge<i64, AtomicI64>>,
    pub waiting: Family<PoolLabel, Gauge<i64, AtomicI64>>,
    pub unroutable: Family<PoolLabel, Gauge<i64, AtomicI64>>,
    pub held_back: Family<PoolLabel, Gauge<i64, AtomicI64>>,
    pub claimed: Family<PoolLabel, Gauge<i64, AtomicI64>>,
    pub renumbering: Family<PoolLabel, Gauge<i64, AtomicI64>>,
    pub reconcile_errors: Family<ReasonLabel, Counter>,
    pub status_writes: Counter,
    pub status_write_errors: Counter,
    pub node_writes: Counter,
    pub claim_requests: Counter,
    pub service_writes: Counter,
    pub claim_addresses: Family<ClaimLabel, Gauge<f64, AtomicU64>>,
    pub claim_addresses_allocated: Family<ClaimLabel, Gauge<i64, AtomicI64>>,
    pub claims_bound: Counter,
    pub events_dropped: Counter,
    pub leader: Gauge<i64, AtomicI64>,
    pub writes_in_flight: Gauge<i64, AtomicI64>,
    pub queued_nodes: Gauge<i64, AtomicI64>,
    pub loop_turns: Family<KindLabel, Histogram, fn() -> Histogram>,
    pub input_waits: Family<KindLabel, Histogram, fn() -> Histogram>,
    pub metrics_refused: Family<CodeLabel, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        // The operator's own metrics are prefixed; the standard process_*
        // ones are not.
        let mut root = Registry::default();
        root.register_collector(Box::new(crate::process_metrics::ProcessCollector));
        let registry = root.sub_registry_with_prefix("prefix_operator");
        let m = Metrics {
            allocations: Family::default(),
            releases: Family::default(),
            allocation_latency: Histogram::new([
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            capacity: Family::default(),
            allocated: Family::default(),
            available: Family::default(),
            exhausted: Family::default(),
            conflicts: Family::default(),
            waiting: Family::default(),
            unroutable: Family::default(),
            held_back: Family::default(),
            claimed: Family::default(),
            renumbering: Family::default(),
            reconcile_errors: Family::default(),
            status_writes: Counter::default(),
            status_write_errors: Counter::default(),
            node_writes: Counter::default(),
            claim_requests: Counter::default(),
            service_writes: Counter::default(),
            claim_addresses: Family::default(),
            claim_addresses_allocated: Family::default(),
            claims_bound: Counter::default(),
            events_dropped: Counter::default(),
            leader: Gauge::default(),
            writes_in_flight: Gauge::default(),
            queued_nodes: Gauge::default(),
            loop_turns: Family::new_with_constructor(turn_histogram),
            input_waits: Family::new_with_constructor(turn_histogram),
            metrics_refused: Family::default(),
            registry: Registry::default(),
        };
        m.register_allocations(registry);
        m.register_pools(registry);
        m.register_operations(registry);
        m.register_serving(registry);
        let build: Family<BuildLabels, Gauge<i64, AtomicI64>> = Family::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").into(),
                kubernetes_api: "1.33".into(),
            })
            .set(1);
        registry.register(
            "build_info",
            "Always 1; the labels describe the binary",
            build,
        );
        Metrics {
            registry: root,
            ..m
        }
    }

    /// One turn of the reconciler's loop, woken by `kind`.
    pub fn observe_turn(&self, kind: &'static str, took: std::time::Duration) {
        self.loop_turns
            .get_or_create(&KindLabel { kind })
            .observe(took.as_secs_f64());
    }

    /// A watch event that waited `took` for the loop.
    pub fn observe_input_wait(&self, kind: &'static str, took: std::time::Duration) {
        self.input_waits
            .get_or_create(&KindLabel { kind })
            .observe(took.as_secs_f64());
    }

    /// A request for /metrics refused with HTTP status `code`.
    pub fn refused(&self, code: u16) {
        let code = match code {
            401 => "401",
            403 => "403",
            _ => "500",
        };
        self.metrics_refused
            .get_or_create(&CodeLabel { code })
            .inc();
    }

    pub fn error(&self, reason: &str) {
        self.reconcile_errors
            .get_or_create(&ReasonLabel {
                reason: reason.to_string(),
            })
            .inc();
    }

    pub fn pool(&self, pool: &str) -> PoolLabel {
        PoolLabel {
            pool: pool.to_string(),
        }
    }

    /// Removes the per-pool gauges of a pool that is gone (or that this
    /// replica no longer reports on): a stale series would go on claiming
    /// capacity and allocations. Counters stay, as Prometheus expects.
    pub fn forget_pool(&self, pool: &str) {
        let l = self.pool(pool);
        self.capacity.remove(&l);
        self.allocated.remove(&l);
        self.available.remove(&l);
        self.exhausted.remove(&l);
        self.conflicts.remove(&l);
        self.waiting.remove(&l);
        self.unroutable.remove(&l);
        self.held_back.remove(&l);
        self.claimed.remove(&l);
        self.renumbering.remove(&l);
    }

    /// Sets the address gauges of LoadBalancer claim `claim`.
    pub fn publish_claim(&self, claim: &str, usable: u128, held: u64) {
        let l = ClaimLabel {
            claim: claim.to_string(),
        };
        self.claim_addresses.get_or_create(&l).set(usable as f64);
        self.claim_addresses_allocated
            .get_or_create(&l)
            .set(i64::try_from(held).unwrap_or(i64::MAX));
    }

    /// Sets the gauges of pool `name` from its view.
    pub fn publish_pool(&self, name: &str, v: &crate::ledger::PoolView) {
        let l = self.pool(name);
        self.capacity.get_or_create(&l).set(v.capacity as f64);
        self.available.get_or_create(&l).set(v.available as f64);
        self.allocated
            .get_or_create(&l)
            .set(v.allocations.len() as i64);
        self.waiting.get_or_create(&l).set(v.waiting as i64);
        self.unroutable.get_or_create(&l).set(v.unroutable as i64);
        self.held_back
            .get_or_create(&l)
            .set(v.held_back.len() as i64);
        self.claimed.get_or_create(&l).set(v.claims.len() as i64);
        self.renumbering
            .get_or_create(&l)
            .set(v.on_expired.len() as i64);
        self.exhausted.get_or_create(&l).set(i64::from(
            v.error.is_none() && (v.available == 0 || v.waiting > 0),
        ));
        self.conflicts
            .get_or_create(&l)
            .set((v.conflicts.len() + v.overlapping_pools.len()) as i64);
    }

    /// OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut s = String::new();
        if prometheus_client::encoding::text::encode(&mut s, &self.registry).is_err() {
            s.clear();
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_prometheus_conventions() {
        let m = Metrics::new();
        m.allocations.get_or_create(&m.pool("p")).inc();
        m.allocation_latency.observe(0.02);
        m.error("Conflict");
        let text = m.encode();
        assert!(
            text.contains("prefix_operator_allocations_total{pool=\"p\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("prefix_operator_allocation_latency_seconds_bucket"),
            "{text}"
        );
        assert!(
            text.contains("prefix_operator_reconcile_errors_total{reason=\"Conflict\"} 1"),
            "{text}"
        );
        let build = format!(
            "prefix_operator_build_info{{version=\"{}\",kubernetes_api=\"1.33\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        assert!(text.contains(&build), "{text}");
    }

    #[test]
    fn a_forgotten_pool_exports_no_gauges() {
        let m = Metrics::new();
        m.available.get_or_create(&m.pool("gone")).set(5.0);
        m.available.get_or_create(&m.pool("kept")).set(7.0);
        m.forget_pool("gone");
        let text = m.encode();
        assert!(!text.contains("pool=\"gone\""), "{text}");
        assert!(text.contains("pool_available{pool=\"kept\"}"), "{text}");
    }
}
