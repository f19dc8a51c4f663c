//! The chart's RBAC, end to end: the real `prefix-operator run` binary, out
//! of cluster, with a token of the chart's ServiceAccount and nothing else.
//!
//! First the whole flow works with the rules as installed (podCIDRs, pool
//! status, Events, the Lease, /readyz and /metrics). Then every verb of every
//! rule of the ClusterRole and the Role is taken away in turn, and the
//! operator must say which permission it lacks; the rule is restored before
//! the next round. A verb the test cannot show to be needed fails the test.

mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{Node, ServiceAccount};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, Role};
use kube::api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use prefix_operator::api::{PrefixPool, PrefixPoolSpec};
use serde_json::json;
use support::*;

const NS: &str = "po-system";
const RELEASE: &str = "prefix-operator";
const LEASE: &str = "prefix-operator";
const IDENTITY: &str = "rbac-e2e";
const SA_USER: &str = "system:serviceaccount:po-system:prefix-operator";
const POOL: &str = "rbac-gua";
/// How long the operator may take to hit and report a missing permission.
const REPORT_TIMEOUT: Duration = Duration::from_secs(30);

fn chart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/prefix-operator")
}

/// The operator's stderr as it arrives, and whether the pipe is closed.
#[derive(Default)]
struct Log {
    text: Mutex<(String, bool)>,
    changed: Condvar,
}

