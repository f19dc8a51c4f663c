//! The Helm chart: lint, schema, what the defaults render, the rendered
//! objects accepted by the real API server, the CRD and deploy/ kept in sync,
//! and install / upgrade / uninstall into the shared test control plane.

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, Role};
use kube::{Api, Client};
use serde::Deserialize;
use serde_yaml::Value;
use support::helm::{Helm, chart_dir, ok, text};
use support::rbac::grants;
use support::*;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn docs(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|d| Value::deserialize(d).expect("rendered YAML parses"))
        .filter(|v| !v.is_null())
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn one<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found = find(docs, kind);
    assert_eq!(found.len(), 1, "expected one {kind}, found {}", found.len());
    found[0]
}

fn strs(v: &Value) -> Vec<String> {
    v.as_sequence()
        .map(|s| {
            s.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// An admin kubeconfig for the shared control plane, in `dir`.
fn admin_kubeconfig(dir: &Path) -> PathBuf {
    let path = dir.join("admin.kubeconfig");
    shared()
        .write_kubeconfig(&Identity::Admin, &path)
        .expect("write kubeconfig");
    path
}

#[test]
fn helm_lint_is_clean() {
    let helm = Helm::new();
    for values in [
        vec![],
        vec![
            "--set",
            "serviceMonitor.enabled=true",
            "--set",
            "replicas=1",
        ],
        vec![
            "--set",
            "hostNetwork=false",
            "--set",
            "http.bindAddress=0.0.0.0",
        ],
    ] {
        let out = helm
            .cmd()
            .args(["lint", "--strict", "--kube-version", "1.33.0"])
            .arg(chart_dir())
            .args(&values)
            .output()
            .expect("helm lint");
        let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
        assert!(out.status.success(), "helm lint {values:?} failed:\n{all}");
        assert!(all.contains("0 chart(s) failed"), "{all}");
        assert!(
            !all.contains("[WARNING]") && !all.contains("[ERROR]"),
            "helm lint {values:?} is not clean:\n{all}"
        );
    }
}

#[test]
fn default_render_has_what_a_cluster_component_needs() {
    let helm = Helm::new();
    let docs = docs(&ok("helm template", helm.template(&[])));
    kinds_in_the_release_namespace(&docs);
    let dep = one(&docs, "Deployment");
    deployment_runs_as_a_cluster_component(dep);
    tolerates_a_node_without_network(&dep["spec"]["template"]["spec"]);
    rbac_is_what_the_operator_calls(&docs);
    let svc = one(&docs, "Service");
    assert_eq!(svc["spec"]["ports"][0]["port"], 8080);
    assert_eq!(
        svc["spec"]["selector"],
        dep["spec"]["selector"]["matchLabels"]
    );
    assert_eq!(
        one(&docs, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"],
        dep["spec"]["selector"]["matchLabels"]
    );
    optional_parts_render(&helm);
}

/// The kinds rendered by default, every namespaced one in the release
/// namespace.
fn kinds_in_the_release_namespace(docs: &[Value]) {
    let kinds: BTreeSet<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    let want: BTreeSet<&str> = [
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Service",
        "Deployment",
        "PodDisruptionBudget",
    ]
    .into();
    assert_eq!(
        kinds, want,
        "kinds rendered by default (no ServiceMonitor, CRD only with --include-crds)"
    );
    for d in docs {
        if d["kind"] != "ClusterRole" && d["kind"] != "ClusterRoleBinding" {
            assert_eq!(
                d["metadata"]["namespace"], "kube-system",
                "namespaced object outside the release namespace: {d:?}"
            );
        }
    }
}

/// Replicas, priority, host network, arguments, the downward API, probes,
/// security context and resources of the Deployment.
fn deployment_runs_as_a_cluster_component(dep: &Value) {
    let spec = &dep["spec"]["template"]["spec"];
    assert_eq!(dep["spec"]["replicas"], 2);
    assert_eq!(spec["serviceAccountName"], "prefix-operator");
    assert_eq!(spec["priorityClassName"], "system-cluster-critical");
    assert_eq!(
        spec["hostNetwork"], true,
        "the CNI waits for us: no pod network yet"
    );
    let c = &spec["containers"][0];
    let args = strs(&c["args"]);
    assert_eq!(args[0], "run");
    for a in [
        "--leader-elect=true",
        "--lease-namespace=kube-system",
        "--lease-name=prefix-operator",
        "--http-addr=[::]:8080",
    ] {
        assert!(args.iter().any(|x| x == a), "{a} missing from {args:?}");
    }
    let env = c["env"].as_sequence().expect("env");
    for (name, path) in [
        ("POD_NAME", "metadata.name"),
        ("POD_NAMESPACE", "metadata.namespace"),
    ] {
        let e = env
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(
            e["valueFrom"]["fieldRef"]["fieldPath"], path,
            "{name} from the downward API"
        );
    }
    assert_eq!(c["ports"][0]["containerPort"], 8080);
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["livenessProbe"]["httpGet"]["port"], "http");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["readinessProbe"]["httpGet"]["port"], "http");
    hardened(c, spec);
}

/// The container runs as non-root with nothing it does not need, and has
/// resources set.
fn hardened(c: &Value, spec: &Value) {
    let sc = &c["securityContext"];
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["runAsUser"], 65532);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(strs(&sc["capabilities"]["drop"]), ["ALL"]);
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(spec["securityContext"]["runAsNonRoot"], true);
    for k in ["requests", "limits"] {
        for r in ["cpu", "memory"] {
            assert!(
                c["resources"][k][r].as_str().is_some(),
                "resources.{k}.{r} missing"
            );
        }
    }
}

/// The pod schedules where no CNI runs yet: it tolerates the taints of a
/// new, uninitialized, network-less or control-plane Node.
fn tolerates_a_node_without_network(spec: &Value) {
    let tolerated: BTreeSet<(String, String)> = spec["tolerations"]
        .as_sequence()
        .expect("tolerations")
        .iter()
        .map(|t| {
            assert_eq!(t["operator"], "Exists", "{t:?}");
            (
                t["key"].as_str().unwrap_or_default().to_string(),
                t["effect"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    for key in [
        "node-role.kubernetes.io/control-plane",
        "node.kubernetes.io/not-ready",
        "node.cloudprovider.kubernetes.io/uninitialized",
        "node.kubernetes.io/network-unavailable",
    ] {
        assert!(
            tolerated.contains(&(key.to_string(), "NoSchedule".to_string())),
            "no toleration of {key}:NoSchedule in {tolerated:?}"
        );
    }
}

/// The rules of a rendered ClusterRole or Role, as [`grants`] lists them.
fn rendered_grants(d: &Value) -> BTreeSet<(String, String, String, Vec<String>)> {
    let rules: Vec<PolicyRule> =
        serde_yaml::from_value(d["rules"].clone()).expect("rules are PolicyRules");
    grants(&rules)
}

/// RBAC: exactly what the operator calls (tests/rbac_e2e.rs shows each is
/// needed), bound to the chart's ServiceAccount.
fn rbac_is_what_the_operator_calls(docs: &[Value]) {
    let rule = |g: &str, r: &str, v: &str, names: &[&str]| {
        (
            g.to_string(),
            r.to_string(),
            v.to_string(),
            names.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
    };
    assert_eq!(
        rendered_grants(one(docs, "ClusterRole")),
        BTreeSet::from([
            rule("", "nodes", "get", &[]),
            rule("", "nodes", "list", &[]),
            rule("", "nodes", "watch", &[]),
            rule("", "nodes", "patch", &[]),
            rule("ipam.prefix-operator.io", "prefixpools", "list", &[]),
            rule("ipam.prefix-operator.io", "prefixpools", "watch", &[]),
            rule(
                "ipam.prefix-operator.io",
                "prefixpools/status",
                "patch",
                &[]
            ),
            rule("events.k8s.io", "events", "create", &[]),
            rule("events.k8s.io", "events", "patch", &[]),
        ])
    );
    assert_eq!(
        rendered_grants(one(docs, "Role")),
        BTreeSet::from([
            rule("coordination.k8s.io", "leases", "create", &[]),
            rule("coordination.k8s.io", "leases", "get", &["prefix-operator"]),
            rule(
                "coordination.k8s.io",
                "leases",
                "update",
                &["prefix-operator"]
            ),
        ])
    );
    for binding in ["ClusterRoleBinding", "RoleBinding"] {
        let b = one(docs, binding);
        assert_eq!(b["subjects"][0]["kind"], "ServiceAccount");
        assert_eq!(b["subjects"][0]["name"], "prefix-operator");
        assert_eq!(b["subjects"][0]["namespace"], "kube-system");
    }
}

/// The ServiceMonitor, the PDB, leader election and the HTTP address
/// follow their values.
fn optional_parts_render(helm: &Helm) {
    let with_sm = docs_of(
        helm,
        &[
            "--set",
            "serviceMonitor.enabled=true",
            "--set",
            "serviceMonitor.labels.release=kps",
        ],
    );
    let sm = one(&with_sm, "ServiceMonitor");
    assert_eq!(sm["metadata"]["labels"]["release"], "kps");
    assert_eq!(
        sm["spec"]["endpoints"][0]["port"],
        one(&with_sm, "Service")["spec"]["ports"][0]["name"]
    );
    assert!(
        find(
            &docs_of(helm, &["--set", "replicas=1"]),
            "PodDisruptionBudget"
        )
        .is_empty(),
        "no PDB for one replica"
    );
    assert!(
        find(
            &docs_of(helm, &["--set", "podDisruptionBudget.enabled=false"]),
            "PodDisruptionBudget"
        )
        .is_empty()
    );
    let no_le = docs_of(
        helm,
        &[
            "--set",
            "replicas=1",
            "--set",
            "leaderElection.enabled=false",
        ],
    );
    assert!(
        find(&no_le, "Role").is_empty(),
        "no Lease Role without leader election"
    );
    assert!(
        strs(&one(&no_le, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"])
            .contains(&"--leader-elect=false".to_string())
    );
    let v4 = docs_of(
        helm,
        &[
            "--set",
            "http.bindAddress=0.0.0.0",
            "--set",
            "http.port=9090",
        ],
    );
    assert!(
        strs(&one(&v4, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"])
            .contains(&"--http-addr=0.0.0.0:9090".to_string())
    );
}

fn docs_of(helm: &Helm, extra: &[&str]) -> Vec<Value> {
    docs(&ok(
        &format!("helm template {extra:?}"),
        helm.template(extra),
    ))
}

/// The Deployment's arguments, as the binary's own parser reads them: with a
/// kubeconfig that does not exist, the operator gets past flag parsing and
/// stops at reading it (a flag error would exit 2 with clap's usage).
#[test]
fn deployment_args_are_accepted_by_the_binary() {
    let helm = Helm::new();
    for extra in [
        vec![],
        vec![
            "--set",
            "http.bindAddress=0.0.0.0",
            "--set",
            "operator.primaryFamily=ipv4",
            "--set",
            "leaderElection.leaseDuration=1m",
            "--set",
            "operator.statusInterval=500ms",
            "--set",
            "operator.extraArgs={--identity=one}",
        ],
        vec![
            "--set",
            "replicas=1",
            "--set",
            "leaderElection.enabled=false",
        ],
        vec![
            "--set",
            "leaderElection.leaseDuration=1m30s",
            "--set",
            "leaderElection.renewDeadline=1m",
            "--set",
            "leaderElection.retryPeriod=1.5s",
            "--set",
            "operator.statusInterval=1h",
        ],
    ] {
        let d = docs_of(&helm, &extra);
        let args =
            strs(&one(&d, "Deployment")["spec"]["template"]["spec"]["containers"][0]["args"]);
        let out = Command::new(env!("CARGO_BIN_EXE_prefix-operator"))
            .args(&args)
            .args(["--kubeconfig", "/nonexistent/kubeconfig"])
            .env_remove("KUBECONFIG")
            .output()
            .expect("run prefix-operator");
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?} refused:\n{err}");
        assert!(
            err.contains("reading kubeconfig /nonexistent/kubeconfig"),
            "{args:?}:\n{err}"
        );
    }
}

#[test]
fn schema_and_checks_refuse_bad_values() {
    let helm = Helm::new();
    for (set, phrase) in [
        ("replicas=two", "'/replicas': got string, want integer"),
        ("replicas=-1", "'/replicas'"),
        ("replica=3", "additional properties 'replica' not allowed"),
        ("operator.primaryFamily=ipv5", "'/operator/primaryFamily'"),
        ("operator.logFormat=xml", "'/operator/logFormat'"),
        (
            "leaderElection.leaseDuration=15",
            "'/leaderElection/leaseDuration'",
        ),
        (
            "leaderElection.leaseDuration=15d",
            "'/leaderElection/leaseDuration'",
        ),
        (
            "leaderElection.leaseDuration=-15s",
            "'/leaderElection/leaseDuration'",
        ),
        ("http.port=70000", "'/http/port'"),
        ("image.pullPolicy=Sometimes", "'/image/pullPolicy'"),
        (
            "podDisruptionBudget.maxUnavailable=one",
            "'/podDisruptionBudget/maxUnavailable'",
        ),
        ("serviceMonitor.enabled=yes", "'/serviceMonitor/enabled'"),
    ] {
        let out = helm.template(&["--set", set]);
        let err = text(&out.stderr);
        assert!(!out.status.success(), "--set {set} was accepted");
        assert!(
            err.contains("values don't meet the specifications of the schema")
                && err.contains(phrase),
            "--set {set}: the message does not point at {phrase:?}:\n{err}"
        );
    }
    let out = helm.template(&["--set", "leaderElection.enabled=false"]);
    assert!(
        !out.status.success(),
        "two replicas without leader election were accepted"
    );
    assert!(
        text(&out.stderr).contains("leaderElection.enabled must be true when replicas > 1"),
        "{}",
        text(&out.stderr)
    );
    install_refuses_bad_values(&helm);
}

/// helm install refuses the same, before creating anything.
fn install_refuses_bad_values(helm: &Helm) {
    let dir = tempfile::tempdir().expect("tempdir");
    let ns = unique("chart-bad");
    let out = helm
        .cmd()
        .args(["install", &ns])
        .arg(chart_dir())
        .args([
            "--namespace",
            &ns,
            "--create-namespace",
            "--skip-crds",
            "--set",
            "replicas=two",
            "--kubeconfig",
        ])
        .arg(admin_kubeconfig(dir.path()))
        .output()
        .expect("helm install");
    let err = text(&out.stderr);
    assert!(
        !out.status.success(),
        "helm install with replicas=two succeeded"
    );
    assert!(
        err.contains("INSTALLATION FAILED")
            && err.contains("'/replicas': got string, want integer"),
        "{err}"
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let nss: Api<Namespace> = Api::all(admin(shared()).await);
        assert!(
            nss.get_opt(&ns).await.expect("get namespace").is_none(),
            "a refused install created namespace {ns}"
        );
    });
}

/// The chart's values schema checks durations by the operator's own grammar.
#[test]
fn chart_durations_use_the_operator_grammar() {
    let schema: serde_json::Value = serde_json::from_slice(
        &std::fs::read(chart_dir().join("values.schema.json")).expect("values.schema.json"),
    )
    .expect("JSON");
    assert_eq!(
        schema["definitions"]["duration"]["pattern"],
        prefix_operator::duration::PATTERN,
        "values.schema.json's duration pattern differs from src/duration.rs"
    );
}

#[test]
fn chart_crd_is_the_top_level_crd() {
    let name = "prefixpools.ipam.prefix-operator.io.yaml";
    let top = std::fs::read(root().join("crds").join(name)).expect("crds/");
    let chart = std::fs::read(chart_dir().join("crds").join(name)).expect("chart crds/");
    assert!(
        top == chart,
        "charts/prefix-operator/crds/{name} differs from crds/{name}; copy it: cp crds/{name} charts/prefix-operator/crds/"
    );
    let files: Vec<_> = std::fs::read_dir(chart_dir().join("crds"))
        .expect("chart crds/")
        .collect();
    assert_eq!(files.len(), 1, "the chart ships exactly the one CRD");
}

#[test]
fn deploy_manifests_are_in_sync_with_the_chart() {
    let helm = Helm::new();
    let mut render = Command::new("bash");
    render
        .arg(root().join("e2e/render-manifests.sh"))
        .arg("-")
        .env("HELM", &helm.bin);
    let out = helm
        .homes(&mut render)
        .output()
        .expect("render-manifests.sh");
    let fresh = ok("e2e/render-manifests.sh -", out);
    let committed = std::fs::read_to_string(root().join("deploy/prefix-operator.yaml"))
        .expect("deploy/prefix-operator.yaml");
    assert!(
        fresh == committed,
        "deploy/prefix-operator.yaml is stale: run `make manifests` (first differing line: {:?})",
        fresh.lines().zip(committed.lines()).find(|(a, b)| a != b)
    );
    let d = docs(&committed);
    assert_eq!(
        one(&d, "CustomResourceDefinition")["metadata"]["name"],
        "prefixpools.ipam.prefix-operator.io"
    );
    one(&d, "Deployment");
}

/// `kubectl apply --dry-run=server --validate=strict`: the API server
/// admits every rendered object, with unknown fields refused.
fn server_dry_run(kubeconfig: &Path, yaml: &str) -> String {
    use std::io::Write;
    let mut child = Command::new(shared().bin("kubectl"))
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["apply", "--dry-run=server", "--validate=strict", "-f", "-"])
        .env_remove("KUBECONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(yaml.as_bytes())
        .expect("write manifests");
    ok(
        "kubectl apply --dry-run=server",
        child.wait_with_output().expect("kubectl"),
    )
}

#[test]
fn rendered_chart_is_accepted_by_the_api_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = admin_kubeconfig(dir.path());
    let helm = Helm::new();
    // Defaults with the CRD (as in deploy/), and the other switches.
    for extra in [
        vec!["--include-crds"],
        vec![
            "--set",
            "replicas=3",
            "--set",
            "podDisruptionBudget.minAvailable=2",
            "--set",
            "hostNetwork=false",
            "--set",
            "apiServer.host=10.0.0.1",
            "--set",
            "apiServer.port=6443",
            "--set",
            "image.digest=sha256:0000000000000000000000000000000000000000000000000000000000000000",
            "--set",
            "operator.extraArgs={--identity=one}",
            "--set",
            "serviceAccount.annotations.a=b",
            "--set",
            "podAnnotations.c=d",
        ],
        vec![
            "--set",
            "replicas=1",
            "--set",
            "leaderElection.enabled=false",
            "--set",
            "service.enabled=false",
        ],
    ] {
        let yaml = ok("helm template", helm.template(&extra));
        let applied = server_dry_run(&kubeconfig, &yaml);
        let n = docs(&yaml).len();
        let lines = applied
            .lines()
            .filter(|l| l.contains("(server dry run)"))
            .count();
        assert_eq!(
            lines, n,
            "{extra:?}: expected {n} objects applied, got:\n{applied}"
        );
    }
}

#[tokio::test]
async fn helm_install_upgrade_and_uninstall() {
    let cp = shared();
    let client = admin(cp).await;
    // Other tests of this binary may not have installed it; helm skips an
    // existing CRD anyway, so install it first and pass --skip-crds.
    install_crd(&client).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = admin_kubeconfig(dir.path());
    let helm = Helm::new();
    // The release is named after its namespace.
    let ns = unique("chart-install");
    let release = ns.clone();
    let run = |args: &[&str]| helm.run_in(&ns, &kubeconfig, args);
    let chart = chart_dir().display().to_string();
    run(&[
        "install",
        &release,
        &chart,
        "--create-namespace",
        "--skip-crds",
    ]);
    installed(&client, &ns).await;
    let status = run(&["status", &release]);
    assert!(status.contains("STATUS: deployed"), "{status}");
    upgraded(&client, &helm, &kubeconfig, &ns).await;
    uninstalled(&client, &helm, &kubeconfig, &ns).await;
}

/// What `helm install` of release `ns` (in namespace `ns`) created.
async fn installed(client: &Client, ns: &str) {
    let full = format!("{ns}-prefix-operator");
    let deps: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let dep = deps.get(&full).await.expect("Deployment installed");
    assert_eq!(dep.spec.as_ref().and_then(|s| s.replicas), Some(2));
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    sas.get(&full).await.expect("ServiceAccount installed");
    let roles: Api<Role> = Api::namespaced(client.clone(), ns);
    roles
        .get(&format!("{full}-leader-election"))
        .await
        .expect("Lease Role installed");
    let cluster_roles: Api<ClusterRole> = Api::all(client.clone());
    cluster_roles
        .get(&full)
        .await
        .expect("ClusterRole installed");
}

/// `helm upgrade --reuse-values --set replicas=3` of release `ns`.
async fn upgraded(client: &Client, helm: &Helm, kubeconfig: &Path, ns: &str) {
    let (release, full) = (ns, format!("{ns}-prefix-operator"));
    let run = |args: &[&str]| helm.run_in(ns, kubeconfig, args);
    let chart = chart_dir().display().to_string();
    let deps: Api<Deployment> = Api::namespaced(client.clone(), ns);
    run(&[
        "upgrade",
        release,
        &chart,
        "--skip-crds",
        "--reuse-values",
        "--set",
        "replicas=3",
    ]);
    let dep = deps.get(&full).await.expect("Deployment");
    assert_eq!(
        dep.spec.as_ref().and_then(|s| s.replicas),
        Some(3),
        "upgrade applied"
    );
    let history = run(&["history", release]);
    assert_eq!(
        history.lines().count(),
        3,
        "header + 2 revisions:\n{history}"
    );
}

/// `helm uninstall` of release `ns`: what it removes and what it keeps.
async fn uninstalled(client: &Client, helm: &Helm, kubeconfig: &Path, ns: &str) {
    let (release, full) = (ns, format!("{ns}-prefix-operator"));
    let deps: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let cluster_roles: Api<ClusterRole> = Api::all(client.clone());
    helm.run_in(ns, kubeconfig, &["uninstall", release, "--wait"]);
    assert!(
        deps.get_opt(&full).await.expect("get").is_none(),
        "Deployment left after uninstall"
    );
    assert!(
        cluster_roles.get_opt(&full).await.expect("get").is_none(),
        "ClusterRole left after uninstall"
    );
    // The CRD stays (helm never deletes crds/), and with it every PrefixPool.
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client.clone());
    assert!(
        crds.get_opt("prefixpools.ipam.prefix-operator.io")
            .await
            .expect("get")
            .is_some()
    );
    // The namespace stays: without kube-controller-manager it would never
    // finish terminating, and the control plane goes away with the test binary.
}

#[tokio::test]
async fn chart_creates_a_ula_pool_and_keeps_its_prefix_on_upgrade() {
    let cp = shared();
    let client = admin(cp).await;
    install_crd(&client).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = admin_kubeconfig(dir.path());
    let helm = Helm::new();
    let ns = unique("chart-ula");
    let pool_name = unique("ula");
    let run = |args: &[&str]| helm.run_in(&ns, &kubeconfig, args);
    let chart = chart_dir().display().to_string();
    let name_value = format!("ulaPool.name={pool_name}");
    run(&[
        "install",
        &ns,
        &chart,
        "--create-namespace",
        "--skip-crds",
        "--set",
        "ulaPool.create=true",
        "--set",
        &name_value,
    ]);
    let pools: Api<prefix_operator::api::PrefixPool> = Api::all(client.clone());
    let pool = pools.get(&pool_name).await.expect("ULA PrefixPool created");
    let prefix: ipnet::Ipv6Net = pool.spec.prefixes[0].parse().expect("a CIDR");
    assert_eq!(prefix.prefix_len(), 48);
    assert!(
        "fd00::/8"
            .parse::<ipnet::Ipv6Net>()
            .expect("net")
            .contains(&prefix),
        "{prefix}"
    );
    run(&[
        "upgrade",
        &ns,
        &chart,
        "--skip-crds",
        "--reuse-values",
        "--set",
        "replicas=3",
    ]);
    let again = pools.get(&pool_name).await.expect("pool");
    assert_eq!(
        again.spec.prefixes, pool.spec.prefixes,
        "the prefix changed on upgrade"
    );
    run(&["uninstall", &ns, "--wait"]);
    assert!(
        pools.get_opt(&pool_name).await.expect("get").is_some(),
        "the pool is kept on uninstall"
    );
}
