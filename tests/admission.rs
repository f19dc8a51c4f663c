//! PrefixPool admission: the CRD's schema and CEL rules refuse bad specs with
//! a clear message, on the real API server, and agree with the operator's
//! own parser on durations. Also keeps the committed CRD in sync with the
//! Rust types.

use prefix_operator_testsupport as support;

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
    try_create_named(client, &unique("adm"), spec).await
}

async fn try_create_named(
    client: &kube::Client,
    name: &str,
    spec: serde_json::Value,
) -> Result<(), String> {
    let pools: Api<PrefixPool> = Api::all(client.clone());
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
            "give exactly one of them",
        ),
        (
            "no prefixes and no delegation",
            json!({"priority": 1}),
            "give exactly one of them",
        ),
        (
            "prefixes and a delegation",
            json!({"prefixes": ["2001:db8::/48"], "delegation": {"interface": "eth1"}}),
            "give exactly one of them",
        ),
        (
            "delegation with reserved ranges",
            json!({"delegation": {"interface": "eth1"}, "reserved": ["2001:db8::/64"]}),
            "reserved ranges need spec.prefixes",
        ),
        (
            "delegation hint longer than the node prefixes",
            json!({"delegation": {"interface": "eth1", "prefixLength": 72}}),
            "delegation.prefixLength must be at most nodePrefixLength",
        ),
        (
            "delegation on no interface",
            json!({"delegation": {"interface": ""}}),
            "should be at least 1 chars long",
        ),
        (
            "delegation on a path",
            json!({"delegation": {"interface": "../eth1"}}),
            "must be a network interface name",
        ),
        (
            "delegation on a name too long for Linux",
            json!({"delegation": {"interface": "an-interface-name-too-long"}}),
            "may not be more than 15",
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
        json!({"prefixes": ["2001:db8:41::/48"], "retainFor": "1m30s", "reuseAfter": "1.5s"}),
        json!({"prefixes": ["2001:db8:42::/48"], "retainFor": "1h", "reuseAfter": "500ms"}),
        json!({"delegation": {"interface": "eth1"}}),
        json!({"delegation": {"interface": "wan0", "prefixLength": 56}, "nodePrefixLength": 64}),
        json!({"delegation": {"interface": "eth1.100", "prefixLength": 60}, "nodePrefixLength": 62}),
    ] {
        try_create(&client, spec.clone())
            .await
            .unwrap_or_else(|e| panic!("{spec} refused: {e}"));
    }
}

/// What the API server says of `retainFor` or `reuseAfter` set to `text`
/// (a dry run: nothing is stored).
async fn admits_duration(client: &kube::Client, field: &str, text: &str) -> Result<(), String> {
    let pools: Api<PrefixPool> = Api::all(client.clone());
    let obj: PrefixPool = serde_json::from_value(json!({
        "apiVersion": "ipam.prefix-operator.io/v1alpha1",
        "kind": "PrefixPool",
        "metadata": {"name": unique("dur")},
        "spec": {"prefixes": ["2001:db8:60::/48"], field: text},
    }))
    .expect("decodes");
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    match pools.create(&dry_run, &obj).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) => Err(format!("{} {}", s.code, s.message)),
        Err(e) => panic!("creating a pool with {field}={text:?}: {e}"),
    }
}

/// What the operator says of the same spec.
fn operator_accepts(field: &str, text: &str) -> Result<(), String> {
    let spec = match field {
        "retainFor" => prefix_operator::api::PrefixPoolSpec {
            retain_for: Some(text.into()),
            ..pool_spec(&["2001:db8:60::/48"])
        },
        _ => prefix_operator::api::PrefixPoolSpec {
            reuse_after: Some(text.into()),
            ..pool_spec(&["2001:db8:60::/48"])
        },
    };
    prefix_operator::api::validate_spec(&spec)
        .map(drop)
        .map_err(|e| e.0)
}

