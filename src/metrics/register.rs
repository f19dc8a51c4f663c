//! The registry's entries: every metric's name and help text, in groups
//! (allocations, per-pool gauges, operations, serving /metrics).

use prometheus_client::registry::Registry;

use super::Metrics;

impl Metrics {
    /// Allocations, releases and their latency.
    pub(super) fn register_allocations(&self, r: &mut Registry) {
        r.register(
            "allocations",
            "Node prefixes written, per pool",
            self.allocations.clone(),
        );
        r.register(
            "releases",
            "Node prefixes freed because their Node is gone, per pool",
            self.releases.clone(),
        );
        r.register_with_unit(
            "allocation_latency",
            "Time from a Node first seen without podCIDRs to podCIDRs written",
            prometheus_client::registry::Unit::Seconds,
            self.allocation_latency.clone(),
        );
    }

    /// The per-pool gauges (set from each pool's view).
    pub(super) fn register_pools(&self, r: &mut Registry) {
        r.register(
            "pool_capacity",
            "Node prefixes a pool holds in all",
            self.capacity.clone(),
        );
        r.register(
            "pool_allocated",
            "Node prefixes allocated from a pool",
            self.allocated.clone(),
        );
        r.register(
            "pool_available",
            "Node prefixes still free in a pool",
            self.available.clone(),
        );
        r.register(
            "pool_exhausted",
            "1 when a pool has no free prefix or Nodes wait on it",
            self.exhausted.clone(),
        );
        r.register(
            "pool_conflicts",
            "Colliding Node prefixes and overlapping pools seen in a pool",
            self.conflicts.clone(),
        );
        r.register(
            "pool_waiting_nodes",
            "Nodes waiting for space in a pool",
            self.waiting.clone(),
        );
        r.register(
            "pool_unroutable_nodes",
            "Allocated Nodes without an InternalIP of the pool's family to route to",
            self.unroutable.clone(),
        );
        r.register(
            "pool_held_back_prefixes",
            "Prefixes of deleted Nodes retained or cooling down before reuse",
            self.held_back.clone(),
        );
        r.register(
            "pool_claimed_prefixes",
            "Prefixes of the pool held by PrefixClaims",
            self.claimed.clone(),
        );
        r.register(
            "pool_renumbering_nodes",
            "Nodes of a delegated pool on a delegated prefix whose valid lifetime has ended",
            self.renumbering.clone(),
        );
    }

    /// API calls, writes, Events and leadership.
    pub(super) fn register_operations(&self, r: &mut Registry) {
        r.register(
            "reconcile_errors",
            "Failed API calls, by reason",
            self.reconcile_errors.clone(),
        );
        r.register_with_unit(
            "loop_turn",
            "Time the reconciler's loop spends on one input and the planning after it, without yielding, by what woke it",
            prometheus_client::registry::Unit::Seconds,
            self.loop_turns.clone(),
        );
        r.register_with_unit(
            "input_wait",
            "Time from a watch event decoded to the reconciler's loop taking it, by kind",
            prometheus_client::registry::Unit::Seconds,
            self.input_waits.clone(),
        );
        r.register(
            "status_writes",
            "PrefixPool status writes",
            self.status_writes.clone(),
        );
        r.register(
            "status_write_errors",
            "PrefixPool status writes that failed (retried at the next interval)",
            self.status_write_errors.clone(),
        );
        r.register(
            "node_writes",
            "Node podCIDRs writes attempted",
            self.node_writes.clone(),
        );
        r.register(
            "claim_requests",
            "Requests sent for PrefixClaims (binds, finalizers, statuses, ServiceCIDRs)",
            self.claim_requests.clone(),
        );
        r.register(
            "service_writes",
            "LoadBalancer Service status writes attempted",
            self.service_writes.clone(),
        );
        r.register(
            "claim_addresses",
            "Usable LoadBalancer addresses of a PrefixClaim",
            self.claim_addresses.clone(),
        );
        r.register(
            "claim_addresses_allocated",
            "LoadBalancer addresses of a PrefixClaim held by Services",
            self.claim_addresses_allocated.clone(),
        );
        r.register(
            "claims_bound",
            "PrefixClaims bound to a prefix",
            self.claims_bound.clone(),
        );
        r.register(
            "events_dropped",
            "Events not published because the queue was full",
            self.events_dropped.clone(),
        );
        r.register(
            "leader",
            "1 while this replica holds the leader Lease",
            self.leader.clone(),
        );
        r.register(
            "node_writes_in_flight",
            "Node podCIDRs writes sent and not yet answered (at most --max-concurrent-writes)",
            self.writes_in_flight.clone(),
        );
        r.register(
            "queued_nodes",
            "Nodes waiting for a write slot",
            self.queued_nodes.clone(),
        );
    }

    /// What serving /metrics itself counts.
    pub(super) fn register_serving(&self, r: &mut Registry) {
        r.register(
            "metrics_requests_refused",
            "Requests for /metrics over HTTPS refused: 401 without a valid bearer token, 403 not allowed to get /metrics, 500 the review failed",
            self.metrics_refused.clone(),
        );
    }
}
