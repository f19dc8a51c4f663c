//! The status the operator writes on a `PrefixPool`: usage, allocations,
//! conflicts, held-back prefixes, claims, and the DHCPv6 binding of a
//! delegated pool.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use serde::{Deserialize, Serialize};

/// One prefix a server delegated to the pool, and how far through its
/// lifetimes it is.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DelegatedPrefix {
    /// The delegated prefix, canonical.
    pub prefix: String,
    /// `Preferred`: new node prefixes come from it. `Deprecated`: its
    /// preferred lifetime ended (or the server replaced it); Nodes keep
    /// theirs, no new ones. `Expired`: its valid lifetime ended; Nodes still
    /// on it are listed in the `Renumbering` condition.
    pub state: String,
    /// End of the preferred lifetime; absent for infinite.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred_until: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    /// End of the valid lifetime; absent for infinite.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_until: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
}

/// The pool's DHCPv6 binding, written by the operator's leader and read
/// back by the next one, so it renews the same binding.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DelegationStatus {
    /// The DUID the pool presents (DUID-UUID from its UID), hex.
    #[serde(default)]
    pub duid: String,
    /// The IAID of its IA_PD.
    #[serde(default)]
    pub iaid: i64,
    /// `Soliciting`, `Requesting`, `Bound`, `Renewing`, `Rebinding`,
    /// `Releasing` or `Released`.
    #[serde(default)]
    pub phase: String,
    /// The server's DUID (its Server Identifier), hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_id: Option<String>,
    /// Delegated prefixes, newest first; expired ones are kept while the
    /// pool reports Nodes on them (at most 16 listed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prefixes: Vec<DelegatedPrefix>,
    /// T1: when the binding is renewed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renew_at: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    /// T2: when it is rebound with any server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rebind_at: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    /// The last Reply the server sent that the operator accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reply: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    /// The last problem seen (a status code from the server, a refused
    /// prefix, a socket error), if any since the last Reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// `DelegatedPrefix::state` of a prefix new node prefixes come from.
pub const DELEGATED_PREFERRED: &str = "Preferred";
/// Its preferred lifetime ended, or the server replaced it.
pub const DELEGATED_DEPRECATED: &str = "Deprecated";
/// Its valid lifetime ended.
pub const DELEGATED_EXPIRED: &str = "Expired";

/// At most this many delegated prefixes are listed in a pool's status.
pub const MAX_LISTED_DELEGATED: usize = 16;

/// One node prefix held by a Node.
#[derive(
    Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub struct Allocation {
    /// The node prefix, canonical.
    pub prefix: String,
    /// The Node holding it.
    pub node: String,
}

/// A Node whose podCIDRs, or a PrefixClaim whose prefix, collide with
/// another Node, a claim, a reserved range or a Service address.
#[derive(
    Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, schemars::JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub struct ConflictEntry {
    /// The Node's prefix as written on the Node, or the claim's.
    pub prefix: String,
    /// The Node (absent for a claim's conflict).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node: String,
    /// The PrefixClaim, for a claim's conflict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim: Option<String>,
    /// What it collides with.
    pub reason: String,
}

/// A prefix freed by a deleted Node and not yet handed out again, or kept
/// from other Nodes while a write of it with an unknown outcome may still
/// land (`pendingWrite`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HeldBack {
    /// The prefix.
    pub prefix: String,
    /// The deleted Node that held it (or the Node a pending write was for).
    pub node: String,
    /// Held for a write to `node` whose outcome is unknown, not for a
    /// deleted Node: it ends once that Node holds prefixes (podCIDRs are
    /// write-once, so the write can no longer land) or at `reusableAt`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pending_write: bool,
    /// Until then only a Node of the same name gets it back (`retainFor`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retained_until: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    /// From then on any Node may get it (`reuseAfter`, at least `retainFor`).
    pub reusable_at: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time,
}