/// The CRD's CEL rules and the operator's parser read durations by one
/// grammar: the same texts pass both, and the same texts fail both.
#[tokio::test]
async fn durations_mean_the_same_to_the_api_server_and_the_operator() {
    let client = client().await;
    let accepted = [
        "90s", "1h", "1m30s", "1.5s", "500ms", "1h30m", "24h", "0", "0s", "0.5ms", "1s1h", "87840h",
    ];
    let refused = [
        ("", "must be a duration"),
        ("soon", "must be a duration"),
        ("forever", "must be a duration"),
        ("5", "must be a duration"),
        ("1m30", "must be a duration"),
        ("1.5", "must be a duration"),
        ("-1s", "must be a duration"),
        ("+1s", "must be a duration"),
        ("5d", "must be a duration"),
        ("5H", "must be a duration"),
        ("5sec", "must be a duration"),
        ("1us", "must be a duration"),
        ("1µs", "must be a duration"),
        ("1ns", "must be a duration"),
        (".5s", "must be a duration"),
        ("5.s", "must be a duration"),
        (" 5s", "must be a duration"),
        ("5s ", "must be a duration"),
        ("1h 30m", "must be a duration"),
        ("87840h1ms", "must be at most 87840h"),
        ("87841h", "must be at most 87840h"),
        ("99999999h", "must be at most 87840h"),
        ("99999999999999999999h", "must be at most 87840h"),
        ("9999999999999999999999999999999h", "must be at most 87840h"),
    ];
    let mut failures = vec![];
    for field in ["retainFor", "reuseAfter"] {
        for text in accepted {
            if let Err(e) = admits_duration(&client, field, text).await {
                failures.push(format!("{field}={text:?}: the API server refused: {e}"));
            }
            if let Err(e) = operator_accepts(field, text) {
                failures.push(format!("{field}={text:?}: the operator refused: {e}"));
            }
        }
        for (text, phrase) in refused {
            match admits_duration(&client, field, text).await {
                Ok(()) => failures.push(format!("{field}={text:?}: the API server accepted")),
                Err(e) if !e.contains(phrase) => failures.push(format!(
                    "{field}={text:?}: the API server's refusal lacks {phrase:?}: {e}"
                )),
                Err(_) => {}
            }
            match operator_accepts(field, text) {
                Ok(()) => failures.push(format!("{field}={text:?}: the operator accepted")),
                Err(e) if !e.contains("is not a duration") => failures.push(format!(
                    "{field}={text:?}: the operator's refusal lacks \"is not a duration\": {e}"
                )),
                Err(_) => {}
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Near-misses of the grammar, generated: the API server and the operator
/// accept exactly the same ones.
#[tokio::test]
async fn generated_duration_texts_get_one_verdict() {
    use proptest::strategy::{Strategy, ValueTree};
    let client = client().await;
    let texts = "[0-9.hmsuµnd +-]{0,7}|([0-9]{1,3}([.][0-9]{0,2})?(h|m|s|ms|us|d)?){1,3}";
    let strategy = proptest::string::string_regex(texts).expect("regex");
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut disagreements = vec![];
    let mut seen = std::collections::BTreeSet::new();
    let mut accepted = 0;
    for _ in 0..300 {
        let text = strategy.new_tree(&mut runner).expect("value").current();
        if !seen.insert(text.clone()) {
            continue;
        }
        let server = admits_duration(&client, "retainFor", &text).await;
        let operator = operator_accepts("retainFor", &text);
        accepted += usize::from(operator.is_ok());
        if server.is_ok() != operator.is_ok() {
            disagreements.push(format!(
                "{text:?}: API server {server:?}, operator {operator:?}"
            ));
        }
    }
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
    assert!(
        accepted > 20 && accepted + 20 < seen.len(),
        "{accepted} of {} accepted: the sample should hold both",
        seen.len()
    );
}

/// A pool's source is chosen at creation: spec.prefixes cannot become a
/// delegation, nor the other way round.
#[tokio::test]
async fn a_pools_source_is_fixed_at_creation() {
    let client = client().await;
    let pools: Api<PrefixPool> = Api::all(client.clone());
    let name = unique("source");
    create_pool(&client, &name, pool_spec(&["2001:db8:53::/48"])).await;
    let e = pools
        .patch(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"prefixes": [], "delegation": {"interface": "eth1"}}})),
        )
        .await
        .expect_err("static -> delegated must be refused");
    assert!(e.to_string().contains("fixed at creation"), "{e}");
    let name2 = unique("source");
    try_create_named(
        &client,
        &name2,
        json!({"delegation": {"interface": "eth1"}}),
    )
    .await
    .expect("a delegated pool");
    let e = pools
        .patch(
            &name2,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"delegation": null, "prefixes": ["2001:db8:54::/48"]}})),
        )
        .await
        .expect_err("delegated -> static must be refused");
    assert!(e.to_string().contains("fixed at creation"), "{e}");
    // The interface may change (the operator moved to another host port).
    pools
        .patch(
            &name2,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"delegation": {"interface": "eth2"}}})),
        )
        .await
        .expect("a new interface");
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
fn committed_crds_match_the_rust_types() {
    use prefix_operator::cli::CrdKind;
    for kind in CrdKind::ALL {
        let file = kind.file_name();
        // The chart's templates/crds/: tests/chart/sync.rs.
        let path = format!("{}/crds/{file}", env!("CARGO_MANIFEST_DIR"));
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        let generated = prefix_operator::cli::crd_yaml(Some(kind)).expect("generate");
        assert!(
            committed == generated,
            "crds/{file} is stale or missing: run `make crd manifests`"
        );
    }
}

