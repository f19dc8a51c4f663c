//! `make dev-up`'s cluster: the lab cluster of `tests/lab.rs`, kept
//! running until SIGTERM or SIGINT (the `lab-cluster` binary), for a reader
//! to follow the README on. Nodes `lab-node-1`, `lab-node-2`, …
//! (`lab-node-2` labelled dual-stack, as examples/pools.yaml expects), each
//! with containerd (pause, the whoami image and the images it is given
//! imported), a kubelet and kube-proxy.
//!
//! What it writes into the dev directory, the kubeconfig last:
//! - `ctr`: `ctr` against each Node's containerd, in that Node's own
//!   namespaces (every Node in turn, or `NODE=lab-node-1 .dev/ctr …`);
//! - `netns`: its network namespaces, for `make dev-down` to remove when
//!   this process could not (SIGKILLed);
//! - `kubeconfig`: the cluster admin's, once every Node has registered and
//!   kube-proxy on each forwards the `kubernetes` Service (how the
//!   operator's pods reach the API server).
//!
//! On SIGTERM it tears everything down as a test's drop does: kube-proxy,
//! kubelets, containers and their shims, containerd, cgroups, namespaces,
//! kube-scheduler, kube-controller-manager, the control plane.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use k8s_openapi::api::core::v1::Node;
use kube::Api;

use super::cluster::Cluster;

/// The label of examples/pools.yaml's IPv4 pool, put on `lab-node-2`.
pub const DUAL_STACK: (&str, &str) = ("node-role.example.com/dual-stack", "true");
/// kube-proxy's `--cluster-cidr`: examples/pools.yaml's GUA and IPv4 pools.
pub const CLUSTER_CIDR: &str = "2001:db8:42::/48,10.244.0.0/16";
/// How long a step of the start may take.
const WAIT: Duration = Duration::from_secs(180);

pub struct DevOptions {
    /// The dev directory (`.dev`): state, logs, `ctr`, `netns`, `kubeconfig`.
    pub dir: PathBuf,
    pub nodes: u8,
    /// Image tarballs imported into every Node's containerd.
    pub images: Vec<PathBuf>,
}

/// Starts the cluster, writes the files above, runs until `until` ends,
/// then tears the cluster down.
pub async fn serve(opts: DevOptions, until: impl Future<Output = ()>) -> Result<()> {
    let dir = std::path::absolute(&opts.dir).context("the dev directory")?;
    let state = dir.join("state");
    std::fs::create_dir_all(&state).context("the state directory")?;
    let Some(mut c) = Cluster::start_in("dv", CLUSTER_CIDR, Some(&state)).await else {
        bail!("this machine forbids network namespaces");
    };
    eprintln!("lab-cluster: control plane at {}", c.cp.server_url());
    let mut images = vec![c.components.join("images/whoami.tar")];
    images.extend(opts.images.iter().cloned());
    for i in 1..=opts.nodes {
        let labels: &[(&str, &str)] = if i == 2 { &[DUAL_STACK] } else { &[] };
        for image in &opts.images {
            eprintln!("lab-cluster: lab-node-{i}: importing {}", image.display());
        }
        c.add_node(i, labels, &images);
    }
    std::fs::write(dir.join("netns"), c.lab.namespaces.0.join("\n") + "\n")?;
    let nodes: Api<Node> = Api::all(c.client.clone());
    for n in &c.nodes {
        crate::wait_for(&format!("{} registered", n.name()), WAIT, || async {
            nodes.get_opt(n.name()).await.ok().flatten()
        })
        .await;
    }
    c.wait_kube_proxy(WAIT).await;
    write_executable(&dir.join("ctr"), &ctr_script(&c))?;
    let tmp = dir.join("kubeconfig.tmp");
    c.cp.write_kubeconfig(&prefix_operator_testenv::Identity::Admin, &tmp)?;
    std::fs::rename(&tmp, dir.join("kubeconfig"))?;
    eprintln!(
        "lab-cluster: ready: {} (logs under {})",
        c.nodes
            .iter()
            .map(|n| n.name())
            .collect::<Vec<_>>()
            .join(", "),
        c.dir.display()
    );
    until.await;
    eprintln!("lab-cluster: stopping");
    drop(c);
    let _ = std::fs::remove_file(dir.join("netns"));
    eprintln!("lab-cluster: stopped");
    Ok(())
}

/// A shell script that runs `ctr ARGS` against each Node's containerd
/// inside the Node (its mount namespace has the host's files, so paths
/// relative to the caller's directory work), every Node in turn or only
/// `$NODE`.
fn ctr_script(c: &Cluster) -> String {
    let mut s = String::from(concat!(
        "#!/bin/sh\n",
        "# ctr against the containerd of each Node of make dev-up's cluster, inside\n",
        "# the Node: every Node in turn, or NODE=lab-node-1 for one. Written by\n",
        "# lab-cluster; stops working with it (make dev-down).\n",
        "set -e\n",
        "found=\n",
        "run() {\n",
        "  name=$1 pid=$2 sock=$3 ctr=$4; shift 4\n",
        "  [ -z \"${NODE:-}\" ] || [ \"$NODE\" = \"$name\" ] || return 0\n",
        "  found=1\n",
        "  echo \"== $name\" >&2\n",
        "  nsenter --target \"$pid\" --mount --net --wd=\"$PWD\" -- \"$ctr\" --address \"$sock\" \"$@\"\n",
        "}\n",
    ));
    let mut names = Vec::new();
    for n in &c.nodes {
        s.push_str(&format!(
            "run '{}' {} '{}' '{}' \"$@\"\n",
            n.name(),
            n.kn.holder_pid(),
            n.kn.socket.display(),
            n.kn.bin.join("ctr").display()
        ));
        names.push(n.name().to_string());
    }
    s.push_str(&format!(
        "[ -n \"$found\" ] || {{ echo \"no Node $NODE here: {}\" >&2; exit 1; }}\n",
        names.join(" ")
    ));
    s
}

fn write_executable(path: &Path, text: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}
