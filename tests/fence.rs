//! What the API server enforces on the operator's ServiceAccount (issue
//! 34), with the chart's own ValidatingAdmissionPolicies installed by
//! `helm install` and tokens bound to Pod objects, as a pod's are:
//!
//! - least authority: each change the operator never makes is refused
//!   (labels, taints, another class's Service status, a ServiceCIDR it does
//!   not own, a claim's spec), each one it makes is accepted;
//! - the fence: only the Pod that holds the Lease, as the API server sees
//!   it, may write; a dry run of the Lease (the new leader's barrier) is
//!   checked the same way;
//! - the proof: a leader frozen (SIGSTOP) with its Node writes held on the
//!   way (`support::hold_proxy`, what a paused host does to the bytes it
//!   had sent), the other replica taking over and handing the same free
//!   prefixes to new Nodes, the old leader thawed: not one of its writes
//!   lands, no two Nodes overlap, and it steps down.

use prefix_operator_testsupport as support;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::networking::v1::{ServiceCIDR, ServiceCIDRSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use prefix_operator::api::{PrefixClaim, Purpose};
use prefix_operator::k8s::errors::{FENCE_MARKER, is_fenced};
use prefix_operator_testenv::OperatorProcess;
use serde_json::json;
use support::helm::install_chart_with;
use support::hold_proxy::{HoldProxy, node_patch};
use support::pod_identity::pod_token;
use support::*;

const NS: &str = "po-fence";
const RELEASE: &str = "prefix-operator";
/// The chart's default `leaderElection.leaseName`.
const LEASE: &str = "prefix-operator";
const LEAST: &str = "prefix-operator least authority:";
/// The chart's default `operator.loadBalancerClass`.
const CLASS: &str = "ipam.prefix-operator.io/load-balancer";

/// A control plane of its own with the chart installed (CRDs, RBAC and
/// both policies; no pod runs: there are no kubelets), and an admin client.
async fn chart_env() -> (ControlPlane, Client, tempfile::TempDir) {
    chart_env_with(&[]).await
}

async fn chart_env_with(extra: &[&str]) -> (ControlPlane, Client, tempfile::TempDir) {
    let cp = tokio::task::spawn_blocking(|| ControlPlane::start(Options::default()))
        .await
        .expect("join")
        .expect("start control plane");
    let dir = tempfile::tempdir().expect("tempdir");
    let client = install_chart_with(
        &cp,
        &dir.path().join("admin.kubeconfig"),
        NS,
        RELEASE,
        extra,
    )
    .await;
    (cp, client, dir)
}

/// A client with a token of the chart's ServiceAccount bound to Pod `pod`.
async fn as_pod(cp: &ControlPlane, admin: &Client, pod: &str) -> Client {
    let token = pod_token(admin, NS, RELEASE, pod).await;
    cp.client(&Identity::Token(token)).await.expect("client")
}

/// Makes `holder` the Lease's holder (the admin writes it, as an election would).
async fn set_holder(admin: &Client, holder: &str) {
    let leases: Api<Lease> = Api::namespaced(admin.clone(), NS);
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some(LEASE.into()),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(3600),
            ..Default::default()
        }),
    };
    leases
        .patch(
            LEASE,
            &PatchParams::apply("fence-test").force(),
            &Patch::Apply(&lease),
        )
        .await
        .expect("apply Lease");
}

/// The API server's message of a refused request; panics if it was accepted.
fn refusal<T: std::fmt::Debug>(what: &str, r: Result<T, kube::Error>) -> String {
    match r {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 403, "{what}: {}", s.message);
            s.message
        }
        other => panic!("{what}: expected a refusal, got {other:?}"),
    }
}

fn merge(v: serde_json::Value) -> Patch<serde_json::Value> {
    Patch::Merge(v)
}

