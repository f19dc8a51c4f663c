//! The `PrefixClaim` API: one prefix of a given length asked of a PrefixPool
//! for a purpose (a Service range today), carved from the same free space
//! as node prefixes. No I/O here.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::alloc::Family;

/// Finalizer the operator puts on a claim before binding it: the prefix
/// stays claimed until the claim's consumer (its ServiceCIDR) is gone.
pub const CLAIM_FINALIZER: &str = concat!(crate::api_group!(), "/claim");

/// Label on objects the operator creates for a claim, naming the claim.
pub const CLAIM_LABEL: &str = concat!(crate::api_group!(), "/claim");

/// The shortest IPv6 ServiceCIDR the API server allocates from. Its
/// validation accepts any length, but its allocator refuses a range
/// shorter than /64 ("shortest allowed prefix length for service CIDR is
/// 64", kubernetes v1.36 pkg/registry/core/service/ipallocator) and only
/// logs it: the ServiceCIDR would exist and hand out nothing.
pub const MIN_SERVICE_CIDR_LENGTH_V6: u8 = 64;
/// The longest ServiceCIDR worth creating: 4 addresses (the network
/// address is never handed out).
pub const MAX_SERVICE_CIDR_LENGTH_V6: u8 = 126;
pub const MAX_SERVICE_CIDR_LENGTH_V4: u8 = 30;

/// What a claimed prefix is for.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema,
)]
pub enum Purpose {
    /// The operator creates a `networking.k8s.io/v1` ServiceCIDR of the
    /// same name with the prefix, so the API server hands ClusterIPs from
    /// it.
    #[default]
    ServiceCIDR,
    /// Addresses for Services of `type: LoadBalancer` of the operator's
    /// class, written to their `status.loadBalancer.ingress`.
    LoadBalancer,
    /// Only kept from every other use (for example for routers or a
    /// range managed by hand); the operator creates nothing.
    Static,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::ServiceCIDR => "ServiceCIDR",
            Purpose::LoadBalancer => "LoadBalancer",
            Purpose::Static => "Static",
        }
    }
}

/// Address family of a claim.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema,
)]
pub enum IpFamily {
    #[default]
    IPv6,
    IPv4,
}

impl IpFamily {
    pub fn family(self) -> Family {
        match self {
            IpFamily::IPv6 => Family::V6,
            IpFamily::IPv4 => Family::V4,
        }
    }
}

/// A PrefixClaim asks a PrefixPool for one prefix of `prefixLength` bits
/// for a purpose. The prefix is carved from the pool's free space, so it
/// never overlaps a node prefix, a reserved range or another claim; it is
/// recorded in `status.prefix` and never changes. Deleting the claim frees
/// the prefix once its consumer has let go of it.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "ipam.prefix-operator.io",
    version = "v1alpha1",
    kind = "PrefixClaim",
    plural = "prefixclaims",
    shortname = "pclaim",
    status = "PrefixClaimStatus",
    doc = "PrefixClaim: one prefix from a PrefixPool for a purpose, such as a ServiceCIDR",
    category = "prefix-operator",
    printcolumn(
        name = "Purpose",
        type_ = "string",
        json_path = ".spec.purpose",
        description = "What the prefix is for"
    ),
    printcolumn(
        name = "Pool",
        type_ = "string",
        json_path = ".status.pool",
        description = "The PrefixPool it was carved from"
    ),
    printcolumn(
        name = "Prefix",
        type_ = "string",
        json_path = ".status.prefix",
        description = "The claimed prefix"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Ready condition"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        description = "Why it is (not) ready",
        priority = "1"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.pool) != has(self.poolSelector)")
    .message("name exactly one of pool (a PrefixPool's name) or poolSelector (PrefixPool labels)"))]
#[x_kube(validation = Rule::new("self.ipFamily == 'IPv6' || self.prefixLength <= 32")
    .message("prefixLength must be at most 32 for IPv4").field_path(".prefixLength"))]
#[x_kube(validation = Rule::new(
    "self.purpose != 'ServiceCIDR' || self.ipFamily == 'IPv4' || self.prefixLength >= 64"
).message("an IPv6 ServiceCIDR must be /64 or longer: the API server's allocator hands out nothing from a shorter one (it accepts the object and only logs the refusal)").field_path(".prefixLength"))]
#[x_kube(validation = Rule::new(
    "self.purpose != 'ServiceCIDR' || self.prefixLength <= (self.ipFamily == 'IPv4' ? 30 : 126)"
).message("a ServiceCIDR must hold at least 4 addresses: /30 or shorter for IPv4, /126 or shorter for IPv6").field_path(".prefixLength"))]
#[x_kube(validation = Rule::new("self == oldSelf")
    .message("spec is immutable: a claim's prefix never changes; create another claim instead"))]
#[x_kube(validation = Rule::new(
    "!has(self.poolSelector) || !has(self.poolSelector.matchExpressions) || self.poolSelector.matchExpressions.all(e, e.operator in ['In', 'NotIn', 'Exists', 'DoesNotExist'] && ((e.operator in ['In', 'NotIn']) == (has(e.values) && size(e.values) > 0)))"
).message("poolSelector.matchExpressions: operator must be In, NotIn, Exists or DoesNotExist; In and NotIn need values, Exists and DoesNotExist take none").field_path(".poolSelector"))]
pub struct PrefixClaimSpec {
    /// The PrefixPool to carve the prefix from, by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub pool: Option<String>,

