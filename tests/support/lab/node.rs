//! One lab Node: containerd (with the runc shim and runc) and a kubelet,
//! built by `e2e/node/build.sh`, in the network namespace of a
//! [`TestNode`](crate::cni::TestNode), with every directory under
//! the test's temp dir, its own containerd socket and its own cgroup root.
//!
//! Both run in one private mount namespace held by a `sleep` process (a copy
//! of the host's, so the cgroup v1 hierarchies stay visible; `ip netns exec`
//! would remount /sys without them), with the node's state directory bound
//! on /var/lib as [`Lab::pod`](crate::cni::Lab::pod) does for
//! host-local's leases, and a tmpfs of its own on /run: the shims put their
//! sockets in /run/containerd/s and runc its state in /run/containerd/runc
//! whatever containerd's state dir is. The container mounts, the pods'
//! network namespaces (under containerd's state dir) and those files die
//! with that namespace.
//!
//! The shims and containers are not children of the test (containerd's
//! shim daemonizes): [`LabNode`]'s drop kills them by the node's tag, see
//! [`cleanup`](super::cleanup), so nothing outlives the test even when it
//! panics.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use prefix_operator_testenv::{ControlPlane, Supervised};

use super::cleanup;
use super::config::{containerd_config, kubelet_config};
use crate::cni::TestNode;
use crate::kubeconfig_in_netns;

/// The directory `e2e/node/build.sh` prints: `bin/` (kubelet, containerd,
/// containerd-shim-runc-v2, ctr, runc) and `images/` (pause.tar and
/// pause.ref). `$NODE_COMPONENTS` overrides it.
pub fn components() -> PathBuf {
    if let Some(d) = std::env::var_os("NODE_COMPONENTS") {
        return PathBuf::from(d);
    }
    crate::built_by("e2e/node/build.sh")
}

/// The name the pause image carries in its tarball (the sandbox image).
pub fn pause_ref(components: &Path) -> String {
    std::fs::read_to_string(components.join("images/pause.ref"))
        .expect("images/pause.ref")
        .trim()
        .to_string()
}

pub struct LabNode {
    pub name: String,
    pub dir: PathBuf,
    /// `prefix-operator-lab-<test pid>-<node>`: this node's directory and
    /// cgroup root (see [`cleanup`]).
    pub tag: String,
    pub socket: PathBuf,
    pub bin: PathBuf,
    holder: Option<Supervised>,
    containerd: Option<Supervised>,
    kubelet: Option<Supervised>,
}

impl LabNode {
    /// Starts containerd for `node` and imports the pause image; the kubelet
    /// comes with [`LabNode::start_kubelet`].
    pub fn start_containerd(node: &TestNode, dir: &Path, components: &Path, cni: &Path) -> LabNode {
        cleanup::sweep_stale();
        let tag = cleanup::tag(&node.name);
        let dir = dir.join(&tag);
        for d in [
            "containerd/root",
            "containerd/state",
            "kubelet/certs",
            "pod-logs",
        ] {
            std::fs::create_dir_all(dir.join(d)).expect("node dir");
        }
        let bin = components.join("bin");
        let mut me = LabNode {
            name: node.name.clone(),
            // On the node's own /run (see the holder below): short enough for
            // a unix socket path whatever TMPDIR is, and the shims' command
            // lines (`-address`) still carry the tag.
            socket: PathBuf::from(format!("/run/{tag}/containerd.sock")),
            dir,
            tag,
            bin,
            holder: None,
            containerd: None,
            kubelet: None,
        };
        cleanup::make_cgroup_root(&me.tag);

        // The holder of the node's mount namespace.
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/var/run/netns/{}", node.ns))
            .args(["unshare", "--mount", "--propagation", "private", "sh", "-c"])
            .arg(concat!(
                r#"mount --bind "$1" /var/lib && mount -t tmpfs lab-run /run && "#,
                r#"mkdir "/run/$2" && exec sleep infinity"#
            ))
            .arg("sh")
            .arg(&node.state)
            .arg(&me.tag);
        let holder = Supervised::start(cmd, &me.dir.join("holder.log")).expect("start the holder");
        let pid = holder.pid();
        me.holder = Some(holder);
        wait_until(
            "the node's mount namespace",
            Duration::from_secs(10),
            || {
                std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|c| c.trim() == "sleep")
            },
        );

