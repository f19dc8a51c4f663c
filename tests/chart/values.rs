//! Values: the Deployment's args accepted by the binary, bad values
//! refused by the schema and the chart's checks, durations.

use super::*;

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
            "--set",
            "http.metrics.certSecret=metrics-tls",
        ],
        vec![
            "--set",
            "replicas=1",
            "--set",
            "leaderElection.enabled=false",
            "--set",
            "http.metrics.secure=false",
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
        ("http.metrics.port=0", "'/http/metrics/port'"),
        ("http.metrics.secure=yes", "'/http/metrics/secure'"),
        ("image.pullPolicy=Sometimes", "'/image/pullPolicy'"),
        (
            "podDisruptionBudget.maxUnavailable=one",
            "'/podDisruptionBudget/maxUnavailable'",
        ),
        ("serviceMonitor.enabled=yes", "'/serviceMonitor/enabled'"),
        (
            "prefixClaims[0].name=svc,prefixClaims[0].prefixLength=112",
            "'/prefixClaims/0'",
        ),
        (
            "prefixClaims[0].name=svc,prefixClaims[0].pool=p,prefixClaims[0].prefixLength=112,prefixClaims[0].purpose=LoadBalancing",
            "'/prefixClaims/0/purpose'",
        ),
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
    let out = helm.template(&["--set", "http.metrics.port=10262"]);
    assert!(
        !out.status.success() && text(&out.stderr).contains("http.metrics.port must differ"),
        "the HTTPS /metrics on the probes' port was accepted: {}",
        text(&out.stderr)
    );
    // Values of an older chart (helm upgrade --reuse-values) lack crds.
    let out = helm.template(&["--set", "crds=null"]);
    assert!(!out.status.success(), "values without crds were accepted");
    assert!(
        text(&out.stderr).contains("upgrade with --reset-then-reuse-values"),
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

/// Every value in values.schema.json says what it is for (`helm show
/// values` and editors show the descriptions).
#[test]
fn every_schema_property_has_a_description() {
    let schema: serde_json::Value = serde_json::from_slice(
        &std::fs::read(chart_dir().join("values.schema.json")).expect("values.schema.json"),
    )
    .expect("JSON");
    fn walk(node: &serde_json::Value, path: &str, missing: &mut Vec<String>) {
        if let Some(props) = node["properties"].as_object() {
            for (k, v) in props {
                let here = format!("{path}.{k}");
                if v["description"].as_str().is_none_or(str::is_empty) {
                    missing.push(here.clone());
                }
                walk(v, &here, missing);
            }
        }
        if node["items"].is_object() {
            walk(&node["items"], &format!("{path}[]"), missing);
        }
    }
    let mut missing = vec![];
    walk(&schema, "", &mut missing);
    for (name, def) in schema["definitions"].as_object().expect("definitions") {
        walk(def, &format!("#{name}"), &mut missing);
    }
    assert!(missing.is_empty(), "no description: {missing:?}");
}
