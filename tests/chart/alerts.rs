//! The chart's PrometheusRule and Grafana dashboard, checked by promtool
//! (built from the pinned Prometheus Go module by e2e/promtool/build.sh):
//! the rules load, each alert fires on the series it is about and not on
//! healthy ones, and every dashboard query parses and names only metrics
//! the operator exports.

use super::*;

fn promtool() -> PathBuf {
    let script = root().join("e2e/promtool/build.sh");
    let out = Command::new(&script)
        .output()
        .expect("e2e/promtool/build.sh");
    let path = ok("e2e/promtool/build.sh", out);
    PathBuf::from(path.trim())
}

fn run_promtool(args: &[&str], dir: &Path) -> (bool, String) {
    let out = Command::new(promtool())
        .args(args)
        .current_dir(dir)
        .output()
        .expect("promtool");
    (
        out.status.success(),
        format!("{}{}", text(&out.stdout), text(&out.stderr)),
    )
}

/// The rendered PrometheusRule's groups as a Prometheus rule file.
fn rule_file(helm: &Helm, extra: &[&str]) -> String {
    let mut args = vec![
        "--set",
        "prometheusRule.enabled=true",
        "--show-only",
        "templates/prometheusrule.yaml",
    ];
    args.extend_from_slice(extra);
    let docs = docs_of(helm, &args);
    let rule = one(&docs, "PrometheusRule");
    serde_yaml::to_string(&serde_yaml::Mapping::from_iter([(
        Value::from("groups"),
        rule["spec"]["groups"].clone(),
    )]))
    .expect("yaml")
}

#[test]
fn alerts_load_and_fire_on_what_they_are_about() {
    let helm = Helm::new();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("rules.yaml"), rule_file(&helm, &[])).expect("write");
    let (ok_, out) = run_promtool(&["check", "rules", "rules.yaml"], dir.path());
    assert!(ok_ && out.contains("6 rules found"), "{out}");
    std::fs::copy(
        root().join("tests/data/alerts-test.yaml"),
        dir.path().join("alerts-test.yaml"),
    )
    .expect("copy the rule tests");
    let (ok_, out) = run_promtool(&["test", "rules", "alerts-test.yaml"], dir.path());
    assert!(ok_, "promtool test rules failed:\n{out}");

    // The thresholds follow the values.
    let tuned = rule_file(&helm, &["--set", "prometheusRule.usagePercent=50"]);
    assert!(tuned.contains("* 100 > 50"), "{tuned}");

    // NoLeader names the Lease the replicas hold, in the release namespace
    // (not the chart's full name).
    let leased = rule_file(&helm, &["--set", "leaderElection.leaseName=pool-keeper"]);
    assert!(
        leased.contains("(kubectl get lease -n kube-system pool-keeper)"),
        "{leased}"
    );
}

/// Metric names in a PromQL expression (the operator's, by prefix).
fn metric_names(expr: &str) -> Vec<String> {
    let mut out = vec![];
    let mut rest = expr;
    while let Some(i) = rest.find("prefix_operator_") {
        let tail = &rest[i..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        out.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}

#[test]
fn dashboard_queries_parse_and_use_exported_metrics() {
    let helm = Helm::new();
    let docs = docs_of(
        &helm,
        &[
            "--set",
            "dashboard.enabled=true",
            "--show-only",
            "templates/dashboard.yaml",
        ],
    );
    let cm = one(&docs, "ConfigMap");
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
    let json: serde_json::Value = serde_json::from_str(
        cm["data"]["prefix-operator.json"]
            .as_str()
            .expect("dashboard JSON"),
    )
    .expect("the dashboard is JSON");
    let exprs: Vec<String> = json["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(str::to_string))
        .collect();
    assert!(exprs.len() >= 8, "{exprs:?}");

    // Every series a query names is one the operator exports.
    // (A family shows in the text once it has a series: one pool, one
    // error reason, one allocation.)
    let m = prefix_operator::metrics::Metrics::new();
    m.publish_pool("p", &prefix_operator::ledger::PoolView::default());
    m.error("Conflict");
    m.allocations.get_or_create(&m.pool("p")).inc();
    m.releases.get_or_create(&m.pool("p")).inc();
    let exported = m.encode();
    for e in &exprs {
        for name in metric_names(e) {
            let family = ["_bucket", "_total"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .unwrap_or(&name);
            assert!(
                exported.contains(&format!("# TYPE {family} ")),
                "the dashboard queries {name}, which the operator does not export"
            );
        }
    }
    // Every query parses: promtool checks them as recording rules.
    let rules: Vec<Value> = exprs
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let mut m = serde_yaml::Mapping::new();
            m.insert("record".into(), format!("dashboard:query{i}").into());
            m.insert("expr".into(), e.clone().into());
            Value::Mapping(m)
        })
        .collect();
    let file = serde_yaml::to_string(&serde_yaml::Mapping::from_iter([(
        Value::from("groups"),
        Value::Sequence(vec![Value::Mapping(serde_yaml::Mapping::from_iter([
            ("name".into(), "dashboard".into()),
            ("rules".into(), Value::Sequence(rules)),
        ]))]),
    )]))
    .expect("yaml");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("dashboard-rules.yaml"), &file).expect("write");
    let (ok_, out) = run_promtool(&["check", "rules", "dashboard-rules.yaml"], dir.path());
    assert!(ok_, "a dashboard query does not parse:\n{out}\n{file}");
}
