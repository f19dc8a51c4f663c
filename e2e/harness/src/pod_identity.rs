//! A ServiceAccount token as a Pod gets it: bound to a Pod object, so the
//! API server's user info carries `authentication.kubernetes.io/pod-name`,
//! which the chart's fence policy compares with the Lease's holder.

use anyhow::{Context, Result};
use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec, ServiceAccount};
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};

/// A Pod object `pod` in `ns` running as ServiceAccount `sa` (created if
/// missing; nothing runs it), and a one-hour token of `sa` bound to it.
pub async fn pod_token(client: &Client, ns: &str, sa: &str, pod: &str) -> Result<String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let object = match pods.get_opt(pod).await.context("get Pod")? {
        Some(p) => p,
        None => {
            let p = Pod {
                metadata: ObjectMeta {
                    name: Some(pod.into()),
                    namespace: Some(ns.into()),
                    ..Default::default()
                },
                spec: Some(PodSpec {
                    service_account_name: Some(sa.into()),
                    containers: vec![Container {
                        name: "operator".into(),
                        image: Some("prefix-operator:test".into()),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                ..Default::default()
            };
            pods.create(&PostParams::default(), &p)
                .await
                .expect("create Pod")
        }
    };
    let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), ns);
    let tr = sas
        .create_token_request(
            sa,
            &PostParams::default(),
            &TokenRequest {
                spec: TokenRequestSpec {
                    audiences: vec![],
                    expiration_seconds: Some(3600),
                    bound_object_ref: Some(BoundObjectReference {
                        api_version: Some("v1".into()),
                        kind: Some("Pod".into()),
                        name: Some(pod.into()),
                        uid: object.metadata.uid.clone(),
                    }),
                },
                ..Default::default()
            },
        )
        .await
        .context("TokenRequest bound to the Pod")?;
    Ok(tr
        .status
        .context("no token in the TokenRequest's status")?
        .token)
}
