//! Registration latency on the lab cluster (issue 31), measured and
//! reported, not asserted: from a kubelet's registration of a new Node to
//! the Node's podCIDRs and to the Node Ready, p50/p99 over
//! `LAB_BENCH_REGISTRATIONS` (default 20) registrations, first with the
//! operator as a Helm-installed pod, then with kube-controller-manager's
//! range allocator in its place.
//!
//! The lab ([`cluster`]) as `tests/lab.rs` builds it: two Nodes run the
//! operator's two replicas (the image imported into their containerd, the
//! chart installed with Helm, examples/pools.yaml applied). A third lab
//! node, the bench node, is a network namespace with its own containerd;
//! its kubelet is restarted under a new `--hostname-override` for every
//! registration, as a new machine would register: the previous kubelet
//! stopped, its CNI configuration and its state (`/var/lib/kubelet`, the
//! serving certificate) removed, so the new Node turns Ready only once the
//! docs/cni.md's CNI recipe has written the configuration from its podCIDRs. The
//! recipe runs as soon as the podCIDRs are seen, as a CNI daemon would.
//! The Nodes of a phase stay (their kubelets gone) until the phase ends, so
//! that each allocator serves a growing cluster and their podCIDRs can be
//! checked distinct; then they are deleted.
//!
//! kube-controller-manager (`--controllers=node-ipam-controller
//! --allocate-node-cidrs`) takes over the GUA pool's own range,
//! 2001:db8:42::/48, after `helm uninstall`: its range allocator refuses to
//! start ("cidr ... is out the range of cluster cidr") when a Node's
//! podCIDRs lie outside its `--cluster-cidr`, and the operator's two Nodes
//! keep theirs. It knows no reserved prefix, so it hands out the pool's
//! reserved first /64 too.
//!
//! Times are taken on the test side ([`Instant`]) from a watch on the
//! Node's name, started before the kubelet: registration is the first
//! event of the Node object (its creationTimestamp has a 1 s precision),
//! podCIDRs and Ready the first events that carry them. Each allocator gets
//! one warm-up registration first, reported apart and not counted; the
//! operator's is also where the grace it keeps after it starts leading
//! (`prefix_operator::ledger::FAMILY_GRACE`, as the IPv4 pool of
//! examples/pools.yaml puts IPv4 in use) shows: it registers just after the
//! leader took the Lease and waits that grace out, so the measured ones
//! come after it.
//!
//! Only correctness is asserted: every Node got one /64 inside the range
//! its allocator serves, the Node turned Ready only after its podCIDRs, and
//! the podCIDRs the API server holds are those the watch saw and all
//! distinct. The table goes to stderr and to `target/lab-bench/report.txt`,
//! with the bench node's kubelet and containerd logs and the range
//! allocator's beside it.
//!
//! Run by `make lab-bench`; `#[ignore]`d, so `make test` lists it as
//! ignored. Needs root, network namespaces and cgroups, like tests/lab.rs.

#[path = "lab/install.rs"]
#[allow(dead_code)]
mod install;
use prefix_operator_testsupport as support;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use futures::{StreamExt, TryStreamExt};
use install::*;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::{DeleteParams, ListParams};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use prefix_operator_testenv::Supervised;
use support::cni::{TestNode, run_recipe};
use support::helm::Helm;
use support::lab::cluster::Cluster;
use support::lab::node::LabNode;
use support::*;

/// The GUA pool of examples/pools.yaml, its reserved first /64, and its
/// IPv4 pool (kube-proxy's cluster CIDRs).
const GUA: &str = "2001:db8:42::/48";
const GUA_RESERVED: &str = "2001:db8:42::/64";
const V4: &str = "10.244.0.0/16";
/// The bench node's index: `fd00:100:9::2`, `192.168.9.2`.
const BENCH: u8 = 9;
const DEFAULT_REGISTRATIONS: usize = 20;

fn step(t0: Instant, what: &str) {
    eprintln!("lab-bench: {:>6.1}s {what}", t0.elapsed().as_secs_f64());
}

fn registrations() -> usize {
    match std::env::var("LAB_BENCH_REGISTRATIONS") {
        Ok(v) => v
            .parse()
            .ok()
            .filter(|n| *n > 0)
            .unwrap_or_else(|| panic!("LAB_BENCH_REGISTRATIONS={v:?}: a positive count")),
        Err(_) => DEFAULT_REGISTRATIONS,
    }
}

fn report_path() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_dir().join("target"))
        .join("lab-bench/report.txt")
}