/// A prefix of the pool held by a PrefixClaim.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClaimedPrefix {
    pub prefix: String,
    /// The PrefixClaim.
    pub claim: String,
    /// Its purpose.
    pub purpose: String,
}

/// Usage of one of the pool's prefixes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrefixUsage {
    /// The prefix.
    pub prefix: String,
    /// Node prefixes it holds in all, as a decimal string (may exceed 2^63).
    pub capacity: String,
    /// Node prefixes carved from it and held by Nodes.
    pub allocated: i64,
    /// True when the prefix was removed from spec but Nodes still hold
    /// prefixes carved from it; it gives no new ones.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retired: bool,
}

/// What the operator observed and allocated; a view of the Nodes.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PrefixPoolStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `IPv6` or `IPv4`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
    /// `GlobalUnicast` (2000::/3), `UniqueLocal` (fc00::/7), `Private`,
    /// `Shared`, `Public` or `Other`; `Mixed` when prefixes differ.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The node prefix length in effect (the default when spec leaves it out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_prefix_length: Option<i32>,
    /// Node prefixes the pool holds in all (decimal string: it can exceed
    /// 2^63, e.g. 2^44 for a /20 split into /64s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity: Option<String>,
    /// Node prefixes held by Nodes and carved from this pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocated: Option<i64>,
    /// Node prefixes still free (capacity minus allocated, reserved and
    /// otherwise blocked space), decimal string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available: Option<String>,
    /// The share of the capacity that is not free, as a percentage
    /// (`"0%"`, `"<0.1%"`, `"37.5%"`, `"100%"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used: Option<String>,
    /// Per-prefix usage, including retired prefixes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prefixes: Vec<PrefixUsage>,
    /// Allocations sorted by prefix; at most 256 are listed, the rest are
    /// counted in `allocationsOmitted`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allocations: Vec<Allocation>,
    /// Allocations not listed in `allocations` because of the size bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allocations_omitted: Option<i64>,
    /// Nodes whose podCIDRs collide inside this pool; at most 50 listed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conflicts: Vec<ConflictEntry>,
    /// Prefixes of deleted Nodes kept back (retained or cooling down),
    /// sorted by prefix; at most 1000 listed. These records let the
    /// retention and the reuse delay survive an operator restart; an entry
    /// lost to the bound can only mean an earlier reuse, never an overlap.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held_back: Vec<HeldBack>,
    /// Prefixes kept for a Node of the same name (`retainFor`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retained: Option<i64>,
    /// Prefixes cooling down before reuse (`reuseAfter`), retained ones included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooling_down: Option<i64>,
    /// When the last cooling prefix becomes free.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooling_until: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>,
    /// Allocated Nodes without an InternalIP of the pool's family: an
    /// upstream router has no next hop for their prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unroutable: Option<i64>,
    /// Prefixes of this pool held by PrefixClaims.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claimed: Option<i64>,
    /// The claims, sorted by prefix; at most 256 listed, the rest counted
    /// in `claimsOmitted`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub claims: Vec<ClaimedPrefix>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claims_omitted: Option<i64>,
    /// Nodes selected by the pool still waiting for a prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<i64>,
    /// The first of them by name; at most 50 are listed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub waiting_nodes: Vec<String>,
    /// Nodes of a delegated pool whose podCIDRs lie in a delegated prefix
    /// whose valid lifetime has ended: that space no longer routes to the
    /// cluster, and podCIDRs are write-once, so each must be drained and
    /// re-created to get a prefix of the current delegation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub renumbering: Option<i64>,
    /// The first of them by name; at most 50 are listed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub renumbering_nodes: Vec<String>,
    /// The DHCPv6 binding of a pool with `spec.delegation` (written by the
    /// operator's DHCPv6 client under its own field manager).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegation: Option<DelegationStatus>,
    /// `Ready`, `Exhausted` and `Conflict`; for a delegated pool also
    /// `Delegated` and `Renumbering`. A map keyed by `type`, so
    /// server-side apply can own one condition.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}
