//! prefix-operator: carves per-node IPv6/IPv4 prefixes out of delegated
//! blocks (`PrefixPool` objects) and writes them into `node.spec.podCIDRs`.
//!
//! Data flows one way: watches feed the [`ledger`] (pure), the node
//! reconciler asks it what to write, and the status writer shows it.

pub mod alloc;
pub mod api;
pub mod app;
pub mod cli;
pub mod controller;
pub mod dhcp;
pub mod duration;
pub mod http;
pub mod inspect;
pub mod k8s;
pub mod leader;
pub mod ledger;
pub mod metrics;
pub mod process_metrics;
pub mod routes;
pub mod telemetry;
pub mod ula;
