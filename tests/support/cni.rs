//! Pods the way a container runtime wires them, with the reference CNI
//! plugins and `cnitool` (built from Go modules by `e2e/cni/build.sh`) and
//! the bridge + host-local recipe of docs/cni.md: a router namespace, node
//! namespaces linked to it, and pod namespaces on each node.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::netns::*;

/// The shell block after `<!-- cni-recipe:bridge -->` in docs/cni.md, with
/// any list-item indentation removed.
pub fn doc_recipe() -> String {
    let doc = include_str!("../../docs/cni.md");
    let at = doc
        .find("<!-- cni-recipe:bridge -->")
        .expect("docs/cni.md has the bridge recipe marker");
    let mut lines = doc[at..].lines().skip(1);
    let fence = lines.next().expect("line after the marker");
    assert_eq!(
        fence.trim(),
        "```sh",
        "the marker is followed by a sh block"
    );
    let indent = fence.len() - fence.trim_start().len();
    let body: Vec<&str> = lines.take_while(|l| l.trim() != "```").collect();
    let mut out = String::new();
    for l in body {
        out.push_str(l.get(indent..).unwrap_or(l.trim_start()));
        out.push('\n');
    }
    out
}

pub fn cni_path() -> PathBuf {
    super::built_by("e2e/cni/build.sh")
}

/// A node: its namespace, its underlay addresses (router side is `.1`/`::1`),
/// and where its CNI config and host-local state live.
pub struct TestNode {
    pub name: String,
    pub ns: String,
    pub conf: PathBuf,
    pub state: PathBuf,
}

pub struct Lab {
    pub namespaces: Namespaces,
    pub router: String,
    pub tag: String,
    pub dir: PathBuf,
    pub cni: PathBuf,
}

impl Lab {
    /// `None` (after printing why) when this machine forbids namespaces.
    pub fn new(case: &str, dir: &Path) -> Option<Lab> {
        let tag = format!("{case}{}", std::process::id() % 10_000);
        let router = format!("r{tag}");
        let mut namespaces = Namespaces(Vec::new());
        if let Err(e) = namespaces.add(&router) {
            eprintln!(
                "SKIPPED CNI end-to-end case {case}: this machine forbids network namespaces ({e})"
            );
            return None;
        }
        for key in [
            "net.ipv6.conf.all.accept_dad=0",
            "net.ipv6.conf.default.accept_dad=0",
            "net.ipv6.conf.all.forwarding=1",
            "net.ipv4.ip_forward=1",
        ] {
            nssysctl(&router, key);
        }
        Some(Lab {
            namespaces,
            router,
            tag,
            dir: dir.to_path_buf(),
            cni: cni_path(),
        })
    }

    /// Node `i` wired to the router: fd00:100:i::2/64 and 192.168.i.2/24.
    pub fn node(&mut self, i: u8, name: &str) -> TestNode {
        let ns = format!("n{i}{}", self.tag);
        let veths = (format!("r{i}{}", self.tag), format!("u{i}{}", self.tag));
        self.attach(
            &ns,
            veths,
            &format!("fd00:100:{i}::"),
            &format!("192.168.{i}."),
        );
        let conf = self.dir.join(format!("{name}-net.d"));
        let state = self.dir.join(format!("{name}-var-lib"));
        std::fs::create_dir_all(&conf).expect("conf dir");
        std::fs::create_dir_all(&state).expect("state dir");
        TestNode {
            name: name.into(),
            ns,
            conf,
            state,
        }
    }

    /// An "outside" namespace behind the router, not a node of the
    /// cluster: fd00:200::2/64 and 192.168.200.2/24, default routes via the
    /// router (fd00:200::1, 192.168.200.1). Returns its name.
    pub fn outside(&mut self) -> String {
        let ns = format!("c{}", self.tag);
        let veths = (format!("rc{}", self.tag), format!("c0{}", self.tag));
        self.attach(&ns, veths, "fd00:200::", "192.168.200.");
        ns
    }

