//! PrefixClaims and ClusterIP Services in tests: create, wait for a
//! condition as the API server holds it, read the bound prefix.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use prefix_operator::api::{PrefixClaim, PrefixClaimSpec};

use super::wait_for;

pub const WAIT: Duration = Duration::from_secs(30);
/// The API server serves IPv6 ClusterIPs only with an IPv6 service range.
pub const DUAL_STACK_SERVICES: &str = "10.96.0.0/16,fd00:10:96::/108";

pub fn net(s: &str) -> ipnet::IpNet {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

pub async fn create_claim(client: &Client, name: &str, spec: PrefixClaimSpec) -> PrefixClaim {
    let api: Api<PrefixClaim> = Api::all(client.clone());
    api.create(&PostParams::default(), &PrefixClaim::new(name, spec))
        .await
        .unwrap_or_else(|e| panic!("create claim {name}: {e}"))
}

pub fn claim_condition<'a>(
    c: &'a PrefixClaim,
    t: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    c.status.as_ref()?.conditions.iter().find(|x| x.type_ == t)
}

/// Waits until claim `name` satisfies `check` (as the API server holds it).
pub async fn wait_claim(
    client: &Client,
    name: &str,
    what: &str,
    check: impl Fn(&PrefixClaim) -> bool,
) -> PrefixClaim {
    let api: Api<PrefixClaim> = Api::all(client.clone());
    wait_for(&format!("claim {name}: {what}"), WAIT, || async {
        api.get_opt(name).await.ok().flatten().filter(|c| check(c))
    })
    .await
}

pub fn ready_reason(c: &PrefixClaim) -> Option<(String, String)> {
    claim_condition(c, "Ready").map(|r| (r.status.clone(), r.reason.clone()))
}

pub fn is(c: &PrefixClaim, status: &str, reason: &str) -> bool {
    ready_reason(c) == Some((status.into(), reason.into()))
}

pub fn prefix_of(c: &PrefixClaim) -> ipnet::IpNet {
    net(c
        .status
        .as_ref()
        .and_then(|s| s.prefix.as_deref())
        .expect("bound"))
}

/// A ClusterIP Service asking for `ip` (IPv6, single-stack).
pub async fn create_service(client: &Client, name: &str, ip: &str) -> Result<Service, kube::Error> {
    let api: Api<Service> = Api::namespaced(client.clone(), "default");
    let svc = Service {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            cluster_ip: Some(ip.into()),
            cluster_ips: Some(vec![ip.into()]),
            ip_families: Some(vec!["IPv6".into()]),
            ip_family_policy: Some("SingleStack".into()),
            ports: Some(vec![ServicePort {
                port: 80,
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    };
    api.create(&PostParams::default(), &svc).await
}
