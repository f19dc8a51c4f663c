//! Kubernetes components built from Go modules by `e2e/kcm/build.sh`:
//! kube-controller-manager with a chosen set of controllers, and kube-proxy
//! (beside it in the same cache directory).

use std::path::{Path, PathBuf};

use prefix_operator_testenv::{ControlPlane, Identity, Supervised};

/// A kube-controller-manager, killed on drop.
pub struct Kcm {
    _proc: Supervised,
    pub dir: tempfile::TempDir,
}

/// kube-controller-manager v1.36.3 running only `controllers` (comma
/// separated, e.g. `service-cidr-controller`), as the cluster admin.
pub fn start_kcm(cp: &ControlPlane, controllers: &str) -> Kcm {
    let bin = kcm_bin();
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    cp.write_kubeconfig(&Identity::Admin, &kubeconfig)
        .expect("kubeconfig");
    let args = vec![
        format!("--kubeconfig={}", kubeconfig.display()),
        format!("--controllers={controllers}"),
        "--leader-elect=false".into(),
        "--secure-port=0".into(),
        "--v=1".into(),
    ];
    let proc = Supervised::spawn(&bin, &args, &dir.path().join("kcm.log"))
        .expect("start kube-controller-manager");
    Kcm { _proc: proc, dir }
}

/// The kube-controller-manager binary: `$KCM_BIN` (make test sets it), else
/// what `e2e/kcm/build.sh` builds (and prints).
pub fn kcm_bin() -> PathBuf {
    if let Some(b) = std::env::var_os("KCM_BIN") {
        return PathBuf::from(b);
    }
    super::built_by("e2e/kcm/build.sh")
}

/// The kube-proxy binary `e2e/kcm/build.sh` builds beside
/// kube-controller-manager.
pub fn kube_proxy_bin() -> PathBuf {
    let kcm = kcm_bin();
    let bin = kcm.parent().unwrap_or(Path::new(".")).join("kube-proxy");
    assert!(
        bin.is_file(),
        "{} missing: e2e/kcm/build.sh builds it beside kube-controller-manager",
        bin.display()
    );
    bin
}
