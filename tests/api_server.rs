//! Integration tests against a real kube-apiserver and etcd on loopback:
//! admission, the operator in-process and as a binary, claims, Services,
//! faults, leader election, RBAC, observability, the CLI
//! (`cargo test --test api_server`, one module per former file:
//! `cargo test --test api_server claims::`).

#[path = "admission.rs"]
mod admission;
#[path = "api_errors.rs"]
mod api_errors;
#[path = "claims.rs"]
mod claims;
#[path = "cli.rs"]
mod cli;
#[path = "conflicts.rs"]
mod conflicts;
#[path = "controlplane.rs"]
mod controlplane;
#[path = "dualstack.rs"]
mod dualstack;
#[path = "faults.rs"]
mod faults;
#[path = "fence.rs"]
mod fence;
#[path = "hostile.rs"]
mod hostile;
#[path = "http2.rs"]
mod http2;
#[path = "kubelet_traffic.rs"]
mod kubelet_traffic;
#[path = "lb_faults.rs"]
mod lb_faults;
#[path = "leader.rs"]
mod leader;
#[path = "lifecycle.rs"]
mod lifecycle;
#[path = "load_balancer.rs"]
mod load_balancer;
#[path = "metrics_auth.rs"]
mod metrics_auth;
#[path = "observability.rs"]
mod observability;
#[path = "operator.rs"]
mod operator;
#[path = "rbac_e2e.rs"]
mod rbac_e2e;