/// `prefix-operator run` as a child process, killed (and reaped) on drop,
/// also when the test panics.
struct Operator {
    child: Child,
    log: Arc<Log>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Operator {
    fn start(kubeconfig: &Path, rust_log: &str) -> Operator {
        let mut child = Command::new(env!("CARGO_BIN_EXE_prefix-operator"))
            .arg("run")
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args([
                "--leader-elect=true",
                "--lease-namespace",
                NS,
                "--lease-name",
                LEASE,
                "--http-addr",
                "127.0.0.1:0",
                // One identity for every run: a restarted operator renews its
                // own Lease at once instead of waiting for it to expire.
                "--identity",
                IDENTITY,
                "--status-interval",
                "200ms",
                "--log-format",
                "text",
            ])
            .env("RUST_LOG", rust_log)
            .env_remove("KUBECONFIG")
            .env_remove("POD_NAME")
            .env_remove("POD_NAMESPACE")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start prefix-operator");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Log::default());
        let l = log.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let mut g = l.text.lock().unwrap_or_else(|e| e.into_inner());
                g.0.push_str(&line);
                g.0.push('\n');
                l.changed.notify_all();
            }
            l.text.lock().unwrap_or_else(|e| e.into_inner()).1 = true;
            l.changed.notify_all();
        });
        Operator {
            child,
            log,
            reader: Some(reader),
        }
    }

    fn stderr(&self) -> String {
        self.log
            .text
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .clone()
    }

    /// Waits until a line of stderr contains every one of `needles` and
    /// returns it; fails when the process ends or `timeout` passes first.
    async fn wait_line(&self, needles: &[&str], timeout: Duration) -> String {
        let log = self.log.clone();
        let needles: Vec<String> = needles.iter().map(|s| s.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            let deadline = Instant::now() + timeout;
            let mut g = log.text.lock().unwrap_or_else(|e| e.into_inner());
            loop {
                if let Some(line) =
                    g.0.lines()
                        .find(|l| needles.iter().all(|n| l.contains(n.as_str())))
                {
                    return Ok(line.to_string());
                }
                let now = Instant::now();
                if g.1 || now >= deadline {
                    let why = if g.1 {
                        "the operator exited"
                    } else {
                        "timed out"
                    };
                    return Err(format!(
                        "{why} before logging a line with {needles:?}; stderr:\n{}",
                        tail(&g.0, 100)
                    ));
                }
                g = log
                    .changed
                    .wait_timeout(g, deadline - now)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        })
        .await
        .expect("join")
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Waits for the process to end by itself.
    async fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "the operator did not exit within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The last `n` lines of `text`.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

/// helm with private config/cache/data directories.
fn helm(cp: &ControlPlane, home: &Path, kubeconfig: &Path, args: &[&str]) -> String {
    let out = Command::new(cp.bin("helm"))
        .args(args)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .env("HELM_CONFIG_HOME", home.join("config"))
        .env("HELM_CACHE_HOME", home.join("cache"))
        .env("HELM_DATA_HOME", home.join("data"))
        .env_remove("KUBECONFIG")
        .output()
        .expect("run helm");
    assert!(
        out.status.success(),
        "helm {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// GET over plain HTTP/1.1; returns (status line, body).
fn http_get(addr: &str, path: &str) -> (String, String) {
    let mut s =
        std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read");
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
    (
        head.lines().next().unwrap_or_default().to_string(),
        body.to_string(),
    )
}

async fn create_plain_node(client: &Client, name: &str) {
    create_node(client, name, labels(&[("rbac-e2e", "yes")]), &[]).await;
}

/// Whether the ServiceAccount may do `verb` on `resource` (as
/// `res/sub`), asked of the same authorizer the operator's requests meet.
async fn allowed(
    client: &Client,
    group: &str,
    resource: &str,
    verb: &str,
    namespace: Option<&str>,
    name: Option<&str>,
) -> bool {
    let (res, sub) = match resource.split_once('/') {
        Some((r, s)) => (r, Some(s.to_string())),
        None => (resource, None),
    };
    let sar = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(SA_USER.into()),
            groups: Some(vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{NS}"),
                "system:authenticated".into(),
            ]),
            resource_attributes: Some(ResourceAttributes {
                group: Some(group.into()),
                resource: Some(res.into()),
                subresource: sub,
                verb: Some(verb.into()),
                namespace: namespace.map(Into::into),
                name: name.map(Into::into),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let api: Api<SubjectAccessReview> = Api::all(client.clone());
    let r = api
        .create(&PostParams::default(), &sar)
        .await
        .expect("SubjectAccessReview");
    r.status.is_some_and(|s| s.allowed)
}

/// Which role a rule lives in.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Owner {
    ClusterRole,
    Role,
}

/// One verb of one resource of one rule.
#[derive(Clone, Debug)]
struct Case {
    owner: Owner,
    rule: usize,
    group: String,
    resource: String,
    verb: String,
    name: Option<String>,
}

impl Case {
    fn label(&self) -> String {
        let g = if self.group.is_empty() {
            "core"
        } else {
            &self.group
        };
        format!("{:?} {g} {} {}", self.owner, self.resource, self.verb)
    }
}

fn cases(owner: Owner, rules: &[PolicyRule]) -> Vec<Case> {
    let mut out = vec![];
    for (i, r) in rules.iter().enumerate() {
        assert!(
            r.non_resource_urls.is_none(),
            "unexpected non-resource rule {r:?}"
        );
        let groups = r.api_groups.clone().unwrap_or_default();
        assert_eq!(groups.len(), 1, "one API group per rule: {r:?}");
        for res in r.resources.clone().unwrap_or_default() {
            for v in &r.verbs {
                out.push(Case {
                    owner,
                    rule: i,
                    group: groups[0].clone(),
                    resource: res.clone(),
                    verb: v.clone(),
                    name: r.resource_names.as_ref().and_then(|n| n.first().cloned()),
                });
            }
        }
    }
    out
}

/// `rules` with just `case`'s verb of its resource taken away.
fn without(rules: &[PolicyRule], case: &Case) -> Vec<PolicyRule> {
    let mut out = rules.to_vec();
    let rule = out.remove(case.rule);
    let others: Vec<String> = rule
        .resources
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|r| *r != case.resource)
        .collect();
    if !others.is_empty() {
        out.push(PolicyRule {
            resources: Some(others),
            ..rule.clone()
        });
    }
    let verbs: Vec<String> = rule
        .verbs
        .iter()
        .filter(|v| **v != case.verb)
        .cloned()
        .collect();
    if !verbs.is_empty() {
        out.push(PolicyRule {
            resources: Some(vec![case.resource.clone()]),
            verbs,
            ..rule
        });
    }
    out
}

struct Rbac {
    client: Client,
    cluster_rules: Vec<PolicyRule>,
    role_rules: Vec<PolicyRule>,
}

impl Rbac {
    async fn set(&self, owner: Owner, rules: Vec<PolicyRule>) {
        match owner {
            Owner::ClusterRole => {
                let api: Api<ClusterRole> = Api::all(self.client.clone());
                let mut cr = api.get(RELEASE).await.expect("ClusterRole");
                cr.rules = Some(rules);
                api.replace(RELEASE, &PostParams::default(), &cr)
                    .await
                    .expect("replace ClusterRole");
            }
            Owner::Role => {
                let api: Api<Role> = Api::namespaced(self.client.clone(), NS);
                let name = format!("{RELEASE}-leader-election");
                let mut r = api.get(&name).await.expect("Role");
                r.rules = Some(rules);
                api.replace(&name, &PostParams::default(), &r)
                    .await
                    .expect("replace Role");
            }
        }
    }

    fn rules(&self, owner: Owner) -> &[PolicyRule] {
        match owner {
            Owner::ClusterRole => &self.cluster_rules,
            Owner::Role => &self.role_rules,
        }
    }

    /// Waits until the authorizer gives the answer `want` for `case`.
    async fn wait_authz(&self, case: &Case, want: bool) {
        let ns = match (case.owner, case.resource.as_str()) {
            (Owner::Role, _) => Some(NS),
            (_, "events") => Some("default"),
            _ => None,
        };
        wait_for(
            &format!("{} allowed == {want}", case.label()),
            Duration::from_secs(30),
            || async {
                (allowed(
                    &self.client,
                    &case.group,
                    &case.resource,
                    &case.verb,
                    ns,
                    case.name.as_deref(),
                )
                .await
                    == want)
                    .then_some(())
            },
        )
        .await;
    }
}

/// Makes sure the Lease exists, held by this test's identity.
async fn ensure_lease(client: &Client) {
    let leases: Api<Lease> = Api::namespaced(client.clone(), NS);
    if leases.get_opt(LEASE).await.expect("get Lease").is_some() {
        return;
    }
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
        k8s_openapi::jiff::Timestamp::now(),
    );
    leases
        .create(
            &PostParams::default(),
            &Lease {
                metadata: ObjectMeta {
                    name: Some(LEASE.into()),
                    namespace: Some(NS.into()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(IDENTITY.into()),
                    lease_duration_seconds: Some(15),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    ..Default::default()
                }),
            },
        )
        .await
        .expect("create Lease");
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

fn lists_conflict(p: &PrefixPool, node: &str) -> bool {
    pool_status(p)["conflicts"]
        .as_array()
        .is_some_and(|c| c.iter().any(|e| e["node"] == node))
}

/// Makes the API server refuse, as Invalid (422), every update of Node
/// `node`: the operator's write is refused, so it re-reads the Node (get).
async fn refuse_writes_to(client: &Client, node: &str) {
    let policies: Api<ValidatingAdmissionPolicy> = Api::all(client.clone());
    let bindings: Api<ValidatingAdmissionPolicyBinding> = Api::all(client.clone());
    let policy: ValidatingAdmissionPolicy = serde_json::from_value(json!({
        "metadata": {"name": "rbac-e2e-refuse-node"},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{
                "apiGroups": [""], "apiVersions": ["v1"], "operations": ["UPDATE"], "resources": ["nodes"]
            }]},
            "matchConditions": [{"name": "that-node", "expression": format!("object.metadata.name == '{node}'")}],
            "validations": [{"expression": "false", "message": "rbac-e2e refuses writes to this Node", "reason": "Invalid"}]
        }
    }))
    .expect("policy");
    let binding: ValidatingAdmissionPolicyBinding = serde_json::from_value(json!({
        "metadata": {"name": "rbac-e2e-refuse-node"},
        "spec": {"policyName": "rbac-e2e-refuse-node", "validationActions": ["Deny"]}
    }))
    .expect("binding");
    policies
        .create(&PostParams::default(), &policy)
        .await
        .expect("create policy");
    bindings
        .create(&PostParams::default(), &binding)
        .await
        .expect("create binding");
    // Active once a dry-run update of the Node is refused.
    let nodes: Api<Node> = Api::all(client.clone());
    wait_for(
        "the admission policy to refuse writes",
        Duration::from_secs(30),
        || async {
            let p = PatchParams {
                dry_run: true,
                ..Default::default()
            };
            match nodes
                .patch(
                    node,
                    &p,
                    &Patch::Merge(json!({"metadata": {"labels": {"probe": "x"}}})),
                )
                .await
            {
                Err(kube::Error::Api(s)) if s.code == 422 => Some(()),
                _ => None,
            }
        },
    )
    .await;
}

