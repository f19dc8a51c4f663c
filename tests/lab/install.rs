//! What an admin runs on the lab cluster, shared by the lab's tests: the
//! README's install lines, kubectl and helm as the admin, and the state of
//! the operator's Deployment, pods and Lease as the API server holds it.

use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::ListParams;
use kube::{Api, Client};

use super::support::helm::Helm;
use super::support::lab::cluster::Cluster;
use super::support::wait_for;

/// Where the chart installs the operator.
pub const NS: &str = "kube-system";
/// The operator's pods.
pub const APP: &str = "app.kubernetes.io/name=prefix-operator";
/// How long a step of the lab may take.
pub const WAIT: Duration = Duration::from_secs(120);

/// The shell lines after `<!-- lab-install -->` in README.md (comments
/// dropped): the admin's install, kept in the README itself.
pub fn readme_install() -> Vec<String> {
    let readme = include_str!("../../README.md");
    let at = readme
        .find("<!-- lab-install -->")
        .expect("README.md has the lab-install marker");
    let mut lines = readme[at..].lines().skip(1);
    assert_eq!(lines.next().map(str::trim), Some("```sh"), "a sh block");
    lines
        .take_while(|l| l.trim() != "```")
        .map(|l| l.split(" #").next().unwrap_or(l).trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

pub fn node_ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}

pub fn pod_ready(p: &Pod) -> bool {
    p.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}

pub fn run(what: &str, mut cmd: std::process::Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    super::support::helm::ok(what, out)
}

/// Runs one README install line on the lab: `make` in the checkout, `ctr`
/// on the containerd of the Nodes `on` (indexes in `c.nodes`), `helm` and
/// `kubectl` as the admin.
pub fn run_install_line(c: &Cluster, helm: &Helm, line: &str, on: std::ops::Range<usize>) {
    let words: Vec<&str> = line.split_whitespace().collect();
    match words.first().copied() {
        Some("make") => {
            // As from the admin's shell: without the variables `cargo test`
            // sets for this process (a nested cargo build would see other
            // build-script inputs and rebuild everything).
            let mut cmd = std::process::Command::new("make");
            for (k, _) in std::env::vars_os() {
                let k = k.to_string_lossy();
                let cargo_set =
                    (k.starts_with("CARGO") && k != "CARGO_HOME" && k != "CARGO_TARGET_DIR")
                        || k.starts_with("RUSTC")
                        || k == "LD_LIBRARY_PATH"
                        || k == "OUT_DIR"
                        || k.starts_with("__CARGO");
                if cargo_set {
                    cmd.env_remove(k.as_ref());
                }
            }
            cmd.current_dir(manifest_dir()).args(&words[1..]);
            run(line, cmd);
        }
        Some("ctr") => {
            // `ctr -n k8s.io ARGS`: LabNode::ctr names the namespace and the
            // node's own socket; paths are the checkout's.
            assert_eq!(&words[1..3], ["-n", "k8s.io"], "{line}");
            let args: Vec<String> = words[3..]
                .iter()
                .map(|w| {
                    let p = manifest_dir().join(w);
                    if p.exists() {
                        p.display().to_string()
                    } else {
                        w.to_string()
                    }
                })
                .collect();
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            for n in &c.nodes[on] {
                n.kn.ctr(&args)
                    .unwrap_or_else(|e| panic!("{line} on {}: {e}", n.name()));
            }
        }
        Some("helm") => {
            let mut cmd = helm.cmd();
            cmd.current_dir(manifest_dir())
                .args(&words[1..])
                .arg("--kubeconfig")
                .arg(&c.kubeconfig);
            run(line, cmd);
        }
        Some("kubectl") => {
            let mut cmd = c.kubectl();
            cmd.current_dir(manifest_dir()).args(&words[1..]);
            run(line, cmd);
        }
        other => panic!("README install line of an unknown kind {other:?}: {line}"),
    }
}

pub async fn operator_pods(client: &Client) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    pods.list(&ListParams::default().labels(APP))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}

/// Waits until the Deployment has rolled out `replicas` Ready pods of its
/// current template, and returns their names.
pub async fn wait_rolled_out(client: &Client, replicas: i32) -> Vec<String> {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NS);
    wait_for("the operator's Deployment rolled out", WAIT, || async {
        let d = deployments.get_opt("prefix-operator").await.ok()??;
        let st = d.status.as_ref()?;
        let current = st.observed_generation == d.metadata.generation
            && st.updated_replicas == Some(replicas)
            && st.ready_replicas == Some(replicas)
            && st.replicas == Some(replicas);
        if !current {
            return None;
        }
        let pods = operator_pods(client).await;
        let live: Vec<&Pod> = pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        (live.len() == replicas as usize && live.iter().all(|p| pod_ready(p))).then(|| {
            live.iter()
                .filter_map(|p| p.metadata.name.clone())
                .collect()
        })
    })
    .await
}

pub async fn lease_holder(client: &Client) -> Option<String> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), NS);
    leases
        .get_opt("prefix-operator")
        .await
        .ok()??
        .spec?
        .holder_identity
}

pub fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Waits until kube-proxy on every Node programs the `kubernetes` Service
/// (10.96.0.1:443 to the advertised API server): how the operator's pods
/// reach the API server.
pub async fn wait_kube_proxy(c: &Cluster) {
    c.wait_kube_proxy(WAIT).await;
}

/// The README's install lines as an admin reads them, checked without a
/// lab: each is of a kind [`run_install_line`] runs; the chart is the one
/// way the CRDs are installed; the pools are applied after the chart
/// (their CRD) and before the operator has a replica (a dual-stack Node
/// must meet both of its pools at once); upgrades keep new chart defaults.
#[test]
fn readme_install_puts_the_pools_between_the_crds_and_the_replicas() {
    let lines = readme_install();
    let first = |w: &str| lines.iter().position(|l| l.starts_with(w));
    for l in &lines {
        let kind = l.split_whitespace().next().unwrap_or_default();
        assert!(
            ["make", "ctr", "helm", "kubectl"].contains(&kind),
            "a line the lab cannot run: {l}"
        );
        assert!(!l.contains("crds"), "CRDs come from the chart only: {l}");
        assert!(
            !l.contains("--reuse-values"),
            "--reuse-values ignores new chart defaults: {l}"
        );
    }
    let install = first("helm install").expect("a helm install line");
    assert!(
        lines[install].contains("replicas=0"),
        "the chart first, without a replica: {}",
        lines[install]
    );
    let pools = first("kubectl apply -f examples/pools.yaml").expect("the pools applied");
    let upgrade = first("helm upgrade").expect("a helm upgrade line");
    assert!(
        install < pools && pools < upgrade,
        "chart, then pools, then replicas: {lines:?}"
    );
    assert!(lines[upgrade].contains("replicas=2"), "{}", lines[upgrade]);
}

/// The CNI recipe the lab runs on each Node (docs/cni.md, after its
/// marker), checked without a lab: the whole sh block, from the Node's
/// podCIDRs to the conflist it writes.
#[test]
fn docs_cni_recipe_is_the_whole_sh_block() {
    let r = super::support::cni::doc_recipe();
    assert!(r.starts_with("NODE="), "{r}");
    assert!(r.contains(".spec.podCIDRs"), "{r}");
    assert!(
        r.contains("10-pods.conflist") && r.ends_with("EOF\n"),
        "{r}"
    );
}
