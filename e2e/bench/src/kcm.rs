//! kube-controller-manager's node IPAM (the range allocator) and the
//! operator given the same work on the same kind of fresh local control
//! plane: a backlog of N Nodes without podCIDRs that exist before the
//! allocator starts, and a steady trickle of new Nodes. Used by `kcm-bench`.
//!
//! kube-controller-manager is built from Go modules by `e2e/kcm/build.sh`
//! and runs only its `node-ipam-controller`, single-stack IPv6 with a /48
//! split into /64s (it refuses more than 16 bits between the cluster and
//! the node mask, so the operator's usual /32 cannot be given to it; the
//! operator gets the same /48).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use prefix_operator_testenv::{
    Supervised, cpu_seconds_of, established_connections, peak_rss_of, promtext,
};

use crate::cluster::{
    Cluster, OnError, Tracker, create_burst, create_pool, create_trickle, latencies,
    verify_allocations,
};
use crate::operator;
use crate::stats::{Summary, summarize};

/// The cluster range both allocators carve.
pub const CLUSTER_CIDR: &str = "2001:db8::/48";
pub const NODE_LEN: u8 = 64;
const POOL: &str = "bench";

/// Which allocator a phase runs.
#[derive(Clone, Debug, PartialEq)]
pub enum Allocator {
    /// kube-controller-manager; `qps` sets `--kube-api-qps` and
    /// `--kube-api-burst` (None: its defaults, QPS 20 and burst 30).
    Kcm { qps: Option<u32> },
    /// The operator binary at its defaults.
    Operator,
    /// An operator binary (the one under test, or another build) with
    /// these flags (e.g. `--http2=true`).
    OperatorWith(Option<PathBuf>, Vec<String>),
    /// The operator leader-elected as a Pod of the chart's ServiceAccount
    /// (its RBAC), under the chart's admission policies (the fence and
    /// least authority) or without them: what the policies cost.
    AsPod { policies: bool },
}

/// `--set` values for the chart's policies in [`Allocator::AsPod`]
/// (`KCM_BENCH_POLICY_SET`, space-separated): to measure one policy alone.
fn policy_set() -> Vec<String> {
    std::env::var("KCM_BENCH_POLICY_SET")
        .map(|v| v.split_whitespace().map(String::from).collect())
        .unwrap_or_default()
}

/// The Lease and the Pod of [`Allocator::AsPod`].
const AS_POD_LEASE: &str = "prefix-operator-bench";
const AS_POD: &str = "pob-kcm-bench";

impl Allocator {
    pub fn label(&self) -> String {
        match self {
            Allocator::Kcm { qps: None } => {
                "kube-controller-manager (defaults: QPS 20, burst 30)".into()
            }
            Allocator::Kcm { qps: Some(q) } => format!("kube-controller-manager (QPS/burst {q})"),
            Allocator::Operator => "prefix-operator (defaults)".into(),
            Allocator::AsPod { policies: true } => {
                "prefix-operator as a Pod, under the chart's admission policies".into()
            }
            Allocator::AsPod { policies: false } => {
                "prefix-operator as a Pod, no admission policies".into()
            }
            Allocator::OperatorWith(bin, f) => format!(
                "prefix-operator{} {}",
                bin.as_ref()
                    .map(|b| format!(" ({})", b.display()))
                    .unwrap_or_default(),
                f.join(" ")
            ),
        }
    }
}

/// The binaries and where logs go.
pub struct Bins {
    pub kcm: PathBuf,
    pub operator: PathBuf,
    pub logs: PathBuf,
}

/// A running allocator process.
pub struct Running {
    proc: Proc,
    pub started: Instant,
    pub log: PathBuf,
}

enum Proc {
    Kcm(Supervised),
    Operator(prefix_operator_testenv::OperatorProcess),
}

impl Running {
    pub fn pid(&self) -> u32 {
        match &self.proc {
            Proc::Kcm(s) => s.pid(),
            Proc::Operator(o) => o.pid(),
        }
    }

