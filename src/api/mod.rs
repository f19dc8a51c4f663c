//! The `PrefixPool` and `PrefixClaim` API (`ipam.prefix-operator.io/v1alpha1`):
//! types, defaults and the admission rules (OpenAPI schema + CEL) generated
//! into the CRDs. No I/O here.

// kube's printcolumn(...) entries repeat `type_ = "string"`, which clippy
// mistakes for duplicated attributes.
#![allow(clippy::duplicated_attributes)]

mod claim;
mod validate;

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::duration;

pub use claim::{
    CLAIM_FINALIZER, CLAIM_LABEL, ClaimDefinition, IpFamily, MAX_SERVICE_CIDR_LENGTH_V4,
    MAX_SERVICE_CIDR_LENGTH_V6, MIN_SERVICE_CIDR_LENGTH_V6, PoolChoice, PrefixClaim,
    PrefixClaimSpec, PrefixClaimStatus, Purpose, validate_claim,
};
pub use validate::{PoolDefinition, SpecError, validate_pool, validate_spec};

/// The API group as a literal, for `concat!`: every name this project puts
/// on objects (annotations, labels, finalizers, the LoadBalancer class)
/// derives from it. (The `#[kube(group = ...)]` attributes of the two kinds
/// need a literal of their own; `tests` in this module checks them.)
#[macro_export]
macro_rules! api_group {
    () => {
        "ipam.prefix-operator.io"
    };
}

/// API group of every prefix-operator resource.
pub const GROUP: &str = api_group!();

/// `apiVersion` of every prefix-operator resource.
pub const API_VERSION: &str = concat!(api_group!(), "/v1alpha1");

/// Default `nodePrefixLength` for IPv6 pools: one /64 per node.
pub const DEFAULT_NODE_PREFIX_LENGTH_V6: u8 = 64;
/// Default `nodePrefixLength` for IPv4 pools: one /24 per node.
pub const DEFAULT_NODE_PREFIX_LENGTH_V4: u8 = 24;

/// At most this many prefixes per pool (keeps CEL cost bounded).
pub const MAX_PREFIXES: usize = 64;
/// At most this many reserved ranges per pool.
pub const MAX_RESERVED: usize = 256;
/// At most this many allocations are listed in a pool's status; the rest are
/// counted in `status.allocationsOmitted`. Every status write is a
/// server-side apply of the whole status, so the list is kept short: with
/// node names of at most 253 characters the status stays below 400 KiB,
/// about 15 KiB with typical names.
pub const MAX_LISTED_ALLOCATIONS: usize = 256;
/// At most this many conflicts are listed in a pool's status.
pub const MAX_LISTED_CONFLICTS: usize = 50;
/// At most this many held-back prefixes are recorded in a pool's status.
pub const MAX_LISTED_HELD_BACK: usize = 1000;
/// At most this many PrefixClaims are listed in a pool's status.
pub const MAX_LISTED_CLAIMS: usize = 256;

const CIDR_MSG: &str = "must be a CIDR such as 2001:db8:1::/48 or 10.64.0.0/16";
const CANONICAL_MSG: &str = "must be in canonical form: host bits clear, lower-case, zeros compressed (for example 2001:db8:1::/48, not 2001:DB8:1::1/48)";

