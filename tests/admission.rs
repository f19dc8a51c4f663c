//! PrefixPool admission: the CRD's schema and CEL rules refuse bad specs with
//! a clear message, on the real API server. Also keeps the committed CRD in
//! sync with the Rust types.

mod support;

use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use prefix_operator::api::PrefixPool;
use serde_json::json;
use support::*;
use tokio::sync::OnceCell;

async fn client() -> kube::Client {
    static CRD: OnceCell<()> = OnceCell::const_new();
    let client = admin(shared()).await;
    CRD.get_or_init(|| async { install_crd(&client).await })
        .await;
    client
}

async fn try_create(client: &kube::Client, spec: serde_json::Value) -> Result<(), String> {
    let pools: Api<PrefixPool> = Api::all(client.clone());
    let name = unique("adm");
    let obj: PrefixPool = serde_json::from_value(json!({
        "apiVersion": "ipam.prefix-operator.io/v1alpha1",
        "kind": "PrefixPool",
        "metadata": {"name": name},
        "spec": spec,
    }))
    .map_err(|e| format!("client-side decode: {e}"))?;
    match pools.create(&PostParams::default(), &obj).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) => Err(format!("{} {}", s.code, s.message)),
        Err(e) => Err(e.to_string()),
    }
}

/// Specs the API server must refuse, and a phrase the refusal must contain.
fn refused() -> Vec<(&'static str, serde_json::Value, &'static str)> {
    vec![
        (
            "not a CIDR",
            json!({"prefixes": ["banana"]}),
            "must be a CIDR",
        ),
        (
            "host bits set",
            json!({"prefixes": ["2001:db8::1/48"]}),
            "canonical form",
        ),
        (
            "upper-case",
            json!({"prefixes": ["2001:DB8::/48"]}),
            "canonical form",
        ),
        (
            "mixed families",
            json!({"prefixes": ["2001:db8::/48", "10.0.0.0/16"]}),
            "one address family",
        ),
        (
            "overlapping prefixes",
            json!({"prefixes": ["2001:db8::/48", "2001:db8::/56"]}),
            "must not overlap",
        ),
        (
            "duplicate prefixes",
            json!({"prefixes": ["2001:db8::/48", "2001:db8::/48"]}),
            "must not overlap or repeat",
        ),
        (
            "no prefixes",
            json!({"prefixes": []}),
            "should have at least 1 items",
        ),
        (
            "node prefix shorter than the block",
            json!({"prefixes": ["2001:db8::/48"], "nodePrefixLength": 40}),
            "at least the length of every prefix",
        ),
        (
            "default /64 shorter than a /96",
            json!({"prefixes": ["2001:db8::/96"]}),
            "at least the length of every prefix",
        ),
        (
            "node prefix beyond 128",
            json!({"prefixes": ["2001:db8::/48"], "nodePrefixLength": 129}),
            "128",
        ),
        (
            "IPv4 node prefix beyond 32",
            json!({"prefixes": ["10.0.0.0/16"], "nodePrefixLength": 33}),
            "at most 32",
        ),
        (
            "more than 2^64 node prefixes",
            json!({"prefixes": ["2001:db8::/32"], "nodePrefixLength": 128}),
            "at most 2^64",
        ),
        (
            "reserved outside prefixes",
            json!({"prefixes": ["2001:db8::/48"], "reserved": ["2001:db9::/64"]}),
            "inside one of the pool's prefixes",
        ),
        (
            "reserved not a CIDR",
            json!({"prefixes": ["2001:db8::/48"], "reserved": ["first"]}),
            "must be a CIDR",
        ),
        (
            "bad selector operator",
            json!({"prefixes": ["2001:db8::/48"], "nodeSelector": {"matchExpressions": [{"key": "zone", "operator": "Near", "values": ["a"]}]}}),
            "operator must be In",
        ),
        (
            "In without values",
            json!({"prefixes": ["2001:db8::/48"], "nodeSelector": {"matchExpressions": [{"key": "zone", "operator": "In"}]}}),
            "need values",
        ),
        (
            "too many reserved",
            json!({"prefixes": ["2001:db8::/48"], "reserved": (0..300).map(|i| format!("2001:db8:0:{i:x}::/64")).collect::<Vec<_>>()}),
            "must have at most 256 items",
        ),
    ]
}

