//! The `leader` and `leader-pause` scenarios: two leader-elected replicas;
//! mid-burst the leader is SIGKILLed (`leader`), or frozen past its Lease
//! and thawed while the other one writes (`leader-pause`: a stale leader
//! must not write).

use std::time::{Duration, Instant};

use anyhow::Result;
use anyhow::bail;
use prefix_operator::k8s::errors::FENCE_MARKER;
use prefix_operator_bench::cluster::{OnError, Tracker, poll};
use prefix_operator_bench::fence;
use prefix_operator_bench::operator::{self, IDENTITY_PREFIX, leader_flags};
use prefix_operator_testenv::Identity;
use prefix_operator_testenv::OperatorProcess;
use prefix_operator_testenv::hold_proxy::{HoldProxy, node_patch};

use super::{Ctx, check_end, setup, spawn_burst, with_log};

/// Waits until exactly one of `ops` says it leads; returns its index.
pub async fn one_leader(ops: &[&OperatorProcess], timeout: Duration) -> Result<usize> {
    poll("exactly one leader", timeout, || async {
        let mut leaders = vec![];
        for (i, o) in ops.iter().enumerate() {
            if o.is_leader().await {
                leaders.push(i);
            }
        }
        (leaders.len() == 1).then(|| leaders[0])
    })
    .await
}

const LEASE: &str = "prefix-operator-chaos";

/// Waits until `next` leads, then until allocation goes on; returns both
/// moments as times since `t` (the leader's kill or freeze).
async fn takeover(
    next: &OperatorProcess,
    tracker: &Tracker,
    names: &[String],
    t: Instant,
) -> Result<(Duration, Duration)> {
    poll(
        "the other replica to lead",
        Duration::from_secs(30),
        || async { next.is_leader().await.then_some(()) },
    )
    .await?;
    let takeover = t.elapsed();
    let moved = tracker.count_of(names);
    poll("allocation to resume", Duration::from_secs(30), || async {
        (tracker.count_of(names) > moved || moved == names.len()).then_some(())
    })
    .await?;
    Ok((takeover, t.elapsed()))
}

/// Waits until a third of `names` hold podCIDRs; returns how many do.
async fn a_third_allocated(tracker: &Tracker, names: &[String]) -> Result<usize> {
    let third = names.len() / 3;
    poll(
        "a third of the burst allocated",
        Duration::from_secs(60),
        || async { (tracker.count_of(names) >= third).then_some(()) },
    )
    .await?;
    Ok(tracker.count_of(names))
}

pub async fn leader(ctx: &Ctx, pause: bool) -> Result<String> {
    if pause {
        return leader_pause(ctx).await;
    }
    let scenario = "leader";
    let (cl, tracker) = setup().await?;
    let names = ctx.names(scenario);
    let flags = leader_flags(LEASE);
    let mut ops = [
        operator::spawn(
            &ctx.bin,
            &cl.kubeconfig,
            "replica",
            &flags,
            &ctx.log(scenario, "a"),
        )?,
        operator::spawn(
            &ctx.bin,
            &cl.kubeconfig,
            "replica",
            &flags,
            &ctx.log(scenario, "b"),
        )?,
    ];
    for o in ops.iter_mut() {
        o.wait_ready(Duration::from_secs(30)).await?;
    }
    let first = one_leader(&[&ops[0], &ops[1]], Duration::from_secs(30)).await?;
    let burst = spawn_burst(&cl, &names, ctx.args.concurrency, OnError::Fail);
    let at = a_third_allocated(&tracker, &names).await?;
    let t = Instant::now();
    let other = 1 - first;
    ops[first].kill();
    let (takeover, resumed) = takeover(&ops[other], &tracker, &names, t).await?;
    let detail = {
        ops[first] = operator::spawn(
            &ctx.bin,
            &cl.kubeconfig,
            "replica",
            &flags,
            &ctx.log(scenario, "a2"),
        )?;
        format!(
            "leader SIGKILLed at {at} Nodes allocated; the other replica led after {:.1} s and allocated again after {:.1} s; a new replica was started as follower",
            takeover.as_secs_f64(),
            resumed.as_secs_f64()
        )
    };
    burst.await??;
    let end = check_end(ctx, &cl, &tracker, &names)
        .await
        .map_err(|e| with_log(e, &ops[other]))?;
    one_leader(&[&ops[0], &ops[1]], Duration::from_secs(30)).await?;
    Ok(format!("{detail}; {end}"))
}