/// The operator's Lease: holder and when it acquired it.
async fn lease(client: &Client) -> Option<(String, k8s_openapi::jiff::Timestamp)> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), NS);
    let spec = leases.get_opt("prefix-operator").await.ok()??.spec?;
    Some((spec.holder_identity?, spec.acquire_time?.0))
}

/// The bench node: a lab node (namespace, containerd) whose kubelet this
/// file runs itself, under a new name for each registration.
struct BenchNode {
    kn: LabNode,
    tn: TestNode,
    node_ip: String,
}

impl BenchNode {
    fn start(c: &mut Cluster, i: u8) -> BenchNode {
        let tn = c.lab.node(i, "lab-bench");
        let mut kn = LabNode::start_containerd(&tn, &c.dir, &c.components, &c.lab.cni);
        let node_ip = format!("fd00:100:{i}::2,192.168.{i}.2");
        kn.prepare_kubelet(&c.cp, &tn.ns, &node_ip);
        BenchNode { kn, tn, node_ip }
    }

    /// The node as a new machine: no kubelet, no CNI configuration, no
    /// kubelet state.
    fn reset(&mut self) {
        self.kn.stop_kubelet();
        let state = self.tn.state.join("kubelet");
        for dir in [&self.tn.conf, &state] {
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let p = e.path();
                let gone = if e.file_type().is_ok_and(|t| t.is_dir()) {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                };
                gone.unwrap_or_else(|e| panic!("remove {}: {e}", p.display()));
            }
        }
        for f in ["kubelet.crt", "kubelet.key"] {
            let _ = std::fs::remove_file(self.kn.dir.join("kubelet/certs").join(f));
        }
    }

    /// The kubelet as [`LabNode::start_kubelet`] starts it, registering
    /// `name`.
    fn start_kubelet(&mut self, name: &str) {
        let ip = self.node_ip.clone();
        self.kn.run_kubelet(name, &ip, &[]);
    }

    /// The node as the docs/cni.md recipe sees it under `name`.
    fn as_node(&self, name: &str) -> TestNode {
        TestNode {
            name: name.into(),
            ns: self.tn.ns.clone(),
            conf: self.tn.conf.clone(),
            state: self.tn.state.clone(),
        }
    }
}

/// One registration's times, from the test's clock.
#[derive(Clone, Debug)]
struct Sample {
    name: String,
    /// kubelet started -> first event of the Node.
    startup: Duration,
    /// Node first seen -> podCIDRs first seen.
    to_cidrs: Duration,
    /// Node first seen -> Ready=True first seen.
    to_ready: Duration,
    /// The docs/cni.md recipe's run (kubectl get node, the file written).
    recipe: Duration,
    /// The CNI configuration file written (its mtime) -> Ready=True seen.
    conf_to_ready: Duration,
    /// When the Node was first seen, and with podCIDRs (wall clock).
    seen_wall: SystemTime,
    cidrs_wall: SystemTime,
    cidrs: Vec<String>,
    /// Other tests' control planes running when it ended.
    others: usize,
}

