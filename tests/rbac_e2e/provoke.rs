//! How `rbac_e2e` makes the operator need each permission of the chart:
//! for every (group, resource, verb), a run of the operator that cannot
//! do its job without it, and the log line that names what it lacks.

use std::time::Duration;

use k8s_openapi::api::admissionregistration::v1::{
    ValidatingAdmissionPolicy, ValidatingAdmissionPolicyBinding,
};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::Node;
use kube::api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use prefix_operator::api::{
    CLAIM_FINALIZER, PrefixClaim, PrefixClaimSpec, PrefixPool, PrefixPoolSpec, Purpose,
};
use serde_json::json;

use super::support::rbac::Case;
use super::support::*;
use super::{Env, IDENTITY, LEASE, NS, REPORT_TIMEOUT, create_plain_node, events_about};
use super::{pool_status, wait_line};

/// Events go through kube-runtime's Recorder, whose failures are logged at
/// debug only (src/controller/events.rs).
const EVENTS_LOG: &str = "info,prefix_operator::controller::events=debug";

/// Runs the operator so that it needs `case`'s permission, and returns the
/// log line that names it.
pub async fn provoke(env: &Env, case: &Case, needle: &str) -> String {
    let client = &env.client;
    match (
        case.group.as_str(),
        case.resource.as_str(),
        case.verb.as_str(),
    ) {
        ("ipam.prefix-operator.io", "prefixpools", "list") => {
            start_up_check(env, "prefixpools", needle).await
        }
        ("ipam.prefix-operator.io", "prefixclaims", "list") => {
            start_up_check(env, "prefixclaims", needle).await
        }
        // These watches start with the operator.
        ("ipam.prefix-operator.io", "prefixclaims", "watch")
        | ("networking.k8s.io", "servicecidrs", "list" | "watch")
        | ("networking.k8s.io", "ipaddresses", "list" | "watch")
        | ("", "services", "list" | "watch") => run_until(env, "info", needle).await,
        // A new claim: the operator puts its finalizer on it.
        ("ipam.prefix-operator.io", "prefixclaims", "patch") => {
            with_claim(env, needle, Purpose::Static, &[], false).await
        }
        // A claim that has the finalizer already: the bind is a status
        // write.
        ("ipam.prefix-operator.io", "prefixclaims/status", "patch") => {
            with_claim(env, needle, Purpose::Static, &[CLAIM_FINALIZER], false).await
        }
        // A ServiceCIDR claim: its ServiceCIDR is created.
        ("networking.k8s.io", "servicecidrs", "create") => {
            with_claim(env, needle, Purpose::ServiceCIDR, &[], false).await
        }
        // A ServiceCIDR claim deleted: its ServiceCIDR is deleted, then
        // (drained) the operator's finalizer is taken off it.
        ("networking.k8s.io", "servicecidrs", "delete" | "patch") => {
            with_claim(env, needle, Purpose::ServiceCIDR, &[], true).await
        }
        // Watches, the pool check before a write (a list of pools), the
        // node write, the status write and the Lease: the fresh Node of this
        // round gives the operator something to write.
        ("", "nodes", "list" | "watch" | "patch")
        | ("ipam.prefix-operator.io", "prefixpools", "watch")
        | ("ipam.prefix-operator.io", "prefixpools/status", "patch")
        | ("coordination.k8s.io", "leases", "get") => run_until(env, "info", needle).await,
        ("coordination.k8s.io", "leases", "create") => {
            let leases: Api<Lease> = Api::namespaced(client.clone(), NS);
            let _ = leases.delete(LEASE, &DeleteParams::default()).await;
            run_until(env, "info", needle).await
        }
        ("coordination.k8s.io", "leases", "update") => {
            ensure_lease(client).await;
            run_until(env, "info", needle).await
        }
        ("", "nodes", "get") => refused_write(env, needle).await,
        // A fresh LoadBalancer Service: its address is a status write.
        ("", "services/status", "patch") => {
            super::ensure_lb_claim(client).await;
            let name = format!("rbac-lb-{}", next_claim());
            super::create_lb_service(client, &name).await;
            run_until(env, "info", needle).await
        }
        // The fresh Node's PrefixAllocated Event.
        ("events.k8s.io", "events", "create") => run_until(env, EVENTS_LOG, needle).await,
        ("events.k8s.io", "events", "patch") => repeated_event(env, needle).await,
        _ => panic!(
            "{}: no way to show that the operator needs this permission; give it one here, or drop the verb from the chart",
            case.label()
        ),
    }
}

