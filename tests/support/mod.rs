//! Test support: a real control plane, clients, the CRD, Nodes, and the
//! operator run in-process; helm ([`helm`]) and RBAC rules ([`rbac`]).
//! The operator binary as a child process is
//! `prefix_operator_testenv::OperatorProcess`.

pub mod claims;
pub mod cni;
pub mod components;
pub mod debs;
pub mod helm;
pub mod kea;
pub mod lab;
pub mod netns;
pub mod rbac;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, NodeSpec};
use kube::api::{DeleteParams, ObjectMeta, PostParams};
use kube::{Api, Client};
use prefix_operator::api::{PrefixPool, PrefixPoolSpec};
use prefix_operator::app::{App, Config, Leadership};
use prefix_operator::controller::{Health, Settings};
use prefix_operator::metrics::Metrics;
pub use prefix_operator_testenv::{ControlPlane, Identity, Options, hold_proxy, shared};

/// A ServiceAccount token bound to a Pod object (see the harness's `pod_identity`).
pub mod pod_identity {
    /// [`prefix_operator_testenv::pod_identity::pod_token`], panicking on error.
    pub async fn pod_token(client: &kube::Client, ns: &str, sa: &str, pod: &str) -> String {
        prefix_operator_testenv::pod_identity::pod_token(client, ns, sa, pod)
            .await
            .expect("a token bound to a Pod")
    }
}
use tokio::sync::{oneshot, watch};

/// The repository's root.
pub fn repo() -> std::path::PathBuf {
    std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .canonicalize()
        .expect("the repository root")
}

/// The operator binary cargo built beside the running test
/// (`target/<profile>/prefix-operator`; a test runs from
/// `target/<profile>/deps`).
pub fn operator_bin() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|dir| dir.join("prefix-operator"))
        .expect("the test runs from target/<profile>/deps");
    assert!(
        bin.exists(),
        "{} is not built (cargo test builds it)",
        bin.display()
    );
    bin
}

/// Prints the control plane's log tails if the test panics.
pub struct DumpOnPanic<'a>(pub &'a ControlPlane);

impl Drop for DumpOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.0.log_tails(40));
        }
    }
}

/// A name unique within this run.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

pub async fn admin(cp: &ControlPlane) -> Client {
    cp.client(&Identity::Admin).await.expect("admin client")
}

/// Polls `check` until it returns `Some`, failing after `timeout` with `what`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    prefix_operator_testenv::poll(what, timeout, Duration::from_millis(50), check)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Installs (or updates) the PrefixPool CRD and waits until it is served.
pub async fn install_crd(client: &Client) {
    prefix_operator::cli::apply_crd(client, "prefix-operator-tests")
        .await
        .expect("install the CRD");
}

pub fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub async fn create_node(
    client: &Client,
    name: &str,
    labels: BTreeMap<String, String>,
    pod_cidrs: &[&str],
) -> Node {
    let nodes: Api<Node> = Api::all(client.clone());
    let spec = if pod_cidrs.is_empty() {
        None
    } else {
        Some(NodeSpec {
            pod_cidr: Some(pod_cidrs[0].to_string()),
            pod_cidrs: Some(pod_cidrs.iter().map(|s| s.to_string()).collect()),
            ..Default::default()
        })
    };
    nodes
        .create(
            &PostParams::default(),
            &Node {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    labels: Some(labels),
                    ..Default::default()
                },
                spec,
                ..Default::default()
            },
        )
        .await
        .unwrap_or_else(|e| panic!("create Node {name}: {e}"))
}

pub async fn delete_node(client: &Client, name: &str) {
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .delete(name, &DeleteParams::default())
        .await
        .unwrap_or_else(|e| panic!("delete Node {name}: {e}"));
}

pub async fn pod_cidrs(client: &Client, name: &str) -> Vec<String> {
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .get(name)
        .await
        .ok()
        .and_then(|n| n.spec)
        .and_then(|s| s.pod_cidrs)
        .unwrap_or_default()
}

/// Waits until the Node has podCIDRs and returns them.
pub async fn wait_pod_cidrs(client: &Client, name: &str) -> Vec<String> {
    wait_for(
        &format!("podCIDRs on Node {name}"),
        Duration::from_secs(30),
        || async {
            let c = pod_cidrs(client, name).await;
            (!c.is_empty()).then_some(c)
        },
    )
    .await
}