/// Registers `name` on the bench node and times it.
async fn register(c: &Cluster, b: &mut BenchNode, name: &str) -> Sample {
    tokio::task::block_in_place(|| b.reset());
    // containerd sees its CNI configuration go (fsnotify) and reports the
    // network not ready.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let nodes: Api<Node> = Api::all(c.client.clone());
    let cfg = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut stream = watcher::watcher(nodes, cfg).boxed();
    loop {
        match tokio::time::timeout(WAIT, stream.try_next()).await {
            Ok(Ok(Some(Event::InitDone))) => break,
            Ok(Ok(Some(Event::InitApply(_)))) => panic!("Node {name} exists already"),
            Ok(Ok(Some(_))) => {}
            Ok(Ok(None)) => panic!("the watch on {name} ended"),
            Ok(Err(e)) => {
                eprintln!("lab-bench: watch {name}: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(_) => panic!("no list of Node {name} within {WAIT:?}"),
        }
    }
    // The watch is polled from here on, and each event stamped as it comes.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let forward = tokio::spawn(async move {
        while let Some(ev) = stream.next().await {
            match ev {
                Ok(ev) => {
                    if tx.send((Instant::now(), SystemTime::now(), ev)).is_err() {
                        break;
                    }
                }
                Err(e) => eprintln!("lab-bench: watch: {e}"),
            }
        }
    });

    let kubectl_dir = prefix_operator_testenv::bin_dir().expect("control-plane binaries");
    let started = Instant::now();
    tokio::task::block_in_place(|| b.start_kubelet(name));
    let deadline = tokio::time::Instant::now() + WAIT;
    let (mut seen, mut cidrs_at, mut cidrs) = (None, None, Vec::new());
    let (mut seen_wall, mut cidrs_wall) = (None, None);
    let mut recipe = None;
    let (ready_at, ready_wall) = loop {
        let Ok(Some((at, wall, ev))) = tokio::time::timeout_at(deadline, rx.recv()).await else {
            panic!(
                "Node {name}: seen {:?}, podCIDRs {cidrs:?}, not Ready within {WAIT:?}\n{}",
                seen.map(|s: Instant| s - started),
                b.kn.log_tails(40)
            );
        };
        let node = match ev {
            Event::Apply(n) | Event::InitApply(n) => n,
            Event::Delete(_) => panic!("Node {name} deleted"),
            Event::Init | Event::InitDone => continue,
        };
        let first = seen.is_none();
        let seen_at = *seen.get_or_insert(at);
        seen_wall.get_or_insert(wall);
        if first {
            assert!(
                !node_ready(&node),
                "{name} was Ready when it registered: the CNI configuration was not gone"
            );
        }
        let now_cidrs = node_cidrs(&node);
        if cidrs_at.is_none() && !now_cidrs.is_empty() {
            cidrs_at = Some(at);
            cidrs_wall = Some(wall);
            cidrs = now_cidrs;
            // What a CNI daemon does once the Node has its podCIDRs.
            let (dir, kubeconfig, tn) =
                (kubectl_dir.clone(), c.kubeconfig.clone(), b.as_node(name));
            recipe = Some(tokio::task::spawn_blocking(move || {
                let t = Instant::now();
                run_recipe(&dir, &kubeconfig, &tn);
                let written = std::fs::metadata(tn.conf.join("10-pods.conflist"))
                    .and_then(|m| m.modified())
                    .expect("the recipe's file");
                (t.elapsed(), written)
            }));
        }
        if node_ready(&node) {
            let cidrs_at =
                cidrs_at.unwrap_or_else(|| panic!("{name} Ready before it had podCIDRs: {node:?}"));
            assert!(at >= cidrs_at && at >= seen_at);
            break (at, wall);
        }
    };
    forward.abort();
    let (recipe, written) = recipe
        .expect("the recipe ran")
        .await
        .expect("the docs/cni.md recipe");
    let conf_to_ready = ready_wall
        .duration_since(written)
        .unwrap_or_else(|_| panic!("{name} Ready before its CNI configuration was written"));
    let seen = seen.expect("seen");
    Sample {
        name: name.into(),
        startup: seen - started,
        to_cidrs: cidrs_at.expect("podCIDRs") - seen,
        to_ready: ready_at - seen,
        recipe,
        conf_to_ready,
        seen_wall: seen_wall.expect("seen"),
        cidrs_wall: cidrs_wall.expect("podCIDRs"),
        cidrs,
        others: other_control_planes(),
    }
}

/// A warm-up registration, then `n` measured ones, named `<prefix>-<k>`.
async fn measure(
    c: &Cluster,
    b: &mut BenchNode,
    prefix: &str,
    n: usize,
    t0: Instant,
) -> (Sample, Vec<Sample>) {
    let warm = register(c, b, &format!("{prefix}-warm")).await;
    step(
        t0,
        &format!(
            "{prefix}: warm-up {} {:?} podCIDRs {:.0} ms, Ready {:.0} ms",
            warm.name,
            warm.cidrs,
            ms(warm.to_cidrs),
            ms(warm.to_ready)
        ),
    );
    let mut out = Vec::new();
    for k in 1..=n {
        let s = register(c, b, &format!("{prefix}-{k:02}")).await;
        step(
            t0,
            &format!(
                "{prefix}: {} {:?} podCIDRs {:.0} ms, Ready {:.0} ms (kubelet start {:.0} ms, recipe {:.0} ms)",
                s.name,
                s.cidrs,
                ms(s.to_cidrs),
                ms(s.to_ready),
                ms(s.startup),
                ms(s.recipe)
            ),
        );
        out.push(s);
    }
    (warm, out)
}

