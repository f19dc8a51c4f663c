//! `make dev-up` / `make dev-down`, as a developer uses them: the lab
//! cluster where it can run (root, network namespaces, cgroups), and only
//! etcd + kube-apiserver with `DEV_LAB=no` or where it cannot.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use prefix_operator_testsupport::lab::ONE_AT_A_TIME;

fn make(args: &[&str]) -> Output {
    Command::new("make")
        .arg("-C")
        .arg(env!("CARGO_MANIFEST_DIR"))
        .arg("--no-print-directory")
        .args(args)
        .output()
        .expect("make")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A dev directory of this test's own; `make dev-down` on drop, whatever
/// happened.
struct Dev {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    arg: String,
}

impl Dev {
    fn new() -> Dev {
        let controlplane = Path::new(env!("CARGO_BIN_EXE_prefix-operator"))
            .parent()
            .expect("target dir")
            .to_path_buf();
        for bin in ["controlplane", "lab-cluster"] {
            assert!(
                controlplane.join(bin).exists(),
                "{bin} is built by `cargo build --workspace` (make test does it)"
            );
        }
        let tmp = tempfile::tempdir().expect("tmp");
        let dir = tmp.path().join("dev");
        let arg = format!("DEV={}", dir.display());
        Dev {
            _tmp: tmp,
            dir,
            arg,
        }
    }

    /// `make dev-up` with `extra` variables; its stdout.
    fn up(&self, extra: &[&str]) -> String {
        // `cargo test --workspace` has built the binaries already; a nested
        // cargo build would only re-resolve features and recompile.
        let mut args = vec!["dev-up", &self.arg, "CONTROLPLANE_BUILD=:"];
        args.extend_from_slice(extra);
        let up = make(&args);
        assert!(
            up.status.success(),
            "{}{}",
            text(&up.stdout),
            text(&up.stderr)
        );
        text(&up.stdout)
    }

    fn kubectl(&self, args: &[&str]) -> Command {
        let mut c = Command::new(self.dir.join("kubectl"));
        c.arg("--kubeconfig")
            .arg(self.dir.join("kubeconfig"))
            .args(args);
        c
    }

    fn pid(&self) -> u32 {
        std::fs::read_to_string(self.dir.join("controlplane.pid"))
            .expect("pid file")
            .trim()
            .parse()
            .expect("pid")
    }

    /// `make dev-down`, then: the process is gone, nothing names the dev
    /// directory, the directory is removed.
    fn down(&self) {
        let pid = self.pid();
        let down = make(&["dev-down", &self.arg]);
        assert!(down.status.success(), "{}", text(&down.stderr));
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|s| s.contains(") Z ")),
            "dev-up's process {pid} still running"
        );
        assert_eq!(
            processes_naming(&self.dir.display().to_string()),
            "",
            "processes left"
        );
        assert!(!self.dir.exists(), "state removed");
    }
}

impl Drop for Dev {
    fn drop(&mut self) {
        make(&["dev-down", &self.arg]);
    }
}

/// `pgrep -af PATTERN`: the processes whose command line holds it.
fn processes_naming(pattern: &str) -> String {
    let ps = Command::new("pgrep")
        .args(["-af", pattern])
        .output()
        .expect("pgrep");
    text(&ps.stdout).trim().to_string()
}

