//! Generated files kept in sync with the chart, and the rendered objects
//! accepted by the real API server.

use super::*;

/// The chart's CRD templates are generated from the Rust types (`make crd`),
/// and what they render is the CRD of crds/ with the chart's labels and,
/// with crds.keep, the keep-on-uninstall annotation.
#[test]
fn chart_crd_templates_are_generated() {
    use prefix_operator::cli::{CrdKind, crd_chart_template};
    let dir = chart_dir().join("templates/crds");
    let mut names: Vec<String> = vec![];
    for kind in CrdKind::ALL {
        let name = kind.file_name();
        let committed = std::fs::read_to_string(dir.join(&name)).unwrap_or_default();
        let generated = crd_chart_template(Some(kind)).expect("generate");
        assert!(
            committed == generated,
            "charts/prefix-operator/templates/crds/{name} is stale or missing: run `make crd`"
        );
        names.push(name);
    }
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .expect("templates/crds")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    files.sort();
    names.sort();
    assert_eq!(files, names, "the chart holds exactly the project's CRDs");
    assert!(
        !chart_dir().join("crds").exists(),
        "charts/prefix-operator/crds/ is back: Helm never upgrades what it installs from there"
    );

    let helm = Helm::new();
    let rendered = docs_of(&helm, &[]);
    let crds = find(&rendered, "CustomResourceDefinition");
    assert_eq!(
        crds.len(),
        CrdKind::ALL.len(),
        "crds.enabled is the default"
    );
    for kind in CrdKind::ALL {
        let want: Value = serde_yaml::to_value(kind.crd()).expect("yaml");
        let got = crds
            .iter()
            .find(|c| c["metadata"]["name"] == want["metadata"]["name"])
            .unwrap_or_else(|| panic!("{} not rendered", kind.file_name()));
        assert_eq!(got["spec"], want["spec"], "{}: spec", kind.file_name());
        let meta = &got["metadata"];
        assert_eq!(meta["annotations"]["helm.sh/resource-policy"], "keep");
        assert_eq!(meta["labels"]["app.kubernetes.io/managed-by"], "Helm");
        assert_eq!(
            meta["labels"]["app.kubernetes.io/part-of"],
            "prefix-operator"
        );
    }
    let unkept = docs_of(&helm, &["--set", "crds.keep=false"]);
    for c in find(&unkept, "CustomResourceDefinition") {
        assert!(
            c["metadata"]["annotations"]["helm.sh/resource-policy"].is_null(),
            "crds.keep=false still keeps {:?}",
            c["metadata"]["name"]
        );
    }
    assert_eq!(find(&unkept, "CustomResourceDefinition").len(), 2);
    assert!(
        find(
            &docs_of(&helm, &["--set", "crds.enabled=false"]),
            "CustomResourceDefinition"
        )
        .is_empty(),
        "crds.enabled=false renders no CRD"
    );
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
    assert!(
        !d.iter().any(|o| o["kind"] == "CustomResourceDefinition"),
        "the CRD is its own file: deleting deploy/ must not delete every PrefixPool"
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
    // Defaults (with the CRDs), and the other switches.
    for extra in [
        vec![],
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
            "--set",
            "http.metrics.certSecret=metrics-tls",
        ],
        vec![
            "--set",
            "replicas=1",
            "--set",
            "leaderElection.enabled=false",
            "--set",
            "service.enabled=false",
            "--set",
            "http.metrics.secure=false",
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