/// What the API server holds: every measured Node has the podCIDRs the
/// watch saw, one /64 inside `range` and outside `reserved`; no two Nodes'
/// podCIDRs overlap.
async fn check(client: &Client, samples: &[&Sample], range: &str, reserved: Option<&str>) {
    let range: ipnet::IpNet = range.parse().expect("range");
    let reserved: Option<ipnet::IpNet> = reserved.map(|r| r.parse().expect("reserved"));
    let all = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .expect("list Nodes")
        .items;
    for s in samples {
        let n = all
            .iter()
            .find(|n| n.metadata.name.as_deref() == Some(s.name.as_str()))
            .unwrap_or_else(|| panic!("Node {} gone", s.name));
        let held = node_cidrs(n);
        assert_eq!(
            held, s.cidrs,
            "{}: the API server holds what was seen",
            s.name
        );
        assert_eq!(held.len(), 1, "{}: one IPv6 podCIDR: {held:?}", s.name);
        let p: ipnet::IpNet = held[0].parse().expect("podCIDR");
        assert!(
            range.contains(&p) && p.prefix_len() == 64,
            "{}: {p} is a /64 of {range}",
            s.name
        );
        if let Some(r) = reserved {
            assert!(!r.contains(&p), "{}: {p} outside the reserved {r}", s.name);
        }
    }
    let mut nets: Vec<(String, ipnet::IpNet)> = all
        .iter()
        .flat_map(|n| {
            let name = n.metadata.name.clone().unwrap_or_default();
            node_cidrs(n)
                .into_iter()
                .map(move |c| (name.clone(), c.parse().expect("podCIDR")))
        })
        .collect();
    nets.sort_by_key(|(_, n)| *n);
    for w in nets.windows(2) {
        let ((a, x), (b, y)) = (&w[0], &w[1]);
        assert!(
            !x.contains(y) && !y.contains(x),
            "{a} {x} and {b} {y} overlap"
        );
    }
}