/// Starts the operator and waits for `needle` in its log.
async fn run_until(env: &Env, rust_log: &str, needle: &str) -> String {
    let mut op = env.operator(rust_log);
    wait_line(&mut op, &[needle]).await
}

/// The start-up check: the operator stops with a message and exit 1.
async fn start_up_check(env: &Env, resource: &str, needle: &str) -> String {
    let mut op = env.operator("info");
    let status = op
        .wait_exit(REPORT_TIMEOUT)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(
        status.code(),
        Some(1),
        "exit status without list on {resource}"
    );
    let said = format!("error: not allowed to list {resource}");
    wait_line(&mut op, &[said.as_str(), needle]).await
}

/// Runs the operator with a fresh claim of `purpose` (carrying
/// `finalizers` from the start) and waits for `needle`. With `delete`, the
/// claim is deleted once this run has served it (bound, ServiceCIDR
/// created): the permission taken away is one of the deletion path only.
async fn with_claim(
    env: &Env,
    needle: &str,
    purpose: Purpose,
    finalizers: &[&str],
    delete: bool,
) -> String {
    let client = &env.client;
    let claims: Api<PrefixClaim> = Api::all(client.clone());
    let name = format!(
        "rbac-claim-{}",
        std::process::id() as u64 * 1000 + next_claim()
    );
    let mut claim = PrefixClaim::new(
        &name,
        PrefixClaimSpec {
            pool: Some(super::POOL.into()),
            pool_selector: None,
            ip_family: Default::default(),
            prefix_length: 112,
            purpose,
        },
    );
    claim.metadata.finalizers = Some(finalizers.iter().map(|f| f.to_string()).collect());
    claims
        .create(&PostParams::default(), &claim)
        .await
        .expect("create claim");
    let mut op = env.operator("info");
    if delete {
        wait_for("the claim served", REPORT_TIMEOUT, || async {
            let c = claims.get_opt(&name).await.ok().flatten()?;
            let ready = c
                .status
                .as_ref()?
                .conditions
                .iter()
                .any(|x| x.type_ == "Ready" && x.status == "True");
            ready.then_some(())
        })
        .await;
        claims
            .delete(&name, &DeleteParams::default())
            .await
            .expect("delete claim");
    }
    wait_line(&mut op, &[needle]).await
}

fn next_claim() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::SeqCst)
}

/// A write refused as Invalid makes the operator read the Node back.
async fn refused_write(env: &Env, needle: &str) -> String {
    let client = &env.client;
    let node = "rbac-refused";
    create_plain_node(client, node).await;
    refuse_writes_to(client, node).await;
    let line = run_until(env, "info", needle).await;
    stop_refusing(client).await;
    delete_node(client, node).await;
    line
}

/// The Recorder patches an Event that repeats (same object, reason and
/// action): a Node inside a reserved range is reported, the range is
/// dropped (conflict gone), and put back (reported again).
async fn repeated_event(env: &Env, needle: &str) -> String {
    let client = &env.client;
    let pool = "rbac-conflict";
    let node = "rbac-conflicted";
    create_pool(
        client,
        pool,
        PrefixPoolSpec {
            prefixes: vec!["fd00:e2e::/48".into()],
            reserved: vec!["fd00:e2e::/56".into()],
            ..Default::default()
        },
    )
    .await;
    create_node(client, node, labels(&[]), &["fd00:e2e::/64"]).await;
    let mut op = env.operator(EVENTS_LOG);
    wait_pool(client, pool, "the Node listed in conflict", |p| {
        lists_conflict(p, node)
    })
    .await;
    wait_for("the first PrefixConflict Event", REPORT_TIMEOUT, || async {
        (!events_about(client, node, "PrefixConflict")
            .await
            .is_empty())
        .then_some(())
    })
    .await;
    set_reserved(client, pool, &[]).await;
    wait_pool(client, pool, "the conflict gone", |p| {
        !lists_conflict(p, node)
    })
    .await;
    set_reserved(client, pool, &["fd00:e2e::/56"]).await;
    let line = wait_line(&mut op, &[needle]).await;
    drop(op);
    delete_node(client, node).await;
    let pools: Api<PrefixPool> = Api::all(client.clone());
    pools
        .delete(pool, &DeleteParams::default())
        .await
        .expect("delete pool");
    line
}

