//! Scale benchmark and fault runs of prefix-operator against a local control
//! plane (`e2e/harness`), with the operator binary run as a child process.

pub mod cluster;
pub mod history;
pub mod kubelet;
pub mod opproc;
pub mod promtext;
pub mod random;
pub mod stats;
