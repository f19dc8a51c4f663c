//! The catalogue of hostile inputs in tests/data/hostile-inputs.yaml, tried
//! against a running operator: each is refused at admission or reported,
//! and every other pool and Node keeps being served; the operator never
//! stops.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, PostParams};
use prefix_operator::api::PrefixPool;
use serde::Deserialize;
use serde_json::{Value, json};
use support::*;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PoolCase {
    name: String,
    spec: Value,
    expect: String,
    #[serde(default)]
    phrase: String,
    reserved_count: Option<usize>,
    prefix_count: Option<usize>,
    long_prefix: Option<usize>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NodeCase {
    name: String,
    #[serde(default, rename = "podCIDRs")]
    pod_cidrs: Vec<String>,
    expect: String,
    #[serde(default)]
    phrase: String,
    #[serde(default = "one")]
    copies: usize,
    name_length: Option<usize>,
    label_count: Option<usize>,
}

fn one() -> usize {
    1
}

#[derive(Deserialize)]
struct Catalogue {
    pools: Vec<PoolCase>,
    nodes: Vec<NodeCase>,
}

fn pool_spec_of(c: &PoolCase) -> Value {
    let mut spec = c.spec.clone();
    if let Some(n) = c.reserved_count {
        let r: Vec<String> = (0..n)
            .map(|i| format!("2001:db8:ff01:{:x}::/64", i % 65536))
            .collect();
        spec["reserved"] = json!(r);
    }
    if let Some(n) = c.prefix_count {
        let p: Vec<String> = (0..n)
            .map(|i| format!("2001:db8:{:x}::/48", 0x8000 + i))
            .collect();
        spec["prefixes"] = json!(p);
    }
    if let Some(n) = c.long_prefix {
        spec["prefixes"] = json!(["2".repeat(n)]);
    }
    spec
}

fn node_names(c: &NodeCase) -> Vec<String> {
    (0..c.copies)
        .map(|i| match c.name_length {
            Some(len) => {
                let base = format!("{}-{i}-", c.name);
                format!("{base}{}", "x".repeat(len - base.len()))
            }
            None if c.copies > 1 => format!("{}-{i}", c.name),
            None => c.name.clone(),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_inputs_are_refused_or_reported_and_everything_else_is_served() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/hostile-inputs.yaml"
    ))
    .expect("catalogue");
    let cat: Catalogue = serde_yaml::from_str(&text).expect("catalogue parses");
    assert!(
        cat.pools.len() + cat.nodes.len() >= 30,
        "the catalogue holds at least 30 inputs"
    );

    let (cp, client) = own_control_plane().await;
    let _d = DumpOnPanic(&cp);
    create_pool(&client, "healthy", pool_spec(&["2001:db8:1::/48"])).await;
    let op = Operator::default(&client).await;
    create_node(&client, "canary-before", labels(&[]), &[]).await;
    wait_pod_cidrs(&client, "canary-before").await;

    let ar = ApiResource::erase::<PrefixPool>(&());
    let pools: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    let nodes: Api<Node> = Api::all(client.clone());
    let mut failures: Vec<String> = vec![];

    for c in &cat.pools {
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "ipam.prefix-operator.io/v1alpha1",
            "kind": "PrefixPool",
            "metadata": {"name": c.name},
            "spec": pool_spec_of(c),
        }))
        .expect("dynamic object");
        let created = pools.create(&PostParams::default(), &obj).await;
        match (c.expect.as_str(), created) {
            ("refused", Err(kube::Error::Api(s))) if s.message.contains(&c.phrase) => {}
            ("refused", Err(e)) => failures.push(format!(
                "pool {}: refused without {:?}: {e}",
                c.name, c.phrase
            )),
            ("refused", Ok(_)) => failures.push(format!("pool {}: accepted", c.name)),
            (_, Err(e)) => failures.push(format!("pool {}: refused: {e}", c.name)),
            (_, Ok(_)) => {}
        }
    }
    for c in &cat.nodes {
        let mut lbls = BTreeMap::new();
        for i in 0..c.label_count.unwrap_or(0) {
            lbls.insert(format!("example.com/label-{i}"), "x".to_string());
        }
        for name in node_names(c) {
            let node: Node = serde_json::from_value(json!({
                "metadata": {"name": name, "labels": lbls},
                "spec": if c.pod_cidrs.is_empty() { json!({}) } else { json!({"podCIDR": c.pod_cidrs[0], "podCIDRs": c.pod_cidrs}) },
            }))
            .expect("node");
            match (
                c.expect.as_str(),
                nodes.create(&PostParams::default(), &node).await,
            ) {
                ("refused", Err(kube::Error::Api(s))) if s.message.contains(&c.phrase) => {}
                ("refused", Err(e)) => failures.push(format!(
                    "node {}: refused without {:?}: {e}",
                    c.name, c.phrase
                )),
                ("refused", Ok(_)) => failures.push(format!("node {}: accepted", c.name)),
                (_, Err(e)) => failures.push(format!("node {}: refused: {e}", c.name)),
                (_, Ok(_)) => {}
            }
        }
    }

    // Reported or served, as the catalogue says.
    let typed: Api<PrefixPool> = Api::all(client.clone());
    for c in cat.pools.iter().filter(|c| c.expect != "refused") {
        let ok = wait_for_opt(&c.name, || async {
            let p = typed.get(&c.name).await.ok()?;
            let cond = |t: &str| {
                condition(&p, t).map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
            };
            let good = match c.expect.as_str() {
                "invalid" => cond("Ready").is_some_and(|(s, r, m)| {
                    s == "False" && r == "InvalidSpec" && m.contains(&c.phrase)
                }),
                "conflict" => cond("Conflict").is_some_and(|(s, _, _)| s == "True"),
                "exhausted" => {
                    cond("Ready").is_some_and(|(s, _, _)| s == "True")
                        && cond("Exhausted").is_some_and(|(s, _, _)| s == "True")
                }
                "served" => cond("Ready").is_some_and(|(s, _, _)| s == "True"),
                other => panic!("unknown expectation {other}"),
            };
            good.then_some(())
        })
        .await;
        if ok.is_none() {
            let st = typed.get(&c.name).await.ok().and_then(|p| p.status);
            failures.push(format!(
                "pool {}: expected {} ({:?}), status {st:?}",
                c.name, c.expect, c.phrase
            ));
        }
    }
    for c in cat.nodes.iter().filter(|c| c.expect != "refused") {
        for name in node_names(c) {
            let ok = wait_for_opt(&c.name, || async {
                let got = pod_cidrs(&client, &name).await;
                let good = match c.expect.as_str() {
                    "served" => !got.is_empty(),
                    "untouched" => got == c.pod_cidrs,
                    "conflict" => {
                        let p = typed.get("healthy").await.ok()?;
                        got == c.pod_cidrs && p.status?.conflicts.iter().any(|x| x.node == name)
                    }
                    other => panic!("unknown expectation {other}"),
                };
                good.then_some(())
            })
            .await;
            if ok.is_none() {
                failures.push(format!(
                    "node {name}: expected {}, has {:?}",
                    c.expect,
                    pod_cidrs(&client, &name).await
                ));
            }
        }
    }
    // Untouched Nodes stay untouched after the operator had every chance to act.
    create_node(&client, "canary-after", labels(&[]), &[]).await;
    let canary = wait_pod_cidrs(&client, "canary-after").await;
    assert!(canary[0].starts_with("2001:db8:1:"), "{canary:?}");
    for c in cat.nodes.iter().filter(|c| c.expect == "untouched") {
        assert_eq!(
            pod_cidrs(&client, &c.name).await,
            c.pod_cidrs,
            "{} was rewritten",
            c.name
        );
    }
    let healthy = typed.get("healthy").await.expect("healthy");
    assert_eq!(
        condition(&healthy, "Ready").map(|c| c.status.as_str()),
        Some("True")
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    op.stop().await;
}

/// Polls `check` for up to 20 s; `None` when it never held (the caller
/// collects every failure before asserting).
async fn wait_for_opt<F, Fut>(what: &str, check: F) -> Option<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<()>>,
{
    prefix_operator_testenv::poll(
        what,
        Duration::from_secs(20),
        Duration::from_millis(100),
        check,
    )
    .await
    .ok()
}
