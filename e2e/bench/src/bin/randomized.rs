//! `randomized`: a randomized fault run of prefix-operator against a real
//! kube-apiserver + etcd and the real operator binary (issue 10).
//!
//! `--scenario random` draws `--ops` operations per seed from a mix of
//! Node creates/deletes/relabels/re-creates, Nodes held by finalizers,
//! hand-written podCIDRs (outside and inside pools, and over bound claims),
//! pools created, deleted, re-created (at once, with another
//! nodePrefixLength; the IPv4 pool while dual-stack Nodes wait for it),
//! grown, shrunk, re-selected and given reserved ranges (also over bound
//! claims), PrefixClaims of every purpose and both families,
//! LoadBalancer Services of the operator's class (one or two families,
//! some asking for an address) and ClusterIP Services (IPv6, dual-stack,
//! some in a ServiceCIDR claim being deleted), and faults
//! (SIGKILL/SIGTERM/SIGSTOP of replicas and the leader, kube-apiserver and
//! etcd restarts). The control plane has the dual-stack Service range
//! `10.96.0.0/16,fd00:96::/112` and no kube-controller-manager. The directed scenarios reproduce the
//! operation classes of issue 10 one at a time:
//! `relist-backlog`, `leader-flap`, `pool-recreate`, `refused-write`,
//! `retire-leader`, `waiting`.
//!
//! After every op the invariants are checked against what the API server
//! holds and what the watches recorded (`random::check`, `check_svc`,
//! `dual`); settles check the status (`random::quiet`, `quiet_claims`).
//! Every op goes to `$CARGO_TARGET_DIR/randomized/<scenario>-seed<S>/ops.log`
//! with the replica logs, so a failing seed can be read and replayed; each
//! run's report (operations by kind, faults, violations by invariant) is
//! printed and kept in `report.txt` beside it.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Result, bail};
use clap::Parser;
use prefix_operator::api::{IpFamily, PrefixClaimSpec, Purpose};
use prefix_operator_bench::cluster::loadavg;
use prefix_operator_bench::operator::{operator_bin, target_dir};
use prefix_operator_bench::random::env::Env;
use prefix_operator_bench::random::mix::{V4_POOL, random_spec};
use prefix_operator_bench::random::ops::{Runner, SETTLE};
use prefix_operator_bench::random::report::{Tally, render};
use prefix_operator_bench::random::{scenarios, space};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const DIRECTED: [&str; 6] = [
    "relist-backlog",
    "leader-flap",
    "pool-recreate",
    "refused-write",
    "retire-leader",
    "waiting",
];

#[derive(Parser, Debug, Clone)]
#[command(name = "randomized", about = "Randomized fault run of prefix-operator")]
struct Args {
    /// A seed (repeatable).
    #[arg(long)]
    seed: Vec<u64>,
    /// Seeds, comma-separated (added to --seed; default 1 when both empty).
    #[arg(long, value_delimiter = ',')]
    seeds: Vec<u64>,
    /// How many of the seeds (the first ones) each directed scenario runs with.
    #[arg(long, default_value_t = 1)]
    directed_seeds: usize,
    /// Operations per seed in the random mix.
    #[arg(long, default_value_t = 60)]
    ops: usize,
    /// Selected Nodes in relist-backlog (unselected: 15/8 of it); burst size
    /// in leader-flap is half of it.
    #[arg(long, default_value_t = 800)]
    nodes: usize,
    /// Trials in refused-write; rounds in pool-recreate (at most 6); a
    /// quarter of it in leader-flap and retire-leader (late-follower rounds).
    #[arg(long, default_value_t = 8)]
    trials: usize,
    /// Scenarios, comma-separated: the directed ones, `random`, or `all`.
    #[arg(long, value_delimiter = ',', default_value = "all")]
    scenario: Vec<String>,
    /// Run every op of the random mix even after a finding (by default it
    /// stops at the first one, except (h) and (i), which leave the state
    /// as it was).
    #[arg(long)]
    keep_going: bool,
    /// Operator binary [default: $CARGO_TARGET_DIR/release/prefix-operator or $PREFIX_OPERATOR_BIN].
    #[arg(long)]
    operator_bin: Option<PathBuf>,
}

