//! Directed reproductions 4-6: free space after refused writes, retired
//! prefixes across a leader change, and `status.waiting`.

use std::time::{Duration, Instant};

use anyhow::Result;
use rand::Rng;
use rand::rngs::StdRng;

use super::actions::Actions;
use super::check::{snapshot, view};
use super::env::Env;
use super::history::SEE_WITHIN;
use super::ops::SETTLE;
use super::scenarios::{create_many, labels, names, spec, wait_allocated};
use crate::cluster::poll;

const SLOT: &str = "2001:db8:4::/64";

/// 4: a one-slot pool. Node a is created and at once written by hand
/// (another writer) with space outside the pool, racing the operator's
/// write, which the API server then refuses (422). b waits; once a is
/// gone, b must get the slot with no restart. Several trials with
/// different timings.
pub async fn refused_write(env: &mut Env, rng: &mut StdRng, trials: usize) -> Result<Vec<String>> {
    let act = Actions::new(&env.cl.client, &env.hist);
    act.create_pool("s4", &spec(&[SLOT], Some(("role", "s4"))))
        .await?;
    let l = labels(&[("role", "s4")]);
    let mut v = vec![];
    let (mut landed, mut tried) = (0, 0);
    for k in 0..trials {
        tried += 1;
        let (a, b) = (format!("a{k}"), format!("b{k}"));
        let delay = rng.random_range(0..15u64);
        env.note(&format!(
            "trial {k}: create {a}, hand-write it after {delay} ms, create {b}"
        ));
        act.create_node(&a, &l, false).await?;
        tokio::time::sleep(Duration::from_millis(delay)).await;
        let mine = format!("2001:db8:ffff:{k:x}::/64");
        if act.hand_write(&a, std::slice::from_ref(&mine)).await? {
            landed += 1;
        }
        act.create_node(&b, &l, false).await?;
        env.note(&format!("   delete {a}; {b} must get {SLOT}"));
        act.delete_node(&a).await?;
        let got = poll(
            &format!("{b} to get the slot"),
            Duration::from_secs(20),
            || async { (holds(env, &b).await == Some(SLOT.to_string())).then_some(()) },
        )
        .await;
        if got.is_err() {
            v.push(format!(
                "(4) trial {k}: {b} still has no podCIDRs 20 s after {a} was deleted (holds {:?})",
                holds(env, &b).await
            ));
            v.extend(env.settle(SETTLE).await?);
            break;
        }
        act.delete_node(&b).await?;
        poll("the slot to be free", Duration::from_secs(30), || async {
            holds(env, &b).await.is_none().then_some(())
        })
        .await?;
    }
    env.note(&format!(
        "{landed}/{tried} hand writes landed; the operator logged {} refused write(s)",
        env.log_count("write refused")
    ));
    v.extend(env.settle(SETTLE).await?);
    Ok(v)
}

/// `name`'s first podCIDR, if the Node exists and has one.
async fn holds(env: &Env, name: &str) -> Option<String> {
    let s = snapshot(&env.cl.client, &env.hist).await.ok()?;
    s.nodes
        .iter()
        .map(view)
        .find(|n| n.name == name)
        .and_then(|n| n.cidrs.first().cloned())
}

/// 5: a prefix holding allocations is removed from the spec (it becomes
/// `retired: true`) right as the leader changes (SIGKILL, SIGSTOP or
/// SIGTERM of the leader); the retired prefix and its allocations must stay
/// in status under the new leader, and under a fresh one after that.
pub async fn retire_leader(env: &mut Env, late: usize) -> Result<Vec<String>> {
    let act = Actions::new(&env.cl.client, &env.hist);
    let l = labels(&[("role", "s5")]);
    let sel = Some(("role", "s5"));
    let p = [
        "2001:db8:5::/62",
        "2001:db8:5:100::/62",
        "2001:db8:5:200::/62",
        "2001:db8:5:300::/60",
    ];
    act.create_pool("s5", &spec(&p[..2], sel)).await?;
    let first = names("r", 8);
    create_many(&act, &first, &l).await?;
    wait_allocated(env, &first, 8).await?;
    let mut v = vec![];
    let steps: [(&[&str], &str); 3] =
        [(&p[1..3], "kill"), (&p[2..4], "freeze"), (&p[3..4], "term")];
    for (k, (keep, how)) in steps.into_iter().enumerate() {
        let leader = env.wait_leader(Duration::from_secs(30)).await?;
        env.note(&format!(
            "step {k}: spec.prefixes = {keep:?} and {how} the leader {leader}"
        ));
        let change = {
            let act = Actions::new(&env.cl.client, &env.hist);
            let s = spec(keep, sel);
            tokio::spawn(async move { act.replace_spec("s5", &s).await })
        };
        match how {
            "kill" => env.kill(leader),
            "freeze" => env.freeze(leader),
            _ => env.term(leader).await?,
        }
        change.await??;
        env.wait_leads(1 - leader, Duration::from_secs(30)).await?;
        create_many(&act, &names(&format!("r{k}"), 2), &l).await?;
        v.extend(env.settle(SETTLE).await?);
    }
    let leader = env.wait_leader(Duration::from_secs(30)).await?;
    env.note(&format!(
        "SIGKILL the leader {leader} once more: a fresh replica must keep the retired prefixes"
    ));
    env.kill(leader);
    env.wait_leads(1 - leader, Duration::from_secs(30)).await?;
    v.extend(after_takeover(env, &act, "rk").await?);
    for k in 0..late {
        if !v.is_empty() {
            break;
        }
        v.extend(late_follower(env, &act, k).await?);
    }
    Ok(v)
}

