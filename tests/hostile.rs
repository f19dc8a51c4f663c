//! The catalogue of hostile inputs in tests/data/hostile-inputs.yaml, tried
//! against a running operator: each is refused at admission or reported,
//! and every other pool and Node keeps being served; the operator never
//! stops.

use prefix_operator_testsupport as support;

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
struct ClaimCase {
    name: String,
    spec: Value,
    expect: String,
    #[serde(default)]
    phrase: String,
    status: Option<Value>,
}

#[derive(Deserialize)]
struct ServiceCase {
    name: String,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    status: Option<Value>,
    expect: String,
    #[serde(default)]
    phrase: String,
    #[serde(default)]
    served: bool,
}

#[derive(Deserialize)]
struct Catalogue {
    pools: Vec<PoolCase>,
    nodes: Vec<NodeCase>,
    claims: Vec<ClaimCase>,
    services: Vec<ServiceCase>,
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
    let mut failures: Vec<String> = vec![];
    // Hand-written statuses go in before the operator could act.
    let early = claims_and_services_before_start(&client, &cat, &mut failures).await;
    let op = Operator::default(&client).await;
    create_node(&client, "canary-before", labels(&[]), &[]).await;
    wait_pod_cidrs(&client, "canary-before").await;

    let ar = ApiResource::erase::<PrefixPool>(&());
    let pools: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    let nodes: Api<Node> = Api::all(client.clone());

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
    claims_and_services(&client, &cat, &early, &mut failures).await;
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

/// What was created before the operator started: the healthy-v4 pool and
/// its LoadBalancer claim, the Node a claim's hand-written prefix collides
/// with, and every case with a hand-written status. Returns the names of
/// the claims and Services created.
async fn claims_and_services_before_start(
    client: &kube::Client,
    cat: &Catalogue,
    failures: &mut Vec<String>,
) -> Vec<String> {
    use k8s_openapi::api::core::v1::Service;
    use kube::api::{Patch, PatchParams};
    use prefix_operator::api::PrefixClaim;
    create_pool(
        client,
        "healthy-v4",
        prefix_operator::api::PrefixPoolSpec {
            node_selector: serde_json::from_value(json!({"matchLabels": {"never": "true"}})).ok(),
            ..pool_spec(&["10.77.0.0/16"])
        },
    )
    .await;
    create_node(
        client,
        "claim-victim",
        labels(&[]),
        &["2001:db8:1:ee00::/64"],
    )
    .await;
    let claims: Api<DynamicObject> =
        Api::all_with(client.clone(), &ApiResource::erase::<PrefixClaim>(&()));
    let mut made = vec![];
    let lb: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "ipam.prefix-operator.io/v1alpha1", "kind": "PrefixClaim",
        "metadata": {"name": "healthy-lb"},
        "spec": {"pool": "healthy-v4", "ipFamily": "IPv4", "prefixLength": 28, "purpose": "LoadBalancer"},
    }))
    .expect("claim");
    claims
        .create(&PostParams::default(), &lb)
        .await
        .expect("healthy-lb");
    for c in cat.claims.iter().filter(|c| c.status.is_some()) {
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "ipam.prefix-operator.io/v1alpha1", "kind": "PrefixClaim",
            "metadata": {"name": c.name}, "spec": c.spec,
        }))
        .expect("claim");
        claims
            .create(&PostParams::default(), &obj)
            .await
            .expect("claim with a status");
        let st = json!({"status": c.status});
        if let Err(e) = claims
            .patch_status(&c.name, &PatchParams::default(), &Patch::Merge(&st))
            .await
        {
            failures.push(format!("claim {}: status refused: {e}", c.name));
        }
        made.push(c.name.clone());
    }
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    for c in cat.services.iter().filter(|c| c.status.is_some()) {
        services
            .create(
                &PostParams::default(),
                &lb_service_with(&c.name, &c.annotations),
            )
            .await
            .expect("Service");
        let st = json!({"status": c.status});
        match (
            c.expect.as_str(),
            services
                .patch_status(&c.name, &PatchParams::default(), &Patch::Merge(&st))
                .await,
        ) {
            ("status-refused", Err(kube::Error::Api(s))) if s.message.contains(&c.phrase) => {}
            ("status-refused", r) => failures.push(format!(
                "service {}: status not refused with {:?}: {r:?}",
                c.name, c.phrase
            )),
            (_, Err(e)) => failures.push(format!("service {}: status refused: {e}", c.name)),
            (_, Ok(_)) => {}
        }
        made.push(c.name.clone());
    }
    made
}

/// A LoadBalancer Service of the operator's class with `annotations`.
fn lb_service_with(
    name: &str,
    annotations: &BTreeMap<String, String>,
) -> k8s_openapi::api::core::v1::Service {
    let mut s = lb_service(name);
    s.metadata.annotations = Some(annotations.clone());
    s
}

