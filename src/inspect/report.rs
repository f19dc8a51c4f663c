//! What `status` and `whois` print with `-o json` or `-o yaml`: these
//! structures, field for field (camelCase keys, absent values left out).
//! The text output is made from the same structures.

use serde::{Deserialize, Serialize};

use crate::api::{ConflictEntry, DelegatedPrefix};

/// `prefix-operator status`: every pool, every claim, and who leads.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StatusReport {
    /// Every PrefixPool, by name, each with the claims carved from it.
    pub pools: Vec<PoolReport>,
    /// PrefixClaims no pool holds a prefix for yet (or whose pool is gone).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unbound_claims: Vec<ClaimReport>,
    /// The Lease the operator's replicas elect a leader with.
    pub leader: LeaderReport,
}

/// One PrefixPool, from its spec and the status the operator wrote.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PoolReport {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_prefix_length: Option<i32>,
    /// `spec.prefixes`; for a delegated pool, the prefixes delegated now
    /// (`status.delegation.prefixes`).
    pub prefixes: Vec<String>,
    /// Set for a pool fed by DHCPv6 prefix delegation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegation: Option<DelegationReport>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocated: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used: Option<String>,
    /// Nodes waiting for a prefix, and the first of them by name.
    pub waiting: i64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waiting_nodes: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<ConflictEntry>,
    /// The `Ready` condition: `True`, `False` (with reason and message), or
    /// absent before the operator wrote a status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<Condition>,
    /// The PrefixClaims bound to this pool, by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub claims: Vec<ClaimReport>,
}

/// A condition as `status` shows it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    pub status: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// The DHCPv6 binding of a delegated pool.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct DelegationReport {
    /// `spec.delegation.interface`.
    pub interface: String,
    /// `status.delegation.phase`: `Soliciting`, `Bound`, `Renewing`...;
    /// absent until the operator's leader wrote one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// The delegated prefixes, newest first, with their state and lifetimes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prefixes: Vec<DelegatedPrefix>,
    /// When the binding is renewed (T1), RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_at: Option<String>,
    /// The last problem seen, if any since the last Reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// One PrefixClaim.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ClaimReport {
    pub name: String,
    /// `ServiceCIDR`, `LoadBalancer` or `Static`.
    pub purpose: String,
    /// The pool it was carved from (`status.pool`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// The claimed prefix (`status.prefix`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Its ServiceCIDR (purpose `ServiceCIDR`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_cidr: Option<String>,
    /// The `Ready` condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<Condition>,
    /// Deleted, waiting for its consumer to let go of the prefix.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleting: bool,
}

/// Who leads, from the Lease.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct LeaderReport {
    /// `namespace/name` of the Lease read.
    pub lease: String,
    /// Whether the Lease exists (it does not without leader election).
    pub lease_found: bool,
    /// `spec.holderIdentity`: the pod that leads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holder: Option<String>,
    /// `spec.renewTime`, RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_duration_seconds: Option<i32>,
    /// Not renewed within its duration (by this machine's clock): the
    /// holder is gone and another replica may take over.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub expired: bool,
}

/// `prefix-operator whois`: who holds an address or prefix.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WhoisReport {
    /// The address or prefix asked about, canonical.
    pub query: String,
    /// Whether anything holds it (the exit status is 0 when it does, 1
    /// when nothing does).
    pub found: bool,
    /// Everything holding it or a prefix overlapping it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub holders: Vec<Holder>,
    /// The pools whose space holds it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pools: Vec<PoolSpace>,
    /// It overlaps a pool's reserved range.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reserved: bool,
}

/// One holder; `kind` says which.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "kind")]
pub enum Holder {
    /// A Node's podCIDR.
    Node(NodeHold),
    /// A PrefixClaim's prefix.
    PrefixClaim(ClaimHold),
    /// A ServiceCIDR not made for a PrefixClaim (such as the cluster's own).
    ServiceCIDR(ServiceCidrHold),
    /// A Service's ClusterIP or LoadBalancer address.
    Service(ServiceHold),
}

/// A pool and the one of its prefixes that holds something.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PoolSpace {
    pub pool: String,
    pub prefix: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NodeHold {
    pub node: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// The podCIDR.
    pub prefix: String,
    /// When the operator wrote it (annotation, else the PrefixAllocated Event).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocated_at: Option<String>,
    /// The pools whose space holds the podCIDR.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pools: Vec<PoolSpace>,
    /// The Node's `ipam.prefix-operator.io/pools` annotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pools_annotation: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClaimHold {
    pub claim: String,
    /// The claimed prefix.
    pub prefix: String,
    pub purpose: String,
    /// `status.pool`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// The pools whose space holds the prefix.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pools: Vec<PoolSpace>,
    /// The claim's ServiceCIDR (purpose `ServiceCIDR`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_cidr: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<Condition>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceCidrHold {
    pub service_cidr: String,
    /// The one of its CIDRs that holds the query.
    pub prefix: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceHold {
    /// `namespace/name`.
    pub service: String,
    pub address: String,
    /// `ClusterIP` or `LoadBalancer`.
    pub role: String,
    /// `spec.loadBalancerClass` of a LoadBalancer address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer_class: Option<String>,
    /// The PrefixClaim whose prefix holds the address (a LoadBalancer claim
    /// for a LoadBalancer address, a ServiceCIDR claim for a ClusterIP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_prefix: Option<String>,
    /// The ServiceCIDR a ClusterIP was handed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_cidr: Option<String>,
}
