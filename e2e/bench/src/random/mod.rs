//! The randomized fault run (`randomized`): random and directed mixes of
//! Node, PrefixPool and fault operations against the real control plane and
//! operator binary, with invariants checked against the API server only.

pub mod actions;
pub mod check;
pub mod env;
pub mod history;
pub mod mix;
pub mod model;
pub mod ops;
pub mod quiet;
pub mod scenarios;
pub mod space;
