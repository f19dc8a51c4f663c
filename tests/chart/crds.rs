//! The CRDs as templates of the release (crds.enabled, crds.keep), on a
//! control plane of their own: the shared one's CRDs belong to the tests.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use std::time::Duration;

use prefix_operator::api::PrefixPool;

use super::*;

const CRDS: [&str; 2] = [
    "prefixpools.ipam.prefix-operator.io",
    "prefixclaims.ipam.prefix-operator.io",
];

fn annotation<'a>(crd: &'a CustomResourceDefinition, key: &str) -> Option<&'a str> {
    crd.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crds_come_with_the_release() {
    let cp = tokio::task::spawn_blocking(|| ControlPlane::start(Options::default()))
        .await
        .expect("join")
        .expect("start control plane");
    let _dump = DumpOnPanic(&cp);
    let client = admin(&cp).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("admin.kubeconfig");
    cp.write_kubeconfig(&Identity::Admin, &kubeconfig)
        .expect("kubeconfig");
    let helm = Helm::new();
    let chart = chart_dir().display().to_string();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let pools: Api<PrefixPool> = Api::all(client.clone());

    // No CRD yet: Helm cannot create one and objects of it in one install.
    let err = tokio::task::block_in_place(|| {
        helm.fails_in(
            "first",
            &kubeconfig,
            &[
                "install",
                "first",
                &chart,
                "--create-namespace",
                "--set",
                "ulaPool.create=true",
                "--set",
                "ulaPool.prefix=fd12:3456:789a::/48",
            ],
        )
    });
    assert!(
        err.contains(
            "ulaPool.create needs the CRD prefixpools.ipam.prefix-operator.io in the cluster first"
        ),
        "{err}"
    );
    for name in CRDS {
        assert!(
            crds.get_opt(name).await.expect("get").is_none(),
            "a refused install created {name}"
        );
    }

    // The defaults install the CRDs, owned by the release and kept.
    let run = |ns: &str, args: &[&str]| {
        tokio::task::block_in_place(|| helm.run_in(ns, &kubeconfig, args))
    };
    run("first", &["install", "first", &chart, "--create-namespace"]);
    wait_for(
        "the chart's CRDs to be served",
        Duration::from_secs(30),
        || async { pools.list(&Default::default()).await.ok().map(|_| ()) },
    )
    .await;
    for name in CRDS {
        let crd = crds.get(name).await.expect(name);
        assert_eq!(annotation(&crd, "helm.sh/resource-policy"), Some("keep"));
        assert_eq!(annotation(&crd, "meta.helm.sh/release-name"), Some("first"));
    }
    // Once they are in, an upgrade may create objects of them; the chart
    // sees the cluster, so the ULA pool may generate its prefix.
    run(
        "first",
        &[
            "upgrade",
            "first",
            &chart,
            "--reset-then-reuse-values",
            "--set",
            "ulaPool.create=true",
        ],
    );
    let pool = pools.get("ula").await.expect("the ULA pool");
    let prefix: ipnet::Ipv6Net = pool.spec.prefixes[0].parse().expect("a CIDR");
    assert_eq!(prefix.prefix_len(), 48);
    assert!(
        "fd00::/8"
            .parse::<ipnet::Ipv6Net>()
            .expect("net")
            .contains(&prefix),
        "{prefix}"
    );
    // helm uninstall leaves the CRDs (crds.keep), and so the pool.
    run("first", &["uninstall", "first", "--wait"]);
    for name in CRDS {
        assert!(
            crds.get_opt(name).await.expect("get").is_some(),
            "{name} deleted on uninstall despite crds.keep"
        );
    }
    assert!(pools.get_opt("ula").await.expect("get").is_some());

    // CRDs that are not the release's (left by another release, or applied
    // with kubectl before the install): refused, unless taken over.
    let install_second: [&str; 4] = ["install", "second", &chart, "--create-namespace"];
    let err = tokio::task::block_in_place(|| helm.fails_in("second", &kubeconfig, &install_second));
    assert!(
        err.contains("exists and cannot be imported into the current release"),
        "{err}"
    );
    let mut take = install_second.to_vec();
    take.extend(["--take-ownership", "--set", "crds.keep=false"]);
    run("second", &take);
    for name in CRDS {
        let crd = crds.get(name).await.expect(name);
        assert_eq!(
            annotation(&crd, "meta.helm.sh/release-name"),
            Some("second")
        );
    }
    // Not kept: helm uninstall deletes them, and every object of them
    // (Helm reads the policy from the release's manifest: the annotation
    // the first release left on the live objects does not count).
    run("second", &["uninstall", "second", "--wait"]);
    wait_for(
        "the CRDs to be deleted",
        Duration::from_secs(60),
        || async {
            for name in CRDS {
                if crds.get_opt(name).await.ok()?.is_some() {
                    return None;
                }
            }
            Some(())
        },
    )
    .await;
}