pub async fn create_pool(client: &Client, name: &str, spec: PrefixPoolSpec) -> PrefixPool {
    let pools: Api<PrefixPool> = Api::all(client.clone());
    pools
        .create(&PostParams::default(), &PrefixPool::new(name, spec))
        .await
        .unwrap_or_else(|e| panic!("create PrefixPool {name}: {e}"))
}

pub fn pool_spec(prefixes: &[&str]) -> PrefixPoolSpec {
    PrefixPoolSpec {
        prefixes: prefixes.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

/// Waits until the pool's status satisfies `check`.
pub async fn wait_pool<F>(client: &Client, name: &str, what: &str, check: F) -> PrefixPool
where
    F: Fn(&PrefixPool) -> bool,
{
    let pools: Api<PrefixPool> = Api::all(client.clone());
    wait_for(
        &format!("PrefixPool {name}: {what}"),
        Duration::from_secs(30),
        || async {
            let p = pools.get(name).await.ok()?;
            check(&p).then_some(p)
        },
    )
    .await
}

pub fn condition<'a>(
    p: &'a PrefixPool,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    p.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
}

/// The operator, running in this process until dropped.
pub struct Operator {
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    pub leader: watch::Sender<bool>,
}

impl Operator {
    pub async fn start(client: Client, settings: Settings) -> Operator {
        let (leader, leader_rx) = watch::channel(true);
        let config = Config {
            settings,
            leadership: Leadership::Given(leader_rx),
            http: None,
            secure_metrics: None,
        };
        let app = App::start(client, config).await.expect("start");
        let (metrics, health) = (app.metrics.clone(), app.health.clone());
        let (stop, stop_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(app.run(async move {
            let _ = stop_rx.await;
        }));
        Operator {
            stop: Some(stop),
            task: Some(task),
            metrics,
            health,
            leader,
        }
    }

    pub async fn default(client: &Client) -> Operator {
        Operator::start(
            client.clone(),
            Settings {
                status_interval: Duration::from_millis(200),
                ..Default::default()
            },
        )
        .await
    }

    /// Stops gracefully and waits for the task.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.expect("operator task").expect("operator result");
        }
    }

    /// Kills it at once, as a crash would.
    pub fn kill(mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// What a caching build script of the project prints (`e2e/<dir>/build.sh`
/// or `fetch.sh`: the path of what it built or fetched, building it first
/// when the cache does not have it), as a path. `script` is relative to
/// the checkout.
pub fn built_by(script: &str) -> std::path::PathBuf {
    let path = repo().join(script);
    let out = std::process::Command::new(&path)
        .output()
        .unwrap_or_else(|e| panic!("running {script}: {e}"));
    assert!(
        out.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::path::PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// A control plane of its own for a test that runs an operator (operators
/// see every Node, so two of them must not share one API server), with the
/// CRD installed.
pub async fn own_control_plane() -> (ControlPlane, Client) {
    let cp = tokio::task::spawn_blocking(|| ControlPlane::start(Options::default()))
        .await
        .expect("join")
        .expect("start control plane");
    let client = admin(&cp).await;
    install_crd(&client).await;
    (cp, client)
}

/// A Node's podCIDRs.
pub fn node_cidrs(n: &Node) -> Vec<String> {
    n.spec
        .as_ref()
        .and_then(|s| s.pod_cidrs.clone())
        .unwrap_or_default()
}

/// Waits until every Node (matching `labels`, if given) has at least
/// `min_done` Nodes with podCIDRs — or all of them when `min_done` is None —
/// and returns the list.
pub async fn wait_allocated(
    client: &Client,
    label_selector: Option<&str>,
    min_done: Option<usize>,
    timeout: Duration,
) -> Vec<Node> {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut lp = kube::api::ListParams::default();
    if let Some(l) = label_selector {
        lp = lp.labels(l);
    }
    let what = match min_done {
        Some(n) => format!("{n} Nodes allocated"),
        None => "every Node allocated".to_string(),
    };
    wait_for(&what, timeout, || async {
        let list = nodes.list(&lp).await.ok()?;
        let done = list
            .items
            .iter()
            .filter(|n| !node_cidrs(n).is_empty())
            .count();
        let enough = match min_done {
            Some(m) => done >= m,
            None => done == list.items.len(),
        };
        enough.then_some(list.items)
    })
    .await
}

/// Fails unless every Node holds exactly one prefix of each family it has
/// and no two Nodes' prefixes overlap.
pub fn assert_disjoint(nodes: &[Node]) {
    let mut seen: Vec<(ipnet::IpNet, String)> = vec![];
    for n in nodes {
        let name = n.metadata.name.clone().unwrap_or_default();
        for c in node_cidrs(n) {
            let net: ipnet::IpNet = c.parse().unwrap_or_else(|e| panic!("{name}: {c}: {e}"));
            if let Some((o, other)) = seen
                .iter()
                .find(|(o, _)| o.contains(&net) || net.contains(o))
            {
                panic!("{net} of {name} overlaps {o} of {other}");
            }
            seen.push((net, name.clone()));
        }
    }
}

/// Events (in `default`, where those of cluster-scoped objects land) about `name`.
pub async fn events_for(client: &Client, name: &str) -> Vec<k8s_openapi::api::events::v1::Event> {
    let evs: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), "default");
    evs.list(&Default::default())
        .await
        .expect("list events")
        .items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .collect()
}

/// Waits for an Event with `reason` about `name`.
pub async fn wait_event(client: &Client, name: &str, reason: &str) {
    wait_for(
        &format!("{reason} Event on {name}"),
        Duration::from_secs(20),
        || async {
            events_for(client, name)
                .await
                .iter()
                .any(|e| e.reason.as_deref() == Some(reason))
                .then_some(())
        },
    )
    .await
}

/// Waits until the object `name` no longer exists.
pub async fn wait_gone<K>(api: &Api<K>, name: &str)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    wait_for(&format!("{name} gone"), Duration::from_secs(20), || async {
        matches!(api.get_opt(name).await, Ok(None)).then_some(())
    })
    .await
}

/// A control plane of its own with Service ranges `ranges` (the API server
/// hands out ClusterIPs only of the families its range has: IPv6 Services
/// need an IPv6 one), with the CRDs installed.
pub async fn control_plane_with_services(ranges: &str) -> (ControlPlane, Client) {
    let flag = format!("--service-cluster-ip-range={ranges}");
    let cp = tokio::task::spawn_blocking(move || {
        ControlPlane::start(Options {
            extra_apiserver_flags: vec![flag],
            ..Default::default()
        })
    })
    .await
    .expect("join")
    .expect("start control plane");
    let client = admin(&cp).await;
    install_crd(&client).await;
    (cp, client)
}

/// The `n`-th address of `p`, as text.
pub fn nth_address(p: &ipnet::IpNet, n: u128) -> String {
    match p {
        ipnet::IpNet::V6(v6) => std::net::Ipv6Addr::from(u128::from(v6.network()) + n).to_string(),
        ipnet::IpNet::V4(v4) => {
            std::net::Ipv4Addr::from(u32::from(v4.network()) + n as u32).to_string()
        }
    }
}

/// A LoadBalancer Service of the operator's class, of the cluster's
/// default family, with no node ports (thousands would not fit the range).
pub fn lb_service(name: &str) -> k8s_openapi::api::core::v1::Service {
    use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
    Service {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("LoadBalancer".into()),
            load_balancer_class: Some(prefix_operator::controller::LOAD_BALANCER_CLASS.into()),
            allocate_load_balancer_node_ports: Some(false),
            ports: Some(vec![ServicePort {
                port: 80,
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    }
}

/// The addresses in a Service's `status.loadBalancer.ingress`.
pub use prefix_operator::k8s::services::ingress_ips as lb_addresses;

/// An admin kubeconfig at `path` for a process in network namespace `ns`:
/// the API server listens on the host's loopback only, so the kubeconfig
/// points at a forwarder on the namespace's own loopback.
pub fn kubeconfig_in_netns(cp: &ControlPlane, ns: &str, path: &std::path::Path) {
    let api: std::net::SocketAddr = cp
        .server_url()
        .trim_start_matches("https://")
        .parse()
        .expect("API server address");
    let port = netns::forward_into(ns, api);
    cp.write_kubeconfig(&Identity::Admin, path)
        .expect("kubeconfig");
    let text = std::fs::read_to_string(path).expect("read kubeconfig");
    std::fs::write(
        path,
        text.replace(&cp.server_url(), &format!("https://127.0.0.1:{port}")),
    )
    .expect("point the kubeconfig at the forwarder");
}

/// A PrefixClaim spec: `len` from pool `pool` for `purpose`, IPv6.
pub fn claim_spec(
    pool: &str,
    len: i32,
    purpose: prefix_operator::api::Purpose,
) -> prefix_operator::api::PrefixClaimSpec {
    prefix_operator::api::PrefixClaimSpec {
        pool: Some(pool.into()),
        pool_selector: None,
        ip_family: Default::default(),
        prefix_length: len,
        purpose,
    }
}