    /// Or: PrefixPools by label; the pool of highest priority with room
    /// is used (then names in alphabetical order), as for Nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool_selector: Option<LabelSelector>,

    /// `IPv6` (the default) or `IPv4`.
    #[serde(default)]
    pub ip_family: IpFamily,

    /// Length of the prefix to claim. A claim longer than the pool's node
    /// prefix length takes a whole node-sized slot (the rest of the slot
    /// is never handed to a Node).
    #[schemars(range(min = 1, max = 128))]
    pub prefix_length: i32,

    /// What the prefix is for: `ServiceCIDR` (the default), `LoadBalancer`
    /// or `Static`.
    #[serde(default)]
    pub purpose: Purpose,
}

/// What the operator claimed and the state of the claim's consumer.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(oldSelf.prefix) || (has(self.prefix) && self.prefix == oldSelf.prefix)")
    .message("status.prefix is write-once: a bound claim keeps its prefix until it is deleted").field_path(".prefix"))]
#[x_kube(validation = Rule::new("!has(oldSelf.pool) || (has(self.pool) && self.pool == oldSelf.pool)")
    .message("status.pool is write-once").field_path(".pool"))]
pub struct PrefixClaimStatus {
    /// The claimed prefix, canonical. Written once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 49))]
    pub prefix: Option<String>,
    /// The PrefixPool it was carved from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub pool: Option<String>,
    /// The ServiceCIDR holding the prefix (purpose `ServiceCIDR`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_cidr: Option<String>,
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Bound` (a prefix is claimed) and `Ready` (its consumer serves it).
    /// A map keyed by `type`, so server-side apply can own one condition.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// Which pools a claim may be carved from.
#[derive(Clone, Debug)]
pub enum PoolChoice {
    Named(String),
    Selected(kube::core::Selector),
}

/// A valid claim spec, parsed.
#[derive(Clone, Debug)]
pub struct ClaimDefinition {
    pub family: Family,
    pub prefix_length: u8,
    pub pools: PoolChoice,
    pub purpose: Purpose,
}

/// Checks a claim spec (the CRD's rules again, for an object an older CRD
/// let through) and parses it.
pub fn validate_claim(spec: &PrefixClaimSpec) -> Result<ClaimDefinition, super::SpecError> {
    use super::SpecError;
    let family = spec.ip_family.family();
    let prefix_length = u8::try_from(spec.prefix_length)
        .ok()
        .filter(|&l| l >= 1 && l <= family.bits())
        .ok_or_else(|| {
            SpecError(format!(
                "spec.prefixLength {} is out of range 1..={} for {family}",
                spec.prefix_length,
                family.bits()
            ))
        })?;
    if spec.purpose == Purpose::ServiceCIDR {
        let (min, max) = match family {
            Family::V6 => (MIN_SERVICE_CIDR_LENGTH_V6, MAX_SERVICE_CIDR_LENGTH_V6),
            Family::V4 => (1, MAX_SERVICE_CIDR_LENGTH_V4),
        };
        if !(min..=max).contains(&prefix_length) {
            return Err(SpecError(format!(
                "spec.prefixLength /{prefix_length}: a {family} ServiceCIDR must be between /{min} and /{max}"
            )));
        }
    }
    let pools = match (&spec.pool, &spec.pool_selector) {
        (Some(name), None) => PoolChoice::Named(name.clone()),
        (None, Some(ls)) => PoolChoice::Selected(
            kube::core::Selector::try_from(ls.clone())
                .map_err(|e| SpecError(format!("spec.poolSelector: {}", e.0)))?,
        ),
        _ => {
            return Err(SpecError(
                "name exactly one of spec.pool or spec.poolSelector".into(),
            ));
        }
    };
    Ok(ClaimDefinition {
        family,
        prefix_length,
        pools,
        purpose: spec.purpose,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(len: i32, fam: IpFamily, purpose: Purpose) -> PrefixClaimSpec {
        PrefixClaimSpec {
            pool: Some("gua".into()),
            pool_selector: None,
            ip_family: fam,
            prefix_length: len,
            purpose,
        }
    }

    #[test]
    fn service_cidr_lengths_follow_the_api_server() {
        for (len, fam, ok) in [
            (112, IpFamily::IPv6, true),
            (64, IpFamily::IPv6, true),
            (63, IpFamily::IPv6, false),
            (127, IpFamily::IPv6, false),
            (24, IpFamily::IPv4, true),
            (7, IpFamily::IPv4, true),
            (31, IpFamily::IPv4, false),
            (33, IpFamily::IPv4, false),
        ] {
            let r = validate_claim(&spec(len, fam, Purpose::ServiceCIDR));
            assert_eq!(r.is_ok(), ok, "/{len} {fam:?}: {r:?}");
        }
        // Static claims take any length of their family.
        assert!(validate_claim(&spec(48, IpFamily::IPv6, Purpose::Static)).is_ok());
        assert!(validate_claim(&spec(128, IpFamily::IPv6, Purpose::Static)).is_ok());
        assert!(validate_claim(&spec(0, IpFamily::IPv6, Purpose::Static)).is_err());
    }

    #[test]
    fn exactly_one_pool_choice() {
        let mut s = spec(112, IpFamily::IPv6, Purpose::ServiceCIDR);
        s.pool_selector = Some(LabelSelector::default());
        assert!(validate_claim(&s).is_err());
        s.pool = None;
        assert!(matches!(
            validate_claim(&s).expect("selector").pools,
            PoolChoice::Selected(_)
        ));
        s.pool_selector = None;
        assert!(validate_claim(&s).is_err());
    }
}