/// A PrefixPool names delegated address blocks and how they are carved into
/// per-node pod prefixes. The operator writes one prefix from the best
/// matching pool of each address family into every selected Node's
/// `spec.podCIDR` and `spec.podCIDRs`.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "ipam.prefix-operator.io",
    version = "v1alpha1",
    kind = "PrefixPool",
    plural = "prefixpools",
    shortname = "ppool",
    status = "PrefixPoolStatus",
    doc = "PrefixPool: delegated address blocks carved into per-node pod prefixes",
    printcolumn(
        name = "Prefixes",
        type_ = "string",
        json_path = ".spec.prefixes",
        description = "Delegated blocks"
    ),
    printcolumn(
        name = "Delegated",
        type_ = "string",
        json_path = ".status.delegation.prefixes[?(@.state==\"Preferred\")].prefix",
        description = "Prefixes delegated by DHCPv6 and still preferred"
    ),
    printcolumn(
        name = "Family",
        type_ = "string",
        json_path = ".status.family",
        description = "Address family"
    ),
    printcolumn(
        name = "Scope",
        type_ = "string",
        json_path = ".status.scope",
        description = "GlobalUnicast, UniqueLocal, Private, ..."
    ),
    printcolumn(
        name = "Node-Len",
        type_ = "integer",
        json_path = ".status.nodePrefixLength",
        description = "Prefix length carved per node"
    ),
    printcolumn(
        name = "Allocated",
        type_ = "integer",
        json_path = ".status.allocated",
        description = "Node prefixes allocated"
    ),
    printcolumn(
        name = "Available",
        type_ = "string",
        json_path = ".status.available",
        description = "Node prefixes still free"
    ),
    printcolumn(
        name = "Claimed",
        type_ = "integer",
        json_path = ".status.claimed",
        description = "Prefixes held by PrefixClaims"
    ),
    printcolumn(
        name = "Used",
        type_ = "string",
        json_path = ".status.used",
        description = "Share of the capacity not free (allocated, reserved, held back)"
    ),
    printcolumn(
        name = "Capacity",
        type_ = "string",
        json_path = ".status.capacity",
        description = "Node prefixes the pool holds in all",
        priority = "1"
    ),
    printcolumn(
        name = "Waiting",
        type_ = "integer",
        json_path = ".status.waiting",
        description = "Selected Nodes waiting for space",
        priority = "1"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Ready condition"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(
    "self.prefixes.all(p, !isCIDR(p) || cidr(p).ip().family() == cidr(self.prefixes[0]).ip().family() || !isCIDR(self.prefixes[0]))"
).message("all prefixes of a pool must be of one address family; make one pool per family").field_path(".prefixes"))]
#[x_kube(validation = Rule::new(
    "self.prefixes.all(p, !isCIDR(p) || (has(self.nodePrefixLength) ? self.nodePrefixLength : (cidr(p).ip().family() == 4 ? 24 : 64)) >= cidr(p).prefixLength())"
).message("nodePrefixLength (default 64 for IPv6, 24 for IPv4) must be at least the length of every prefix").field_path(".nodePrefixLength"))]
#[x_kube(validation = Rule::new(
    "!has(self.nodePrefixLength) || self.prefixes.all(p, !isCIDR(p) || self.nodePrefixLength <= (cidr(p).ip().family() == 4 ? 32 : 128))"
).message("nodePrefixLength must be at most 32 for IPv4 and 128 for IPv6").field_path(".nodePrefixLength"))]
#[x_kube(validation = Rule::new(
    "self.prefixes.all(p, !isCIDR(p) || (has(self.nodePrefixLength) ? self.nodePrefixLength : (cidr(p).ip().family() == 4 ? 24 : 64)) - cidr(p).prefixLength() <= 64)"
).message("a prefix may hold at most 2^64 node prefixes: nodePrefixLength minus a prefix's length must be at most 64").field_path(".nodePrefixLength"))]
#[x_kube(validation = Rule::new(
    "self.prefixes.all(p, !isCIDR(p) || (cidr(p).ip().family() == 6 ? ['ff00::/8', 'fe80::/10', '::/127'] : ['0.0.0.0/8', '127.0.0.0/8', '169.254.0.0/16', '224.0.0.0/3']).all(s, !cidr(s).containsCIDR(cidr(p)) && !cidr(p).containsCIDR(cidr(s))))"
).message("prefixes must be unicast space a node can route: not multicast, link-local, loopback, unspecified or IPv4-mapped (ff00::/8, fe80::/10, ::/127, ::ffff:0:0/96; 0.0.0.0/8, 127.0.0.0/8, 169.254.0.0/16, 224.0.0.0/3)").field_path(".prefixes"))]
#[x_kube(validation = Rule::new(
    "self.prefixes.all(a, !isCIDR(a) || self.prefixes.exists_one(b, isCIDR(b) && cidr(a).ip().family() == cidr(b).ip().family() && (cidr(a).containsCIDR(cidr(b)) || cidr(b).containsCIDR(cidr(a)))))"
).message("prefixes must not overlap or repeat each other").field_path(".prefixes"))]
#[x_kube(validation = Rule::new(
    "!has(self.reserved) || self.reserved.all(r, !isCIDR(r) || self.prefixes.exists(p, isCIDR(p) && cidr(p).ip().family() == cidr(r).ip().family() && cidr(p).containsCIDR(cidr(r))))"
).message("every reserved range must lie inside one of the pool's prefixes").field_path(".reserved"))]
#[x_kube(validation = Rule::new(
    "has(self.nodePrefixLength) == has(oldSelf.nodePrefixLength) && (!has(self.nodePrefixLength) || self.nodePrefixLength == oldSelf.nodePrefixLength)"
).message("nodePrefixLength is immutable (also from unset to a value): existing node prefixes would no longer fit; create a new pool instead").field_path(".nodePrefixLength"))]
#[x_kube(validation = Rule::new(
    "!has(self.nodeSelector) || !has(self.nodeSelector.matchExpressions) || self.nodeSelector.matchExpressions.all(e, e.operator in ['In', 'NotIn', 'Exists', 'DoesNotExist'] && ((e.operator in ['In', 'NotIn']) == (has(e.values) && size(e.values) > 0)))"
).message("nodeSelector.matchExpressions: operator must be In, NotIn, Exists or DoesNotExist; In and NotIn need values, Exists and DoesNotExist take none").field_path(".nodeSelector"))]
#[x_kube(validation = Rule::new(
    "has(self.delegation) != (size(self.prefixes) > 0)"
).message("a pool takes its prefixes from spec.prefixes or from spec.delegation (DHCPv6 prefix delegation): give exactly one of them").field_path(".prefixes"))]
#[x_kube(validation = Rule::new(
    "!has(self.delegation) || !has(self.reserved) || size(self.reserved) == 0"
).message("reserved ranges need spec.prefixes: a delegated prefix is not known in advance").field_path(".reserved"))]
#[x_kube(validation = Rule::new(
    "!has(self.delegation) || !has(self.delegation.prefixLength) || self.delegation.prefixLength <= (has(self.nodePrefixLength) ? self.nodePrefixLength : 64)"
).message("delegation.prefixLength must be at most nodePrefixLength (default 64): a delegated prefix must hold node prefixes").field_path(".delegation.prefixLength"))]
#[x_kube(validation = Rule::new(
    "has(self.delegation) == has(oldSelf.delegation)"
).message("a pool's source (spec.prefixes or spec.delegation) is fixed at creation: create another pool to change it").field_path(".delegation"))]
pub struct PrefixPoolSpec {
    /// The delegated blocks to carve node prefixes from: one or more CIDRs of
    /// one address family, canonical (host bits clear), not overlapping each
    /// other. Prefixes may be added at any time; a removed prefix keeps the
    /// node prefixes already carved from it (podCIDRs are immutable) but gives
    /// no new ones.
    /// Exactly one of `prefixes` and `delegation` is given.
    #[serde(default)]
    #[x_kube(validation = Rule::new("self.all(p, isCIDR(p))").message(CIDR_MSG))]
    #[x_kube(validation = Rule::new("self.all(p, !isCIDR(p) || string(cidr(p).masked()) == p)").message(CANONICAL_MSG))]
    #[x_kube(merge_strategy = ListMerge::Atomic)]
    #[schemars(length(max = 64), inner(length(max = 49)), extend("default" = []))]
    pub prefixes: Vec<String>,

