//! Directed reproductions 1-3 of issue 10's operation and fault classes,
//! each against a fresh control plane. They return the violations found;
//! the run reports them (an empty list is a pass).

use std::time::Duration;

use anyhow::Result;
use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use prefix_operator::api::PrefixPoolSpec;
use rand::Rng;
use rand::rngs::StdRng;

use super::actions::Actions;
use super::check::{snapshot, view};
use super::env::Env;
use super::model::{Labels, nets, overlap};
use super::ops::SETTLE;
use crate::cluster::poll;

pub fn labels(kv: &[(&str, &str)]) -> Labels {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub fn spec(prefixes: &[&str], sel: Option<(&str, &str)>) -> PrefixPoolSpec {
    PrefixPoolSpec {
        prefixes: prefixes.iter().map(|s| s.to_string()).collect(),
        node_prefix_length: Some(64),
        node_selector: sel.map(|(k, v)| LabelSelector {
            match_labels: Some([(k.to_string(), v.to_string())].into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Creates `names` with `l`, 32 requests in flight.
pub async fn create_many(act: &Actions, names: &[String], l: &Labels) -> Result<()> {
    // Owned names: a closure over borrowed ones is not general enough for
    // tokio::spawn.
    let r: Vec<Result<()>> = futures::stream::iter(names.to_vec())
        .map(|n| async move { act.create_node(&n, l, false).await })
        .buffer_unordered(32)
        .collect()
        .await;
    r.into_iter().collect::<Result<Vec<()>>>().map(|_| ())
}

pub fn names(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}-{i:05}")).collect()
}

/// How many of `names` the API server shows with podCIDRs.
pub async fn allocated_of(env: &Env, names: &[String]) -> Result<usize> {
    let s = snapshot(&env.cl.client, &env.hist).await?;
    Ok(s.nodes
        .iter()
        .map(view)
        .filter(|v| !v.cidrs.is_empty() && names.iter().any(|n| n == v.name))
        .count())
}

pub async fn wait_allocated(env: &Env, names: &[String], at_least: usize) -> Result<()> {
    poll(
        &format!("{at_least} of {} Nodes allocated", names.len()),
        Duration::from_secs(120),
        || async { (allocated_of(env, names).await.ok()? >= at_least).then_some(()) },
    )
    .await
}

/// 1: a re-list under a write backlog. One replica without leader
/// election; 1,500 Nodes no pool selects; frozen, 800 selected Nodes
/// arrive, kube-apiserver restarts (the Node watch's resourceVersion is
/// now too old: a re-list), thawed.
pub async fn relist_backlog(env: &mut Env, selected: usize) -> Result<Vec<String>> {
    let act = Actions::new(&env.cl.client, &env.hist);
    let unselected = selected * 15 / 8;
    act.create_pool("s1", &spec(&["2001:db8:9::/54"], Some(("pool", "s1"))))
        .await?;
    env.note(&format!("create {unselected} unselected Nodes"));
    create_many(
        &act,
        &names("idle", unselected),
        &labels(&[("role", "idle")]),
    )
    .await?;
    env.settle(SETTLE).await?;
    env.note("SIGSTOP the operator");
    env.freeze(0);
    env.note(&format!("create {selected} selected Nodes (the backlog)"));
    create_many(&act, &names("sel", selected), &labels(&[("pool", "s1")])).await?;
    env.note("restart kube-apiserver (1 s down)");
    env.restart_apiserver(Duration::from_secs(1)).await?;
    env.note("SIGCONT the operator");
    env.thaw(0);
    let v = env.settle(Duration::from_secs(120)).await?;
    Ok(v)
}

/// 2: writes whose outcome is unknown (kube-apiserver SIGKILLed under a
/// burst of writes, `--max-concurrent-writes` high) must not be re-sent
/// after leadership moved away and back. Per round: A leads and writes a
/// burst; kube-apiserver is killed mid-burst and stays down a while (A's
/// writes fail without an answer); A and B are frozen, kube-apiserver
/// comes back, the burst's Nodes still without podCIDRs are unlabelled
/// (no pool selects them: nobody may write them), B is thawed, leads and
/// gives the free space (A's unknown prefixes) to new Nodes; then A is
/// thawed, B frozen, and A leads again.
pub async fn leader_flap(
    env: &mut Env,
    rng: &mut StdRng,
    nodes: usize,
    rounds: usize,
) -> Result<Vec<String>> {
    let act = Actions::new(&env.cl.client, &env.hist);
    act.create_pool("s2", &spec(&["2001:db8:2::/50"], Some(("role", "s2"))))
        .await?;
    let sel = labels(&[("role", "s2")]);
    let mut v = vec![];
    for k in 0..rounds {
        let a = env.wait_leader(Duration::from_secs(30)).await?;
        let b = 1 - a;
        let burst = names(&format!("w{k}"), nodes);
        env.note(&format!("round {k}: replica {a} leads; freeze it, create a burst of {nodes} selected Nodes, thaw it"));
        env.freeze(a);
        create_many(&act, &burst, &sel).await?;
        env.thaw(a);
        // A list of the Nodes takes longer than the whole burst's writes:
        // a delay, not a count, picks the moment.
        let after = Duration::from_millis(rng.random_range(20..400));
        tokio::time::sleep(after).await;
        let outage = Duration::from_millis(rng.random_range(300..1500));
        env.note(&format!("SIGKILL kube-apiserver {after:?} into the burst; down {outage:?}; then freeze both replicas"));
        let d = env.hist.lock().disturb();
        let cp = env.cl.cp.clone();
        tokio::task::spawn_blocking(move || cp.stop_apiserver()).await?;
        tokio::time::sleep(outage).await;
        env.freeze(a);
        env.freeze(b);
        let cp = env.cl.cp.clone();
        tokio::task::spawn_blocking(move || cp.start_apiserver()).await??;
        env.hist.lock().calm(d);
        let empty = empty_of(env, &burst).await?;
        env.note(&format!(
            "unlabel the {} burst Nodes without podCIDRs (role=gone)",
            empty.len()
        ));
        set_many(&act, &empty, &labels(&[("role", "gone")])).await?;
        env.note(&format!(
            "thaw replica {b}; it must lead and serve new Nodes"
        ));
        env.thaw(b);
        env.wait_leads(b, Duration::from_secs(30)).await?;
        let fresh = names(&format!("x{k}"), nodes / 2);
        create_many(&act, &fresh, &sel).await?;
        wait_allocated(env, &fresh, fresh.len()).await?;
        env.note(&format!(
            "thaw replica {a}; once it follows {b}, freeze {b}: leadership goes back to {a}"
        ));
        env.thaw(a);
        // It still says it leads until it finds the Lease taken.
        env.wait_leads(b, Duration::from_secs(30)).await?;
        env.freeze(b);
        env.wait_leads(a, Duration::from_secs(30)).await?;
        env.note(&format!("replica {a} leads again; 8 s for its retries"));
        tokio::time::sleep(Duration::from_secs(8)).await;
        v.extend(env.check().await?.1);
        let leaked = empty.len() - empty_of(env, &empty).await?.len();
        if leaked > 0 {
            v.push(format!("(2) round {k}: {leaked} unlabelled Node(s) got podCIDRs although no pool selected them"));
        }
        v.extend(env.settle(SETTLE).await?);
        if !v.is_empty() {
            break;
        }
    }
    Ok(v)
}

/// Those of `names` the API server shows without podCIDRs.
async fn empty_of(env: &Env, names: &[String]) -> Result<Vec<String>> {
    let s = snapshot(&env.cl.client, &env.hist).await?;
    Ok(s.nodes
        .iter()
        .map(view)
        .filter(|v| v.cidrs.is_empty() && names.iter().any(|n| n == v.name))
        .map(|v| v.name.to_string())
        .collect())
}

/// Sets `l` on all of `names`, 32 requests in flight.
async fn set_many(act: &Actions, names: &[String], l: &Labels) -> Result<()> {
    let r: Vec<Result<()>> = futures::stream::iter(names.to_vec())
        .map(|n| async move { act.set_labels(&n, l).await })
        .buffer_unordered(32)
        .collect()
        .await;
    r.into_iter().collect::<Result<Vec<()>>>().map(|_| ())
}

/// How the operator is kept from seeing a pool's delete in
/// [`pool_recreate`].
#[derive(Debug, Clone, Copy)]
enum Blind {
    /// Frozen; kube-apiserver restarted (its watches break and must re-list
    /// a resourceVersion the new cache no longer has); then the delete and
    /// re-create; then thawed: the re-list shows the new object only.
    RestartBefore,
    /// Frozen across the delete and re-create, then the restart.
    RestartAfter,
    /// Frozen only: the watch events wait in the socket.
    FreezeOnly,
}

/// 3: a pool deleted and re-created under its name (generation 1 again)
/// with another spec (other prefixes, a reserved range) while the operator
/// cannot watch. New Nodes must get prefixes of the new spec only, and
/// the status must show the new spec. `trials` rounds, cycling through
/// the [`Blind`] modes.
pub async fn pool_recreate(env: &mut Env, trials: usize) -> Result<Vec<String>> {
    let act = Actions::new(&env.cl.client, &env.hist);
    let sel = Some(("zone", "a"));
    act.create_pool("s3", &spec(&["2001:db8:3::/58"], sel))
        .await?;
    create_many(&act, &names("old", 10), &labels(&[("zone", "a")])).await?;
    let mut v = env.settle(SETTLE).await?;
    let modes = [Blind::RestartBefore, Blind::RestartAfter, Blind::FreezeOnly];
    for k in 0..trials {
        let mode = modes[k % modes.len()];
        let prefix = format!("2001:db8:3:{:x}00::/60", k + 1);
        let reserved = format!("2001:db8:3:{:x}00::/64", k + 1);
        env.note(&format!(
            "round {k} ({mode:?}): freeze; delete s3; re-create it as {prefix} (reserved {reserved}); new Nodes"
        ));
        env.freeze(0);
        if let Blind::RestartBefore = mode {
            // Any write moves etcd's revision past what the frozen watch saw.
            act.create_node(&format!("idle{k}"), &labels(&[("role", "idle")]), false)
                .await?;
            env.restart_apiserver(Duration::from_secs(1)).await?;
        }
        act.delete_pool("s3").await?;
        act.wait_pool_gone("s3").await?;
        let mut s = spec(&[&prefix], sel);
        s.reserved = vec![reserved.clone()];
        act.create_pool("s3", &s).await?;
        let fresh = names(&format!("new{k}"), 6);
        create_many(&act, &fresh, &labels(&[("zone", "a")])).await?;
        if let Blind::RestartAfter = mode {
            env.restart_apiserver(Duration::from_secs(1)).await?;
        }
        env.thaw(0);
        v.extend(env.settle(Duration::from_secs(20)).await?);
        // Written at the thaw, when the operator may not yet have re-listed
        // the pools (in RestartBefore it was told its pool watch expired).
        v.extend(only_from(env, &fresh, &prefix, &reserved, "at the thaw").await?);
        // Written once settled: an operator that kept the old spec for
        // good (the same name and generation 1) still hands out old space.
        let later = names(&format!("later{k}"), 3);
        create_many(&act, &later, &labels(&[("zone", "a")])).await?;
        wait_allocated(env, &later, later.len()).await?;
        v.extend(only_from(env, &later, &prefix, &reserved, "after the settle").await?);
    }
    Ok(v)
}

/// The Nodes `fresh` hold prefixes inside `prefix` only, none in `reserved`.
async fn only_from(
    env: &Env,
    fresh: &[String],
    prefix: &str,
    reserved: &str,
    when: &str,
) -> Result<Vec<String>> {
    let s = snapshot(&env.cl.client, &env.hist).await?;
    let p = nets(&[prefix.to_string()])[0];
    let r = nets(&[reserved.to_string()])[0];
    let mut out = vec![];
    for n in s.nodes.iter().map(view) {
        if !fresh.iter().any(|f| f == n.name) {
            continue;
        }
        for c in nets(&n.cidrs) {
            if !p.contains(&c) || overlap(&c, &r) {
                out.push(format!(
                    "(3) Node {} created after the re-create, written {when}, got {c}: not from the new spec {prefix} (reserved {reserved})",
                    n.name
                ));
            }
        }
    }
    Ok(out)
}
