//! `chaos`: the long fault runs. Each scenario starts its own control plane,
//! runs the operator binary as a child process, creates a burst of Nodes and
//! breaks something in the middle of it. Every scenario ends with the same
//! check: every Node holds exactly one /64 of the pool, no two overlap
//! (address ranges compared pairwise), and the pool's `status.allocated`
//! agrees with the Nodes.
//!
//! Scenarios:
//! - `sigkill`: the operator is SIGKILLed `--kills` times (20 by default) at
//!   random points of the burst and restarted at once; about one restart in
//!   four is killed again before it is ready.
//! - `apiserver`: kube-apiserver is killed and restarted `--restarts` times
//!   (3) mid-burst; the operator must recover by itself (same process).
//! - `etcd`: etcd is killed and restarted `--restarts` times mid-burst
//!   (same process).
//! - `leader`: two replicas with leader election; the leader is SIGKILLed
//!   mid-burst; the other takes over.
//! - `leader-pause`: two replicas; the leader is frozen (SIGSTOP) past its
//!   Lease with Node writes held on their way, while the other takes over;
//!   then the writes go on and it is thawed (SIGCONT) mid-burst: a
//!   stale leader must not write.
//! - `kubelet-backlog`, `kubelet-burst`: 3,000 Nodes whose status a
//!   kubelet-like writer patches throughout, two replicas, leader SIGKILLs
//!   and a freeze (issue 10; see `chaos/kubelet.rs`).
//! - `kubelet-cpu` (not in the default list): the operator's CPU under
//!   heartbeats of 5,000 allocated Nodes (`chaos/kubelet_cpu.rs`).
//!
//! `--repeat N` runs the scenario list N times in a row.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::Parser;
use prefix_operator_bench::cluster::{
    Cluster, OnError, Tracker, create_burst, create_pool, loadavg, poll, verify_allocations,
    wait_pool_allocated,
};
use prefix_operator_bench::operator::{self, operator_bin, target_dir};
use prefix_operator_testenv::OperatorProcess;
use rand::Rng;

#[path = "chaos/kubelet.rs"]
mod kubelet;
#[path = "chaos/kubelet_cpu.rs"]
mod kubelet_cpu;
#[path = "chaos/leader.rs"]
mod leader;

const POOL: &str = "chaos";
const POOL_PREFIX: &str = "2001:db8::/32";
const NODE_LEN: u8 = 64;

#[derive(Parser, Debug, Clone)]
#[command(
    name = "chaos",
    about = "Long fault runs of prefix-operator against a local control plane"
)]
struct Args {
    /// Nodes per burst.
    #[arg(long, default_value_t = 2000)]
    nodes: usize,
    /// Node creates in flight.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// SIGKILLs in the `sigkill` scenario.
    #[arg(long, default_value_t = 20)]
    kills: usize,
    /// kube-apiserver (or etcd) restarts in the `apiserver` (`etcd`) scenario.
    #[arg(long, default_value_t = 3)]
    restarts: usize,
    /// Scenarios to run, comma-separated.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "sigkill,apiserver,etcd,leader,leader-pause,kubelet-backlog,kubelet-burst"
    )]
    scenarios: Vec<String>,
    /// Runs of the whole scenario list, one after another.
    #[arg(long, default_value_t = 1)]
    repeat: usize,
    /// Operator binary [default: target/release/prefix-operator or $PREFIX_OPERATOR_BIN].
    #[arg(long)]
    operator_bin: Option<PathBuf>,
    /// Longest wait for the burst to be allocated after the last fault, seconds.
    #[arg(long, default_value_t = 180)]
    timeout: u64,
    #[command(flatten)]
    kubelet: kubelet::KubeletArgs,
}

struct Ctx {
    args: Args,
    bin: PathBuf,
    logs: PathBuf,
    /// Which of the `--repeat` runs this is (0 without `--repeat`): in the
    /// log names, so that each run's logs are its own.
    round: usize,
}

impl Ctx {
    fn log(&self, scenario: &str, role: &str) -> PathBuf {
        match self.round {
            0 => self.logs.join(format!("{scenario}-{role}.log")),
            k => self.logs.join(format!("{scenario}-{k}-{role}.log")),
        }
    }

    fn names(&self, prefix: &str) -> Vec<String> {
        (0..self.args.nodes)
            .map(|i| format!("{prefix}-{i:05}"))
            .collect()
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(self.args.timeout)
    }
}

