//! Scale benchmark and fault runs of prefix-operator against a local control
//! plane (`e2e/harness`), with the operator binary run as a child process
//! ([`prefix_operator_testenv::OperatorProcess`]).

pub mod cluster;
pub mod fence;
pub mod history;
pub mod kcm;
pub mod kubelet;
pub mod lb;
pub mod operator;
pub mod random;
pub mod scale;
pub mod stats;