/// One scenario run with one seed; violations empty means PASS. The tally
/// counts the random mix's operations.
async fn run_one(
    args: &Args,
    bin: &std::path::Path,
    name: &str,
    seed: u64,
    tally: &mut Tally,
) -> Result<Vec<String>> {
    let dir = target_dir()
        .join("randomized")
        .join(format!("{name}-seed{seed}"));
    let _ = std::fs::remove_dir_all(&dir);
    let tag = format!("{name} seed {seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let two = matches!(name, "leader-flap" | "retire-leader");
    if name == "random" {
        let replicas = if rng.random_bool(0.5) { 2 } else { 1 };
        let le = replicas == 2 || rng.random_bool(0.3);
        let mut env = Env::start(bin, dir, &tag, replicas, le).await?;
        return random_mix(&mut env, &mut rng, args, tally).await;
    }
    // leader-flap: many writes in flight when kube-apiserver dies;
    // retire-leader: a lease long enough to start a follower while the
    // leader is frozen.
    let extra: &[&str] = match name {
        "leader-flap" => &["--max-concurrent-writes=256"],
        "retire-leader" => &["--lease-duration=10s", "--renew-deadline=7s"],
        _ => &[],
    };
    let replicas = if two { 2 } else { 1 };
    let mut env = Env::start_with(bin, dir, &tag, replicas, two, extra).await?;
    match name {
        "relist-backlog" => scenarios::relist_backlog(&mut env, args.nodes).await,
        "leader-flap" => {
            let burst = (args.nodes / 2).max(20);
            scenarios::leader_flap(&mut env, &mut rng, burst, args.trials.div_ceil(4)).await
        }
        "pool-recreate" => scenarios::pool_recreate(&mut env, args.trials.min(6)).await,
        "refused-write" => space::refused_write(&mut env, &mut rng, args.trials).await,
        "retire-leader" => space::retire_leader(&mut env, args.trials.div_ceil(4)).await,
        "waiting" => space::waiting(&mut env).await,
        other => bail!("unknown scenario {other}"),
    }
}

/// `--ops` random operations, a check after each; stops at the first op
/// that breaks an invariant other than (h) (a one-family write too close
/// to a pool of the other family) and (i) (claim conflicts reported),
/// unless `--keep-going`, then settles and checks once more. A finding of
/// (h) or (i) changes nothing later ops rely on.
async fn random_mix(
    env: &mut Env,
    rng: &mut StdRng,
    args: &Args,
    tally: &mut Tally,
) -> Result<Vec<String>> {
    let replicas = env.replicas.len();
    let mut run = Runner::new(env);
    for p in ["p0", V4_POOL] {
        let s = random_spec(rng, p, None);
        run.env.note(&format!("initial pool {p}: {s:?}"));
        run.act.create_pool(p, &s).await?;
        run.model.pools.insert(p.to_string(), s);
    }
    // Claims from the start, so that Services find addresses to take (and
    // ask for) before the mix makes its own.
    for (c, spec) in initial_claims() {
        run.env.note(&format!("initial claim {c}: {spec:?}"));
        run.svc.create_claim(c, &spec).await?;
        run.model.claims.insert(c.to_string(), spec);
    }
    let mut v: Vec<String> = vec![];
    let r = async {
        for i in 0..args.ops {
            let op = run.model.next_op(rng, replicas);
            run.env.note(&format!("op {i}: {op:?}"));
            v.extend(run.run(op).await?);
            v.extend(run.env.check().await?.1);
            let stops = |l: &&String| !(l.starts_with("(h)") || l.starts_with("(i)"));
            if let Some(f) = v.iter().find(stops).filter(|_| !args.keep_going) {
                let f = f.clone();
                run.env
                    .note(&format!("op {i} broke an invariant; stopping the mix: {f}"));
                break;
            }
        }
        run.env.note("final settle");
        v.extend(run.env.settle(SETTLE).await?);
        anyhow::Ok(())
    }
    .await;
    *tally = run.tally.clone();
    if let Err(e) = r {
        v.push(format!("run error: {e:#}"));
    }
    v.sort();
    v.dedup();
    Ok(v)
}

/// A ServiceCIDR and a LoadBalancer claim of IPv6, a LoadBalancer claim of IPv4.
fn initial_claims() -> [(&'static str, PrefixClaimSpec); 3] {
    let claim = |pool: &str, fam, len, purpose| PrefixClaimSpec {
        pool: Some(pool.into()),
        pool_selector: None,
        ip_family: fam,
        prefix_length: len,
        purpose,
    };
    [
        (
            "sc6",
            claim("p0", IpFamily::IPv6, 112, Purpose::ServiceCIDR),
        ),
        (
            "lb6",
            claim("p0", IpFamily::IPv6, 120, Purpose::LoadBalancer),
        ),
        (
            "lb4",
            claim(V4_POOL, IpFamily::IPv4, 29, Purpose::LoadBalancer),
        ),
    ]
}

fn scenarios_of(args: &Args) -> Vec<String> {
    args.scenario
        .iter()
        .flat_map(|s| match s.as_str() {
            "all" => DIRECTED
                .iter()
                .map(|d| d.to_string())
                .chain(["random".to_string()])
                .collect(),
            _ => vec![s.clone()],
        })
        .collect()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args = Args::parse();
    let bin = operator_bin(args.operator_bin.clone())?;
    let mut seeds: Vec<u64> = args.seed.iter().chain(&args.seeds).copied().collect();
    if seeds.is_empty() {
        seeds.push(1);
    }
    eprintln!(
        "randomized: operator {}, seeds {seeds:?}, load {}",
        bin.display(),
        loadavg()
    );
    let mut rows = vec![];
    for name in scenarios_of(&args) {
        // The random mix runs with every seed; a directed scenario (the
        // seed varies its timings and outage lengths) with the first
        // --directed-seeds of them.
        let runs: &[u64] = if name == "random" {
            &seeds
        } else {
            &seeds[..args.directed_seeds.clamp(1, seeds.len())]
        };
        for &seed in runs {
            eprintln!("== {name} seed {seed}");
            let t = Instant::now();
            let mut tally = Tally::default();
            let r = run_one(&args, &bin, &name, seed, &mut tally).await;
            let took = t.elapsed().as_secs_f64();
            let dir = target_dir()
                .join("randomized")
                .join(format!("{name}-seed{seed}"));
            let lines: Vec<String> = match &r {
                Ok(v) => {
                    // Repeated settles report a lasting breach each time.
                    let mut v = v.clone();
                    v.sort();
                    v.dedup();
                    v
                }
                Err(e) => vec![format!("run error: {e:#}")],
            };
            let _ = std::fs::write(dir.join("violations.txt"), lines.join("\n"));
            let report = render(&tally, &lines);
            let _ = std::fs::write(dir.join("report.txt"), &report);
            eprintln!("   report of {name} seed {seed}:");
            report.lines().for_each(|l| eprintln!("     {l}"));
            if lines.is_empty() {
                eprintln!("   PASS in {took:.1} s");
            } else {
                eprintln!("   FAIL in {took:.1} s: {} finding(s):", lines.len());
                lines.iter().take(15).for_each(|l| eprintln!("     {l}"));
            }
            rows.push((name.clone(), seed, took, lines));
        }
    }
    println!("\n| scenario | seed | result | time | findings (first) |\n|---|---:|---|---:|---|");
    for (name, seed, took, lines) in &rows {
        let res = if lines.is_empty() { "PASS" } else { "FAIL" };
        let first = lines
            .first()
            .map(|l| l.lines().next().unwrap_or(""))
            .unwrap_or("");
        println!(
            "| {name} | {seed} | {res} | {took:.1} s | {} {first} |",
            lines.len()
        );
    }
    println!("\nlogs: {}", target_dir().join("randomized").display());
    if rows.iter().any(|r| !r.3.is_empty()) {
        bail!("some runs found invariant violations");
    }
    Ok(())
}