#[tokio::test]
async fn invalid_pools_are_refused_with_a_clear_message() {
    let client = client().await;
    let mut failures = vec![];
    for (what, spec, phrase) in refused() {
        match try_create(&client, spec.clone()).await {
            Ok(()) => failures.push(format!("{what}: accepted {spec}")),
            Err(msg) if !msg.contains(phrase) => failures.push(format!(
                "{what}: refused, but the message lacks {phrase:?}: {msg}"
            )),
            Err(_) => {}
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn valid_pools_are_accepted() {
    let client = client().await;
    for spec in [
        json!({"prefixes": ["2001:db8:10::/48"]}),
        json!({"prefixes": ["fd00:1234::/32"], "nodePrefixLength": 64}),
        json!({"prefixes": ["2001:db8:20::/48", "2001:db8:21::/48"], "reserved": ["2001:db8:20::/64"], "priority": 5}),
        json!({"prefixes": ["10.64.0.0/16"]}),
        json!({"prefixes": ["2001:db8:30::128/128"], "nodePrefixLength": 128}),
        json!({"prefixes": ["2001:db8:40::/48"], "nodeSelector": {"matchExpressions": [{"key": "zone", "operator": "Exists"}]}}),
    ] {
        try_create(&client, spec.clone())
            .await
            .unwrap_or_else(|e| panic!("{spec} refused: {e}"));
    }
}

#[tokio::test]
async fn node_prefix_length_is_immutable_even_from_unset() {
    let client = client().await;
    let pools: Api<PrefixPool> = Api::all(client.clone());
    let name = unique("immutable");
    create_pool(&client, &name, pool_spec(&["2001:db8:50::/48"])).await;
    let set = pools
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"nodePrefixLength": 56}})),
        )
        .await
        .expect_err("unset -> 56 must be refused");
    assert!(
        set.to_string().contains("nodePrefixLength is immutable"),
        "{set}"
    );

    let name2 = unique("immutable");
    create_pool(
        &client,
        &name2,
        prefix_operator::api::PrefixPoolSpec {
            node_prefix_length: Some(64),
            ..pool_spec(&["2001:db8:51::/48"])
        },
    )
    .await;
    let change = pools
        .patch(
            &name2,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"nodePrefixLength": 60}})),
        )
        .await
        .expect_err("64 -> 60 must be refused");
    assert!(
        change.to_string().contains("nodePrefixLength is immutable"),
        "{change}"
    );
    // Adding a prefix is allowed.
    pools
        .patch(
            &name2,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"prefixes": ["2001:db8:51::/48", "2001:db8:52::/48"]}})),
        )
        .await
        .expect("adding a prefix is allowed");
}

#[tokio::test]
async fn explain_describes_every_spec_field() {
    let cp = shared();
    client().await;
    let kubeconfig = cp.dir().join("explain.kubeconfig");
    cp.write_kubeconfig(&Identity::Admin, &kubeconfig)
        .expect("kubeconfig");
    for field in [
        "prefixes",
        "nodePrefixLength",
        "nodeSelector",
        "reserved",
        "priority",
        "retainFor",
        "reuseAfter",
    ] {
        let explain = || {
            std::process::Command::new(cp.bin("kubectl"))
                .arg("--kubeconfig")
                .arg(&kubeconfig)
                .args(["explain", &format!("prefixpool.spec.{field}")])
                .output()
                .expect("kubectl explain")
        };
        // The OpenAPI document of a new CRD is published a moment after it is
        // Established: wait for kubectl to find it.
        let text = wait_for(
            &format!("kubectl explain prefixpool.spec.{field}"),
            std::time::Duration::from_secs(30),
            || {
                let out = explain();
                async move {
                    out.status
                        .success()
                        .then(|| String::from_utf8_lossy(&out.stdout).to_string())
                }
            },
        )
        .await;
        let desc = text.split("DESCRIPTION:").nth(1).unwrap_or_default().trim();
        assert!(desc.len() > 20, "no description for spec.{field}: {text}");
    }
}

#[test]
fn committed_crd_matches_the_rust_types() {
    let committed = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/crds/prefixpools.ipam.prefix-operator.io.yaml"
    ))
    .expect("committed CRD");
    let generated = prefix_operator::cli::crd_yaml().expect("generate");
    assert!(
        committed == generated,
        "crds/prefixpools.ipam.prefix-operator.io.yaml is stale: run `make crd`"
    );
}
