//! The lab cluster: the test control plane plus what a cluster has around
//! it, all real components — kube-controller-manager (every default
//! controller: Deployments, ReplicaSets, ServiceAccounts, the root CA
//! ConfigMap, EndpointSlices, ServiceCIDRs, node lifecycle, garbage
//! collection) and kube-scheduler v1.36.3 on the host, and [`ClusterNode`]s,
//! each a network namespace behind the router namespace with its own
//! containerd, kubelet and kube-proxy.
//!
//! Pods reach the API server as in-cluster clients do: through the
//! `kubernetes` Service's ClusterIP (10.96.0.1:443), which kube-proxy turns
//! into the API server's advertised endpoint. The API server advertises
//! [`API_ADDRESS`], an address of the router namespace, where a forwarder
//! passes connections to the host's loopback, on which the test control
//! plane listens; the API server's lease endpoint reconciler publishes that
//! endpoint itself.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use kube::Client;
use prefix_operator_testenv::{ControlPlane, Identity, Options, Supervised};

use super::node::{LabNode, components};
use crate::cni::{Lab, TestNode};
use crate::components::{kcm_bin, kube_proxy_bin};
use crate::netns::{forward_at, nsip, nssysctl};
use crate::{admin, kubeconfig_in_netns};

/// The API server's advertised address: on the router namespace's loopback,
/// reached by every node through its default route.
pub const API_ADDRESS: &str = "192.168.250.1";

pub struct ClusterNode {
    /// kube-proxy first: it goes before the node's namespaces do.
    proxy: Option<Supervised>,
    pub kn: LabNode,
    pub tn: TestNode,
    pub ip6: String,
}

impl ClusterNode {
    pub fn name(&self) -> &str {
        &self.tn.name
    }
}