        let config = me.dir.join("containerd/config.toml");
        let text = containerd_config(
            &me.dir,
            &me.socket,
            &me.bin.join("runc"),
            &node.conf,
            cni,
            &pause_ref(components),
        );
        std::fs::write(&config, text).expect("containerd config");
        let mut cmd = me.inside();
        cmd.arg(me.bin.join("containerd"))
            .arg("--config")
            .arg(&config)
            .env("PATH", me.path_env(cni));
        me.containerd =
            Some(Supervised::start(cmd, &me.dir.join("containerd.log")).expect("start containerd"));
        wait_until("containerd's socket", Duration::from_secs(30), || {
            me.ctr(&["version"]).is_ok()
        });
        let tar = components.join("images/pause.tar");
        me.ctr(&["images", "import", &tar.display().to_string()])
            .unwrap_or_else(|e| panic!("ctr images import {}: {e}", tar.display()));
        me
    }

    /// Starts the kubelet for `node`: cgroup v1 allowed, the cgroupfs
    /// driver, no swap check, no authentication (the lab's API server
    /// reaches it only through the test), kubeconfig through a forwarder in
    /// the node's namespace.
    /// `node_ip` may be a dual-stack pair (`ipv6,ipv4`); `extra` are more
    /// kubelet flags.
    pub fn start_kubelet(
        &mut self,
        cp: &ControlPlane,
        node: &TestNode,
        node_ip: &str,
        extra: &[String],
    ) {
        self.prepare_kubelet(cp, &node.ns, node_ip);
        let name = self.name.clone();
        self.run_kubelet(&name, node_ip, extra);
    }

    /// Writes the kubelet's kubeconfig (through a forwarder in namespace
    /// `ns`) and configuration, for [`LabNode::run_kubelet`].
    pub fn prepare_kubelet(&mut self, cp: &ControlPlane, ns: &str, node_ip: &str) {
        kubeconfig_in_netns(cp, ns, &self.dir.join("kubelet/kubeconfig"));
        let cfg = kubelet_config(
            &format!("/{}", self.tag),
            &self.socket,
            // The kubelet serves on the primary address.
            node_ip.split(',').next().unwrap_or(node_ip),
            &self.dir.join("pod-logs"),
        );
        std::fs::write(
            self.dir.join("kubelet/config.json"),
            serde_json::to_vec_pretty(&cfg).expect("json"),
        )
        .expect("kubelet config");
    }

    /// Starts the kubelet, registering Node `name` (after
    /// [`LabNode::prepare_kubelet`]).
    pub fn run_kubelet(&mut self, name: &str, node_ip: &str, extra: &[String]) {
        let mut cmd = self.inside();
        cmd.arg(self.bin.join("kubelet"))
            .arg(format!(
                "--config={}",
                self.dir.join("kubelet/config.json").display()
            ))
            .arg(format!(
                "--kubeconfig={}",
                self.dir.join("kubelet/kubeconfig").display()
            ))
            // /var/lib is the node's state dir in its mount namespace. A long
            // root (under TMPDIR) puts the kubelet's unix sockets past the
            // 108-byte limit: "listen unix .../pod-resources/...: bind:
            // invalid argument", and the kubelet exits.
            .arg("--root-dir=/var/lib/kubelet")
            .arg(format!(
                "--cert-dir={}",
                self.dir.join("kubelet/certs").display()
            ))
            .arg(format!("--hostname-override={name}"))
            .arg(format!("--node-ip={node_ip}"))
            .arg("--v=2")
            .args(extra)
            .env("PATH", self.path_env(Path::new("/nonexistent")));
        self.kubelet =
            Some(Supervised::start(cmd, &self.dir.join("kubelet.log")).expect("start kubelet"));
    }

    /// Kills the kubelet (its pods keep running; containerd stays).
    pub fn stop_kubelet(&mut self) {
        if let Some(mut k) = self.kubelet.take() {
            k.kill();
        }
    }

    /// The last `n` lines of containerd's and the kubelet's logs.
    /// And of every container's log the kubelet kept (`pod-logs/`).
    pub fn log_tails(&self, n: usize) -> String {
        let mut files: Vec<PathBuf> = ["containerd.log", "kubelet.log"]
            .iter()
            .map(|f| self.dir.join(f))
            .collect();
        // pod-logs/<namespace>_<pod>_<uid>/<container>/<restart>.log
        let pods = std::fs::read_dir(self.dir.join("pod-logs"))
            .into_iter()
            .flatten();
        for pod in pods.flatten() {
            for container in std::fs::read_dir(pod.path())
                .into_iter()
                .flatten()
                .flatten()
            {
                let logs = std::fs::read_dir(container.path()).into_iter().flatten();
                files.extend(logs.flatten().map(|l| l.path()));
            }
        }
        let mut out = String::new();
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            out.push_str(&format!(
                "--- {} {} (last {n} lines)\n",
                self.name,
                f.display()
            ));
            for l in &lines[lines.len().saturating_sub(n)..] {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    /// `ctr` against this node's containerd, in the `k8s.io` namespace.
    pub fn ctr(&self, args: &[&str]) -> Result<String, String> {
        let mut cmd = self.inside();
        cmd.arg(self.bin.join("ctr"))
            .arg("--address")
            .arg(&self.socket)
            .args(["--namespace", "k8s.io"])
            .args(args);
        let out = cmd.output().map_err(|e| format!("ctr: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// The process holding this node's mount namespace (with its network
    /// namespace): `nsenter --target PID --mount --net` runs inside the node.
    pub fn holder_pid(&self) -> u32 {
        self.holder.as_ref().expect("holder").pid()
    }

    /// A command that runs in this node's network and mount namespaces.
    pub fn inside(&self) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.args([
            "--target",
            &self.holder_pid().to_string(),
            "--mount",
            "--net",
            "--",
        ]);
        cmd
    }

    fn path_env(&self, cni: &Path) -> String {
        format!(
            "{}:{}:{}",
            self.bin.display(),
            cni.display(),
            std::env::var("PATH").unwrap_or_default()
        )
    }
}

impl Drop for LabNode {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.log_tails(60));
        }
        // The kubelet first, so that nothing starts pods again; then the
        // shims and containers, containerd and the holder; the cgroups last.
        self.stop_kubelet();
        cleanup::kill_all_tagged(&self.tag, Duration::from_secs(20));
        if let Some(mut c) = self.containerd.take() {
            c.kill();
        }
        if let Some(mut h) = self.holder.take() {
            h.kill();
        }
        cleanup::kill_all_tagged(&self.tag, Duration::from_secs(5));
        cleanup::remove_cgroups(&self.tag);
    }
}

fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
