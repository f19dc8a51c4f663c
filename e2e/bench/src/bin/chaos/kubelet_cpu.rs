//! `kubelet-cpu`: what heartbeats cost the operator. `--cpu-nodes` Nodes
//! (5,000) are allocated by one operator; then the kubelet-like writer's
//! heartbeats (every 10–40 s per Node, no hot stream) run for
//! `--cpu-window` seconds (60) and the operator's CPU seconds (user +
//! system, from /proc) and PrefixPool status writes (its `/metrics`) in that
//! window are reported — per 1,000 heartbeating Nodes per minute — next to
//! a third as long a window with the heartbeats paused (the idle baseline).
//! Every heartbeat is a Node watch event the operator decodes and applies;
//! none of them should cause a Node or status write.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use prefix_operator_bench::cluster::{poll, wait_pool_allocated};
use prefix_operator_bench::operator;
use prefix_operator_testenv::OperatorProcess;
use prefix_operator_testenv::promtext::Scrape;

use super::kubelet::create_registered;
use super::{Ctx, POOL, setup, with_log};

/// CPU seconds, status writes, Node writes and heartbeats over a window.
struct Window {
    secs: f64,
    cpu: f64,
    status_writes: f64,
    node_writes: f64,
    heartbeats: u64,
}

fn counter(m: &Scrape, name: &str) -> f64 {
    m.value(name).unwrap_or(0.0)
}

async fn measure(
    op: &OperatorProcess,
    heartbeats: &prefix_operator_bench::kubelet::Counters,
    window: Duration,
) -> Result<Window> {
    let m0 = op.scrape().await?;
    let cpu0 = op.cpu_seconds().unwrap_or(0.0);
    let hb0 = heartbeats.snapshot().heartbeats;
    let t = Instant::now();
    tokio::time::sleep(window).await;
    let m1 = op.scrape().await?;
    let cpu1 = op.cpu_seconds().unwrap_or(0.0);
    let diff = |n: &str| counter(&m1, n) - counter(&m0, n);
    Ok(Window {
        secs: t.elapsed().as_secs_f64(),
        cpu: cpu1 - cpu0,
        status_writes: diff("prefix_operator_status_writes_total"),
        node_writes: diff("prefix_operator_node_writes_total"),
        heartbeats: heartbeats.snapshot().heartbeats - hb0,
    })
}

/// Waits until the operator used under 2 % of a core over a second: the
/// allocation Events and status writes after the burst are done.
async fn quiet(op: &OperatorProcess) -> Result<()> {
    poll(
        "the operator to go quiet",
        Duration::from_secs(120),
        || async {
            let c0 = op.cpu_seconds()?;
            tokio::time::sleep(Duration::from_secs(1)).await;
            (op.cpu_seconds()? - c0 < 0.02).then_some(())
        },
    )
    .await
}

pub async fn cpu(ctx: &Ctx) -> Result<String> {
    let k = &ctx.args.kubelet;
    let (cl, tracker) = setup().await?;
    let names: Vec<String> = (0..k.cpu_nodes)
        .map(|i| format!("kubelet-cpu-{i:05}"))
        .collect();
    let log = ctx.log("kubelet-cpu", "operator");
    let mut op = operator::spawn(&ctx.bin, &cl.kubeconfig, "cpu", &[], &log)?;
    op.wait_ready(Duration::from_secs(30)).await?;
    let sim =
        prefix_operator_bench::kubelet::KubeletSim::start(&cl.client, k.sim("kubelet-cpu", false));
    create_registered(&cl, &sim, &names, ctx.args.concurrency).await?;
    tracker
        .wait_all(&names, ctx.timeout())
        .await
        .map_err(|e| with_log(e, &op))?;
    wait_pool_allocated(&cl.client, POOL, names.len(), Duration::from_secs(60)).await?;
    let counters = sim.counters();
    sim.pause_heartbeats(true);
    quiet(&op).await?;
    let window = Duration::from_secs(k.cpu_window.max(3));
    let idle = measure(&op, &counters, window / 3).await?;
    // Each Node's heartbeat clock kept running while paused, so the rate is
    // at its steady value from the first second.
    sim.pause_heartbeats(false);
    let hb = measure(&op, &counters, window).await?;
    let sent = sim.stop().await;
    if !op.alive() {
        bail!("the operator exited\n{}", op.log_tail(30));
    }
    let per_k_min = |w: &Window| w.cpu / (names.len() as f64 / 1000.0) / (w.secs / 60.0);
    let extra = per_k_min(&hb) - per_k_min(&idle);
    let summary = format!(
        "{} Nodes allocated; heartbeats: {} in {:.0} s ({:.0}/s); operator CPU {:.2} s = {:.3} CPU-s per 1,000 heartbeating Nodes per minute (idle, heartbeats paused: {:.3}; heartbeats add {:.3}); status writes in the window: {} (idle: {}); Node writes: {}; writer: {sent}",
        names.len(),
        hb.heartbeats,
        hb.secs,
        hb.heartbeats as f64 / hb.secs,
        hb.cpu,
        per_k_min(&hb),
        per_k_min(&idle),
        extra,
        hb.status_writes,
        idle.status_writes,
        hb.node_writes
    );
    println!("kubelet-cpu: {summary}");
    Ok(summary)
}
