//! API errors and a client-side rate limit: a Node whose write is refused by
//! a ValidatingAdmissionPolicy is reported and retried with backoff, the rest
//! proceeds, and nothing is lost once the refusal ends.

use prefix_operator_testsupport as support;

use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use prefix_operator::controller::Settings;
use support::*;

async fn install_deny_policy(client: &kube::Client) {
    let policy: ValidatingAdmissionPolicy = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "deny-podcidr"},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{
                "apiGroups": [""], "apiVersions": ["v1"], "operations": ["UPDATE"], "resources": ["nodes"]
            }]},
            "validations": [{
                "expression": "!has(object.metadata.labels) || !('deny-podcidr' in object.metadata.labels) || !has(object.spec.podCIDRs)",
                "message": "podCIDRs writes are refused on this Node (test policy)"
            }]
        }
    }))
    .expect("policy");
    Api::<ValidatingAdmissionPolicy>::all(client.clone())
        .create(&PostParams::default(), &policy)
        .await
        .expect("create policy");
    let binding: ValidatingAdmissionPolicyBinding = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "deny-podcidr"},
        "spec": {"policyName": "deny-podcidr", "validationActions": ["Deny"]}
    }))
    .expect("binding");
    Api::<ValidatingAdmissionPolicyBinding>::all(client.clone())
        .create(&PostParams::default(), &binding)
        .await
        .expect("create binding");
    // The policy takes effect once the API server's informer has it: probe.
    let nodes: Api<Node> = Api::all(client.clone());
    let mut i = 0;
    wait_for("the policy to refuse a write", Duration::from_secs(30), || {
        i += 1;
        let name = format!("probe-{i}");
        let client = client.clone();
        let nodes = nodes.clone();
        async move {
            create_node(&client, &name, labels(&[("deny-podcidr", "true")]), &[]).await;
            let r = nodes
                .patch(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(serde_json::json!({"spec": {"podCIDR": "fd00:dead::/64", "podCIDRs": ["fd00:dead::/64"]}})),
                )
                .await;
            delete_node(&client, &name).await;
            matches!(r, Err(kube::Error::Api(s)) if s.message.contains("test policy")).then_some(())
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_writes_are_retried_and_a_rate_limit_loses_nothing() {
    let (cp, client) = own_control_plane().await;
    let _d = DumpOnPanic(&cp);
    install_deny_policy(&client).await;
    create_pool(&client, "p", pool_spec(&["2001:db8:d::/48"])).await;

    // The operator talks through a client limited to 20 requests per second.
    let kubeconfig = cp.kubeconfig_yaml(&Identity::Admin).expect("kubeconfig");
    let kc = kube::config::Kubeconfig::from_yaml(&kubeconfig).expect("parse");
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .expect("config");
    let limited = prefix_operator::k8s::client::build_client(config, 20).expect("client");
    let op = Operator::start(
        limited,
        Settings {
            status_interval: Duration::from_millis(200),
            ..Default::default()
        },
    )
    .await;

    create_node(&client, "refused", labels(&[("deny-podcidr", "true")]), &[]).await;
    for i in 0..60 {
        create_node(&client, &format!("ok-{i:02}"), labels(&[]), &[]).await;
    }
    let started = std::time::Instant::now();
    wait_allocated(
        &client,
        Some("!deny-podcidr"),
        Some(60),
        Duration::from_secs(60),
    )
    .await;
    let took = started.elapsed();
    // 61 writes, 60 status writes, events and re-reads at 20/s take seconds, not milliseconds.
    assert!(
        took >= Duration::from_secs(1),
        "the rate limit did not apply: {took:?}"
    );
    // The refusal is reported and retried (with backoff, not in a tight loop).
    wait_for(
        "Invalid errors counted",
        Duration::from_secs(20),
        || async {
            let m = op.metrics.encode();
            m.lines()
                .find(|l| {
                    l.starts_with("prefix_operator_reconcile_errors_total{reason=\"Invalid\"}")
                })
                .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
                .filter(|n| *n >= 2)
        },
    )
    .await;
    let attempts_a = op.metrics.node_writes.get();
    tokio::time::sleep(Duration::from_secs(2)).await; // let the backoff show: a fixed window to count attempts in
    let attempts_b = op.metrics.node_writes.get();
    assert!(
        attempts_b - attempts_a <= 6,
        "{} writes in 2 s: no backoff",
        attempts_b - attempts_a
    );
    assert!(pod_cidrs(&client, "refused").await.is_empty());

    // Lift the refusal: the Node is served without a restart.
    Api::<Node>::all(client.clone())
        .patch(
            "refused",
            &PatchParams::default(),
            &Patch::Merge(serde_json::json!({"metadata": {"labels": {"deny-podcidr": null}}})),
        )
        .await
        .expect("remove label");
    let got = wait_for(
        "the refused Node served",
        Duration::from_secs(60),
        || async {
            let c = pod_cidrs(&client, "refused").await;
            (!c.is_empty()).then_some(c)
        },
    )
    .await;
    assert!(got[0].starts_with("2001:db8:d:"), "{got:?}");
    let all = wait_allocated(&client, None, None, Duration::from_secs(30)).await;
    assert_eq!(all.len(), 61);
    assert_disjoint(&all);
    op.stop().await;
}
