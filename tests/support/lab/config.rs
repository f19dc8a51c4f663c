//! The configuration files of a lab Node: containerd's and the kubelet's,
//! with the settings this kind of machine needs and why.

use std::path::Path;

/// The kubelet's configuration: cgroup v1 allowed, the cgroupfs driver
/// under the node's own cgroup root, no swap check, no authentication (only
/// the test reaches it), this node's containerd.
pub fn kubelet_config(
    cgroup_root: &str,
    socket: &Path,
    node_ip: &str,
    pod_logs: &Path,
) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        // This machine has cgroup v1 (hybrid mode); kubelet 1.36 refuses
        // it unless told otherwise.
        "failCgroupV1": false,
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": cgroup_root,
        "failSwapOn": false,
        // The kubelet lowers its own oom_score_adj to -999 by default;
        // without CAP_SYS_RESOURCE (see the containerd config) it can't.
        "oomScoreAdj": 0,
        "containerRuntimeEndpoint": format!("unix://{}", socket.display()),
        "authentication": {
            "anonymous": {"enabled": true},
            "webhook": {"enabled": false},
            "x509": {},
        },
        "authorization": {"mode": "AlwaysAllow"},
        "address": node_ip,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "podLogsDir": pod_logs,
        "resolvConf": "",
        "registerNode": true,
        "serializeImagePulls": false,
        // The lab's disks are the machine's: never evict or collect the
        // only (unpullable) image because the host is busy.
        "evictionHard": {
            "memory.available": "10Mi",
            "nodefs.available": "1%",
            "nodefs.inodesFree": "1%",
            "imagefs.available": "1%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
    })
}

/// containerd 2.x (config version 3): everything under the node's dir, the
/// CRI plugin with the imported pause image as sandbox, runc through the
/// runc v2 shim with cgroupfs, the node's CNI config dir and the reference
/// plugins; the plugins that would touch host-wide paths are off.
pub fn containerd_config(
    dir: &Path,
    socket: &Path,
    runc: &Path,
    cni_conf: &Path,
    cni_bin: &Path,
    pause: &str,
) -> String {
    let d = |p: &str| dir.join(p).display().to_string();
    format!(
        r#"version = 3
root = "{root}"
state = "{state}"
disabled_plugins = [
  "io.containerd.internal.v1.opt",
  "io.containerd.nri.v1.nri",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.blockfile",
  "io.containerd.snapshotter.v1.erofs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "{socket}"

[ttrpc]
  address = "{socket}.ttrpc"

[plugins.'io.containerd.cri.v1.images'.pinned_images]
  sandbox = "{pause}"

[plugins.'io.containerd.cri.v1.runtime']
  # This machine's bounding set lacks CAP_SYS_RESOURCE, so no process may
  # lower its oom_score_adj: runc's nsexec fails writing the kubelet's -998
  # for the sandbox ("failed to update /proc/self/oom_score_adj: Permission
  # denied"). Clamp every container's to containerd's own (0) instead.
  restrict_oom_score_adj = true
  # Pods' network namespaces under the state dir, not the host's /run/netns.
  netns_mounts_under_state_dir = true

[plugins.'io.containerd.cri.v1.runtime'.cni]
  bin_dirs = ["{cni_bin}"]
  conf_dir = "{cni_conf}"
  max_conf_num = 1

[plugins.'io.containerd.cri.v1.runtime'.containerd]
  default_runtime_name = "runc"

[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
  BinaryName = "{runc}"
  SystemdCgroup = false

[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
"#,
        root = d("containerd/root"),
        state = d("containerd/state"),
        socket = socket.display(),
        cni_bin = cni_bin.display(),
        cni_conf = cni_conf.display(),
        runc = runc.display(),
    )
}