    /// Makes namespace `ns` and links it to the router by the veth pair
    /// `(router side, ns side)`: `{v6}1/64` and `{v4}1/24` on the router,
    /// `{v6}2` and `{v4}2` in `ns` with default routes via the router.
    fn attach(&mut self, ns: &str, (rv, nv): (String, String), v6: &str, v4: &str) {
        self.namespaces.add(ns).expect("netns");
        for key in [
            "net.ipv6.conf.all.accept_dad=0",
            "net.ipv6.conf.default.accept_dad=0",
        ] {
            nssysctl(ns, key);
        }
        ip(&[
            "link",
            "add",
            &rv,
            "netns",
            &self.router,
            "type",
            "veth",
            "peer",
            "name",
            &nv,
            "netns",
            ns,
        ])
        .expect("veth");
        for (side, dev, host) in [(self.router.as_str(), &rv, 1), (ns, &nv, 2)] {
            let (a6, a4) = (format!("{v6}{host}/64"), format!("{v4}{host}/24"));
            nsip(side, &["addr", "add", &a6, "dev", dev, "nodad"]);
            nsip(side, &["addr", "add", &a4, "dev", dev]);
            nsip(side, &["link", "set", dev, "up"]);
            nsip(side, &["link", "set", "lo", "up"]);
        }
        nsip(
            ns,
            &["-6", "route", "add", "default", "via", &format!("{v6}1")],
        );
        nsip(
            ns,
            &["-4", "route", "add", "default", "via", &format!("{v4}1")],
        );
    }

    /// Adds a pod on `node` with `cnitool add`, as a container runtime would;
    /// returns the pod's namespace and its addresses in result order.
    pub fn pod(&mut self, node: &TestNode, pod: &str) -> (String, Vec<IpAddr>) {
        let ns = format!("{pod}{}", self.tag);
        self.namespaces.add(&ns).expect("pod netns");
        nssysctl(&ns, "net.ipv6.conf.default.accept_dad=0");
        // host-local keeps its leases in /var/lib/cni: give each node its own
        // (a private mount namespace with the node's state directory on
        // /var/lib), so the config stays exactly as the recipe wrote it.
        let out = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg(r#"mount --bind "$1" /var/lib && exec ip netns exec "$2" "$3" add pods "/var/run/netns/$4""#)
            .arg("sh")
            .arg(&node.state)
            .arg(&node.ns)
            .arg(self.cni.join("cnitool"))
            .arg(&ns)
            .env("CNI_PATH", &self.cni)
            .env("NETCONFPATH", &node.conf)
            .output()
            .expect("cnitool");
        assert!(
            out.status.success(),
            "cnitool add on {}: {}{}",
            node.name,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let result: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("cnitool prints the CNI result");
        let ips = result["ips"]
            .as_array()
            .expect("result has ips")
            .iter()
            .map(|ip| {
                let a = ip["address"].as_str().expect("address");
                a.parse::<ipnet::IpNet>().expect("address/len").addr()
            })
            .collect();
        (ns, ips)
    }
}

/// Runs the docs/cni.md recipe for `node` with the cluster's kubectl.
pub fn run_recipe(kubectl_dir: &Path, kubeconfig: &Path, node: &TestNode) -> serde_json::Value {
    let path = format!(
        "{}:{}",
        kubectl_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = Command::new("sh")
        .args(["-euc", &doc_recipe()])
        .env("PATH", path)
        .env("KUBECONFIG", kubeconfig)
        .env("NODE", &node.name)
        .env("CNI_CONF_DIR", &node.conf)
        .output()
        .expect("sh");
    assert!(
        out.status.success(),
        "docs/cni.md recipe for {}: {}",
        node.name,
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(node.conf.join("10-pods.conflist")).expect("conflist");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("recipe wrote bad JSON ({e}):\n{text}"))
}

/// What `prefix-operator routes --format ip` prints for the cluster of
/// `kubeconfig`: the whole text, and the `ip ...` lines a router applies.
pub fn ip_routes(kubeconfig: &Path) -> (String, Vec<String>) {
    let out = Command::new(super::operator_bin())
        .args(["routes", "--format", "ip", "--kubeconfig"])
        .arg(kubeconfig)
        .output()
        .expect("prefix-operator routes");
    assert!(
        out.status.success(),
        "prefix-operator routes: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let lines = text
        .lines()
        .filter(|l| l.starts_with("ip "))
        .map(str::to_string)
        .collect();
    (text, lines)
}

impl Lab {
    /// Runs each `ip ARGS` line in the router namespace, exactly as printed.
    pub fn apply_routes(&self, lines: &[String]) {
        for line in lines {
            let args: Vec<&str> = line.split_whitespace().skip(1).collect();
            nsip(&self.router, &args);
        }
    }
}

/// Gives Node `name` the InternalIPs [`Lab::node`] wires for node `i`
/// (fd00:100:i::2 and 192.168.i.2), as a kubelet would report them.
pub async fn set_lab_addresses(client: &kube::Client, name: &str, i: u8) {
    let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client.clone());
    nodes
        .patch_status(
            name,
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(serde_json::json!({"status": {"addresses": [
                {"type": "InternalIP", "address": format!("fd00:100:{i}::2")},
                {"type": "InternalIP", "address": format!("192.168.{i}.2")},
            ]}})),
        )
        .await
        .expect("node addresses");
}