    /// Take the pool's prefixes from DHCPv6 prefix delegation (RFC 8415)
    /// instead of `prefixes`: the operator's leader acts as a requesting
    /// router on `interface`, and the delegated prefix (renewed, rebound,
    /// and replaced when the server renumbers) is the pool's, as recorded
    /// in `status.delegation`. IPv6 only. Cannot be added to or removed
    /// from an existing pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegation: Option<DelegationSpec>,

    /// Length of the prefix carved for each node: 64 by default for IPv6, 24
    /// for IPv4. At least the length of every prefix, at most 128 (IPv6) or
    /// 32 (IPv4), and at most 64 longer than any prefix. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 128))]
    pub node_prefix_length: Option<i32>,

    /// Which Nodes this pool serves, by label. Absent means every Node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<LabelSelector>,

    /// CIDRs inside `prefixes` that are never handed to a node (for example
    /// the first /64, kept for routers). Up to 256 entries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(validation = Rule::new("self.all(p, isCIDR(p))").message(CIDR_MSG))]
    #[x_kube(validation = Rule::new("self.all(p, !isCIDR(p) || string(cidr(p).masked()) == p)").message(CANONICAL_MSG))]
    #[x_kube(merge_strategy = ListMerge::Atomic)]
    #[schemars(length(max = 256), inner(length(max = 49)))]
    pub reserved: Vec<String>,