async fn set_reserved(client: &Client, pool: &str, reserved: &[&str]) {
    let pools: Api<PrefixPool> = Api::all(client.clone());
    pools
        .patch(
            pool,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"reserved": reserved}})),
        )
        .await
        .expect("patch pool");
}

fn lists_conflict(p: &PrefixPool, node: &str) -> bool {
    pool_status(p)["conflicts"]
        .as_array()
        .is_some_and(|c| c.iter().any(|e| e["node"] == node))
}

/// Makes sure the Lease exists, held by this test's identity.
async fn ensure_lease(client: &Client) {
    let leases: Api<Lease> = Api::namespaced(client.clone(), NS);
    if leases.get_opt(LEASE).await.expect("get Lease").is_some() {
        return;
    }
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
        k8s_openapi::jiff::Timestamp::now(),
    );
    leases
        .create(
            &PostParams::default(),
            &Lease {
                metadata: ObjectMeta {
                    name: Some(LEASE.into()),
                    namespace: Some(NS.into()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(IDENTITY.into()),
                    lease_duration_seconds: Some(15),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    ..Default::default()
                }),
            },
        )
        .await
        .expect("create Lease");
}

/// Makes the API server refuse, as Invalid (422), every update of Node
/// `node`: the operator's write is refused, so it re-reads the Node (get).
async fn refuse_writes_to(client: &Client, node: &str) {
    let policies: Api<ValidatingAdmissionPolicy> = Api::all(client.clone());
    let bindings: Api<ValidatingAdmissionPolicyBinding> = Api::all(client.clone());
    let policy: ValidatingAdmissionPolicy = serde_json::from_value(json!({
        "metadata": {"name": "rbac-e2e-refuse-node"},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{
                "apiGroups": [""], "apiVersions": ["v1"], "operations": ["UPDATE"], "resources": ["nodes"]
            }]},
            "matchConditions": [{"name": "that-node", "expression": format!("object.metadata.name == '{node}'")}],
            "validations": [{"expression": "false", "message": "rbac-e2e refuses writes to this Node", "reason": "Invalid"}]
        }
    }))
    .expect("policy");
    let binding: ValidatingAdmissionPolicyBinding = serde_json::from_value(json!({
        "metadata": {"name": "rbac-e2e-refuse-node"},
        "spec": {"policyName": "rbac-e2e-refuse-node", "validationActions": ["Deny"]}
    }))
    .expect("binding");
    policies
        .create(&PostParams::default(), &policy)
        .await
        .expect("create policy");
    bindings
        .create(&PostParams::default(), &binding)
        .await
        .expect("create binding");
    wait_refused(client, node).await;
}

/// The policy is active once a dry-run update of the Node is refused.
async fn wait_refused(client: &Client, node: &str) {
    let nodes: Api<Node> = Api::all(client.clone());
    wait_for(
        "the admission policy to refuse writes",
        Duration::from_secs(30),
        || async {
            let p = PatchParams {
                dry_run: true,
                ..Default::default()
            };
            match nodes
                .patch(
                    node,
                    &p,
                    &Patch::Merge(json!({"metadata": {"labels": {"probe": "x"}}})),
                )
                .await
            {
                Err(kube::Error::Api(s)) if s.code == 422 => Some(()),
                _ => None,
            }
        },
    )
    .await;
}

async fn stop_refusing(client: &Client) {
    let policies: Api<ValidatingAdmissionPolicy> = Api::all(client.clone());
    let bindings: Api<ValidatingAdmissionPolicyBinding> = Api::all(client.clone());
    bindings
        .delete("rbac-e2e-refuse-node", &DeleteParams::default())
        .await
        .expect("delete binding");
    policies
        .delete("rbac-e2e-refuse-node", &DeleteParams::default())
        .await
        .expect("delete policy");
}