/// The claims and Services of the catalogue, with the operator running.
async fn claims_and_services(
    client: &kube::Client,
    cat: &Catalogue,
    early: &[String],
    failures: &mut Vec<String>,
) {
    use k8s_openapi::api::core::v1::Service;
    use prefix_operator::api::PrefixClaim;
    let dynamic: Api<DynamicObject> =
        Api::all_with(client.clone(), &ApiResource::erase::<PrefixClaim>(&()));
    let typed: Api<PrefixClaim> = Api::all(client.clone());
    let lb: ipnet::IpNet = wait_for("healthy-lb bound", Duration::from_secs(30), || async {
        typed
            .get_opt("healthy-lb")
            .await
            .ok()
            .flatten()?
            .status?
            .prefix?
            .parse()
            .ok()
    })
    .await;
    for c in cat.claims.iter().filter(|c| !early.contains(&c.name)) {
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "ipam.prefix-operator.io/v1alpha1", "kind": "PrefixClaim",
            "metadata": {"name": c.name}, "spec": c.spec,
        }))
        .expect("claim");
        match (
            c.expect.as_str(),
            dynamic.create(&PostParams::default(), &obj).await,
        ) {
            ("refused", Err(kube::Error::Api(s))) if s.message.contains(&c.phrase) => {}
            ("refused", r) => failures.push(format!(
                "claim {}: not refused with {:?}: {r:?}",
                c.name, c.phrase
            )),
            (_, Err(e)) => failures.push(format!("claim {}: refused: {e}", c.name)),
            (_, Ok(_)) => {}
        }
    }
    for c in cat.claims.iter().filter(|c| c.expect != "refused") {
        let ok = wait_for_opt(&c.name, || async {
            let k = typed.get_opt(&c.name).await.ok().flatten()?;
            let cond = |t: &str| {
                k.status
                    .as_ref()?
                    .conditions
                    .iter()
                    .find(|x| x.type_ == t)
                    .map(|x| (x.status.clone(), x.reason.clone()))
            };
            let good = match c.expect.as_str() {
                "bound" => cond("Ready") == Some(("True".into(), "Claimed".into())),
                "waiting" => cond("Bound") == Some(("False".into(), c.phrase.clone())),
                "invalid-prefix" => cond("Bound") == Some(("False".into(), "InvalidPrefix".into())),
                "conflict" => cond("Ready") == Some(("False".into(), "Conflict".into())),
                other => panic!("unknown expectation {other}"),
            };
            good.then_some(())
        })
        .await;
        if ok.is_none() {
            let st = typed
                .get_opt(&c.name)
                .await
                .ok()
                .flatten()
                .and_then(|k| k.status);
            failures.push(format!(
                "claim {}: expected {} {:?}, status {st:?}",
                c.name, c.expect, c.phrase
            ));
        }
    }

    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    for c in cat.services.iter().filter(|c| !early.contains(&c.name)) {
        let mut ann = c.annotations.clone();
        for v in ann.values_mut() {
            *v = v.replace("CLAIM+0", &lb.network().to_string());
        }
        services
            .create(&PostParams::default(), &lb_service_with(&c.name, &ann))
            .await
            .expect("Service");
    }
    let ingress = |s: &Service| -> Vec<String> {
        s.status
            .as_ref()
            .and_then(|st| st.load_balancer.as_ref())
            .and_then(|l| l.ingress.as_ref())
            .map(|i| i.iter().filter_map(|x| x.ip.clone()).collect())
            .unwrap_or_default()
    };
    for c in cat.services.iter().filter(|c| c.expect != "status-refused") {
        let ok = wait_for_opt(&c.name, || async {
            let s = services.get_opt(&c.name).await.ok().flatten()?;
            let got = ingress(&s);
            let inside = got.len() == 1
                && got[0]
                    .parse()
                    .is_ok_and(|a: std::net::IpAddr| lb.contains(&a));
            let good = match c.expect.as_str() {
                "served" => inside,
                "event" => {
                    let ev = events_for(client, &c.name).await;
                    ev.iter()
                        .any(|e| e.reason.as_deref() == Some(c.phrase.as_str()))
                        && (inside == c.served)
                        && (c.served || got.is_empty())
                }
                "untouched" => {
                    let want: Vec<String> = c
                        .status
                        .as_ref()
                        .map(|st| {
                            st["loadBalancer"]["ingress"]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .filter_map(|i| i["ip"].as_str().map(str::to_string))
                                .collect()
                        })
                        .unwrap_or_default();
                    got == want
                }
                other => panic!("unknown expectation {other}"),
            };
            good.then_some(())
        })
        .await;
        if ok.is_none() {
            let got = services
                .get_opt(&c.name)
                .await
                .ok()
                .flatten()
                .map(|s| ingress(&s));
            failures.push(format!(
                "service {}: expected {} {:?}, ingress {got:?}",
                c.name, c.expect, c.phrase
            ));
        }
    }
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
