//! The `PrefixPool` and `PrefixClaim` API (`ipam.prefix-operator.io/v1alpha1`):
//! types, defaults and the admission rules (OpenAPI schema + CEL) generated
//! into the CRDs. No I/O here.
//!
//! Here the API group and the limits shared by both kinds; [`pool`] holds
//! the `PrefixPool` kind and its spec, [`pool_status`] the status the
//! operator writes on it, [`claim`] the `PrefixClaim` kind, and
//! [`validate`] the operator's own check of a pool's spec.

// kube's printcolumn(...) entries repeat `type_ = "string"`, which clippy
// mistakes for duplicated attributes.
#![allow(clippy::duplicated_attributes)]

mod claim;
mod pool;
mod pool_status;
mod validate;

use std::collections::BTreeMap;

pub use claim::{
    CLAIM_FINALIZER, CLAIM_LABEL, ClaimDefinition, IpFamily, MAX_SERVICE_CIDR_LENGTH_V4,
    MAX_SERVICE_CIDR_LENGTH_V6, MIN_SERVICE_CIDR_LENGTH_V6, PoolChoice, PrefixClaim,
    PrefixClaimSpec, PrefixClaimStatus, Purpose, validate_claim,
};
pub use pool::{DelegationSpec, PrefixPool, PrefixPoolSpec};
pub use pool_status::{
    Allocation, ClaimedPrefix, ConflictEntry, DELEGATED_DEPRECATED, DELEGATED_EXPIRED,
    DELEGATED_PREFERRED, DelegatedPrefix, DelegationStatus, HeldBack, MAX_LISTED_DELEGATED,
    PrefixPoolStatus, PrefixUsage,
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
