//! helm, run against the chart in `charts/prefix-operator`, never with the
//! user's own helm configuration or `$KUBECONFIG`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The chart.
pub fn chart_dir() -> PathBuf {
    super::repo().join("charts/prefix-operator")
}

/// helm with its own config, cache and data directories (never the user's),
/// and no $KUBECONFIG: every call that needs a cluster names one.
pub struct Helm {
    pub home: tempfile::TempDir,
    pub bin: PathBuf,
}

impl Default for Helm {
    fn default() -> Self {
        Self::new()
    }
}

impl Helm {
    pub fn new() -> Helm {
        let bin = prefix_operator_testenv::bin_dir()
            .expect("control-plane binaries")
            .join("helm");
        let home = tempfile::Builder::new()
            .prefix("helm-home.")
            .tempdir()
            .expect("tempdir");
        Helm { home, bin }
    }

    /// Sets `HELM_CONFIG_HOME`, `HELM_CACHE_HOME` and `HELM_DATA_HOME` to
    /// this helm's own directories.
    pub fn homes<'c>(&self, c: &'c mut Command) -> &'c mut Command {
        let h = self.home.path();
        c.env("HELM_CONFIG_HOME", h.join("config"))
            .env("HELM_CACHE_HOME", h.join("cache"))
            .env("HELM_DATA_HOME", h.join("data"))
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(&self.bin);
        self.homes(&mut c)
            .env_remove("KUBECONFIG")
            .env_remove("HELM_NAMESPACE")
            .env_remove("HELM_KUBECONTEXT");
        c
    }

    /// `helm <args> --namespace <ns> --kubeconfig <kubeconfig>`, which must succeed; its stdout.
    pub fn run_in(&self, ns: &str, kubeconfig: &Path, args: &[&str]) -> String {
        ok(
            &format!("helm {args:?}"),
            self.output_in(ns, kubeconfig, args),
        )
    }

    /// The same, which must fail; its stderr.
    pub fn fails_in(&self, ns: &str, kubeconfig: &Path, args: &[&str]) -> String {
        let out = self.output_in(ns, kubeconfig, args);
        assert!(!out.status.success(), "helm {args:?} succeeded");
        text(&out.stderr)
    }

    fn output_in(&self, ns: &str, kubeconfig: &Path, args: &[&str]) -> Output {
        self.cmd()
            .args(args)
            .args(["--namespace", ns, "--kubeconfig"])
            .arg(kubeconfig)
            .output()
            .expect("helm")
    }

    /// `helm template prefix-operator <chart> -n kube-system --kube-version 1.33.0 <extra>`.
    pub fn template(&self, extra: &[&str]) -> Output {
        self.cmd()
            .args(["template", "prefix-operator"])
            .arg(chart_dir())
            .args(["--namespace", "kube-system", "--kube-version", "1.33.0"])
            .args(extra)
            .output()
            .expect("run helm template")
    }
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// stdout of a command that must succeed.
pub fn ok(what: &str, out: Output) -> String {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        text(&out.stderr),
        text(&out.stdout)
    );
    text(&out.stdout)
}

/// The chart installed as `release` into `ns` (created) by the admin of
/// `cp`, whose kubeconfig is written to `admin_kubeconfig`; returns once
/// the CRDs the chart installs are served. An admin client.
pub async fn install_chart(
    cp: &crate::ControlPlane,
    admin_kubeconfig: &Path,
    ns: &str,
    release: &str,
) -> kube::Client {
    install_chart_with(cp, admin_kubeconfig, ns, release, &[]).await
}

/// [`install_chart`] with more `helm install` arguments (`--set k=v`).
pub async fn install_chart_with(
    cp: &crate::ControlPlane,
    admin_kubeconfig: &Path,
    ns: &str,
    release: &str,
    extra: &[&str],
) -> kube::Client {
    use prefix_operator::api::PrefixPool;
    let client = crate::admin(cp).await;
    cp.write_kubeconfig(&crate::Identity::Admin, admin_kubeconfig)
        .expect("kubeconfig");
    let chart = chart_dir().display().to_string();
    Helm::new().run_in(
        ns,
        admin_kubeconfig,
        &[&["install", release, &chart, "--create-namespace"], extra].concat(),
    );
    let pools: kube::Api<PrefixPool> = kube::Api::all(client.clone());
    crate::wait_for(
        "the chart's CRD to be served",
        std::time::Duration::from_secs(30),
        || async {
            pools
                .list(&kube::api::ListParams::default())
                .await
                .ok()
                .map(|_| ())
        },
    )
    .await;
    client
}