/// A follower that first reads the pool between a spec change (a prefix
/// holding Nodes removed) and the leader's status write marking it
/// retired: the follower is started while the leader is frozen right
/// after the change; the leader is thawed and writes the status; then the
/// leader is killed. The follower, leading now, must keep the retired
/// prefix and its allocations.
async fn late_follower(env: &mut Env, act: &Actions, k: usize) -> Result<Vec<String>> {
    let sel = Some(("role", "s5"));
    let l = labels(&[("role", "s5")]);
    let leader = env.wait_leader(Duration::from_secs(30)).await?;
    let f = 1 - leader;
    let old = format!("2001:db8:5:{:x}00::/60", k + 4);
    let new = format!("2001:db8:5:{:x}00::/60", k + 5);
    env.note(&format!(
        "late follower {k}: spec.prefixes = [{old}], Nodes in it; kill follower {f}"
    ));
    act.replace_spec("s5", &spec(&[&old], sel)).await?;
    let ns = names(&format!("late{k}"), 3);
    create_many(act, &ns, &l).await?;
    wait_allocated(env, &ns, ns.len()).await?;
    env.kill(f);
    wait_spec_seen(env, "s5").await?;
    env.note(&format!(
        "freeze leader {leader}; spec.prefixes = [{new}]; start {f} (it reads the pool before any retired record); thaw {leader}"
    ));
    env.freeze(leader);
    act.replace_spec("s5", &spec(&[&new], sel)).await?;
    // Ready: it has listed the pools, so it read the new spec before any
    // retired record (the leader is frozen).
    env.spawn_ready(f).await?;
    env.thaw(leader);
    let marked = poll(
        "the leader to mark the old prefix retired",
        Duration::from_secs(20),
        || async {
            let p = act.get_pool("s5").await.ok()??;
            let st = p.status?;
            st.prefixes
                .iter()
                .any(|u| u.prefix == old && u.retired)
                .then_some(())
        },
    )
    .await;
    if marked.is_err() {
        env.note("the leader did not write the retired record (leadership moved?); round skipped");
        return env.settle(SETTLE).await;
    }
    env.note(&format!(
        "status marks {old} retired; 7 s; SIGKILL leader {leader}: {f} leads"
    ));
    tokio::time::sleep(Duration::from_secs(7)).await;
    env.kill(leader);
    env.wait_leads(f, Duration::from_secs(30)).await?;
    after_takeover(env, act, &format!("late{k}b")).await
}

/// Makes the new leader write status (a new Node changes `allocated`),
/// then settles: a settle alone could pass on the old leader's last
/// status before the new one overwrites it.
async fn after_takeover(env: &mut Env, act: &Actions, prefix: &str) -> Result<Vec<String>> {
    let ns = names(prefix, 1);
    create_many(act, &ns, &labels(&[("role", "s5")])).await?;
    wait_allocated(env, &ns, 1).await?;
    if wait_status_counts(env, act, "s5", "s5").await.is_err() {
        env.note("the pool's status did not count the new Node within 20 s; the settle says why");
    }
    env.settle(SETTLE).await
}

/// Waits until the spec pool `name` holds now counts as seen: in effect for
/// [`SEE_WITHIN`] with no replica frozen and the control plane up, as the
/// retired-prefix check requires of an old spec.
async fn wait_spec_seen(env: &Env, name: &str) -> Result<()> {
    poll(
        &format!("the spec of {name} to count as seen"),
        SEE_WITHIN * 6,
        || async {
            let rec = env.hist.lock();
            let pool = rec
                .pools
                .values()
                .find(|p| p.name == name && p.gone.is_none())?;
            let since = pool.versions.last()?.from;
            rec.saw_by(since, Instant::now()).then_some(())
        },
    )
    .await
}

