//! prefix-operator: carves per-node IPv6/IPv4 prefixes out of delegated
//! blocks (`PrefixPool` objects, static or fed by DHCPv6 prefix delegation)
//! and writes them into `node.spec.podCIDRs`; carves prefixes for other
//! purposes (`PrefixClaim`: a ServiceCIDR, LoadBalancer addresses, a
//! reservation) out of the same pools; and gives LoadBalancer Services of
//! its class addresses from those claims.
//!
//! Data flows one way: watches of Nodes, pools, claims, Services,
//! ServiceCIDRs and IPAddresses feed the [`ledger`] (pure, with the
//! allocation arithmetic in [`alloc`]); the [`controller`] asks it what to
//! write for each path (Nodes, claims, Services) and shows it in statuses
//! and Events; [`dhcp`] obtains and renews delegated prefixes.

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