    /// Fails with the log's tail if the process has ended.
    pub fn check_alive(&mut self) -> Result<()> {
        let alive = match &mut self.proc {
            Proc::Kcm(s) => s.exited().is_none(),
            Proc::Operator(o) => o.alive(),
        };
        if alive {
            Ok(())
        } else {
            bail!("{} exited:\n{}", self.log.display(), tail(&self.log, 30))
        }
    }
}

fn tail(log: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Starts `alloc` against the cluster.
pub fn start(bins: &Bins, cl: &Cluster, alloc: &Allocator, what: &str) -> Result<Running> {
    std::fs::create_dir_all(&bins.logs)?;
    let log = bins.logs.join(format!("{what}.log"));
    let _ = std::fs::remove_file(&log);
    let started = Instant::now();
    let proc = match alloc {
        Allocator::Kcm { qps } => {
            let mut args = vec![
                format!("--kubeconfig={}", cl.kubeconfig.display()),
                "--controllers=node-ipam-controller".into(),
                "--allocate-node-cidrs=true".into(),
                format!("--cluster-cidr={CLUSTER_CIDR}"),
                format!("--node-cidr-mask-size={NODE_LEN}"),
                "--cidr-allocator-type=RangeAllocator".into(),
                "--leader-elect=false".into(),
                "--secure-port=0".into(),
                "--use-service-account-credentials=false".into(),
                "--v=1".into(),
            ];
            if let Some(q) = qps {
                args.push(format!("--kube-api-qps={q}"));
                args.push(format!("--kube-api-burst={q}"));
            }
            Proc::Kcm(Supervised::spawn(&bins.kcm, &args, &log)?)
        }
        Allocator::Operator => Proc::Operator(operator::spawn(
            &bins.operator,
            &cl.kubeconfig,
            "kcm-bench",
            &[],
            &log,
        )?),
        Allocator::OperatorWith(bin, flags) => Proc::Operator(operator::spawn(
            bin.as_ref().unwrap_or(&bins.operator),
            &cl.kubeconfig,
            "kcm-bench",
            flags,
            &log,
        )?),
        Allocator::AsPod { .. } => Proc::Operator(
            prefix_operator_testenv::OperatorProcess::builder(
                &bins.operator,
                as_pod_kubeconfig(cl),
                &log,
            )
            .identity(AS_POD)
            .args(["--log-format", "text"])
            .args(operator::leader_flags(AS_POD_LEASE))
            .spawn()?,
        ),
    };
    Ok(Running { proc, started, log })
}

/// One backlog phase.
#[derive(Clone, Debug, Default)]
pub struct BacklogRun {
    pub nodes: usize,
    /// Process start → last podCIDRs seen.
    pub total: Duration,
    pub peak_rss: u64,
    pub connections: usize,
    /// The allocator's user + system CPU seconds, process start → done.
    pub cpu: f64,
    /// kube-apiserver's and etcd's CPU seconds over the same span: what the
    /// allocator cost the control plane (the benchmark's own watch and
    /// nothing else run beside it).
    pub server_cpu: f64,
    /// Requests the API server answered over the same span, by verb and
    /// resource (`apiserver_request_total`), most first.
    pub requests: Vec<(String, f64)>,
}

impl BacklogRun {
    pub fn rate(&self) -> f64 {
        self.nodes as f64 / self.total.as_secs_f64().max(1e-9)
    }
}

/// A fresh control plane; for an operator, with its pool (the same range
/// kube-controller-manager is given by flag).
async fn cluster_for(alloc: &Allocator) -> Result<Cluster> {
    let cl = Cluster::start().await?;
    if !matches!(alloc, Allocator::Kcm { .. }) {
        create_pool(&cl.client, POOL, CLUSTER_CIDR, NODE_LEN).await?;
    }
    if let Allocator::AsPod { policies } = alloc {
        crate::fence::install_some(&cl, AS_POD_LEASE, *policies, &policy_set())?;
        let written = crate::fence::kubeconfig_as_pod(&cl, AS_POD, &cl.cp.server_url()).await?;
        std::fs::rename(written, as_pod_kubeconfig(&cl))?;
    }
    Ok(cl)
}

fn as_pod_kubeconfig(cl: &Cluster) -> PathBuf {
    cl.cp.dir().join("as-pod.kubeconfig")
}

/// N Nodes exist before `alloc` starts; timed from its process start to the
/// last podCIDRs seen on a watch; then every Node is checked (one prefix
/// each, inside the range, no two alike) against what the API server holds.
pub async fn backlog(
    bins: &Bins,
    alloc: &Allocator,
    nodes: usize,
    concurrency: usize,
    timeout: Duration,
    what: &str,
) -> Result<BacklogRun> {
    let cl = cluster_for(alloc).await?;
    let names: Vec<String> = (0..nodes).map(|i| format!("node-{i:06}")).collect();
    create_burst(&cl.client, &names, concurrency, OnError::Fail).await?;
    let tracker = Tracker::start(&cl.client).await?;
    let served0 = server_requests(&cl.client).await?;
    let server0 = server_cpu(&cl);
    let mut run = start(bins, &cl, alloc, what)?;
    let last = wait_all(&tracker, &mut run, &names, timeout).await?;
    let total = last.duration_since(run.started);
    let server = server_cpu(&cl) - server0;
    let r = BacklogRun {
        nodes,
        total,
        peak_rss: peak_rss_of(run.pid()).unwrap_or(0),
        connections: established_connections(run.pid(), cl.cp.api_port()),
        cpu: cpu_seconds_of(run.pid()).unwrap_or(0.0),
        server_cpu: server,
        requests: served_since(&server_requests(&cl.client).await?, &served0),
    };
    verify_allocations(&cl.client, CLUSTER_CIDR.parse()?, NODE_LEN, &names)
        .await
        .with_context(|| format!("end state after {}", alloc.label()))?;
    Ok(r)
}

/// etcd's and kube-apiserver's CPU seconds so far.
pub fn server_cpu(cl: &Cluster) -> f64 {
    cl.cp.pids().into_iter().filter_map(cpu_seconds_of).sum()
}

/// `apiserver_request_total` summed by `VERB resource[/subresource]`.
pub async fn server_requests(client: &kube::Client) -> Result<Vec<(String, f64)>> {
    Ok(by_request(
        &scrape_server(client).await?,
        "apiserver_request_total",
    ))
}

async fn scrape_server(client: &kube::Client) -> Result<promtext::Scrape> {
    let req = http::Request::get("/metrics").body(vec![])?;
    let text = client
        .request_text(req)
        .await
        .context("scraping kube-apiserver")?;
    Ok(promtext::Scrape::parse(&text))
}

/// The series `name` of kube-apiserver summed by `VERB resource[/subresource]`.
fn by_request(scrape: &promtext::Scrape, name: &str) -> Vec<(String, f64)> {
    let mut by: std::collections::BTreeMap<String, f64> = Default::default();
    for (labels, v) in scrape.series(name) {
        let get = |k: &str| promtext::label(&labels, k).unwrap_or_default().to_string();
        let sub = get("subresource");
        let key = format!(
            "{} {}{}",
            get("verb"),
            get("resource"),
            if sub.is_empty() {
                String::new()
            } else {
                format!("/{sub}")
            }
        );
        *by.entry(key).or_default() += v;
    }
    by.into_iter().collect()
}

/// The API server's own time per kind of request between two scrapes
/// (`apiserver_request_duration_seconds`, which excludes watches): count
/// and mean seconds, most first.
fn server_times(now: &promtext::Scrape, before: &promtext::Scrape) -> Vec<(String, f64, f64)> {
    const BASE: &str = "apiserver_request_duration_seconds";
    let count = served_since(
        &by_request(now, &format!("{BASE}_count")),
        &by_request(before, &format!("{BASE}_count")),
    );
    let sum = served_since(
        &by_request(now, &format!("{BASE}_sum")),
        &by_request(before, &format!("{BASE}_sum")),
    );
    count
        .into_iter()
        .map(|(k, n)| {
            let s = sum.iter().find(|(sk, _)| *sk == k).map_or(0.0, |(_, s)| *s);
            (k, n, s / n.max(1.0))
        })
        .collect()
}

/// `now − before` per key, the ones that grew, most first.
pub fn served_since(now: &[(String, f64)], before: &[(String, f64)]) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = now
        .iter()
        .map(|(k, v)| {
            let b = before
                .iter()
                .find(|(bk, _)| bk == k)
                .map_or(0.0, |(_, b)| *b);
            (k.clone(), v - b)
        })
        .filter(|(_, d)| *d > 0.0)
        .collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1));
    out
}

