//! Directed reproductions 1-3 of issue 10's operation and fault classes,
//! each against a fresh control plane. They return the violations found;
//! the run reports them (an empty list is a pass).

use std::time::Duration;

use anyhow::Result;
use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use prefix_operator::api::PrefixPoolSpec;

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

/// 2: writes in flight when kube-apiserver dies, leadership away (A frozen,
/// B leads and allocates) and back (B frozen, A leads), with allocated
/// Nodes unlabelled meanwhile so that no pool selects them.
pub async fn leader_flap(env: &mut Env, nodes: usize) -> Result<Vec<String>> {
    let act = Actions::new(&env.cl.client, &env.hist);
    act.create_pool("s2", &spec(&["2001:db8:2::/56"], Some(("role", "s2"))))
        .await?;
    let a = env.wait_leader(Duration::from_secs(30)).await?;
    let b = 1 - a;
    env.note(&format!(
        "replica {a} leads; burst of {nodes} selected Nodes"
    ));
    let first = names("w1", nodes);
    let burst = {
        let act = Actions::new(&env.cl.client, &env.hist);
        let first = first.clone();
        tokio::spawn(async move { create_many(&act, &first, &labels(&[("role", "s2")])).await })
    };
    wait_allocated(env, &first, nodes / 5).await?;
    env.note("kill kube-apiserver mid-burst, freeze the leader, 1 s down");
    let d = env.hist.lock().disturb();
    let cp = env.cl.cp.clone();
    tokio::task::spawn_blocking(move || cp.stop_apiserver()).await?;
    env.freeze(a);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let cp = env.cl.cp.clone();
    tokio::task::spawn_blocking(move || cp.start_apiserver()).await??;
    env.hist.lock().calm(d);
    burst.await??;
    env.wait_leads(b, Duration::from_secs(30)).await?;
    env.note(&format!("replica {b} leads; waiting for the burst"));
    wait_allocated(env, &first, nodes).await?;
    env.note("unlabel half of the allocated Nodes (no pool selects them now)");
    for n in first.iter().step_by(2) {
        act.set_labels(n, &labels(&[("role", "gone")])).await?;
    }
    env.note(&format!(
        "freeze replica {b}, thaw replica {a}: leadership goes back"
    ));
    env.freeze(b);
    env.thaw(a);
    env.wait_leads(a, Duration::from_secs(30)).await?;
    let second = names("w2", nodes);
    env.note(&format!(
        "replica {a} leads again; {nodes} more selected Nodes"
    ));
    create_many(&act, &second, &labels(&[("role", "s2")])).await?;
    let mut v = env.settle(SETTLE).await?;
    let (_, c) = env.check().await?;
    v.extend(c);
    Ok(v)
}

/// 3: a pool deleted and re-created under its name with another spec while
/// the operator cannot watch: (i) frozen across the change and a
/// kube-apiserver restart (its watches re-list and never see the delete),
/// (ii) frozen only. New Nodes must get prefixes of the new spec only.
pub async fn pool_recreate(env: &mut Env) -> Result<Vec<String>> {
    let act = Actions::new(&env.cl.client, &env.hist);
    let sel = Some(("zone", "a"));
    act.create_pool("s3", &spec(&["2001:db8:3::/60"], sel))
        .await?;
    create_many(&act, &names("old", 10), &labels(&[("zone", "a")])).await?;
    let mut v = env.settle(SETTLE).await?;
    let rounds = [
        ("2001:db8:3:100::/60", "2001:db8:3:100::/64", true),
        ("2001:db8:3:200::/61", "2001:db8:3:200::/64", false),
    ];
    for (k, (prefix, reserved, relist)) in rounds.into_iter().enumerate() {
        env.note(&format!(
            "round {k}: freeze; delete s3; re-create it as {prefix} (reserved {reserved}); new Nodes{}",
            if relist { "; restart kube-apiserver" } else { "" }
        ));
        env.freeze(0);
        act.delete_pool("s3").await?;
        act.wait_pool_gone("s3").await?;
        let mut s = spec(&[prefix], sel);
        s.reserved = vec![reserved.to_string()];
        act.create_pool("s3", &s).await?;
        let fresh = names(&format!("new{k}"), 6);
        create_many(&act, &fresh, &labels(&[("zone", "a")])).await?;
        if relist {
            env.restart_apiserver(Duration::from_secs(1)).await?;
        }
        env.thaw(0);
        v.extend(env.settle(SETTLE).await?);
        v.extend(only_from(env, &fresh, prefix, reserved).await?);
    }
    Ok(v)
}

/// The Nodes `fresh` hold prefixes inside `prefix` only, none in `reserved`.
async fn only_from(
    env: &Env,
    fresh: &[String],
    prefix: &str,
    reserved: &str,
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
                    "(3) Node {} created after the re-create got {c}: not from the new spec {prefix} (reserved {reserved})",
                    n.name
                ));
            }
        }
    }
    Ok(out)
}
