//! `/metrics` over HTTPS, as kube-controller-manager serves its own: the
//! operator binary, run with a token of the chart's ServiceAccount (whose
//! RBAC lets it create TokenReviews and SubjectAccessReviews), refuses a
//! scrape with no token or one the API server does not know (401) and one
//! from an identity not allowed to get `/metrics` (403), and serves an
//! identity bound to the chart's `<fullname>-metrics-reader` ClusterRole.
//! `/healthz` and `/readyz` stay plain HTTP for the kubelet, and `/metrics`
//! is not served there.

use prefix_operator_testsupport as support;

use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleRef, Subject};
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use prefix_operator_testenv::{OperatorProcess, http_get, https_get};
use support::helm::install_chart;
use support::*;

const NS: &str = "po-metrics";
const RELEASE: &str = "prefix-operator";
/// Bound to the chart's metrics-reader ClusterRole.
const SCRAPER: &str = "scraper";
/// Authenticated, and bound to nothing.
const STRANGER: &str = "stranger";

async fn create_service_account(client: &Client, name: &str) {
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), NS);
    let sa = ServiceAccount {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        ..Default::default()
    };
    sas.create(&PostParams::default(), &sa)
        .await
        .unwrap_or_else(|e| panic!("create ServiceAccount {name}: {e}"));
}

/// A token of ServiceAccount `name` from the TokenRequest API, as a pod
/// (Prometheus, the operator) gets one.
async fn token(client: &Client, name: &str) -> String {
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), NS);
    let request = TokenRequest {
        spec: TokenRequestSpec {
            audiences: vec![],
            expiration_seconds: Some(3600),
            ..Default::default()
        },
        ..Default::default()
    };
    sas.create_token_request(name, &PostParams::default(), &request)
        .await
        .unwrap_or_else(|e| panic!("TokenRequest for {name}: {e}"))
        .status
        .expect("token status")
        .token
}

/// Waits until the authorizer answers `want` for ServiceAccount `sa` and
/// the attributes of `spec`.
async fn wait_authz(client: &Client, sa: &str, spec: SubjectAccessReviewSpec, want: bool) {
    let api: Api<SubjectAccessReview> = Api::all(client.clone());
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(format!("system:serviceaccount:{NS}:{sa}")),
            groups: Some(vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{NS}"),
                "system:authenticated".into(),
            ]),
            ..spec
        },
        ..Default::default()
    };
    wait_for(
        &format!("{sa} allowed == {want}: {:?}", review.spec),
        Duration::from_secs(30),
        || async {
            let r = api.create(&PostParams::default(), &review).await.ok()?;
            (r.status.is_some_and(|s| s.allowed) == want).then_some(())
        },
    )
    .await;
}

