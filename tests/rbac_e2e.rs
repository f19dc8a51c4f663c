//! The chart's RBAC, end to end: the real `prefix-operator run` binary, out
//! of cluster, with a token of the chart's ServiceAccount and nothing else.
//!
//! First the whole flow works with the rules as installed (podCIDRs, pool
//! status, Events, the Lease, /readyz and /metrics). Then every verb of every
//! rule of the ClusterRole and the Role is taken away in turn, and the
//! operator must say which permission it lacks; the rule is restored before
//! the next round. A verb the test cannot show to be needed fails the test.
//! How each permission is made needed: `rbac_e2e/provoke.rs`.

use prefix_operator_testsupport as support;

#[path = "rbac_e2e/provoke.rs"]
mod provoke;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::events::v1::Event;
use kube::api::ListParams;
use kube::{Api, Client};
use prefix_operator::api::{PrefixPool, PrefixPoolSpec};
use prefix_operator_testenv::{OperatorProcess, http_get};
use support::helm::install_chart;
use support::rbac::{Case, Rbac, Subject, without};
use support::*;

const NS: &str = "po-system";
const RELEASE: &str = "prefix-operator";
const LEASE: &str = "prefix-operator";
const IDENTITY: &str = "rbac-e2e";
const POOL: &str = "rbac-gua";
/// How long the operator may take to hit and report a missing permission.
const REPORT_TIMEOUT: Duration = Duration::from_secs(30);

/// The chart's ServiceAccount.
fn service_account() -> Subject {
    Subject {
        namespace: NS.into(),
        name: RELEASE.into(),
    }
}

/// The chart installed into a control plane of its own, an admin client, and
/// a kubeconfig with a token of the chart's ServiceAccount.
struct Env {
    client: Client,
    dir: tempfile::TempDir,
    sa_kubeconfig: PathBuf,
    /// Operators started so far (each logs to a file of its own).
    started: AtomicUsize,
}

impl Env {
    /// `helm install` (the chart installs the CRDs: crds.enabled), then a token of
    /// the ServiceAccount, as a pod would get it.
    async fn install(cp: &ControlPlane) -> Env {
        let dir = tempfile::tempdir().expect("tempdir");
        let client = install_chart(cp, &dir.path().join("admin.kubeconfig"), NS, RELEASE).await;
        let sa_kubeconfig = dir.path().join("sa.kubeconfig");
        // Bound to a Pod named as the operator's identity, as a pod's own
        // token is: the chart's fence lets only the Lease holder's Pod write.
        let token = support::pod_identity::pod_token(&client, NS, RELEASE, IDENTITY).await;
        cp.write_kubeconfig(&Identity::Token(token), &sa_kubeconfig)
            .expect("kubeconfig");
        Env {
            client,
            dir,
            sa_kubeconfig,
            started: AtomicUsize::new(0),
        }
    }

    /// `prefix-operator run` as the ServiceAccount, leader-elected under
    /// one identity for every run (a restarted operator renews its own Lease
    /// at once instead of waiting for it to expire), logging with `rust_log`.
    fn operator(&self, rust_log: &str) -> OperatorProcess {
        let n = self.started.fetch_add(1, Ordering::SeqCst);
        let log = self.dir.path().join(format!("operator-{n}.log"));
        OperatorProcess::builder(
            env!("CARGO_BIN_EXE_prefix-operator"),
            &self.sa_kubeconfig,
            log,
        )
        .identity(IDENTITY)
        .args(["--leader-elect=true", "--lease-namespace", NS])
        .args(["--lease-name", LEASE, "--status-interval", "200ms"])
        .args(["--log-format", "text"])
        .env("RUST_LOG", rust_log)
        .spawn()
        .expect("start prefix-operator")
    }
}