/// Waits until the API server enforces the least-authority policy for this
/// client (a freshly created policy takes effect when the API server's
/// informer has it).
async fn wait_enforced(sa: &Client, node: &str) {
    let nodes: Api<Node> = Api::all(sa.clone());
    wait_for(
        "the least-authority policy to be enforced",
        Duration::from_secs(30),
        || async {
            let r = nodes
                .patch(
                    node,
                    &PatchParams::default(),
                    &merge(json!({"metadata": {"labels": {"probe": "x"}}})),
                )
                .await;
            matches!(r, Err(kube::Error::Api(s)) if s.message.contains(LEAST)).then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_authority_refuses_every_change_the_operator_does_not_own() {
    let (cp, admin, _dir) = chart_env().await;
    let _dump = DumpOnPanic(&cp);
    set_holder(&admin, "la-pod").await;
    let sa = as_pod(&cp, &admin, "la-pod").await;
    create_node(&admin, "la-node", labels(&[("team", "a")]), &[]).await;
    wait_enforced(&sa, "la-node").await;
    let nodes: Api<Node> = Api::all(sa.clone());
    let pp = PatchParams::default();

    // Nodes: RBAC lets the account patch them; the policy lets through
    // podCIDRs from empty and the operator's own annotations only.
    for (what, body) in [
        ("a label", json!({"metadata": {"labels": {"team": "b"}}})),
        (
            "a taint",
            json!({"spec": {"taints": [{"key": "k", "effect": "NoSchedule"}]}}),
        ),
        ("schedulability", json!({"spec": {"unschedulable": true}})),
        (
            "another writer's annotation",
            json!({"metadata": {"annotations": {"example.com/x": "y"}}}),
        ),
    ] {
        let msg = refusal(what, nodes.patch("la-node", &pp, &merge(body)).await);
        assert!(msg.contains(LEAST), "{what}: {msg}");
    }
    nodes
        .patch(
            "la-node",
            &pp,
            &merge(json!({
                "metadata": {"annotations": {"ipam.prefix-operator.io/pools": "gua"}},
                "spec": {"podCIDR": "2001:db8:7::/64", "podCIDRs": ["2001:db8:7::/64"]}
            })),
        )
        .await
        .expect("podCIDRs from empty and the operator's own annotation");
    let node = Api::<Node>::all(admin.clone())
        .get("la-node")
        .await
        .expect("get");
    assert_eq!(node_cidrs(&node), vec!["2001:db8:7::/64".to_string()]);
    assert_eq!(
        node.metadata
            .labels
            .unwrap_or_default()
            .get("team")
            .map(String::as_str),
        Some("a")
    );

    // Services: only status.loadBalancer, only of its class.
    let services: Api<Service> = Api::namespaced(admin.clone(), "default");
    let mut ours = lb_service("la-ours");
    ours.spec.as_mut().expect("spec").load_balancer_class = Some(CLASS.into());
    services
        .create(&PostParams::default(), &ours)
        .await
        .expect("create");
    let mut theirs = lb_service("la-theirs");
    theirs.spec.as_mut().expect("spec").load_balancer_class = Some("example.com/other".into());
    services
        .create(&PostParams::default(), &theirs)
        .await
        .expect("create");
    let sa_services: Api<Service> = Api::namespaced(sa.clone(), "default");
    let ingress = json!({"status": {"loadBalancer": {"ingress": [{"ip": "2001:db8:9::1", "ipMode": "VIP"}]}}});
    let msg = refusal(
        "another class's Service status",
        sa_services
            .patch_status("la-theirs", &pp, &merge(ingress.clone()))
            .await,
    );
    assert!(msg.contains(LEAST), "{msg}");
    sa_services
        .patch_status("la-ours", &pp, &merge(ingress))
        .await
        .expect("status.loadBalancer of a Service of its class");
    let conditions = json!({"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "X", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
    let msg = refusal(
        "a Service's status conditions",
        sa_services
            .patch_status("la-ours", &pp, &merge(conditions))
            .await,
    );
    assert!(msg.contains(LEAST), "{msg}");

    // ServiceCIDRs: only those of its claims.
    let cidr = |name: &str, label: bool, prefix: &str| ServiceCIDR {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: label.then(|| {
                BTreeMap::from([(
                    "ipam.prefix-operator.io/claim".to_string(),
                    name.to_string(),
                )])
            }),
            ..Default::default()
        },
        spec: Some(ServiceCIDRSpec {
            cidrs: Some(vec![prefix.into()]),
        }),
        status: None,
    };
    Api::<ServiceCIDR>::all(admin.clone())
        .create(
            &PostParams::default(),
            &cidr("la-foreign", false, "fd00:10::/112"),
        )
        .await
        .expect("admin creates a ServiceCIDR");
    let sa_cidrs: Api<ServiceCIDR> = Api::all(sa.clone());
    let msg = refusal(
        "creating a ServiceCIDR of no claim",
        sa_cidrs
            .create(
                &PostParams::default(),
                &cidr("la-mine", false, "fd00:11::/112"),
            )
            .await,
    );
    assert!(msg.contains(LEAST), "{msg}");
    let msg = refusal(
        "deleting a ServiceCIDR it does not own",
        sa_cidrs
            .delete("la-foreign", &DeleteParams::default())
            .await,
    );
    assert!(msg.contains(LEAST), "{msg}");
    let msg = refusal(
        "labelling a ServiceCIDR it does not own",
        sa_cidrs
            .patch(
                "la-foreign",
                &pp,
                &merge(json!({"metadata": {"labels": {"ipam.prefix-operator.io/claim": "x"}}})),
            )
            .await,
    );
    assert!(msg.contains(LEAST), "{msg}");
    sa_cidrs
        .create(
            &PostParams::default(),
            &cidr("la-claimed", true, "fd00:12::/112"),
        )
        .await
        .expect("a ServiceCIDR of a claim");
    sa_cidrs
        .delete("la-claimed", &DeleteParams::default())
        .await
        .expect("deleting a ServiceCIDR of a claim");

    // PrefixClaims: status and its own finalizer.
    let claims: Api<PrefixClaim> = Api::all(admin.clone());
    let claim = PrefixClaim::new("la-claim", claim_spec("gua", 112, Purpose::ServiceCIDR));
    claims
        .create(&PostParams::default(), &claim)
        .await
        .expect("create claim");
    let sa_claims: Api<PrefixClaim> = Api::all(sa.clone());
    let msg = refusal(
        "a claim's labels",
        sa_claims
            .patch(
                "la-claim",
                &pp,
                &merge(json!({"metadata": {"labels": {"team": "b"}}})),
            )
            .await,
    );
    assert!(msg.contains(LEAST), "{msg}");
    let msg = refusal(
        "another controller's finalizer",
        sa_claims
            .patch(
                "la-claim",
                &pp,
                &merge(json!({"metadata": {"finalizers": ["example.com/x"]}})),
            )
            .await,
    );
    assert!(msg.contains(LEAST), "{msg}");
    sa_claims
        .patch(
            "la-claim",
            &pp,
            &merge(json!({"metadata": {"finalizers": ["ipam.prefix-operator.io/claim"]}})),
        )
        .await
        .expect("the operator's own finalizer");
    sa_claims
        .patch(
            "la-claim",
            &pp,
            &merge(json!({"metadata": {"finalizers": null}})),
        )
        .await
        .expect("taking its finalizer off");
}

/// A Node write (the operator's own annotation) as `who`.
async fn annotate(who: &Client, node: &str, value: &str) -> Result<Node, kube::Error> {
    Api::<Node>::all(who.clone())
        .patch(
            node,
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {"ipam.prefix-operator.io/test": value}}}),
            ),
        )
        .await
}

