//! helm install / upgrade / uninstall into the shared test control plane.

use super::*;

#[tokio::test]
async fn helm_install_upgrade_and_uninstall() {
    let cp = shared();
    let client = admin(cp).await;
    // The CRDs are the shared control plane's, installed by the tests
    // (crds_come_with_the_release installs them with the chart, on a
    // control plane of its own).
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
        "--set",
        "crds.enabled=false",
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

/// `helm upgrade --reset-then-reuse-values --set replicas=3` of release `ns`.
async fn upgraded(client: &Client, helm: &Helm, kubeconfig: &Path, ns: &str) {
    let (release, full) = (ns, format!("{ns}-prefix-operator"));
    let run = |args: &[&str]| helm.run_in(ns, kubeconfig, args);
    let chart = chart_dir().display().to_string();
    let deps: Api<Deployment> = Api::namespaced(client.clone(), ns);
    run(&[
        "upgrade",
        release,
        &chart,
        "--set",
        "crds.enabled=false",
        "--reset-then-reuse-values",
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
    // The CRD stays (not the release's), and with it every PrefixPool.
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
        "--set",
        "crds.enabled=false",
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
        "--set",
        "crds.enabled=false",
        "--reset-then-reuse-values",
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

/// Where the chart cannot see the cluster (helm template, as Argo CD and
/// Flux render), a generated ULA prefix would change at every render: the
/// chart asks for one, and renders the one given as it is.
#[test]
fn ula_pool_needs_a_prefix_without_a_cluster() {
    let helm = Helm::new();
    let out = helm.template(&["--set", "ulaPool.create=true"]);
    let err = text(&out.stderr);
    assert!(
        !out.status.success(),
        "a ULA pool without a prefix rendered"
    );
    assert!(
        err.contains("ulaPool.prefix is required when the chart cannot see the cluster")
            && err.contains("prefix-operator ula"),
        "{err}"
    );
    for prefix in [
        "fd12:3456:789a::/48",
        "fd12::/48",
        "fd12:3::/48",
        "fd12:0:3::/48",
        "fd00:ffff:ffff::/48",
    ] {
        let set = format!("ulaPool.prefix={prefix}");
        let args = ["--set", "ulaPool.create=true", "--set", &set];
        let first = docs_of(&helm, &args);
        let pool = one(&first, "PrefixPool");
        assert_eq!(pool["spec"]["prefixes"][0], prefix);
        assert_eq!(docs_of(&helm, &args), first, "two renders differ");
        // The API's own rules (canonical form among them) accept it.
        let spec: prefix_operator::api::PrefixPoolSpec =
            serde_json::from_value(serde_json::to_value(&pool["spec"]).expect("json"))
                .expect("a pool spec");
        prefix_operator::api::validate_spec(&spec).expect("valid");
        let parsed: ipnet::Ipv6Net = prefix.parse().expect("a CIDR");
        assert_eq!(parsed.to_string(), prefix, "not canonical");
    }
    for (set, phrase) in [
        ("ulaPool.prefix=fd12:0:0::/48", "at '/ulaPool/prefix'"),
        ("ulaPool.prefix=fd12:3:0::/48", "at '/ulaPool/prefix'"),
        ("ulaPool.prefix=fd12:0034:5::/48", "at '/ulaPool/prefix'"),
        ("ulaPool.prefix=fc12:34:5::/48", "at '/ulaPool/prefix'"),
        (
            "ulaPool.nodePrefixLength=113",
            "at '/ulaPool/nodePrefixLength'",
        ),
    ] {
        let out = helm.template(&["--set", "ulaPool.create=true", "--set", set]);
        assert!(!out.status.success(), "{set} rendered");
        assert!(
            text(&out.stderr).contains(phrase),
            "{set}: {}",
            text(&out.stderr)
        );
    }
}