/// Waits for every one of `names`, failing early (with the log) if the
/// allocator dies.
async fn wait_all(
    tracker: &Tracker,
    run: &mut Running,
    names: &[String],
    timeout: Duration,
) -> Result<Instant> {
    let deadline = Instant::now() + timeout;
    loop {
        run.check_alive()?;
        let left = deadline.saturating_duration_since(Instant::now());
        match tracker
            .wait_all(names, left.min(Duration::from_secs(2)))
            .await
        {
            Ok(t) => return Ok(t),
            Err(e) if left <= Duration::from_secs(2) => {
                return Err(e.context(format!("log tail:\n{}", tail(&run.log, 20))));
            }
            Err(_) => {}
        }
    }
}

/// One trickle phase.
#[derive(Clone, Debug, Default)]
pub struct TrickleRun {
    pub lat: Summary,
    pub peak_rss: u64,
    /// The operator's loop turns over the whole phase, by what woke the
    /// loop, then (kinds "(waited) …") how long watch events waited for the
    /// loop (empty for kube-controller-manager).
    pub turns: Vec<Turns>,
    /// The operator's own latency histogram (Node first seen → podCIDRs
    /// written), p99 in seconds.
    pub own_p99: Option<f64>,
    /// The API server's own time for the allocator's requests (and the
    /// benchmark's creates) during the trickle: kind, count, mean seconds.
    pub server: Vec<(String, f64, f64)>,
}

