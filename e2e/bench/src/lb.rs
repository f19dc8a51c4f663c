//! The operator's LoadBalancer addresses and MetalLB's controller given the
//! same work on the same kind of fresh local control plane (its Service
//! range dual-stack): a backlog of N LoadBalancer Services that exist before
//! the allocator starts, and a steady trickle of new ones, for IPv4, IPv6 or
//! dual-stack Services. Used by `lb-bench`.
//!
//! MetalLB's controller v0.16.2 is built from Go modules by
//! `e2e/metallb/build.sh`, which puts its CRDs (the module's
//! `config/crd/bases`) in `crds/` beside the binary. Outside a cluster it is
//! given `--namespace`, a Pod object named by `--pod-name` (it reads it at
//! start), `--webhook-mode=disabled` and `--lb-class`; it gets one
//! IPAddressPool of the same ranges the operator's LoadBalancer claims hold.

use std::collections::HashMap;
use std::io::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use ipnet::IpNet;
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use kube::api::{ObjectMeta, PostParams};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use prefix_operator::api::{IpFamily, PrefixClaim, PrefixClaimSpec, Purpose};
use prefix_operator_testenv::{
    OperatorProcess, Supervised, cpu_seconds_of, free_port, peak_rss_of,
};

use crate::cluster::{Cluster, create_pool};
use crate::kcm::{served_since, server_cpu, server_requests};
use crate::operator;
use crate::stats::{Summary, summarize};

/// The namespace of the benchmark's Services.
pub const NS: &str = "default";
/// MetalLB's namespace, Pod and IPAddressPool.
const METALLB_NS: &str = "metallb-system";
const METALLB_POD: &str = "controller";
/// The class MetalLB is told to serve (`--lb-class`).
pub const METALLB_CLASS: &str = "metallb.io/bench";
/// The pools (operator) and the ranges both hand out: a /18 of IPv4 (16,382
/// usable addresses) and a /112 of IPv6, each the operator's claim.
const V4_POOL: &str = "10.200.0.0/16";
const V4_RANGE: &str = "10.200.0.0/18";
const V6_POOL: &str = "2001:db8:200::/48";
const V6_RANGE: &str = "2001:db8:200::/112";

/// Which families the Services ask for.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Family {
    V4,
    V6,
    Dual,
}

impl Family {
    pub fn parse(s: &str) -> Result<Family> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "ipv4" | "v4" | "4" => Family::V4,
            "ipv6" | "v6" | "6" => Family::V6,
            "dual" | "dual-stack" | "dualstack" => Family::Dual,
            _ => bail!("family {s:?}: ipv4, ipv6 or dual"),
        })
    }

    pub fn label(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
            Family::Dual => "dual-stack",
        }
    }

    fn has_v4(self) -> bool {
        self != Family::V6
    }

    fn has_v6(self) -> bool {
        self != Family::V4
    }

    /// Addresses a served Service holds.
    pub fn want(self) -> usize {
        if self == Family::Dual { 2 } else { 1 }
    }

    fn ip_families(self) -> Vec<String> {
        let mut v = vec![];
        if self.has_v4() {
            v.push("IPv4".to_string());
        }
        if self.has_v6() {
            v.push("IPv6".to_string());
        }
        v
    }
}

/// Which allocator a phase runs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LbAllocator {
    Operator,
    MetalLb,
}

impl LbAllocator {
    pub fn label(self) -> &'static str {
        match self {
            LbAllocator::Operator => "prefix-operator (defaults)",
            LbAllocator::MetalLb => "MetalLB controller v0.16.2 (defaults, --lb-class)",
        }
    }

    pub fn short(self) -> &'static str {
        match self {
            LbAllocator::Operator => "operator",
            LbAllocator::MetalLb => "metallb",
        }
    }

    fn class(self) -> &'static str {
        match self {
            LbAllocator::Operator => prefix_operator::controller::LOAD_BALANCER_CLASS,
            LbAllocator::MetalLb => METALLB_CLASS,
        }
    }
}

/// The binaries and where logs go.
pub struct LbBins {
    /// MetalLB's controller; its CRDs are in `crds/` beside it.
    pub metallb: PathBuf,
    pub operator: PathBuf,
    pub logs: PathBuf,
}

