//! How the benchmark and fault runs start the operator binary: which binary,
//! with which identity and leader-election timings. The process itself is
//! [`prefix_operator_testenv::OperatorProcess`].

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Result, bail};
use prefix_operator_testenv::OperatorProcess;

/// Every operator started here carries `--identity` with this prefix, so a
/// leftover check can find exactly ours (`pgrep -f -- '--identity pob-'`).
pub const IDENTITY_PREFIX: &str = "pob-";

/// Starts `bin run --kubeconfig K --http-addr 127.0.0.1:PORT --identity
/// pob-ROLE-PID-N --log-format text EXTRA...`, logging to `log` (appended).
pub fn spawn(
    bin: &Path,
    kubeconfig: &Path,
    role: &str,
    extra: &[String],
    log: &Path,
) -> Result<OperatorProcess> {
    static N: AtomicU32 = AtomicU32::new(0);
    let identity = format!(
        "{IDENTITY_PREFIX}{role}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    );
    OperatorProcess::builder(bin, kubeconfig, log)
        .identity(identity)
        .args(["--log-format", "text"])
        .args(extra)
        .spawn()
}

/// Leader-election flags of the fault runs: short timings (a 4 s Lease) so
/// that a leader change happens within a run; `lease` names the Lease.
pub fn leader_flags(lease: &str) -> Vec<String> {
    vec![
        "--leader-elect=true".into(),
        "--lease-namespace=default".into(),
        format!("--lease-name={lease}"),
        "--lease-duration=4s".into(),
        "--renew-deadline=3s".into(),
        "--retry-period=1s".into(),
    ]
}

/// The operator binary: `$PREFIX_OPERATOR_BIN`, else the workspace's
/// `target/release/prefix-operator`.
pub fn default_operator_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("PREFIX_OPERATOR_BIN") {
        return PathBuf::from(p);
    }
    target_dir().join("release").join("prefix-operator")
}

/// `given`, else [`default_operator_bin`], made absolute; fails with a hint
/// when it has not been built.
pub fn operator_bin(given: Option<PathBuf>) -> Result<PathBuf> {
    let bin = given.unwrap_or_else(default_operator_bin);
    let bin = std::fs::canonicalize(&bin).unwrap_or(bin);
    if !bin.exists() {
        bail!(
            "{} not found; build it with `cargo build --release --bin prefix-operator`",
            bin.display()
        );
    }
    Ok(bin)
}

/// `$CARGO_TARGET_DIR`, else the workspace's `target/`.
pub fn target_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(p);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target")
}
