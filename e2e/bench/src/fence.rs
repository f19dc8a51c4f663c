//! The chart's ServiceAccount, RBAC and admission policies in a bench
//! cluster, and operator replicas that run as Pods of it (a token bound to
//! a Pod object named as the replica's identity), so that the fence the
//! API server enforces applies to them as it does in a cluster
//! (`charts/prefix-operator/templates/admission-policies.yaml`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use prefix_operator_testenv::hold_proxy::HoldProxy;
use prefix_operator_testenv::pod_identity::pod_token;
use prefix_operator_testenv::{Identity, OperatorProcess};

use crate::cluster::Cluster;

/// The release: its ServiceAccount, in `default` beside the bench's Lease.
const RELEASE: &str = "prefix-operator";
const NS: &str = "default";

/// The chart's templates that give the operator its account and fence.
const TEMPLATES: [&str; 6] = [
    "serviceaccount.yaml",
    "clusterrole.yaml",
    "clusterrolebinding.yaml",
    "role.yaml",
    "rolebinding.yaml",
    "admission-policies.yaml",
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Renders the chart's account, RBAC and policies for Lease `lease` in
/// `default` (`helm template`) and applies them (`kubectl apply`).
pub fn install(cl: &Cluster, lease: &str) -> Result<()> {
    install_some(cl, lease, true, &[])
}

/// [`install`], with the admission policies or without them (the account
/// and RBAC alone: the same operator without the fence, for comparison);
/// `set` adds `--set` values (e.g. `admissionPolicies.leastAuthority=false`).
pub fn install_some(cl: &Cluster, lease: &str, policies: bool, set: &[String]) -> Result<()> {
    let mut template = Command::new(cl.cp.bin("helm"));
    template
        .args(["template", RELEASE])
        .arg(repo().join("charts/prefix-operator"))
        .args(["-n", NS, "--set", "crds.enabled=false"])
        .args(["--set", &format!("leaderElection.leaseName={lease}")]);
    for v in set {
        template.args(["--set", v]);
    }
    let templates = if policies {
        &TEMPLATES[..]
    } else {
        &TEMPLATES[..5]
    };
    for t in templates {
        template.args(["--show-only", &format!("templates/{t}")]);
    }
    let out = template.output().context("helm template")?;
    if !out.status.success() {
        bail!("helm template: {}", String::from_utf8_lossy(&out.stderr));
    }
    let mut apply = Command::new(cl.cp.bin("kubectl"))
        .arg("--kubeconfig")
        .arg(&cl.kubeconfig)
        .args(["apply", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("kubectl apply")?;
    apply
        .stdin
        .take()
        .context("stdin")?
        .write_all(&out.stdout)?;
    let done = apply.wait_with_output()?;
    if !done.status.success() {
        bail!("kubectl apply: {}", String::from_utf8_lossy(&done.stderr));
    }
    Ok(())
}

/// A kubeconfig of the chart's ServiceAccount as Pod `pod` (created), for
/// the API server at `server` (the cluster's own, or a proxy in front).
pub async fn kubeconfig_as_pod(cl: &Cluster, pod: &str, server: &str) -> Result<PathBuf> {
    let token = pod_token(&cl.client, NS, RELEASE, pod).await?;
    let path = cl.cp.dir().join(format!("{pod}.kubeconfig"));
    cl.cp
        .write_kubeconfig_via(server, &Identity::Token(token), &path)?;
    Ok(path)
}

/// A replica as Pod `identity`, through `proxy` if given.
pub async fn replica(
    cl: &Cluster,
    bin: &Path,
    identity: &str,
    proxy: Option<&HoldProxy>,
    extra: &[String],
    log: &Path,
) -> Result<OperatorProcess> {
    let server = proxy.map_or_else(|| cl.cp.server_url(), HoldProxy::url);
    let kubeconfig = kubeconfig_as_pod(cl, identity, &server).await?;
    OperatorProcess::builder(bin, &kubeconfig, log)
        .identity(identity)
        .args(["--log-format", "text"])
        .args(extra)
        .spawn()
}