async fn stop_refusing(client: &Client) {
    let policies: Api<ValidatingAdmissionPolicy> = Api::all(client.clone());
    let bindings: Api<ValidatingAdmissionPolicyBinding> = Api::all(client.clone());
    bindings
        .delete("rbac-e2e-refuse-node", &DeleteParams::default())
        .await
        .expect("delete binding");
    policies
        .delete("rbac-e2e-refuse-node", &DeleteParams::default())
        .await
        .expect("delete policy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chart_rbac_is_exactly_what_the_operator_needs() {
    let started = Instant::now();
    // No CRD yet: the chart's crds/ installs it.
    let cp = tokio::task::spawn_blocking(|| ControlPlane::start(Options::default()))
        .await
        .expect("join")
        .expect("start control plane");
    let _dump = DumpOnPanic(&cp);
    let client = admin(&cp).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let admin_kc = dir.path().join("admin.kubeconfig");
    cp.write_kubeconfig(&Identity::Admin, &admin_kc)
        .expect("kubeconfig");
    let chart = chart_dir().display().to_string();
    helm(
        &cp,
        dir.path(),
        &admin_kc,
        &[
            "install",
            RELEASE,
            &chart,
            "--namespace",
            NS,
            "--create-namespace",
        ],
    );
    let pools: Api<PrefixPool> = Api::all(client.clone());
    wait_for(
        "the chart's CRD to be served",
        Duration::from_secs(30),
        || async { pools.list(&ListParams::default()).await.ok().map(|_| ()) },
    )
    .await;

    // A token of the chart's ServiceAccount, as a pod would get it.
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), NS);
    let tr = sas
        .create_token_request(
            RELEASE,
            &PostParams::default(),
            &TokenRequest {
                spec: TokenRequestSpec {
                    audiences: vec![],
                    expiration_seconds: Some(3600),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await
        .expect("TokenRequest");
    let token = tr.status.expect("token status").token;
    let sa_kc = dir.path().join("sa.kubeconfig");
    cp.write_kubeconfig(&Identity::Token(token), &sa_kc)
        .expect("kubeconfig");
    eprintln!(
        "[rbac] control plane + helm install + token in {:.1}s",
        started.elapsed().as_secs_f64()
    );

    // The whole flow with the rules as installed.
    let flow = Instant::now();
    create_pool(
        &client,
        POOL,
        PrefixPoolSpec {
            prefixes: vec!["2001:db8:e2e::/48".into()],
            ..Default::default()
        },
    )
    .await;
    for n in ["rbac-n1", "rbac-n2"] {
        create_plain_node(&client, n).await;
    }
    let op = Operator::start(&sa_kc, "info");
    let line = op.wait_line(&["serving /healthz"], REPORT_TIMEOUT).await;
    let addr = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("addr="))
        .expect("addr= in the serving line")
        .to_string();
    for n in ["rbac-n1", "rbac-n2"] {
        let cidrs = wait_pod_cidrs(&client, n).await;
        assert!(
            cidrs[0].starts_with("2001:db8:e2e:") && cidrs[0].ends_with("/64"),
            "{n}: {cidrs:?}"
        );
    }
    wait_pool(&client, POOL, "2 allocated", |p| {
        pool_status(p)["allocated"] == 2
    })
    .await;
    for n in ["rbac-n1", "rbac-n2"] {
        let evs = wait_for(
            &format!("PrefixAllocated Event on {n}"),
            REPORT_TIMEOUT,
            || async {
                let e = events_about(&client, n, "PrefixAllocated").await;
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
    let (status, _) = http_get(&addr, "/readyz");
    assert!(status.contains(" 200 "), "/readyz: {status}");
    let (status, metrics) = http_get(&addr, "/metrics");
    assert!(status.contains(" 200 "), "/metrics: {status}");
    assert!(metrics.contains("prefix_operator_leader 1"), "{metrics}");
    let log = op.stderr();
    assert!(
        !log.contains("forbidden"),
        "a permission error with the full rules:\n{}",
        tail(&log, 100)
    );
    drop(op);
    eprintln!(
        "[rbac] allocation flow with the chart's rules in {:.1}s",
        flow.elapsed().as_secs_f64()
    );

    // Every verb, one at a time.
    let crs: Api<ClusterRole> = Api::all(client.clone());
    let roles: Api<Role> = Api::namespaced(client.clone(), NS);
    let rbac = Rbac {
        client: client.clone(),
        cluster_rules: crs
            .get(RELEASE)
            .await
            .expect("ClusterRole")
            .rules
            .unwrap_or_default(),
        role_rules: roles
            .get(&format!("{RELEASE}-leader-election"))
            .await
            .expect("Role")
            .rules
            .unwrap_or_default(),
    };
    let all: Vec<Case> = cases(Owner::ClusterRole, &rbac.cluster_rules)
        .into_iter()
        .chain(cases(Owner::Role, &rbac.role_rules))
        .collect();
    assert!(all.len() >= 12, "fewer rules than expected: {all:?}");
    let mut report = vec![];
    for (i, case) in all.iter().enumerate() {
        let round = Instant::now();
        rbac.set(case.owner, without(rbac.rules(case.owner), case))
            .await;
        rbac.wait_authz(case, false).await;
        let fresh = format!("rbac-round-{i}");
        create_plain_node(&client, &fresh).await;
        let needle = format!(
            "User \"{SA_USER}\" cannot {} resource \"{}\"",
            case.verb, case.resource
        );
        let line = provoke(&client, &sa_kc, case, &needle).await;
        rbac.set(case.owner, rbac.rules(case.owner).to_vec()).await;
        rbac.wait_authz(case, true).await;
        eprintln!(
            "[rbac] {} removed ({:.1}s): {line}",
            case.label(),
            round.elapsed().as_secs_f64()
        );
        report.push((case.label(), line));
    }

    // Restored: a new Node is served again, with no permission error.
    let op = Operator::start(&sa_kc, "info");
    create_plain_node(&client, "rbac-after").await;
    wait_pod_cidrs(&client, "rbac-after").await;
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
    assert!(
        !op.stderr().contains("forbidden"),
        "{}",
        tail(&op.stderr(), 100)
    );
    drop(op);
    eprintln!(
        "[rbac] {} rules checked; total {:.1}s",
        report.len(),
        started.elapsed().as_secs_f64()
    );
}

/// Runs the operator so that it needs `case`'s permission, and returns the
/// log line that names it.
async fn provoke(client: &Client, kubeconfig: &Path, case: &Case, needle: &str) -> String {
    let leases: Api<Lease> = Api::namespaced(client.clone(), NS);
    let pools: Api<PrefixPool> = Api::all(client.clone());
    // Events go through kube-runtime's Recorder, whose failures are logged at
    // debug only (src/controller/events.rs).
    let events_log = "info,prefix_operator::controller::events=debug";
    match (
        case.group.as_str(),
        case.resource.as_str(),
        case.verb.as_str(),
    ) {
        // The start-up check: the operator stops with a message and exit 1.
        ("ipam.prefix-operator.io", "prefixpools", "list") => {
            let mut op = Operator::start(kubeconfig, "info");
            let status = op.wait_exit(REPORT_TIMEOUT).await;
            assert_eq!(
                status.code(),
                Some(1),
                "exit status without list on prefixpools"
            );
            op.wait_line(
                &["error: not allowed to list prefixpools", needle],
                REPORT_TIMEOUT,
            )
            .await
        }
        // Watches, the node write, the status write and the Lease: the fresh
        // Node of this round gives the operator something to write.
        ("", "nodes", "list" | "watch" | "patch")
        | ("ipam.prefix-operator.io", "prefixpools", "watch")
        | ("ipam.prefix-operator.io", "prefixpools/status", "patch")
        | ("coordination.k8s.io", "leases", "get") => {
            let op = Operator::start(kubeconfig, "info");
            op.wait_line(&[needle], REPORT_TIMEOUT).await
        }
        ("coordination.k8s.io", "leases", "create") => {
            let _ = leases.delete(LEASE, &DeleteParams::default()).await;
            let op = Operator::start(kubeconfig, "info");
            op.wait_line(&[needle], REPORT_TIMEOUT).await
        }
        ("coordination.k8s.io", "leases", "update") => {
            ensure_lease(client).await;
            let op = Operator::start(kubeconfig, "info");
            op.wait_line(&[needle], REPORT_TIMEOUT).await
        }
        // A write refused as Invalid makes the operator read the Node back.
        ("", "nodes", "get") => {
            let node = "rbac-refused";
            create_plain_node(client, node).await;
            refuse_writes_to(client, node).await;
            let op = Operator::start(kubeconfig, "info");
            let line = op.wait_line(&[needle], REPORT_TIMEOUT).await;
            drop(op);
            stop_refusing(client).await;
            delete_node(client, node).await;
            line
        }
        // The fresh Node's PrefixAllocated Event.
        ("events.k8s.io", "events", "create") => {
            let op = Operator::start(kubeconfig, events_log);
            op.wait_line(&[needle], REPORT_TIMEOUT).await
        }
        // The Recorder patches an Event that repeats (same object, reason and
        // action): a Node inside a reserved range is reported, the range is
        // dropped (conflict gone), and put back (reported again).
        ("events.k8s.io", "events", "patch") => {
            let pool = "rbac-conflict";
            let node = "rbac-conflicted";
            create_pool(
                client,
                pool,
                PrefixPoolSpec {
                    prefixes: vec!["fd00:e2e::/48".into()],
                    reserved: vec!["fd00:e2e::/56".into()],
                    ..Default::default()
                },
            )
            .await;
            create_node(client, node, labels(&[]), &["fd00:e2e::/64"]).await;
            let op = Operator::start(kubeconfig, events_log);
            wait_pool(client, pool, "the Node listed in conflict", |p| {
                lists_conflict(p, node)
            })
            .await;
            wait_for("the first PrefixConflict Event", REPORT_TIMEOUT, || async {
                (!events_about(client, node, "PrefixConflict")
                    .await
                    .is_empty())
                .then_some(())
            })
            .await;
            let set_reserved = |r: Vec<&str>| {
                let pools = pools.clone();
                let r: Vec<String> = r.into_iter().map(String::from).collect();
                async move {
                    pools
                        .patch(
                            pool,
                            &PatchParams::default(),
                            &Patch::Merge(json!({"spec": {"reserved": r}})),
                        )
                        .await
                        .expect("patch pool");
                }
            };
            set_reserved(vec![]).await;
            wait_pool(client, pool, "the conflict gone", |p| {
                !lists_conflict(p, node)
            })
            .await;
            set_reserved(vec!["fd00:e2e::/56"]).await;
            let line = op.wait_line(&[needle], REPORT_TIMEOUT).await;
            drop(op);
            delete_node(client, node).await;
            pools
                .delete(pool, &DeleteParams::default())
                .await
                .expect("delete pool");
            line
        }
        _ => panic!(
            "{}: no way to show that the operator needs this permission; give it one here, or drop the verb from the chart",
            case.label()
        ),
    }
}
