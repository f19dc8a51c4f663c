//! What a lab Node leaves that is not a child of the test, and how it goes.
//!
//! containerd's shim daemonizes and the containers are the shim's children,
//! so killing containerd kills neither. Everything of a node carries its
//! tag, `prefix-operator-lab-<test pid>-<node>`: its directory (so a shim's
//! command line, which holds the containerd socket path, names it) and its
//! cgroup root (under which the kubelet puts every pod). A [`LabNode`]'s
//! drop kills by tag; [`sweep_stale`] does the same at start for the tags
//! of test processes that are gone (killed by a timeout, say: a SIGKILLed
//! test runs no drop).
//!
//! [`LabNode`]: super::node::LabNode

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const PREFIX: &str = "prefix-operator-lab-";

/// The tag of node `name` of this test process.
pub fn tag(name: &str) -> String {
    format!("{PREFIX}{}-{name}", std::process::id())
}

/// The cgroup v1 hierarchies of this machine (`/sys/fs/cgroup/<name>`, one
/// per mounted controller set), not the unified (v2) one.
pub fn v1_hierarchies() -> Vec<PathBuf> {
    cgroup_mounts(&["cgroup"])
}

/// Every cgroup hierarchy, the unified one too: runc in hybrid mode makes
/// each container's cgroup there as well.
fn all_hierarchies() -> Vec<PathBuf> {
    cgroup_mounts(&["cgroup", "cgroup2"])
}

fn cgroup_mounts(types: &[&str]) -> Vec<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 2 && types.contains(&f[2])).then(|| PathBuf::from(f[1]))
        })
        .collect()
}

/// Cgroup `/<tag>` in every v1 hierarchy (the kubelet refuses a cgroup root
/// that does not exist); cpuset needs its CPUs and memory nodes copied from
/// the parent before anything can join it.
pub fn make_cgroup_root(tag: &str) {
    for h in v1_hierarchies() {
        let d = h.join(tag);
        std::fs::create_dir_all(&d).unwrap_or_else(|e| panic!("mkdir {}: {e}", d.display()));
        for f in ["cpuset.cpus", "cpuset.mems"] {
            if let Ok(v) = std::fs::read_to_string(h.join(f)) {
                std::fs::write(d.join(f), v.trim())
                    .unwrap_or_else(|e| panic!("{}: {e}", d.join(f).display()));
            }
        }
    }
}

/// SIGKILLs every process of node `tag`: the ones whose command line names
/// it (shims, and containerd and the kubelet if still there) and the ones in
/// its cgroups. Returns how many it signalled.
pub fn kill_tagged(tag: &str) -> usize {
    let mut pids = Vec::new();
    let me = std::process::id() as i32;
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if pid != me && String::from_utf8_lossy(&cmdline).contains(tag) {
                pids.push(pid);
            }
        }
    }
    for h in all_hierarchies() {
        for d in dirs_deepest_first(&h.join(tag)) {
            let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
            pids.extend(procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
        }
    }
    pids.sort_unstable();
    pids.dedup();
    for &pid in &pids {
        // SAFETY: kill(2) with a pid read just now from this node's cgroups
        // or from a command line that names this node.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
    pids.len()
}

/// Kills node `tag`'s processes until none is left (a shim may be starting
/// a container meanwhile), for at most `patience`.
pub fn kill_all_tagged(tag: &str, patience: Duration) {
    let deadline = Instant::now() + patience;
    while kill_tagged(tag) > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Removes node `tag`'s cgroups, children first, waiting for the kernel to
/// let go of the killed processes.
pub fn remove_cgroups(tag: &str) {
    for h in all_hierarchies() {
        for d in dirs_deepest_first(&h.join(tag)) {
            for _ in 0..50 {
                if std::fs::remove_dir(&d).is_ok() || !d.exists() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// Kills and removes what lab Nodes of test processes that no longer run
/// left behind (found by their cgroup roots).
pub fn sweep_stale() {
    sweep(|pid| !Path::new(&format!("/proc/{pid}")).exists());
}

/// Kills and removes what the lab Nodes of process `pid` left behind, which
/// must have ended: `make dev-down` after SIGKILLing `lab-cluster`, whose
/// /proc entry may outlive it as a zombie for a while.
pub fn sweep_process(pid: u32) {
    sweep(|p| p == pid);
}

/// Kills and removes the lab Nodes whose process `gone` says has ended.
fn sweep(gone: impl Fn(u32) -> bool) {
    let mut tags = Vec::new();
    for h in all_hierarchies() {
        let Ok(rd) = std::fs::read_dir(&h) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(rest) = name.strip_prefix(PREFIX) else {
                continue;
            };
            let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
                continue;
            };
            if gone(pid) {
                tags.push(name);
            }
        }
    }
    tags.sort();
    tags.dedup();
    for tag in tags {
        eprintln!("lab: removing {tag}, left by a process that is gone");
        kill_all_tagged(&tag, Duration::from_secs(10));
        remove_cgroups(&tag);
    }
}

/// `root` and every directory under it, children before parents.
fn dirs_deepest_first(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    fn walk(d: &Path, out: &mut Vec<PathBuf>) {
        if let Ok(rd) = std::fs::read_dir(d) {
            for e in rd.flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    walk(&e.path(), out);
                }
            }
        }
        if d.is_dir() {
            out.push(d.to_path_buf());
        }
    }
    walk(root, &mut out);
    out
}
