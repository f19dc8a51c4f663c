//! The `PrefixPool` kind: its spec (the delegated blocks, or the DHCPv6
//! delegation they come from, and how they are carved into node prefixes),
//! with the admission rules (OpenAPI schema + CEL) generated into its CRD.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::PrefixPoolStatus;
use crate::duration;

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
    category = "prefix-operator",
    // `kubectl get prefixpools` shows what an admin reads first; `-o wide`
    // adds the columns of priority 1 in this order.
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
        description = "Prefixes delegated by DHCPv6 and still preferred",
        priority = "1"
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
        description = "GlobalUnicast, UniqueLocal, Private, ...",
        priority = "1"
    ),
    printcolumn(
        name = "Node-Len",
        type_ = "integer",
        json_path = ".status.nodePrefixLength",
        description = "Prefix length carved per node",
        priority = "1"
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
        description = "Prefixes held by PrefixClaims",
        priority = "1"
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