/// A running allocator process.
pub struct LbRunning {
    proc: Proc,
    pub started: Instant,
    pub log: PathBuf,
}

enum Proc {
    MetalLb(Supervised),
    Operator(OperatorProcess),
}

impl LbRunning {
    pub fn pid(&self) -> u32 {
        match &self.proc {
            Proc::MetalLb(s) => s.pid(),
            Proc::Operator(o) => o.pid(),
        }
    }

    fn check_alive(&mut self) -> Result<()> {
        let alive = match &mut self.proc {
            Proc::MetalLb(s) => s.exited().is_none(),
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

/// The control plane's kubectl and an admin kubeconfig.
struct Kubectl {
    bin: PathBuf,
    kubeconfig: PathBuf,
}

/// Runs the control plane's kubectl with `args`, `stdin` written to it.
fn kubectl(cl: &Kubectl, args: &[&str], stdin: Option<&str>) -> Result<()> {
    let mut child = Command::new(&cl.bin)
        .arg(format!("--kubeconfig={}", cl.kubeconfig.display()))
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting kubectl")?;
    if let Some(s) = stdin {
        child
            .stdin
            .take()
            .context("kubectl stdin")?
            .write_all(s.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!(
            "kubectl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// A fresh control plane set up for `alloc`: the operator's pools and
/// LoadBalancer claims, or MetalLB's CRDs, namespace, Pod and pool.
pub async fn cluster_for(bins: &LbBins, alloc: LbAllocator, family: Family) -> Result<Cluster> {
    let cl = Cluster::start().await?;
    match alloc {
        LbAllocator::Operator => operator_setup(&cl.client, family).await?,
        LbAllocator::MetalLb => {
            let crds = bins.metallb.parent().context("MetalLB's dir")?.join("crds");
            let crds = crds.to_string_lossy().into_owned();
            let cl2 = Kubectl {
                bin: cl.cp.bin("kubectl"),
                kubeconfig: cl.kubeconfig.clone(),
            };
            tokio::task::spawn_blocking(move || metallb_setup(&cl2, &crds, family)).await??;
        }
    }
    Ok(cl)
}

async fn operator_setup(client: &Client, family: Family) -> Result<()> {
    let claims: Api<PrefixClaim> = Api::all(client.clone());
    let mut want = vec![];
    if family.has_v4() {
        create_pool(client, "v4", V4_POOL, 24).await?;
        want.push(("lb-v4", "v4", IpFamily::IPv4, 18));
    }
    if family.has_v6() {
        create_pool(client, "v6", V6_POOL, 64).await?;
        want.push(("lb-v6", "v6", IpFamily::IPv6, 112));
    }
    for (name, pool, ip_family, len) in want {
        let spec = PrefixClaimSpec {
            pool: Some(pool.into()),
            pool_selector: None,
            ip_family,
            prefix_length: len,
            purpose: Purpose::LoadBalancer,
        };
        claims
            .create(&PostParams::default(), &PrefixClaim::new(name, spec))
            .await
            .with_context(|| format!("creating PrefixClaim {name}"))?;
    }
    Ok(())
}

fn metallb_setup(cl: &Kubectl, crds: &str, family: Family) -> Result<()> {
    kubectl(cl, &["create", "-f", crds], None)?;
    kubectl(
        cl,
        &[
            "wait",
            "--for=condition=established",
            "--timeout=60s",
            "-f",
            crds,
        ],
        None,
    )?;
    let mut addresses = vec![];
    if family.has_v4() {
        addresses.push(V4_RANGE);
    }
    if family.has_v6() {
        addresses.push(V6_RANGE);
    }
    let objects = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": METALLB_NS}},
        // No controller makes it here; the Pod's admission needs it.
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": METALLB_NS}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": METALLB_POD, "namespace": METALLB_NS},
         "spec": {"containers": [{"name": "controller", "image": "quay.io/metallb/controller:v0.16.2"}]}},
        {"apiVersion": "metallb.io/v1beta1", "kind": "IPAddressPool",
         "metadata": {"name": "bench", "namespace": METALLB_NS},
         "spec": {"addresses": addresses}},
    ]});
    kubectl(cl, &["create", "-f", "-"], Some(&objects.to_string()))
}

/// Starts `alloc` against the cluster.
pub fn start(bins: &LbBins, cl: &Cluster, alloc: LbAllocator, what: &str) -> Result<LbRunning> {
    std::fs::create_dir_all(&bins.logs)?;
    let log = bins.logs.join(format!("{what}.log"));
    let _ = std::fs::remove_file(&log);
    let started = Instant::now();
    let proc = match alloc {
        LbAllocator::MetalLb => {
            let mut cmd = Command::new(&bins.metallb);
            cmd.env("KUBECONFIG", &cl.kubeconfig).args([
                format!("--namespace={METALLB_NS}"),
                format!("--pod-name={METALLB_POD}"),
                "--webhook-mode=disabled".into(),
                format!("--lb-class={METALLB_CLASS}"),
                // No metrics server; the health probe on a free port.
                "--port=0".into(),
                format!("--health-probe-port={}", free_port()?),
            ]);
            Proc::MetalLb(Supervised::start(cmd, &log)?)
        }
        LbAllocator::Operator => Proc::Operator(operator::spawn(
            &bins.operator,
            &cl.kubeconfig,
            "lb-bench",
            &[],
            &log,
        )?),
    };
    Ok(LbRunning { proc, started, log })
}

/// A LoadBalancer Service of `class` asking for `family`.
pub fn service(name: &str, class: &str, family: Family) -> Service {
    Service {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("LoadBalancer".into()),
            load_balancer_class: Some(class.into()),
            allocate_load_balancer_node_ports: Some(false),
            ip_families: Some(family.ip_families()),
            ip_family_policy: Some(
                if family == Family::Dual {
                    "RequireDualStack"
                } else {
                    "SingleStack"
                }
                .into(),
            ),
            ports: Some(vec![ServicePort {
                port: 80,
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    }
}

/// Creates `names`, `concurrency` creates in flight.
pub async fn create_all(
    api: &Api<Service>,
    names: &[String],
    class: &str,
    family: Family,
    concurrency: usize,
) -> Result<()> {
    let results: Vec<Result<()>> = futures::stream::iter(names.iter().cloned())
        .map(|n| {
            let api = api.clone();
            async move {
                api.create(&PostParams::default(), &service(&n, class, family))
                    .await
                    .with_context(|| format!("create {n}"))?;
                Ok(())
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    results.into_iter().collect()
}

/// The ingress addresses of a Service.
pub fn ingress_ips(s: &Service) -> Vec<String> {
    s.status
        .as_ref()
        .and_then(|st| st.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .map(|i| i.iter().filter_map(|x| x.ip.clone()).collect())
        .unwrap_or_default()
}

/// When each Service was first seen on a watch holding `want` addresses.
pub struct ServiceTracker {
    seen: Arc<Mutex<HashMap<String, Instant>>>,
    task: tokio::task::JoinHandle<()>,
}

impl ServiceTracker {
    pub fn start(client: &Client, want: usize) -> ServiceTracker {
        let seen: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
        let s = seen.clone();
        let api: Api<Service> = Api::namespaced(client.clone(), NS);
        let task = tokio::spawn(async move {
            let stream = watcher::watcher(api, watcher::Config::default());
            futures::pin_mut!(stream);
            while let Some(ev) = stream.next().await {
                let (Ok(Event::Apply(o)) | Ok(Event::InitApply(o))) = ev else {
                    continue;
                };
                if ingress_ips(&o).len() >= want
                    && let Some(n) = o.metadata.name
                {
                    s.lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .entry(n)
                        .or_insert_with(Instant::now);
                }
            }
        });
        ServiceTracker { seen, task }
    }

    pub fn at(&self, name: &str) -> Option<Instant> {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .copied()
    }

    /// The last time among `names` once all are seen, polling until
    /// `timeout`, failing early with the log if `run` dies.
    async fn wait_all(
        &self,
        run: &mut LbRunning,
        names: &[String],
        timeout: Duration,
    ) -> Result<Instant> {
        let deadline = Instant::now() + timeout;
        loop {
            run.check_alive()?;
            let (done, last, missing) = {
                let s = self.seen.lock().unwrap_or_else(|e| e.into_inner());
                let times: Vec<Instant> = names.iter().filter_map(|n| s.get(n).copied()).collect();
                (
                    times.len() == names.len(),
                    times.into_iter().max(),
                    names.len() - s.len().min(names.len()),
                )
            };
            if done {
                return last.context("no Service");
            }
            if Instant::now() >= deadline {
                bail!(
                    "{missing} of {} Services still without addresses after {timeout:?}; log tail:\n{}",
                    names.len(),
                    tail(&run.log, 20)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for ServiceTracker {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Every one of `names` holds one address of each family it asked for,
/// inside the range both allocators were given, and no address is held
/// twice: read from the API server.
pub async fn verify(client: &Client, family: Family, names: &[String]) -> Result<()> {
    let api: Api<Service> = Api::namespaced(client.clone(), NS);
    let list = api.list(&Default::default()).await?;
    let by_name: HashMap<String, Vec<String>> = list
        .items
        .iter()
        .filter_map(|s| Some((s.metadata.name.clone()?, ingress_ips(s))))
        .collect();
    let v4: IpNet = V4_RANGE.parse()?;
    let v6: IpNet = V6_POOL.parse()?;
    let mut all: Vec<IpAddr> = vec![];
    for n in names {
        let ips = by_name
            .get(n)
            .with_context(|| format!("Service {n} missing"))?;
        let ips: Vec<IpAddr> = ips
            .iter()
            .map(|i| i.parse().with_context(|| format!("{n}: {i}")))
            .collect::<Result<_>>()?;
        let fours = ips.iter().filter(|i| i.is_ipv4()).count();
        let sixes = ips.len() - fours;
        if (fours, sixes) != (usize::from(family.has_v4()), usize::from(family.has_v6())) {
            bail!(
                "{n} holds {ips:?}, not one address per family of {}",
                family.label()
            );
        }
        if let Some(out) = ips.iter().find(|i| !v4.contains(*i) && !v6.contains(*i)) {
            bail!("{n} holds {out}, outside {V4_RANGE} and {V6_POOL}");
        }
        all.extend(ips);
    }
    let n = all.len();
    all.sort();
    all.dedup();
    if all.len() != n {
        bail!("{} addresses held twice", n - all.len());
    }
    Ok(())
}

/// One backlog phase.
#[derive(Clone, Debug, Default)]
pub struct LbBacklog {
    pub services: usize,
    /// Process start → last Service seen with its addresses.
    pub total: Duration,
    pub peak_rss: u64,
    /// The allocator's user + system CPU seconds, start → done.
    pub cpu: f64,
    /// kube-apiserver's and etcd's CPU seconds over the same span.
    pub server_cpu: f64,
    /// Requests the API server answered over the same span.
    pub requests: Vec<(String, f64)>,
}

impl LbBacklog {
    pub fn rate(&self) -> f64 {
        self.services as f64 / self.total.as_secs_f64().max(1e-9)
    }
}

/// N Services exist before `alloc` starts; timed from its process start to
/// the last one seen holding its addresses; then checked with [`verify`].
pub async fn backlog(
    bins: &LbBins,
    alloc: LbAllocator,
    family: Family,
    (services, concurrency): (usize, usize),
    timeout: Duration,
    what: &str,
) -> Result<LbBacklog> {
    let cl = cluster_for(bins, alloc, family).await?;
    let api: Api<Service> = Api::namespaced(cl.client.clone(), NS);
    let names: Vec<String> = (0..services).map(|i| format!("lb-{i:05}")).collect();
    create_all(&api, &names, alloc.class(), family, concurrency).await?;
    let tracker = ServiceTracker::start(&cl.client, family.want());
    let served0 = server_requests(&cl.client).await?;
    let server0 = server_cpu(&cl);
    let mut run = start(bins, &cl, alloc, what)?;
    let last = tracker.wait_all(&mut run, &names, timeout).await?;
    let r = LbBacklog {
        services,
        total: last.duration_since(run.started),
        peak_rss: peak_rss_of(run.pid()).unwrap_or(0),
        cpu: cpu_seconds_of(run.pid()).unwrap_or(0.0),
        server_cpu: server_cpu(&cl) - server0,
        requests: served_since(&server_requests(&cl.client).await?, &served0),
    };
    verify(&cl.client, family, &names)
        .await
        .with_context(|| format!("end state after {}", alloc.label()))?;
    Ok(r)
}

/// One trickle phase.
#[derive(Clone, Debug, Default)]
pub struct LbTrickle {
    pub lat: Summary,
    pub peak_rss: u64,
    /// The allocator's and the control plane's CPU seconds over the trickle.
    pub cpu: f64,
    pub server_cpu: f64,
}

/// `alloc` started on a fresh control plane and shown to work (a first
/// Service served), then `count` Services created one by one at `rate` per
/// second; per Service, create answered → addresses seen on a watch.
pub async fn trickle(
    bins: &LbBins,
    alloc: LbAllocator,
    family: Family,
    (count, rate): (usize, f64),
    timeout: Duration,
    what: &str,
) -> Result<LbTrickle> {
    let cl = cluster_for(bins, alloc, family).await?;
    let api: Api<Service> = Api::namespaced(cl.client.clone(), NS);
    let tracker = ServiceTracker::start(&cl.client, family.want());
    let mut run = start(bins, &cl, alloc, what)?;
    let probe = vec!["probe".to_string()];
    create_all(&api, &probe, alloc.class(), family, 1).await?;
    tracker.wait_all(&mut run, &probe, timeout).await?;
    let (cpu0, server0) = (cpu_seconds_of(run.pid()).unwrap_or(0.0), server_cpu(&cl));
    let gap = Duration::from_secs_f64(1.0 / rate.max(1e-3));
    let mut created: Vec<(String, Instant)> = vec![];
    let mut next = Instant::now();
    for i in 0..count {
        tokio::time::sleep_until(next.into()).await;
        next += gap;
        let n = format!("t-{i:05}");
        api.create(&PostParams::default(), &service(&n, alloc.class(), family))
            .await
            .with_context(|| format!("create {n}"))?;
        created.push((n, Instant::now()));
    }
    let names: Vec<String> = created.iter().map(|(n, _)| n.clone()).collect();
    tracker.wait_all(&mut run, &names, timeout).await?;
    let cpu = cpu_seconds_of(run.pid()).unwrap_or(0.0) - cpu0;
    let server = server_cpu(&cl) - server0;
    let lat: Vec<f64> = created
        .iter()
        .filter_map(|(n, t)| Some(tracker.at(n)?.saturating_duration_since(*t).as_secs_f64()))
        .collect();
    let mut all = names;
    all.extend(probe);
    verify(&cl.client, family, &all)
        .await
        .with_context(|| format!("end state after {}", alloc.label()))?;
    Ok(LbTrickle {
        lat: summarize(&lat),
        peak_rss: peak_rss_of(run.pid()).unwrap_or(0),
        cpu,
        server_cpu: server,
    })
}

/// The API server's own limit: N Services of a class nobody serves, and
/// this client writing each one's `status.loadBalancer.ingress` (32 writes
/// in flight), as fast as it can. Services per second.
pub async fn bare_client(family: Family, services: usize) -> Result<f64> {
    use kube::api::{Patch, PatchParams};
    let cl = Cluster::start().await?;
    let api: Api<Service> = Api::namespaced(cl.client.clone(), NS);
    let names: Vec<String> = (0..services).map(|i| format!("bare-{i:05}")).collect();
    create_all(&api, &names, "example.com/bench-bare", family, 32).await?;
    let started = Instant::now();
    let results: Vec<Result<()>> = futures::stream::iter(names.iter().enumerate())
        .map(|(i, n)| {
            let api = api.clone();
            async move {
                let mut ingress = vec![];
                if family.has_v4() {
                    ingress.push(serde_json::json!({"ip": format!("10.200.{}.{}", i / 250, 1 + i % 250), "ipMode": "VIP"}));
                }
                if family.has_v6() {
                    ingress.push(serde_json::json!({"ip": format!("2001:db8:200::{:x}", i + 1), "ipMode": "VIP"}));
                }
                let patch = serde_json::json!({"status": {"loadBalancer": {"ingress": ingress}}});
                api.patch_status(n, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .with_context(|| format!("status of {n}"))?;
                Ok(())
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    results.into_iter().collect::<Result<Vec<()>>>()?;
    let rate = services as f64 / started.elapsed().as_secs_f64().max(1e-9);
    verify(&cl.client, family, &names).await?;
    Ok(rate)
}