/// `status.conditions` of both kinds is a map keyed by `type`: with
/// server-side apply, each field manager owns the conditions it applies and
/// leaves the others' alone (an atomic list would be replaced whole).
#[tokio::test]
async fn each_field_manager_owns_its_own_conditions() {
    use prefix_operator::api::PrefixClaim;
    let client = client().await;
    let pool = unique("cond");
    try_create_named(&client, &pool, json!({"prefixes": ["2001:db8:77::/48"]}))
        .await
        .expect("pool");
    let claims: Api<PrefixClaim> = Api::all(client.clone());
    let claim = unique("cond");
    let obj: PrefixClaim = serde_json::from_value(json!({
        "apiVersion": "ipam.prefix-operator.io/v1alpha1",
        "kind": "PrefixClaim",
        "metadata": {"name": claim},
        "spec": {"pool": pool, "prefixLength": 64, "purpose": "Static"},
    }))
    .expect("claim");
    claims
        .create(&PostParams::default(), &obj)
        .await
        .expect("claim");
    let condition = |t: &str| {
        json!({"type": t, "status": "True", "reason": "Test", "message": t,
               "lastTransitionTime": "2026-01-01T00:00:00Z"})
    };
    let apply = |kind: &'static str, name: String, manager: &'static str, types: Vec<&str>| {
        let client = client.clone();
        let body = json!({
            "apiVersion": "ipam.prefix-operator.io/v1alpha1",
            "kind": kind,
            "metadata": {"name": name},
            "status": {"conditions": types.iter().map(|t| condition(t)).collect::<Vec<_>>()},
        });
        async move {
            let params = PatchParams::apply(manager).force();
            let status = match kind {
                "PrefixPool" => Api::<PrefixPool>::all(client)
                    .patch_status(&name, &params, &Patch::Apply(&body))
                    .await
                    .map(|p| p.status.map(|s| s.conditions)),
                _ => Api::<PrefixClaim>::all(client)
                    .patch_status(&name, &params, &Patch::Apply(&body))
                    .await
                    .map(|c| c.status.map(|s| s.conditions)),
            };
            let mut types: Vec<String> = status
                .unwrap_or_else(|e| panic!("{kind} {name}: apply as {manager}: {e}"))
                .unwrap_or_default()
                .into_iter()
                .map(|c| c.type_)
                .collect();
            types.sort();
            types
        }
    };
    for (kind, name) in [("PrefixPool", pool), ("PrefixClaim", claim)] {
        assert_eq!(
            apply(kind, name.clone(), "writer-a", vec!["Ready"]).await,
            ["Ready"]
        );
        assert_eq!(
            apply(kind, name.clone(), "writer-b", vec!["Delegated"]).await,
            ["Delegated", "Ready"],
            "{kind}: b's apply removed a's condition"
        );
        assert_eq!(
            apply(kind, name.clone(), "writer-a", vec![]).await,
            ["Delegated"],
            "{kind}: a's empty apply must drop only a's condition"
        );
    }
}