/// `prefix_operator_loop_turn_seconds{kind}` summed up.
#[derive(Clone, Debug, Default)]
pub struct Turns {
    pub kind: String,
    pub count: f64,
    pub sum: f64,
    /// Turns longer than 10 ms, 50 ms and 100 ms (bucket bounds).
    pub over: [f64; 3],
}

pub const TURN_BOUNDS: [f64; 3] = [0.01, 0.05, 0.1];

const LATENCY: &str = "prefix_operator_allocation_latency_seconds";
pub const TURNS: &str = "prefix_operator_loop_turn_seconds";
pub const WAITS: &str = "prefix_operator_input_wait_seconds";

/// One histogram with a `kind` label (`TURNS` or `WAITS`), by kind, between
/// two scrapes of one process.
pub fn by_kind(s: &promtext::Scrape, since: &promtext::Scrape, base: &str) -> Vec<Turns> {
    let mut out = vec![];
    for (labels, _) in s.series(&format!("{base}_count")) {
        let Some(kind) = promtext::label(&labels, "kind").map(str::to_string) else {
            continue;
        };
        let label = format!("kind=\"{kind}\"");
        let h = s
            .histogram_with(base, &label)
            .minus(&since.histogram_with(base, &label));
        let at_or_below = |bound: f64| {
            h.buckets
                .iter()
                .find(|(le, _)| (*le - bound).abs() < 1e-12)
                .map(|(_, c)| *c)
                .unwrap_or(h.count)
        };
        out.push(Turns {
            kind,
            count: h.count,
            sum: h.sum,
            over: TURN_BOUNDS.map(|b| h.count - at_or_below(b)),
        });
    }
    out.sort_by(|a, b| b.sum.total_cmp(&a.sum));
    out
}