/// `kubectl apply` of a dual-stack Service: its ClusterIPs.
fn dual_stack_service(dev: &Dev) -> Vec<std::net::IpAddr> {
    let mut apply = dev
        .kubectl(&["apply", "-f", "-", "-o", "jsonpath={.spec.clusterIPs}"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl");
    std::io::Write::write_all(
        &mut apply.stdin.take().expect("stdin"),
        b"apiVersion: v1\nkind: Service\nmetadata: {name: dual, namespace: default}\n\
          spec: {ipFamilyPolicy: RequireDualStack, ports: [{port: 80}]}\n",
    )
    .expect("write");
    let out = apply.wait_with_output().expect("kubectl");
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice::<Vec<String>>(&out.stdout)
        .expect("clusterIPs")
        .iter()
        .map(|ip| ip.parse().expect("an address"))
        .collect()
}

#[test]
fn dev_up_without_the_lab_gives_a_control_plane_and_dev_down_leaves_nothing() {
    let dev = Dev::new();
    let out = dev.up(&["DEV_LAB=no"]);
    assert!(
        out.contains("cannot run here") && out.contains("DEV_LAB=no"),
        "says why it is not the lab: {out}"
    );
    assert!(out.contains("kubectl"), "prints how to use it: {out}");
    let got = dev.kubectl(&["get", "nodes"]).output().expect("kubectl");
    assert!(got.status.success(), "{}", text(&got.stderr));
    // Dual-stack Service ranges, IPv4 first, so the README's IPv6 Services
    // and PrefixClaims work on the dev cluster as written.
    let ips = dual_stack_service(&dev);
    assert!(
        matches!(ips.as_slice(), [a, b] if a.is_ipv4() && b.is_ipv6()),
        "{ips:?}"
    );
    dev.down();
}

/// The lab cluster: two kubelet Nodes (the second labelled for
/// examples/pools.yaml's IPv4 pool), kube-controller-manager at work,
/// `.dev/ctr` on each Node's containerd (with the operator's image when
/// target/image has it); then `make dev-down` leaves no process, network
/// namespace or cgroup of it. Where the lab cannot run, dev-up says why and
/// starts the control plane alone (SKIPPED for the lab part).
#[test]
fn dev_up_runs_the_lab_cluster_and_dev_down_removes_all_of_it() {
    let _one = ONE_AT_A_TIME.blocking_lock();
    let dev = Dev::new();
    let out = dev.up(&[]);
    let mode = std::fs::read_to_string(dev.dir.join("mode")).expect("mode");
    if mode.trim() != "lab" {
        assert!(out.contains("cannot run here"), "says why: {out}");
        eprintln!("SKIPPED dev-up's lab cluster: {out}");
        dev.down();
        return;
    }
    assert!(out.contains("PATH=") && out.contains("ctr"), "{out}");
    let pid = dev.pid();

    // Nodes registered by kubelets v1.36.3; lab-node-2 for the IPv4 pool.
    let got = dev
        .kubectl(&["get", "nodes", "-o", "json"])
        .output()
        .expect("kubectl");
    assert!(got.status.success(), "{}", text(&got.stderr));
    let list: serde_json::Value = serde_json::from_slice(&got.stdout).expect("json");
    let nodes = list["items"].as_array().expect("items");
    let names: Vec<&str> = nodes
        .iter()
        .map(|n| n["metadata"]["name"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(names, ["lab-node-1", "lab-node-2"]);
    for n in nodes {
        assert_eq!(n["status"]["nodeInfo"]["kubeletVersion"], "v1.36.3", "{n}");
    }
    assert_eq!(
        nodes[1]["metadata"]["labels"]["node-role.example.com/dual-stack"],
        "true"
    );
    // kube-controller-manager's ServiceAccount controller at work.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let sa = dev
            .kubectl(&["get", "serviceaccount", "default", "-n", "kube-system"])
            .output()
            .expect("kubectl");
        if sa.status.success() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no default ServiceAccount in kube-system: {}",
            text(&sa.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // `ctr` as printed (.dev on PATH), from the checkout: every Node, or one.
    let ctr = |node: Option<&str>| {
        let mut c = Command::new(dev.dir.join("ctr"));
        c.current_dir(env!("CARGO_MANIFEST_DIR"))
            .args(["-n", "k8s.io", "images", "ls", "-q"]);
        if let Some(n) = node {
            c.env("NODE", n);
        }
        let out = c.output().expect("ctr");
        assert!(out.status.success(), "{}", text(&out.stderr));
        (text(&out.stdout), text(&out.stderr))
    };
    let (images, headers) = ctr(None);
    assert!(
        headers.contains("== lab-node-1") && headers.contains("== lab-node-2"),
        "{headers}"
    );
    let operator_image = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/image")
        .read_dir()
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().ends_with("-amd64.oci.tar"));
    for wanted in ["/pause:", "/whoami:"]
        .into_iter()
        .chain(operator_image.then_some("ghcr.io/prefix-operator/prefix-operator:"))
    {
        assert_eq!(
            images.matches(wanted).count(),
            2,
            "{wanted} on both Nodes: {images}"
        );
    }
    let (one, headers) = ctr(Some("lab-node-2"));
    assert!(
        headers.contains("== lab-node-2") && !headers.contains("lab-node-1"),
        "{headers}"
    );
    assert_eq!(one.matches("/pause:").count(), 1, "{one}");

    let netns: Vec<String> = std::fs::read_to_string(dev.dir.join("netns"))
        .expect("netns")
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(netns.len(), 3, "the router and two Nodes: {netns:?}");
    dev.down();
    let left = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip");
    let left = text(&left.stdout);
    for ns in &netns {
        assert!(
            !left.split_whitespace().any(|w| w == ns),
            "{ns} left: {left}"
        );
    }
    // Shims and containers carry the Nodes' tag, as do their cgroups.
    let tag = format!("prefix-operator-lab-{pid}-");
    assert_eq!(processes_naming(&tag), "", "processes of the Nodes left");
    let mounts = std::fs::read_to_string("/proc/self/mounts").expect("mounts");
    for hierarchy in mounts.lines().filter_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() > 2 && f[2].starts_with("cgroup")).then(|| f[1].to_string())
    }) {
        let names: Vec<String> = std::fs::read_dir(&hierarchy)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(&tag))
            .collect();
        assert!(names.is_empty(), "cgroups left in {hierarchy}: {names:?}");
    }
    assert!(
        !mounts.contains(&dev.dir.display().to_string()),
        "mounts left under {}",
        dev.dir.display()
    );
}
