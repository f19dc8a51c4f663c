//! Pure allocation: CIDR arithmetic, the free-space index of a pool, and
//! single addresses out of a prefix (LoadBalancer addresses). Nothing here
//! knows about Kubernetes or performs I/O, so the controller can rebuild an
//! index from cluster state at any time.

pub mod addresses;
pub mod cidr;
mod coverage;
pub mod space;

pub use cidr::{CidrError, Family, Scope, parse_canonical, parse_lenient};
pub use space::{PoolSpace, SpaceError};