/// `alloc` started on a fresh control plane and shown to work (a first
/// Node allocated, or `before` Nodes created before it started, all
/// allocated), then `count` Nodes created at `rate` per second; per Node,
/// create answered → podCIDRs first seen on a watch.
pub async fn trickle(
    bins: &Bins,
    alloc: &Allocator,
    (before, count, rate): (usize, usize, f64),
    timeout: Duration,
    what: &str,
) -> Result<TrickleRun> {
    let cl = cluster_for(alloc).await?;
    let probe: Vec<String> = if before == 0 {
        vec!["probe".to_string()]
    } else {
        (0..before).map(|i| format!("node-{i:06}")).collect()
    };
    let (early, late) = probe.split_at(before.min(probe.len()));
    create_burst(&cl.client, early, 32, OnError::Fail).await?;
    let tracker = Tracker::start(&cl.client).await?;
    let mut run = start(bins, &cl, alloc, what)?;
    create_burst(&cl.client, late, 1, OnError::Fail).await?;
    wait_all(&tracker, &mut run, &probe, timeout).await?;
    let m0 = match &run.proc {
        Proc::Operator(o) => Some(o.scrape().await?),
        Proc::Kcm(_) => None,
    };
    let s0 = scrape_server(&cl.client).await?;
    let created = create_trickle(&cl.client, "trickle", count, rate).await?;
    let names: Vec<String> = created.iter().map(|c| c.name.clone()).collect();
    wait_all(&tracker, &mut run, &names, timeout).await?;
    let server = server_times(&scrape_server(&cl.client).await?, &s0);
    let mut all = names.clone();
    all.extend(probe);
    verify_allocations(&cl.client, CLUSTER_CIDR.parse()?, NODE_LEN, &all).await?;
    let (turns, own_p99) = match (&run.proc, m0) {
        (Proc::Operator(o), Some(m0)) => {
            let m = o.scrape().await?;
            let mut t = by_kind(&m, &m0, TURNS);
            for mut w in by_kind(&m, &m0, WAITS) {
                w.kind = format!("(waited) {}", w.kind);
                t.push(w);
            }
            (
                t,
                m.histogram(LATENCY)
                    .minus(&m0.histogram(LATENCY))
                    .quantile(0.99),
            )
        }
        _ => (vec![], None),
    };
    Ok(TrickleRun {
        lat: summarize(&latencies(&tracker, &created)),
        peak_rss: peak_rss_of(run.pid()).unwrap_or(0),
        turns,
        own_p99,
        server,
    })
}

/// Outside load: `procs` busy loops, each running `duty` of every 100 ms
/// (SIGCONT, then SIGSTOP), for as long as the value lives.
pub struct Hog {
    task: tokio::task::JoinHandle<()>,
}

impl Hog {
    pub fn start(duty: f64, procs: usize, log: &Path) -> Result<Option<Hog>> {
        if duty <= 0.0 || procs == 0 {
            return Ok(None);
        }
        let mut hogs = vec![];
        for _ in 0..procs {
            hogs.push(Supervised::spawn(
                Path::new("/bin/sh"),
                &["-c".into(), "while :; do :; done".into()],
                log,
            )?);
        }
        let period = Duration::from_millis(100);
        let on = period.mul_f64(duty.min(1.0));
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tick.tick().await;
                for h in &mut hogs {
                    h.signal(libc::SIGCONT);
                }
                if on >= period {
                    continue;
                }
                tokio::time::sleep(on).await;
                for h in &mut hogs {
                    h.signal(libc::SIGSTOP);
                }
            }
            // The Supervised values are dropped (killed) with the task.
        });
        Ok(Some(Hog { task }))
    }
}

impl Drop for Hog {
    fn drop(&mut self) {
        self.task.abort();
    }
}
