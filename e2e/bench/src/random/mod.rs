//! The randomized fault run (`randomized`): random and directed mixes of
//! Node, PrefixPool, PrefixClaim, Service and fault operations against the
//! real control plane and operator binary, with invariants checked against
//! the API server only ([`report::INVARIANTS`] lists them).

pub mod actions;
pub mod check;
pub mod check_svc;
#[cfg(test)]
mod check_tests;
pub mod claim_rec;
pub mod dual;
pub mod env;
pub mod history;
pub mod mix;
pub mod mix_svc;
pub mod model;
pub mod ops;
pub mod quiet;
pub mod quiet_claims;
pub mod report;
pub mod scenarios;
pub mod space;
pub mod svc_actions;
pub mod svc_ops;