pub struct Cluster {
    /// Field order is drop order: the nodes (kubelets, containers, their
    /// cgroups) first, the namespaces next, the control plane last.
    pub nodes: Vec<ClusterNode>,
    scheduler: Option<Supervised>,
    kcm: Option<Supervised>,
    pub lab: Lab,
    pub client: Client,
    pub cp: ControlPlane,
    pub components: PathBuf,
    /// The cluster admin's kubeconfig, for kubectl, helm and `routes`.
    pub kubeconfig: PathBuf,
    /// kube-proxy's `--cluster-cidr`: the pools' prefixes, as an admin sets it.
    cluster_cidr: String,
    iptables_env: Vec<(String, String)>,
    pub dir: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Cluster {
    /// The control plane, kube-controller-manager and kube-scheduler; `None`
    /// (after printing why) when this machine forbids network namespaces.
    /// `cluster_cidr` is kube-proxy's `--cluster-cidr`.
    pub async fn start(case: &str, cluster_cidr: &str) -> Option<Cluster> {
        Self::start_in(case, cluster_cidr, None).await
    }

    /// [`Cluster::start`] with the control plane's state (`controlplane/`)
    /// and the lab's files (a `lab.*` directory, removed on drop) under
    /// `dir`; both in temporary directories when `None`.
    pub async fn start_in(case: &str, cluster_cidr: &str, dir: Option<&Path>) -> Option<Cluster> {
        let components = tokio::task::block_in_place(components);
        let state_dir = dir.map(|d| d.join("controlplane"));
        let cp = tokio::task::spawn_blocking(|| {
            ControlPlane::start(Options {
                state_dir,
                extra_apiserver_flags: vec![
                    format!("--advertise-address={API_ADDRESS}"),
                    "--endpoint-reconciler-type=lease".into(),
                ],
            })
        })
        .await
        .expect("join")
        .expect("start control plane");
        let client = admin(&cp).await;
        let tmp = match dir {
            Some(d) => tempfile::Builder::new().prefix("lab.").tempdir_in(d),
            None => tempfile::tempdir(),
        }
        .expect("tempdir");
        let lab = Lab::new(case, tmp.path())?;
        nsip(
            &lab.router,
            &["addr", "add", &format!("{API_ADDRESS}/32"), "dev", "lo"],
        );
        let port = cp.api_port();
        forward_at(
            &lab.router,
            SocketAddr::new(API_ADDRESS.parse().expect("address"), port),
            SocketAddr::from(([127, 0, 0, 1], port)),
        );
        let kubeconfig = tmp.path().join("admin.kubeconfig");
        cp.write_kubeconfig(&Identity::Admin, &kubeconfig)
            .expect("kubeconfig");
        let bin_dir = kcm_bin().parent().expect("kcm dir").to_path_buf();
        let kcm = Supervised::spawn(
            &bin_dir.join("kube-controller-manager"),
            &[
                format!("--kubeconfig={}", kubeconfig.display()),
                // Every controller a cluster runs by default; node IPAM
                // stays off (no --allocate-node-cidrs): the operator
                // allocates.
                "--controllers=*".into(),
                "--leader-elect=false".into(),
                "--secure-port=0".into(),
                "--v=1".into(),
            ],
            &tmp.path().join("kube-controller-manager.log"),
        )
        .expect("start kube-controller-manager");
        let scheduler = Supervised::spawn(
            &bin_dir.join("kube-scheduler"),
            &[
                format!("--kubeconfig={}", kubeconfig.display()),
                "--leader-elect=false".into(),
                "--secure-port=0".into(),
                "--v=1".into(),
            ],
            &tmp.path().join("kube-scheduler.log"),
        )
        .expect("start kube-scheduler");
        let debs = crate::debs::debs();
        Some(Cluster {
            nodes: Vec::new(),
            scheduler: Some(scheduler),
            kcm: Some(kcm),
            lab,
            client,
            cp,
            components,
            kubeconfig,
            cluster_cidr: cluster_cidr.into(),
            iptables_env: crate::debs::iptables_env(&debs),
            dir: tmp.path().to_path_buf(),
            _tmp: tmp,
        })
    }

    /// Node `i` (`lab-node-<i>`, addresses fd00:100:i::2 and 192.168.i.2,
    /// IPv6 first): containerd with `images` imported besides pause, the
    /// kubelet with `labels`, kube-proxy. Returns its index in `nodes`.
    pub fn add_node(&mut self, i: u8, labels: &[(&str, &str)], images: &[PathBuf]) -> usize {
        let name = format!("lab-node-{i}");
        let tn = self.lab.node(i, &name);
        for key in ["net.ipv6.conf.all.forwarding=1", "net.ipv4.ip_forward=1"] {
            nssysctl(&tn.ns, key);
        }
        let mut kn = tokio::task::block_in_place(|| {
            LabNode::start_containerd(&tn, &self.dir, &self.components, &self.lab.cni)
        });
        for image in images {
            kn.ctr(&["images", "import", &image.display().to_string()])
                .unwrap_or_else(|e| panic!("ctr images import {}: {e}", image.display()));
        }
        let (ip6, ip4) = (format!("fd00:100:{i}::2"), format!("192.168.{i}.2"));
        let node_labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        kn.start_kubelet(
            &self.cp,
            &tn,
            &format!("{ip6},{ip4}"),
            &[format!("--node-labels={}", node_labels.join(","))],
        );
        let proxy = self.start_kube_proxy(&tn, &kn);
        self.nodes.push(ClusterNode {
            proxy: Some(proxy),
            kn,
            tn,
            ip6,
        });
        self.nodes.len() - 1
    }

    /// kube-proxy v1.36.3 in iptables mode (Debian's iptables, unpacked) in
    /// the node's namespaces. Local traffic is told by `--cluster-cidr`
    /// (`ClusterCIDR`, kube-proxy's default mode), not by the Node's
    /// podCIDRs: in `NodeCIDR` mode kube-proxy waits for the podCIDRs before
    /// it programs anything, and the operator, a pod on these Nodes, reaches
    /// the API server through the `kubernetes` Service that kube-proxy
    /// programs.
    fn start_kube_proxy(&self, tn: &TestNode, kn: &LabNode) -> Supervised {
        let kubeconfig = kn.dir.join("kube-proxy.kubeconfig");
        kubeconfig_in_netns(&self.cp, &tn.ns, &kubeconfig);
        let mut cmd = kn.inside();
        cmd.arg(kube_proxy_bin())
            .arg(format!("--kubeconfig={}", kubeconfig.display()))
            .arg(format!("--hostname-override={}", tn.name))
            .arg("--proxy-mode=iptables")
            .arg("--detect-local-mode=ClusterCIDR")
            .arg(format!("--cluster-cidr={}", self.cluster_cidr))
            // Leave the namespace's conntrack sysctls alone.
            .args([
                "--conntrack-max-per-core=0",
                "--conntrack-tcp-timeout-established=0",
                "--conntrack-tcp-timeout-close-wait=0",
                "--v=2",
            ])
            .envs(self.iptables_env.iter().map(|(k, v)| (k, v)));
        Supervised::start(cmd, &kn.dir.join("kube-proxy.log")).expect("start kube-proxy")
    }

    /// Waits (up to `timeout`) until kube-proxy on every Node programs the
    /// `kubernetes` Service (10.96.0.1:443 to the advertised API server):
    /// how pods, the operator's among them, reach the API server.
    pub async fn wait_kube_proxy(&self, timeout: Duration) {
        let endpoint = format!("{API_ADDRESS}:{}", self.cp.api_port());
        for i in 0..self.nodes.len() {
            let what = format!("kube-proxy on {} programs 10.96.0.1", self.nodes[i].name());
            crate::wait_for(&what, timeout, || async {
                self.nat_rules(i, false).contains(&endpoint).then_some(())
            })
            .await;
        }
    }

    /// `iptables-save -t nat` (or `ip6tables-save`) in node `i`'s namespace.
    pub fn nat_rules(&self, i: usize, v6: bool) -> String {
        let mut cmd = self.nodes[i].kn.inside();
        cmd.arg(if v6 {
            "ip6tables-save"
        } else {
            "iptables-save"
        })
        .args(["-t", "nat"])
        .envs(self.iptables_env.iter().map(|(k, v)| (k, v)));
        let out = cmd.output().expect("iptables-save");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A command for a kubectl of the pinned release, as the cluster admin.
    pub fn kubectl(&self) -> Command {
        let bin = prefix_operator_testenv::bin_dir()
            .expect("control-plane binaries")
            .join("kubectl");
        let mut c = Command::new(bin);
        c.env_remove("KUBECONFIG")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig);
        c
    }

    /// The kube-controller-manager, kube-scheduler and kube-proxy logs' last
    /// `n` lines (the nodes print their own on a panic).
    pub fn log_tails(&self, n: usize) -> String {
        let mut files = vec![
            self.dir.join("kube-controller-manager.log"),
            self.dir.join("kube-scheduler.log"),
        ];
        files.extend(self.nodes.iter().map(|n| n.kn.dir.join("kube-proxy.log")));
        let mut out = String::new();
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            out.push_str(&format!("--- {} (last {n} lines)\n", f.display()));
            for l in &lines[lines.len().saturating_sub(n)..] {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.log_tails(40));
            eprintln!("{}", self.cp.log_tails(40));
        }
        for n in &mut self.nodes {
            if let Some(mut p) = n.proxy.take() {
                p.kill();
            }
        }
        // The nodes (kubelets first) go before the controllers that would
        // react to them going.
        self.nodes.clear();
        if let Some(mut s) = self.scheduler.take() {
            s.kill();
        }
        if let Some(mut k) = self.kcm.take() {
            k.kill();
        }
    }
}