/// The new leader's barrier: a dry-run update of the Lease.
async fn dry_run_lease(who: &Client) -> Result<Lease, kube::Error> {
    let leases: Api<Lease> = Api::namespaced(who.clone(), NS);
    let lease = leases.get(LEASE).await?;
    let dry = PostParams {
        dry_run: true,
        ..Default::default()
    };
    leases.replace(LEASE, &dry, &lease).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fence_lets_only_the_pod_holding_the_lease_write() {
    let (cp, admin, _dir) = chart_env().await;
    let _dump = DumpOnPanic(&cp);
    create_node(&admin, "fence-node", BTreeMap::new(), &[]).await;
    let a = as_pod(&cp, &admin, "fence-a").await;
    let b = as_pod(&cp, &admin, "fence-b").await;
    let unbound = {
        // A token of the same ServiceAccount bound to no Pod.
        let sas: Api<k8s_openapi::api::core::v1::ServiceAccount> =
            Api::namespaced(admin.clone(), NS);
        let tr = sas
            .create_token_request(RELEASE, &PostParams::default(), &Default::default())
            .await
            .expect("TokenRequest");
        cp.client(&Identity::Token(tr.status.expect("token").token))
            .await
            .expect("client")
    };

    set_holder(&admin, "fence-a").await;
    wait_for(
        "the holder's write to land",
        Duration::from_secs(30),
        || async { annotate(&a, "fence-node", "1").await.ok().map(|_| ()) },
    )
    .await;
    let e = annotate(&b, "fence-node", "2")
        .await
        .expect_err("a replica that does not hold the Lease");
    assert!(is_fenced(&e), "{e}");
    assert!(
        e.to_string()
            .contains(&format!("does not hold Lease {NS}/{LEASE}")),
        "{e}"
    );
    let e = annotate(&unbound, "fence-node", "3")
        .await
        .expect_err("a token bound to no Pod");
    assert!(is_fenced(&e), "{e}");
    dry_run_lease(&a)
        .await
        .expect("the holder's barrier passes");
    let e = dry_run_lease(&b)
        .await
        .expect_err("another replica's barrier");
    assert!(is_fenced(&e) && e.to_string().contains(FENCE_MARKER), "{e}");

    // A new holder: the old one is refused as soon as the API server's
    // cache of Leases has the change.
    set_holder(&admin, "fence-b").await;
    wait_for(
        "the old holder to be fenced",
        Duration::from_secs(30),
        || async {
            annotate(&a, "fence-node", "4")
                .await
                .err()
                .filter(is_fenced)
                .map(|_| ())
        },
    )
    .await;
    annotate(&b, "fence-node", "5")
        .await
        .expect("the new holder writes");
    dry_run_lease(&b)
        .await
        .expect("the new holder's barrier passes");
    let node = Api::<Node>::all(admin.clone())
        .get("fence-node")
        .await
        .expect("get");
    let value = node
        .metadata
        .annotations
        .unwrap_or_default()
        .remove("ipam.prefix-operator.io/test");
    assert_eq!(
        value.as_deref(),
        Some("5"),
        "only the holders' writes landed, the last one last"
    );
}

/// A pool of 16 /124s for the Nodes labelled `fence=yes`: small, so that the
/// two leaders hand out the same prefixes.
async fn small_pool(admin: &Client) {
    let mut spec = pool_spec(&["2001:db8:f::/120"]);
    spec.node_prefix_length = Some(124);
    spec.node_selector = Some(LabelSelector {
        match_labels: Some(BTreeMap::from([("fence".to_string(), "yes".to_string())])),
        ..Default::default()
    });
    create_pool(admin, "fence-pool", spec).await;
}

/// `prefix-operator run` as Pod `pod` of the chart's ServiceAccount, with
/// the API server at `server`.
fn replica(
    cp: &ControlPlane,
    dir: &std::path::Path,
    pod: &str,
    token: String,
    server: &str,
) -> OperatorProcess {
    let kc = dir.join(format!("{pod}.kubeconfig"));
    cp.write_kubeconfig_via(server, &Identity::Token(token), &kc)
        .expect("kubeconfig");
    OperatorProcess::builder(
        env!("CARGO_BIN_EXE_prefix-operator"),
        &kc,
        dir.join(format!("{pod}.log")),
    )
    .identity(pod)
    .args([
        "--leader-elect=true",
        "--lease-namespace",
        NS,
        "--lease-name",
        LEASE,
    ])
    .args([
        "--lease-duration=4s",
        "--renew-deadline=3s",
        "--retry-period=500ms",
    ])
    .args(["--status-interval", "200ms", "--log-format", "text"])
    .spawn()
    .expect("start prefix-operator")
}

async fn fenced_count(op: &OperatorProcess) -> f64 {
    let scrape = op.scrape().await.expect("scrape");
    scrape
        .series("prefix_operator_reconcile_errors_total")
        .into_iter()
        .filter(|(l, _)| l.contains("reason=\"Fenced\""))
        .map(|(_, v)| v)
        .sum()
}

/// What the freeze left behind: the API server's answers to the frozen
/// leader's held writes, every Node, and the two replicas.
struct Freeze {
    answers: Vec<support::hold_proxy::Answered>,
    nodes: Vec<Node>,
    xs: Vec<String>,
    a: OperatorProcess,
    b: OperatorProcess,
    _cp: ControlPlane,
    _dir: tempfile::TempDir,
}

const N: usize = 4;

/// Two replicas as Pods of the chart's ServiceAccount; A leads, its Node
/// writes of N new Nodes are held on the way and A is frozen (SIGSTOP);
/// the N Nodes leave the pool, N new ones join it, B takes over and
/// allocates them; then A's writes go on and A is thawed.
async fn freeze_with_writes_in_flight(chart_args: &[&str]) -> Freeze {
    let (cp, admin, dir) = chart_env_with(chart_args).await;
    let _dump = DumpOnPanic(&cp);
    small_pool(&admin).await;
    // The proxy forwards the client's own token: a client with no credentials.
    let upstream = cp.client(&Identity::Anonymous).await.expect("client");
    let proxy = HoldProxy::start(upstream, node_patch).await;
    let token_a = pod_token(&admin, NS, RELEASE, "leader-a").await;
    let token_b = pod_token(&admin, NS, RELEASE, "leader-b").await;
    let mut a = replica(&cp, dir.path(), "leader-a", token_a, &proxy.url());
    a.wait_ready(Duration::from_secs(30))
        .await
        .expect("a ready");
    wait_for("a to lead", Duration::from_secs(30), || async {
        a.is_leader().await.then_some(())
    })
    .await;
    let mut b = replica(&cp, dir.path(), "leader-b", token_b, &cp.server_url());
    b.wait_ready(Duration::from_secs(30))
        .await
        .expect("b ready");

    // A plans and sends the writes of N new Nodes; the proxy holds them on
    // the way, and A is frozen with them sent.
    proxy.hold(true);
    let xs: Vec<String> = (0..N).map(|i| format!("x-{i}")).collect();
    for x in &xs {
        create_node(&admin, x, labels(&[("fence", "yes")]), &[]).await;
    }
    wait_for(
        "A's writes to be on their way",
        Duration::from_secs(30),
        || async { (proxy.held() == N).then_some(()) },
    )
    .await;
    a.pause();

    // Meanwhile the X Nodes leave the pool (relabelled), N new Nodes join
    // it, and B takes over and gives them the free prefixes A had planned
    // for the X Nodes.
    let nodes: Api<Node> = Api::all(admin.clone());
    for x in &xs {
        nodes
            .patch(
                x,
                &PatchParams::default(),
                &merge(json!({"metadata": {"labels": {"fence": "no"}}})),
            )
            .await
            .expect("relabel");
    }
    let ys: Vec<String> = (0..N).map(|i| format!("y-{i}")).collect();
    for y in &ys {
        create_node(&admin, y, labels(&[("fence", "yes")]), &[]).await;
    }
    wait_for("B to lead", Duration::from_secs(30), || async {
        b.is_leader().await.then_some(())
    })
    .await;
    for y in &ys {
        wait_pod_cidrs(&admin, y).await;
    }

    // The thaw: A's held writes reach the API server, then A runs again.
    proxy.hold(false);
    wait_for(
        "the API server to answer A's held writes",
        Duration::from_secs(30),
        || async { (proxy.answered().len() == N).then_some(()) },
    )
    .await;
    a.resume();
    let nodes: Api<Node> = Api::all(admin.clone());
    drop(_dump);
    Freeze {
        answers: proxy.answered(),
        nodes: nodes.list(&Default::default()).await.expect("list").items,
        xs,
        a,
        b,
        _cp: cp,
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_leader_with_writes_in_flight_lands_none_of_them() {
    let Freeze {
        answers,
        nodes: all,
        xs,
        a,
        b,
        _cp,
        _dir,
    } = freeze_with_writes_in_flight(&[]).await;
    let _dump = DumpOnPanic(&_cp);
    for answer in &answers {
        assert_eq!(answer.status, 403, "{}: {}", answer.path, answer.body);
        assert!(
            answer.body.contains(FENCE_MARKER),
            "{}: {}",
            answer.path,
            answer.body
        );
    }
    for n in all
        .iter()
        .filter(|n| xs.contains(n.metadata.name.as_ref().expect("name")))
    {
        assert!(
            node_cidrs(n).is_empty(),
            "{:?} got a prefix from the frozen leader",
            n.metadata.name
        );
    }
    assert_disjoint(&all);
    wait_for(
        "A to count the refusals and step down",
        Duration::from_secs(30),
        || async { (fenced_count(&a).await >= N as f64 && !a.is_leader().await).then_some(()) },
    )
    .await;
    assert!(b.is_leader().await, "B still leads");
    assert!(
        a.log_text()
            .contains("the API server's fence refused a write"),
        "A's log:\n{}",
        a.log_tail(40)
    );
    eprintln!(
        "fence: {N} writes of the frozen leader refused (403, {FENCE_MARKER}), {} Nodes disjoint, A counted {} fenced",
        all.len(),
        fenced_count(&a).await
    );
}

/// The same freeze without the fence: the old leader's writes land, and
/// Nodes share prefixes. What the fence is for, shown on the same steps
/// (and proof that the steps reach the race at all).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_fence_the_same_freeze_hands_out_duplicates() {
    let f = freeze_with_writes_in_flight(&["--set", "admissionPolicies.fence=false"]).await;
    let _dump = DumpOnPanic(&f._cp);
    let landed = f.answers.iter().filter(|a| a.status == 200).count();
    assert_eq!(landed, N, "{:?}", f.answers);
    let mut owners: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for n in &f.nodes {
        for c in node_cidrs(n) {
            owners
                .entry(c)
                .or_default()
                .push(n.metadata.name.clone().unwrap_or_default());
        }
    }
    let shared = owners.values().filter(|o| o.len() > 1).count();
    assert_eq!(shared, N, "prefixes held by two Nodes: {owners:?}");
    drop((f.a, f.b));
}