async fn delete_nodes(client: &Client, samples: &[&Sample]) {
    let nodes: Api<Node> = Api::all(client.clone());
    for s in samples {
        nodes
            .delete(&s.name, &DeleteParams::default())
            .await
            .unwrap_or_else(|e| panic!("delete Node {}: {e}", s.name));
    }
    for s in samples {
        wait_gone(&nodes, &s.name).await;
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The nearest-rank percentile `p` of `v` (sorted here).
fn percentile(v: &[f64], p: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil().max(1.0) as usize;
    v[rank.min(v.len()) - 1]
}

fn stats(v: &[f64]) -> String {
    let max = v.iter().copied().fold(f64::MIN, f64::max);
    format!(
        "{:>7.0} {:>7.0} {:>7.0}",
        percentile(v, 50.0),
        percentile(v, 99.0),
        max
    )
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Live processes named `comm` on this machine.
fn running(comm: &str) -> usize {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return 0;
    };
    rd.flatten()
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter(|e| {
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            // "PID (COMM) STATE ...": not a zombie.
            let live = stat
                .rfind(')')
                .and_then(|i| stat[i + 1..].split_whitespace().next())
                .is_some_and(|st| st != "Z");
            live && std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == comm)
        })
        .count()
}

/// Control planes besides this test's own one: another test running (the
/// lab's, say) makes these numbers noisy on a small machine.
fn other_control_planes() -> usize {
    running("kube-apiserver").saturating_sub(1)
}

struct Phase {
    key: &'static str,
    /// Said after the warm-ups.
    note: String,
    label: &'static str,
    warm: Sample,
    samples: Vec<Sample>,
}

fn table(phases: &[Phase], header: &str) -> String {
    let mut t = String::new();
    writeln!(t, "{header}").unwrap();
    writeln!(
        t,
        "{:<36} {:>3}  {:^23}  {:^23}",
        "", "", "registration -> podCIDRs", "registration -> Ready"
    )
    .unwrap();
    writeln!(
        t,
        "{:<36} {:>3}  {:>7} {:>7} {:>7}  {:>7} {:>7} {:>7}  {:>6}",
        "allocator (ms)", "n", "p50", "p99", "max", "p50", "p99", "max", "others"
    )
    .unwrap();
    for p in phases {
        let cidrs: Vec<f64> = p.samples.iter().map(|s| ms(s.to_cidrs)).collect();
        let ready: Vec<f64> = p.samples.iter().map(|s| ms(s.to_ready)).collect();
        let busy = p.samples.iter().filter(|s| s.others > 0).count();
        writeln!(
            t,
            "{:<36} {:>3}  {}  {}  {:>6}",
            p.label,
            p.samples.len(),
            stats(&cidrs),
            stats(&ready),
            busy
        )
        .unwrap();
    }
    writeln!(t).unwrap();
    writeln!(
        t,
        "{:<36} {:>3}  {:^23}  {:^23}  {:^23}",
        "context (ms)", "n", "kubelet start -> reg.", "README recipe run", "CNI config -> Ready"
    )
    .unwrap();
    for p in phases {
        let col = |f: fn(&Sample) -> Duration| -> Vec<f64> {
            p.samples.iter().map(|s| ms(f(s))).collect()
        };
        writeln!(
            t,
            "{:<36} {:>3}  {}  {}  {}",
            p.label,
            p.samples.len(),
            stats(&col(|s| s.startup)),
            stats(&col(|s| s.recipe)),
            stats(&col(|s| s.conf_to_ready)),
        )
        .unwrap();
    }
    writeln!(t).unwrap();
    for p in phases {
        writeln!(
            t,
            "warm-up, not counted: {:<36} podCIDRs {:>6.0} ms, Ready {:>6.0} ms  {}",
            p.label,
            ms(p.warm.to_cidrs),
            ms(p.warm.to_ready),
            p.warm.cidrs.join(",")
        )
        .unwrap();
    }
    for p in phases.iter().filter(|p| !p.note.is_empty()) {
        writeln!(t, "{}", p.note).unwrap();
    }
    writeln!(t).unwrap();
    for p in phases {
        for s in &p.samples {
            writeln!(
                t,
                "sample {:<10} {:<10} podCIDRs {:>6.0} Ready {:>6.0} kubelet-start {:>6.0} recipe {:>6.0} conf-to-Ready {:>6.0} others {}  {}",
                p.key,
                s.name,
                ms(s.to_cidrs),
                ms(s.to_ready),
                ms(s.startup),
                ms(s.recipe),
                ms(s.conf_to_ready),
                s.others,
                s.cidrs.join(",")
            )
            .unwrap();
        }
    }
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "benchmark, run by make lab-bench"]
async fn registration_latency_operator_pod_vs_kcm_range_allocator() {
    let t0 = Instant::now();
    let n = registrations();
    let date = |fmt: &str| {
        run("date", {
            let mut c = Command::new("date");
            c.args(["-u", fmt]);
            c
        })
    };
    let started_at = date("+%Y-%m-%dT%H:%M:%SZ").trim().to_string();
    let load_before = loadavg();
    let others_before = running("kube-apiserver");

    let Some(mut c) = Cluster::start("lb", &format!("{GUA},{V4}")).await else {
        return;
    };
    let client = c.client.clone();
    // The operator's two replicas (one per Node: hostNetwork).
    c.add_node(1, &[], &[]);
    c.add_node(2, &[], &[]);
    step(t0, "control plane and the operator's two Nodes up");
    wait_kube_proxy(&c).await;
    // The README's install lines, as tests/lab.rs runs them.
    let helm = Helm::new();
    for line in readme_install() {
        tokio::task::block_in_place(|| run_install_line(&c, &helm, &line, 0..c.nodes.len()));
    }
    let replicas = wait_rolled_out(&client, 2).await;
    let (holder, acquired) = wait_for("the Lease held by an operator pod", WAIT, || async {
        lease(&client).await.filter(|(h, _)| replicas.contains(h))
    })
    .await;
    step(
        t0,
        &format!("operator pods Ready {replicas:?}, Lease held by {holder}"),
    );

    let mut bench = tokio::task::block_in_place(|| BenchNode::start(&mut c, BENCH));
    step(t0, "bench node's containerd up");

    // 1. The operator as a pod. Its warm-up Node, an IPv6-only one
    //    registered just after the leader took the Lease, waits out the
    //    grace after starting to lead: once it has its podCIDRs, that grace
    //    is over for the measured ones.
    let (warm, samples) = measure(&c, &mut bench, "op", n, t0).await;
    let measured: Vec<&Sample> = samples.iter().collect();
    check(&client, &measured, GUA, Some(GUA_RESERVED)).await;
    let still = lease(&client).await.map(|(h, _)| h);
    assert_eq!(
        still.as_deref(),
        Some(holder.as_str()),
        "one leader throughout"
    );
    let acquired = SystemTime::from(acquired);
    let since_lease = |t: SystemTime| t.duration_since(acquired).unwrap_or_default();
    let note = format!(
        "the operator's warm-up Node registered {:.1} s after the leader took the Lease and got \
         its podCIDRs {:.1} s after (the grace after starting to lead: {:?})",
        since_lease(warm.seen_wall).as_secs_f64(),
        since_lease(warm.cidrs_wall).as_secs_f64(),
        prefix_operator::ledger::FAMILY_GRACE
    );
    let op = Phase {
        key: "operator",
        note,
        label: "operator pod (helm, 2 replicas)",
        warm,
        samples,
    };
    let mut gone: Vec<&Sample> = op.samples.iter().collect();
    gone.push(&op.warm);
    delete_nodes(&client, &gone).await;
    step(t0, "operator's Nodes checked and deleted");

    // 2. kube-controller-manager's range allocator in its place, over the
    //    same range: it refuses to start when a Node's podCIDRs lie outside
    //    its --cluster-cidr, and the operator's Nodes keep theirs.
    tokio::task::block_in_place(|| {
        let mut cmd = helm.cmd();
        cmd.args(["uninstall", "prefix-operator", "-n", NS, "--kubeconfig"])
            .arg(&c.kubeconfig);
        run("helm uninstall", cmd);
    });
    wait_for("the operator's pods gone", WAIT, || async {
        operator_pods(&client).await.is_empty().then_some(())
    })
    .await;
    let kcm_log = c.dir.join("kcm-node-ipam.log");
    let kcm_dir = support::components::kcm_bin()
        .parent()
        .expect("kcm dir")
        .to_path_buf();
    let mut kcm = Supervised::spawn(
        &kcm_dir.join("kube-controller-manager"),
        &[
            format!("--kubeconfig={}", c.kubeconfig.display()),
            "--controllers=node-ipam-controller".into(),
            "--allocate-node-cidrs=true".into(),
            format!("--cluster-cidr={GUA}"),
            "--node-cidr-mask-size=64".into(),
            format!(
                "--service-cluster-ip-range={}",
                prefix_operator_testenv::DEFAULT_SERVICE_RANGES
            ),
            "--leader-elect=false".into(),
            "--secure-port=0".into(),
            "--v=2".into(),
        ],
        &kcm_log,
    )
    .expect("start kube-controller-manager (node IPAM)");
    let deadline = Instant::now() + WAIT;
    while !std::fs::read_to_string(&kcm_log)
        .unwrap_or_default()
        .contains("Starting range CIDR allocator")
    {
        if let Some(st) = kcm.exited() {
            panic!(
                "kube-controller-manager exited ({st}):\n{}",
                std::fs::read_to_string(&kcm_log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "the range allocator did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    step(
        t0,
        "operator uninstalled, kube-controller-manager's range allocator up",
    );
    let (warm, samples) = measure(&c, &mut bench, "kcm", n, t0).await;
    let measured: Vec<&Sample> = samples.iter().collect();
    check(&client, &measured, GUA, None).await;
    assert!(kcm.exited().is_none(), "kube-controller-manager still runs");
    let kcm_phase = Phase {
        key: "kcm",
        note: String::new(),
        label: "kube-controller-manager range alloc.",
        warm,
        samples,
    };

    let others_after = other_control_planes();
    let header = format!(
        "lab-bench: registration latency of a kubelet v1.36.3 registering a new Node\n\
         ran {started_at} to {}, {} CPUs; load average {load_before} before, {} after; \
         other tests' control planes: {others_before} before, {others_after} at the end, \
         and \"others\" registrations of each allocator ran while one did\n\
         registration = the Node's first watch event; podCIDRs, Ready = the first events \
         with them (test-side clock). Ready needs the CNI configuration, written by the \
         docs/cni.md recipe (kubectl get node + a file) once the podCIDRs are seen.\n\
         p99 is nearest-rank: with n < 100 it is the max.\n",
        date("+%Y-%m-%dT%H:%M:%SZ").trim(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        loadavg(),
    );
    let report = table(&[op, kcm_phase], header.trim_end());
    eprintln!("\n{report}");
    let path = report_path();
    std::fs::create_dir_all(path.parent().expect("dir")).expect("report dir");
    std::fs::write(&path, &report).expect("write the report");
    // The logs beside it, to see where the time went.
    let logs = [
        (bench.kn.dir.join("kubelet.log"), "bench-kubelet.log"),
        (bench.kn.dir.join("containerd.log"), "bench-containerd.log"),
        (kcm_log.clone(), "kcm-node-ipam.log"),
    ];
    for (from, to) in logs {
        let _ = std::fs::copy(&from, path.with_file_name(to));
    }
    step(t0, &format!("report written to {}", path.display()));

    kcm.kill();
    drop(bench);
    drop(c);
    step(t0, "lab torn down");
}