/// Asks a whoami server (`e2e/node/whoami`) at `to` over HTTP from
/// namespace `from_ns`, retrying while the path is not there yet (up to
/// `patience`): the name of the pod that answered and the client address
/// it saw.
pub fn ask_http(from_ns: &str, to: SocketAddr, patience: Duration) -> (String, std::net::IpAddr) {
    use std::io::{Read, Write};
    let text = crate::netns::in_netns(from_ns, move || {
        let deadline = std::time::Instant::now() + patience;
        loop {
            let attempt = std::net::TcpStream::connect_timeout(&to, Duration::from_secs(2))
                .and_then(|mut s| {
                    s.set_read_timeout(Some(Duration::from_secs(5)))?;
                    s.write_all(b"GET / HTTP/1.0\r\nHost: lab\r\n\r\n")?;
                    let mut text = String::new();
                    s.read_to_string(&mut text)?;
                    Ok(text)
                });
            match attempt {
                Ok(t) if t.starts_with("HTTP/1.0 200") => break t,
                _ if std::time::Instant::now() < deadline => {}
                other => panic!("GET http://{to}/: {other:?}"),
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    parse_whoami(&text).unwrap_or_else(|| panic!("http://{to}/ answered {text:?}"))
}

/// "NAME PEER" from a whoami answer (the body, after the headers if any).
pub fn parse_whoami(text: &str) -> Option<(String, std::net::IpAddr)> {
    let body = text.split("\r\n\r\n").last()?;
    let mut words = body.split_whitespace();
    let name = words.next()?.to_string();
    let peer = words.next()?.parse().ok()?;
    Some((name, peer))
}
