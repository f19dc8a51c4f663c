//! The lab cluster: the test control plane, kube-controller-manager and
//! kube-scheduler v1.36.3, and Nodes in network namespaces behind a router
//! namespace, each with containerd + runc, a kubelet and kube-proxy
//! ([`cluster`], [`node`], their configuration in [`config`], what they
//! leave behind in [`cleanup`]). `tests/lab.rs` and `tests/lab_bench.rs`
//! run it for a test; [`dev`] keeps one running for `make dev-up` (the
//! `lab-cluster` binary).

pub mod cleanup;
pub mod cluster;
pub mod config;
pub mod dev;
pub mod node;

/// One lab cluster at a time in a test process: each runs a dozen
/// processes, and two at once on a small machine make both slow enough to
/// miss their probes (tests/lab.rs and tests/devenv.rs share this binary).
pub static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