    /// Sticky prefixes: when a Node is deleted, its prefix is kept for a
    /// Node of the same name that registers within this window (a Go
    /// duration such as "30m", "1h30m" or "24h"; units h, m, s, ms), so
    /// firewall rules and DNS stay valid across a node rebuild. Off by
    /// default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(duration::cel_rule()).message(duration::CEL_MESSAGE))]
    #[x_kube(validation = Rule::new(duration::cel_max_rule()).message(duration::CEL_MAX_MESSAGE))]
    #[schemars(length(max = 32))]
    pub retain_for: Option<String>,

    /// Reuse delay: a freed prefix is not handed to another Node before this
    /// long after its Node was deleted (a Go duration such as "10m" or
    /// "1m30s"; units h, m, s, ms), so traffic for a dead Node's pods cannot
    /// reach a new Node's pods. Off by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(duration::cel_rule()).message(duration::CEL_MESSAGE))]
    #[x_kube(validation = Rule::new(duration::cel_max_rule()).message(duration::CEL_MAX_MESSAGE))]
    #[schemars(length(max = 32))]
    pub reuse_after: Option<String>,

    /// When several pools of one family select a Node, the highest priority
    /// is used first, then pool names in alphabetical order; a full pool
    /// passes to the next one. Default 0, between -1000000 and 1000000.
    #[serde(default)]
    #[schemars(range(min = -1000000, max = 1000000))]
    pub priority: i32,
}

/// Where a pool's prefixes come from when a DHCPv6 server delegates them.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DelegationSpec {
    /// The network interface, on the host the operator's leader runs on
    /// (it uses the host network), that faces the delegating router.
    #[x_kube(validation = Rule::new("!self.contains('/') && !self.contains(' ') && self != '.' && self != '..'").message("must be a network interface name such as eth1"))]
    #[schemars(length(min = 1, max = 15))]
    pub interface: String,
    /// The prefix length to ask for (a hint: the server decides). At most
    /// the pool's nodePrefixLength. Unset: no hint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 128))]
    pub prefix_length: Option<i32>,
}

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
    /// `Delegated` and `Renumbering`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// Labels of a Node as the selector sees them.
pub type Labels = BTreeMap<String, String>;

#[cfg(test)]
mod tests {
    use kube::Resource;

    use super::*;

    #[test]
    fn both_kinds_are_in_the_one_api_group() {
        assert_eq!(PrefixPool::group(&()), GROUP);
        assert_eq!(PrefixClaim::group(&()), GROUP);
        assert_eq!(PrefixPool::api_version(&()), API_VERSION);
        assert_eq!(PrefixClaim::api_version(&()), API_VERSION);
    }
}