fn may_create(group: &str, resource: &str) -> SubjectAccessReviewSpec {
    SubjectAccessReviewSpec {
        resource_attributes: Some(ResourceAttributes {
            group: Some(group.into()),
            resource: Some(resource.into()),
            verb: Some("create".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn may_get_metrics() -> SubjectAccessReviewSpec {
    SubjectAccessReviewSpec {
        non_resource_attributes: Some(NonResourceAttributes {
            path: Some("/metrics".into()),
            verb: Some("get".into()),
        }),
        ..Default::default()
    }
}

/// The chart installed into `cp`, the scraper bound to its metrics-reader
/// ClusterRole, and the authorizer seen to answer accordingly.
async fn install(cp: &ControlPlane, dir: &std::path::Path) -> Client {
    let client = install_chart(cp, &dir.join("admin.kubeconfig"), NS, RELEASE).await;
    for sa in [SCRAPER, STRANGER] {
        create_service_account(&client, sa).await;
    }
    let binding = ClusterRoleBinding {
        metadata: ObjectMeta {
            name: Some(format!("{NS}-{SCRAPER}")),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: format!("{RELEASE}-metrics-reader"),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: SCRAPER.into(),
            namespace: Some(NS.into()),
            ..Default::default()
        }]),
    };
    Api::<ClusterRoleBinding>::all(client.clone())
        .create(&PostParams::default(), &binding)
        .await
        .expect("bind the scraper to the metrics reader role");
    // The reviews answer from the authorizer's current picture: wait for it
    // to hold the chart's bindings and the scraper's.
    wait_authz(
        &client,
        RELEASE,
        may_create("authentication.k8s.io", "tokenreviews"),
        true,
    )
    .await;
    let sar = may_create("authorization.k8s.io", "subjectaccessreviews");
    wait_authz(&client, RELEASE, sar, true).await;
    wait_authz(&client, SCRAPER, may_get_metrics(), true).await;
    wait_authz(&client, STRANGER, may_get_metrics(), false).await;
    client
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_served_over_https_only_to_readers_the_api_server_allows() {
    let cp = tokio::task::spawn_blocking(|| ControlPlane::start(Options::default()))
        .await
        .expect("join")
        .expect("start control plane");
    let _dump = DumpOnPanic(&cp);
    let dir = tempfile::tempdir().expect("tempdir");
    let client = install(&cp, dir.path()).await;
    let operator_kc = dir.path().join("operator.kubeconfig");
    cp.write_kubeconfig(
        &Identity::Token(token(&client, RELEASE).await),
        &operator_kc,
    )
    .expect("kubeconfig");
    let mut op = OperatorProcess::builder(
        env!("CARGO_BIN_EXE_prefix-operator"),
        &operator_kc,
        dir.path().join("operator.log"),
    )
    .secure_metrics()
    .spawn()
    .expect("start prefix-operator");
    op.wait_ready(Duration::from_secs(30))
        .await
        .unwrap_or_else(|e| panic!("/readyz 200: {e:#}"));

    // Plain HTTP: the probes, and no /metrics.
    let plain = op.http_addr();
    let get = |path: &'static str| async move { http_get(plain, path).await.expect(path).0 };
    assert_eq!(get("/healthz").await, 200);
    assert_eq!(get("/readyz").await, 200);
    assert_eq!(get("/metrics").await, 404, "/metrics over plain HTTP");
    let tls = op.metrics_addr().expect("the HTTPS address");
    assert!(
        !matches!(http_get(tls, "/metrics").await, Ok((200, _))),
        "plain HTTP on the HTTPS port served /metrics"
    );

    let scrape = |token: Option<String>| async move {
        https_get(tls, "/metrics", token.as_deref())
            .await
            .unwrap_or_else(|e| panic!("{e:#}"))
    };
    let (code, body) = scrape(None).await;
    assert_eq!(code, 401, "no token: {body}");
    let (code, body) = scrape(Some("not-a-token".into())).await;
    assert_eq!(code, 401, "a token the API server does not know: {body}");
    let stranger = token(&client, STRANGER).await;
    let (code, body) = scrape(Some(stranger.clone())).await;
    assert_eq!(code, 403, "an identity not allowed to get /metrics: {body}");
    let scraper = token(&client, SCRAPER).await;
    let (code, body) = scrape(Some(scraper.clone())).await;
    assert_eq!(code, 200, "the metrics reader: {body}");
    for line in [
        "prefix_operator_build_info{",
        "prefix_operator_metrics_requests_refused_total{code=\"401\"} 2",
        "prefix_operator_metrics_requests_refused_total{code=\"403\"} 1",
    ] {
        assert!(body.contains(line), "{line} missing from /metrics:\n{body}");
    }
    // Asked again (the cached answers): the same verdicts.
    assert_eq!(scrape(Some(stranger)).await.0, 403);
    assert_eq!(scrape(Some(scraper)).await.0, 200);
    assert_eq!(scrape(None).await.0, 401);
    let log = op.log_text();
    assert!(
        !log.contains("Review for /metrics failed"),
        "a review failed:\n{log}"
    );
}