/// A fresh control plane with the pool, and a watch on the Nodes.
async fn setup() -> Result<(Cluster, Tracker)> {
    let cl = Cluster::start().await?;
    create_pool(&cl.client, POOL, POOL_PREFIX, NODE_LEN).await?;
    let t = Tracker::start(&cl.client).await?;
    Ok((cl, t))
}

/// The end-state check every scenario shares.
async fn check_end(ctx: &Ctx, cl: &Cluster, tracker: &Tracker, names: &[String]) -> Result<String> {
    tracker.wait_all(names, ctx.timeout()).await?;
    let end = verify_allocations(&cl.client, POOL_PREFIX.parse()?, NODE_LEN, names).await?;
    wait_pool_allocated(&cl.client, POOL, end.nodes, Duration::from_secs(60)).await?;
    Ok(format!(
        "{} Nodes, one /64 each, {} pairs compared, status.allocated = {}",
        end.nodes, end.pairs_checked, end.nodes
    ))
}

fn spawn_burst(
    cl: &Cluster,
    names: &[String],
    concurrency: usize,
    on_error: OnError,
) -> tokio::task::JoinHandle<Result<()>> {
    let client = cl.client.clone();
    let names = names.to_vec();
    tokio::spawn(async move {
        create_burst(&client, &names, concurrency, on_error)
            .await
            .map(|_| ())
    })
}

async fn sigkill(ctx: &Ctx) -> Result<String> {
    let (cl, tracker) = setup().await?;
    let names = ctx.names("kill");
    let n = names.len();
    let mut rng = rand::rng();
    // Kill points, as numbers of Nodes allocated, spread over the burst.
    let mut targets: Vec<usize> = (0..ctx.args.kills)
        .map(|_| rng.random_range(n / 50..n * 95 / 100))
        .collect();
    targets.sort_unstable();
    let log = ctx.log("sigkill", "operator");
    let mut op = operator::spawn(&ctx.bin, &cl.kubeconfig, "kill", &[], &log)?;
    op.wait_ready(Duration::from_secs(30)).await?;
    let burst = spawn_burst(&cl, &names, ctx.args.concurrency, OnError::Fail);
    let mut at = vec![];
    let mut during_startup = 0;
    for (i, target) in targets.iter().enumerate() {
        poll(
            &format!("kill point {}: {target} Nodes allocated", i + 1),
            Duration::from_secs(60),
            || async { (tracker.count_of(&names) >= *target).then_some(()) },
        )
        .await
        .map_err(|e| with_log(e, &op))?;
        tokio::time::sleep(Duration::from_millis(rng.random_range(0..150))).await;
        op.kill();
        at.push(tracker.count_of(&names));
        op = operator::spawn(&ctx.bin, &cl.kubeconfig, "kill", &[], &log)?;
        // One restart in four is killed again a moment later, often while it
        // starts up (lists, rebuilds its picture, makes its first writes).
        if rng.random_bool(0.25) {
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..400))).await;
            if op.wait_ready(Duration::ZERO).await.is_err() {
                during_startup += 1;
            }
            op.kill();
            at.push(tracker.count_of(&names));
            op = operator::spawn(&ctx.bin, &cl.kubeconfig, "kill", &[], &log)?;
        }
    }
    burst.await??;
    let end = check_end(ctx, &cl, &tracker, &names)
        .await
        .map_err(|e| with_log(e, &op))?;
    Ok(format!(
        "{} SIGKILLs ({during_startup} before the restarted process was ready) at {:?} Nodes allocated; {end}",
        at.len(),
        at
    ))
}

