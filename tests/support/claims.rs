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

/// Creates claim `name` and waits (up to `wait`) until it is Ready; its
/// prefix.
pub async fn bound_claim(
    client: &Client,
    name: &str,
    spec: PrefixClaimSpec,
    wait: std::time::Duration,
) -> ipnet::IpNet {
    create_claim(client, name, spec).await;
    let api: kube::Api<PrefixClaim> = kube::Api::all(client.clone());
    super::wait_for(&format!("claim {name} Ready"), wait, || async {
        let st = api.get_opt(name).await.ok().flatten()?.status?;
        let ready = st
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        if ready { st.prefix?.parse().ok() } else { None }
    })
    .await
}

/// An IPv6 ClusterIP Service `name` at `ip` for the pods labelled
/// `app=<app>`, port 80 to 8080.
pub fn cluster_ip_service(name: &str, ip: &str, app: &str) -> Service {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {
            "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv6"],
            "clusterIP": ip, "clusterIPs": [ip],
            "selector": {"app": app},
            "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}],
        },
    }))
    .expect("service")
}

/// An IPv6 LoadBalancer Service `name` of the operator's class,
/// `externalTrafficPolicy: Local`, for the pods labelled `selector`, port
/// 80 to 8080.
pub fn local_lb_service(name: &str, selector: (&str, &str)) -> Service {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {
            "type": "LoadBalancer",
            "loadBalancerClass": prefix_operator::controller::LOAD_BALANCER_CLASS,
            "externalTrafficPolicy": "Local",
            "ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv6"],
            "selector": {selector.0: selector.1},
            "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}],
        },
    }))
    .expect("service")
}

/// A /112 ServiceCIDR claim `services` and a /120 LoadBalancer claim `lb`
/// from pool `pool`, both bound: their prefixes.
pub async fn service_and_lb_claims(
    client: &Client,
    pool: &str,
    wait: std::time::Duration,
) -> (ipnet::IpNet, ipnet::IpNet) {
    use prefix_operator::api::Purpose;
    let spec = |len, purpose| super::claim_spec(pool, len, purpose);
    let services = bound_claim(client, "services", spec(112, Purpose::ServiceCIDR), wait).await;
    let lb = bound_claim(client, "lb", spec(120, Purpose::LoadBalancer), wait).await;
    (services, lb)
}

/// In namespace `ns`: Service `web` (an IPv6 ClusterIP at `cluster_ip`, for
/// `app=web`) and Service `edge` (a Local LoadBalancer of the operator's
/// class, for `edge=yes`); waits (up to `wait`) for edge's address.
pub async fn web_and_edge_services(
    client: &Client,
    ns: &str,
    cluster_ip: &str,
    wait: std::time::Duration,
) -> std::net::IpAddr {
    use kube::api::PostParams;
    let services: kube::Api<Service> = kube::Api::namespaced(client.clone(), ns);
    services
        .create(
            &PostParams::default(),
            &cluster_ip_service("web", cluster_ip, "web"),
        )
        .await
        .expect("ClusterIP Service with an address of the claim");
    services
        .create(
            &PostParams::default(),
            &local_lb_service("edge", ("edge", "yes")),
        )
        .await
        .expect("LoadBalancer Service");
    super::wait_for("the LoadBalancer address", wait, || async {
        let s = services.get_opt("edge").await.ok().flatten()?;
        prefix_operator::k8s::services::ingress_ips(&s)
            .first()
            .copied()
    })
    .await
}
