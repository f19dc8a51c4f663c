//! helm install / upgrade / uninstall into the shared test control plane.

use super::*;

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