/// Breaks the control plane at a third of the burst with `fault`; the one
/// operator process must finish the burst by itself.
async fn control_plane_fault(ctx: &Ctx, scenario: &str, etcd: bool) -> Result<String> {
    let (cl, tracker) = setup().await?;
    let names = ctx.names(scenario);
    let log = ctx.log(scenario, "operator");
    let mut op = operator::spawn(&ctx.bin, &cl.kubeconfig, scenario, &[], &log)?;
    op.wait_ready(Duration::from_secs(30)).await?;
    let burst = spawn_burst(
        &cl,
        &names,
        ctx.args.concurrency,
        OnError::RetryFor(Duration::from_secs(180)),
    );
    // `--restarts` outages, evenly spread over the burst, each a random
    // 0.5-2.5 s long: writes in flight at each kill may land unanswered.
    let restarts = ctx.args.restarts.max(1);
    let mut outages = vec![];
    for k in 1..=restarts {
        let point = names.len() * k / (restarts + 1);
        poll(
            &format!("{point} Nodes allocated"),
            Duration::from_secs(120),
            || async { (tracker.count_of(&names) >= point).then_some(()) },
        )
        .await
        .map_err(|e| with_log(e, &op))?;
        let at = tracker.count_of(&names);
        let outage = Duration::from_millis(rand::rng().random_range(500..2500));
        let t = Instant::now();
        if etcd {
            cl.restart_etcd(outage).await?;
        } else {
            cl.restart_apiserver(outage).await?;
        }
        outages.push(format!(
            "at {at} allocated: down {:.1} s, serving after {:.1} s",
            outage.as_secs_f64(),
            t.elapsed().as_secs_f64()
        ));
    }
    burst.await??;
    let after = Instant::now();
    let end = check_end(ctx, &cl, &tracker, &names)
        .await
        .map_err(|e| with_log(e, &op))?;
    if !op.alive() {
        bail!("the operator exited\n{}", op.log_tail(30));
    }
    Ok(format!(
        "{} killed {restarts} times ({}); burst finished {:.1} s after the creates; operator pid {} never restarted; {end}",
        if etcd { "etcd" } else { "kube-apiserver" },
        outages.join("; "),
        after.elapsed().as_secs_f64(),
        op.pid()
    ))
}

/// The error first, then the operator's last log lines.
fn with_log(e: anyhow::Error, op: &OperatorProcess) -> anyhow::Error {
    anyhow::anyhow!("{e:#}\n{}", op.log_tail(30))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let bin = operator_bin(args.operator_bin.clone())?;
    let logs = target_dir().join("chaos").join("logs");
    std::fs::create_dir_all(&logs)?;
    for e in std::fs::read_dir(&logs)? {
        let _ = std::fs::remove_file(e?.path());
    }
    let mut ctx = Ctx {
        args: args.clone(),
        bin,
        logs,
        round: 0,
    };
    eprintln!("chaos: {} Nodes per burst, load {}", args.nodes, loadavg());
    let mut rows = vec![];
    let runs: Vec<(usize, String)> = (1..=args.repeat.max(1))
        .flat_map(|k| args.scenarios.iter().map(move |s| (k, s.clone())))
        .collect();
    for (k, name) in &runs {
        ctx.round = if args.repeat > 1 { *k } else { 0 };
        let s = &match ctx.round {
            0 => name.clone(),
            k => format!("{name}#{k}"),
        };
        eprintln!("== {s}");
        let load = loadavg();
        let t = Instant::now();
        let r = match name.as_str() {
            "sigkill" => sigkill(&ctx).await,
            "apiserver" => control_plane_fault(&ctx, "apiserver", false).await,
            "etcd" => control_plane_fault(&ctx, "etcd", true).await,
            "leader" => leader::leader(&ctx, false).await,
            "leader-pause" => leader::leader(&ctx, true).await,
            "kubelet-backlog" => kubelet::backlog(&ctx).await,
            "kubelet-burst" => kubelet::burst(&ctx).await,
            "kubelet-cpu" => kubelet_cpu::cpu(&ctx).await,
            other => Err(anyhow::anyhow!("unknown scenario {other}")),
        };
        let took = t.elapsed();
        match &r {
            Ok(d) => eprintln!("   PASS in {:.1} s: {d}", took.as_secs_f64()),
            Err(e) => eprintln!("   FAIL in {:.1} s: {e:#}", took.as_secs_f64()),
        }
        rows.push((s.clone(), took, load, r));
    }
    println!("\n| scenario | result | time | load avg at start | detail |\n|---|---|---:|---|---|");
    for (s, took, load, r) in &rows {
        let (res, d) = match r {
            Ok(d) => ("PASS", d.clone()),
            Err(e) => (
                "FAIL",
                format!("{e:#}")
                    .lines()
                    .take(2)
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
        };
        println!(
            "| {s} | {res} | {:.1} s | {load} | {d} |",
            took.as_secs_f64()
        );
    }
    println!("\nlogs: {}", ctx.logs.display());
    if rows.iter().any(|r| r.3.is_err()) {
        bail!("some scenarios failed");
    }
    Ok(())
}
