//! The `leader` and `leader-pause` scenarios: two leader-elected replicas;
//! mid-burst the leader is SIGKILLed (`leader`), or frozen past its Lease
//! and thawed while the other one writes (`leader-pause`: a stale leader
//! must not write).

use std::time::{Duration, Instant};

use anyhow::Result;
use prefix_operator_bench::cluster::{OnError, poll};
use prefix_operator_bench::operator::{self, leader_flags};
use prefix_operator_testenv::OperatorProcess;

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

pub async fn leader(ctx: &Ctx, pause: bool) -> Result<String> {
    let scenario = if pause { "leader-pause" } else { "leader" };
    let (cl, tracker) = setup().await?;
    let names = ctx.names(scenario);
    let flags = leader_flags("prefix-operator-chaos");
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
    let third = names.len() / 3;
    poll(
        "a third of the burst allocated",
        Duration::from_secs(60),
        || async { (tracker.count_of(&names) >= third).then_some(()) },
    )
    .await?;
    let at = tracker.count_of(&names);
    let t = Instant::now();
    let other = 1 - first;
    if pause {
        ops[first].pause();
    } else {
        ops[first].kill();
    }
    poll(
        "the other replica to lead",
        Duration::from_secs(30),
        || async { ops[other].is_leader().await.then_some(()) },
    )
    .await?;
    let takeover = t.elapsed();
    let moved = tracker.count_of(&names);
    poll("allocation to resume", Duration::from_secs(30), || async {
        (tracker.count_of(&names) > moved || moved == names.len()).then_some(())
    })
    .await?;
    let resumed = t.elapsed();
    let detail = if pause {
        // Thaw the old leader while the new one writes. It must notice that
        // it lost the Lease before it writes anything. While it is frozen its
        // log cannot grow, so the write outcomes logged after the thaw are
        // exactly the writes it tried as a stale leader.
        let before = write_outcomes(ops[first].log());
        ops[first].resume();
        poll(
            "the thawed replica to step down",
            Duration::from_secs(10),
            || async { (!ops[first].is_leader().await).then_some(()) },
        )
        .await?;
        let stale = write_outcomes(ops[first].log()) - before;
        if stale > 0 {
            eprintln!(
                "   the thawed leader tried {stale} Node write(s) after the thaw (see {})",
                ops[first].log().display()
            );
        }
        format!(
            "leader frozen (SIGSTOP) at {at} Nodes allocated; the other replica led after {:.1} s and allocated again after {:.1} s; thawed, the old leader tried {stale} Node write(s) before stepping down",
            takeover.as_secs_f64(),
            resumed.as_secs_f64()
        )
    } else {
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

/// Node write outcomes in an operator log: landed ("allocated"), refused,
/// or failed.
fn write_outcomes(log: &std::path::Path) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| {
            (l.contains(" allocated") && l.contains("node="))
                || l.contains("write refused")
                || l.contains("writing podCIDRs failed")
        })
        .count()
}