/// Waits for a line of `op`'s log with every one of `needles`.
async fn wait_line(op: &mut OperatorProcess, needles: &[&str]) -> String {
    op.wait_log_line(needles, REPORT_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"))
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

async fn create_plain_node(client: &Client, name: &str) {
    create_node(client, name, labels(&[("rbac-e2e", "yes")]), &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chart_rbac_is_exactly_what_the_operator_needs() {
    let started = Instant::now();
    // No CRD yet: the chart installs them (crds.enabled).
    let cp = tokio::task::spawn_blocking(|| ControlPlane::start(Options::default()))
        .await
        .expect("join")
        .expect("start control plane");
    let _dump = DumpOnPanic(&cp);
    let env = Env::install(&cp).await;
    eprintln!(
        "[rbac] control plane + helm install + token in {:.1}s",
        started.elapsed().as_secs_f64()
    );

    let flow = Instant::now();
    full_flow(&env).await;
    eprintln!(
        "[rbac] allocation flow with the chart's rules in {:.1}s",
        flow.elapsed().as_secs_f64()
    );

    let rbac = Rbac::load(&env.client, RELEASE, service_account()).await;
    let checked = every_verb(&env, &rbac).await;
    restored(&env).await;
    eprintln!(
        "[rbac] {checked} rules checked; total {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

/// The whole flow with the rules as installed: podCIDRs, pool status,
/// Events, the Lease, /readyz and /metrics, and no permission error.
async fn full_flow(env: &Env) {
    let client = &env.client;
    create_pool(
        client,
        POOL,
        PrefixPoolSpec {
            prefixes: vec!["2001:db8:e2e::/48".into()],
            ..Default::default()
        },
    )
    .await;
    for n in ["rbac-n1", "rbac-n2"] {
        create_plain_node(client, n).await;
    }
    let mut op = env.operator("info");
    let line = wait_line(&mut op, &["serving /healthz"]).await;
    let addr: SocketAddr = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("addr="))
        .expect("addr= in the serving line")
        .parse()
        .expect("addr= is an address");
    allocated_and_reported(client).await;
    claim_served_and_released(client, &op).await;
    load_balancer_served(client).await;
    endpoints_answer(addr).await;
    let log = op.log_text();
    assert!(
        !log.contains("forbidden"),
        "a permission error with the full rules:\n{}",
        tail(&log, 100)
    );
}

/// Both Nodes get a /64 of the pool, the pool counts them, each gets a
/// PrefixAllocated Event from this operator, and it holds the Lease.
async fn allocated_and_reported(client: &Client) {
    for n in ["rbac-n1", "rbac-n2"] {
        let cidrs = wait_pod_cidrs(client, n).await;
        assert!(
            cidrs[0].starts_with("2001:db8:e2e:") && cidrs[0].ends_with("/64"),
            "{n}: {cidrs:?}"
        );
    }
    wait_pool(client, POOL, "2 allocated", |p| {
        pool_status(p)["allocated"] == 2
    })
    .await;
    for n in ["rbac-n1", "rbac-n2"] {
        let evs = wait_for(
            &format!("PrefixAllocated Event on {n}"),
            REPORT_TIMEOUT,
            || async {
                let e = events_about(client, n, "PrefixAllocated").await;
                (!e.is_empty()).then_some(e)
            },
        )
        .await;
        assert_eq!(
            evs[0].reporting_controller.as_deref(),
            Some("prefix-operator")
        );
        assert_eq!(evs[0].reporting_instance.as_deref(), Some(IDENTITY));
    }
    let leases: Api<Lease> = Api::namespaced(client.clone(), NS);
    let lease = leases.get(LEASE).await.expect("the Lease exists");
    assert_eq!(
        lease.spec.and_then(|s| s.holder_identity).as_deref(),
        Some(IDENTITY)
    );
}

/// A ServiceCIDR claim is bound, its ServiceCIDR created, and on deletion
/// both go: every claim permission used once.
async fn claim_served_and_released(client: &Client, op: &OperatorProcess) {
    use prefix_operator::api::{PrefixClaim, Purpose};
    let claims: Api<PrefixClaim> = Api::all(client.clone());
    let spec = claim_spec(POOL, 112, Purpose::ServiceCIDR);
    claims
        .create(&Default::default(), &PrefixClaim::new("rbac-svc", spec))
        .await
        .expect("create claim");
    let ready = prefix_operator_testenv::poll(
        "the claim Ready",
        REPORT_TIMEOUT,
        Duration::from_millis(50),
        || async {
            let c = claims.get_opt("rbac-svc").await.ok().flatten()?;
            let st = c.status.as_ref()?;
            st.conditions
                .iter()
                .any(|x| x.type_ == "Ready" && x.status == "True")
                .then_some(())
        },
    )
    .await;
    if let Err(e) = ready {
        panic!("{e}\n{}", tail(&op.log_text(), 60));
    }
    let scs: Api<k8s_openapi::api::networking::v1::ServiceCIDR> = Api::all(client.clone());
    assert!(scs.get_opt("rbac-svc").await.expect("get").is_some());
    claims
        .delete("rbac-svc", &Default::default())
        .await
        .expect("delete claim");
    wait_gone(&claims, "rbac-svc").await;
    wait_gone(&scs, "rbac-svc").await;
}

/// An IPv4 pool that selects no Node, and a LoadBalancer claim of it (the
/// control plane serves IPv4 Services only).
async fn ensure_lb_claim(client: &Client) {
    use prefix_operator::api::{IpFamily, PrefixClaim, PrefixClaimSpec, Purpose};
    let pools: Api<PrefixPool> = Api::all(client.clone());
    if pools.get_opt("rbac-v4").await.expect("get pool").is_none() {
        let selector = k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
            match_labels: Some([("rbac-e2e-never".to_string(), "x".to_string())].into()),
            ..Default::default()
        };
        create_pool(
            client,
            "rbac-v4",
            PrefixPoolSpec {
                node_selector: Some(selector),
                ..pool_spec(&["198.51.100.0/24"])
            },
        )
        .await;
    }
    let claims: Api<PrefixClaim> = Api::all(client.clone());
    if claims
        .get_opt("rbac-lb")
        .await
        .expect("get claim")
        .is_none()
    {
        let spec = PrefixClaimSpec {
            ip_family: IpFamily::IPv4,
            ..claim_spec("rbac-v4", 28, Purpose::LoadBalancer)
        };
        claims
            .create(&Default::default(), &PrefixClaim::new("rbac-lb", spec))
            .await
            .expect("create LoadBalancer claim");
    }
}

/// A LoadBalancer Service of the operator's class.
async fn create_lb_service(client: &Client, name: &str) {
    let services: Api<k8s_openapi::api::core::v1::Service> =
        Api::namespaced(client.clone(), "default");
    services
        .create(&Default::default(), &lb_service(name))
        .await
        .expect("create Service");
}

/// A LoadBalancer Service gets an address of the claim.
async fn load_balancer_served(client: &Client) {
    use k8s_openapi::api::core::v1::Service;
    ensure_lb_claim(client).await;
    create_lb_service(client, "rbac-lb-web").await;
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    wait_for("a LoadBalancer address", REPORT_TIMEOUT, || async {
        let s = services.get_opt("rbac-lb-web").await.ok().flatten()?;
        let ip = s.status?.load_balancer?.ingress?.first()?.ip.clone()?;
        ip.starts_with("198.51.100.").then_some(())
    })
    .await;
}

/// /readyz and /metrics answer 200, and the operator says it leads.
async fn endpoints_answer(addr: SocketAddr) {
    let (status, _) = http_get(addr, "/readyz").await.expect("GET /readyz");
    assert_eq!(status, 200, "/readyz: {status}");
    let (status, metrics) = http_get(addr, "/metrics").await.expect("GET /metrics");
    assert_eq!(status, 200, "/metrics: {status}");
    assert!(metrics.contains("prefix_operator_leader 1"), "{metrics}");
}

/// Every verb, one at a time: taken away, shown to be needed, restored.
/// Returns how many were checked.
async fn every_verb(env: &Env, rbac: &Rbac) -> usize {
    let all: Vec<Case> = rbac.cases();
    assert!(all.len() >= 12, "fewer rules than expected: {all:?}");
    for (i, case) in all.iter().enumerate() {
        let round = Instant::now();
        rbac.set(case.owner, without(rbac.rules(case.owner), case))
            .await;
        rbac.wait_authz(case, false).await;
        let fresh = format!("rbac-round-{i}");
        create_plain_node(&env.client, &fresh).await;
        let needle = format!(
            "User \"{}\" cannot {} resource \"{}\"",
            rbac.sa.user(),
            case.verb,
            case.resource
        );
        let line = provoke::provoke(env, case, &needle).await;
        rbac.set(case.owner, rbac.rules(case.owner).to_vec()).await;
        rbac.wait_authz(case, true).await;
        eprintln!(
            "[rbac] {} removed ({:.1}s): {line}",
            case.label(),
            round.elapsed().as_secs_f64()
        );
    }
    all.len()
}

/// Restored: a new Node is served again, with no permission error.
async fn restored(env: &Env) {
    let client = &env.client;
    let op = env.operator("info");
    create_plain_node(client, "rbac-after").await;
    wait_pod_cidrs(client, "rbac-after").await;
    wait_for("every plain Node allocated", REPORT_TIMEOUT, || async {
        let nodes: Api<Node> = Api::all(client.clone());
        let list = nodes
            .list(&ListParams::default().labels("rbac-e2e=yes"))
            .await
            .ok()?;
        list.items
            .iter()
            .all(|n| {
                n.spec
                    .as_ref()
                    .and_then(|s| s.pod_cidrs.as_ref())
                    .is_some_and(|c| !c.is_empty())
            })
            .then_some(())
    })
    .await;
    let log = op.log_text();
    assert!(!log.contains("forbidden"), "{}", tail(&log, 100));
}

async fn events_about(client: &Client, name: &str, reason: &str) -> Vec<Event> {
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    events
        .list(&ListParams::default())
        .await
        .expect("list Events")
        .items
        .into_iter()
        .filter(|e| {
            e.reason.as_deref() == Some(reason)
                && e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name)
        })
        .collect()
}

fn pool_status(p: &PrefixPool) -> serde_json::Value {
    serde_json::to_value(p).expect("pool to JSON")["status"].clone()
}