/// `leader-pause`: the two replicas run as Pods of the chart's
/// ServiceAccount, under the chart's fence. Mid-burst the leader's Node
/// writes are held on their way (a proxy in front of the API server: what
/// a paused host does to what it had sent) and the leader is frozen
/// (SIGSTOP) past its Lease; the other replica takes over and allocates;
/// then the held writes reach the API server and the old leader is
/// thawed. None of the held writes may land (the fence refuses them, or
/// the write-once rule where the new leader wrote that Node first), and the
/// old leader must step down.
async fn leader_pause(ctx: &Ctx) -> Result<String> {
    let scenario = "leader-pause";
    let (cl, tracker) = setup().await?;
    fence::install(&cl, LEASE)?;
    let names = ctx.names(scenario);
    let flags = leader_flags(LEASE);
    let proxy = HoldProxy::start(cl.cp.client(&Identity::Anonymous).await?, node_patch).await;
    let id = |r: &str| format!("{IDENTITY_PREFIX}{r}-{}", std::process::id());
    let (id_a, id_b) = (id("fenced-a"), id("fenced-b"));
    let mut a = fence::replica(
        &cl,
        &ctx.bin,
        &id_a,
        Some(&proxy),
        &flags,
        &ctx.log(scenario, "a"),
    )
    .await?;
    a.wait_ready(Duration::from_secs(30)).await?;
    poll("A to lead", Duration::from_secs(30), || async {
        a.is_leader().await.then_some(())
    })
    .await?;
    let mut b = fence::replica(&cl, &ctx.bin, &id_b, None, &flags, &ctx.log(scenario, "b")).await?;
    b.wait_ready(Duration::from_secs(30)).await?;
    let burst = spawn_burst(&cl, &names, ctx.args.concurrency, OnError::Fail);
    let at = a_third_allocated(&tracker, &names).await?;
    proxy.hold(true);
    poll(
        "A's writes to be held on their way",
        Duration::from_secs(30),
        || async { (proxy.held() > 0).then_some(()) },
    )
    .await?;
    a.pause();
    let t = Instant::now();
    let held = proxy.held();
    let (takeover, resumed) = takeover(&b, &tracker, &names, t).await?;
    // The thaw: the held writes go first, then A runs again.
    proxy.hold(false);
    poll(
        "the API server to answer the held writes",
        Duration::from_secs(30),
        || async { (proxy.answered().len() >= held).then_some(()) },
    )
    .await?;
    a.resume();
    let answers = proxy.answered();
    let fenced = answers
        .iter()
        .filter(|x| x.status == 403 && x.body.contains(FENCE_MARKER))
        .count();
    let write_once = answers.iter().filter(|x| x.status == 422).count();
    let landed: Vec<_> = answers.iter().filter(|x| x.status < 300).collect();
    if !landed.is_empty() {
        bail!(
            "{} write(s) of the frozen leader landed: {landed:?}",
            landed.len()
        );
    }
    poll(
        "the thawed replica to step down",
        Duration::from_secs(10),
        || async { (!a.is_leader().await).then_some(()) },
    )
    .await?;
    burst.await??;
    let end = check_end(ctx, &cl, &tracker, &names)
        .await
        .map_err(|e| with_log(e, &b))?;
    one_leader(&[&a, &b], Duration::from_secs(30)).await?;
    Ok(format!(
        "leader frozen (SIGSTOP) at {at} Nodes allocated with {held} Node write(s) in flight; the other replica led after {:.1} s and allocated again after {:.1} s; thawed: 0 of the {held} landed ({fenced} refused by the fence, {write_once} by write-once, {} other), the old leader stepped down; {end}",
        takeover.as_secs_f64(),
        resumed.as_secs_f64(),
        answers.len() - fenced - write_once,
    ))
}