/// Waits until pool `name`'s `status.allocated` counts every Node labelled
/// `role=ROLE` that holds podCIDRs: a status written after the newest of
/// them got its prefix (no Node of the role is in conflict or held by
/// another writer here).
async fn wait_status_counts(env: &Env, act: &Actions, name: &str, role: &str) -> Result<()> {
    poll(
        &format!("PrefixPool {name}'s status to count every role={role} Node"),
        Duration::from_secs(20),
        || async {
            let s = snapshot(&env.cl.client, &env.hist).await.ok()?;
            let held = s
                .nodes
                .iter()
                .map(view)
                .filter(|n| {
                    !n.cidrs.is_empty() && n.labels.get("role").map(String::as_str) == Some(role)
                })
                .count() as i64;
            let allocated = act.get_pool(name).await.ok()??.status?.allocated;
            (allocated == Some(held)).then_some(())
        },
    )
    .await
}

/// 6: `status.waiting` against the Nodes, through exhaustion, deletes
/// (one held by a finalizer), relabels and growth.
pub async fn waiting(env: &mut Env) -> Result<Vec<String>> {
    let act = Actions::new(&env.cl.client, &env.hist);
    act.create_pool("s6a", &spec(&["2001:db8:6::/62"], Some(("zone", "a"))))
        .await?;
    let mut b = spec(&["2001:db8:6:100::/63"], Some(("zone", "b")));
    b.priority = 5;
    act.create_pool("s6b", &b).await?;
    let za = labels(&[("zone", "a")]);
    let zb = labels(&[("zone", "b")]);
    create_many(&act, &names("a", 9), &za).await?;
    create_many(&act, &names("b", 5), &zb).await?;
    for n in names("fa", 3) {
        act.create_node(&n, &za, true).await?;
    }
    let mut v = env.settle(SETTLE).await?;
    env.note("delete two Nodes of zone a (one held by a finalizer), unlabel two of zone b, label two new");
    let (s, _) = env.check().await?;
    let held: Vec<String> = s
        .nodes
        .iter()
        .map(view)
        .filter(|n| !n.cidrs.is_empty() && n.labels.get("zone").map(String::as_str) == Some("a"))
        .map(|n| n.name.to_string())
        .collect();
    if let Some(f) = held.iter().find(|n| n.starts_with("fa")).or(held.first()) {
        act.delete_node(f).await?;
    }
    if let Some(n) = held.iter().find(|n| !n.starts_with("fa")) {
        act.delete_node(n).await?;
    }
    for n in names("b", 2) {
        act.set_labels(&n, &labels(&[("zone", "none")])).await?;
    }
    create_many(&act, &names("c", 2), &zb).await?;
    v.extend(env.settle(SETTLE).await?);
    env.note("drop the finalizers; grow s6a by a /63");
    for n in names("fa", 3) {
        act.drop_finalizer(&n).await?;
    }
    act.replace_spec(
        "s6a",
        &spec(
            &["2001:db8:6::/62", "2001:db8:6:200::/63"],
            Some(("zone", "a")),
        ),
    )
    .await?;
    v.extend(env.settle(SETTLE).await?);
    v.extend(dual_stack_delete(env, &act).await?);
    Ok(v)
}

/// Dual-stack Nodes waiting with both families full, then the IPv6 pool
/// deleted: they now wait for the IPv4 pool alone, and its
/// `status.waiting` must count them (a count kept from when they were
/// planned would still blame the deleted pool).
async fn dual_stack_delete(env: &mut Env, act: &Actions) -> Result<Vec<String>> {
    let sel = Some(("zone", "d"));
    let mut v4 = spec(&["10.6.0.0/23"], sel);
    v4.node_prefix_length = Some(24);
    act.create_pool("s6v4", &v4).await?;
    act.create_pool("s6d", &spec(&["2001:db8:6:300::/63"], sel))
        .await?;
    env.note("dual-stack: 2 slots in each family, 5 Nodes of zone d (3 wait)");
    create_many(act, &names("d", 5), &labels(&[("zone", "d")])).await?;
    let mut v = env.settle(SETTLE).await?;
    env.note("delete the IPv6 pool s6d: the 3 Nodes wait for s6v4 alone");
    act.delete_pool("s6d").await?;
    act.wait_pool_gone("s6d").await?;
    v.extend(env.settle(Duration::from_secs(30)).await?);
    env.note("one more zone d Node: it waits for s6v4 too");
    create_many(act, &names("e", 1), &labels(&[("zone", "d")])).await?;
    v.extend(env.settle(Duration::from_secs(30)).await?);
    Ok(v)
}
