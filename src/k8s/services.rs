//! Services at the edge: what the ledger keeps of a Service (only the
//! fields LoadBalancer address assignment reads), and the guarded write of
//! its `status.loadBalancer.ingress`. No decisions are taken here.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde::{Deserialize, Deserializer};

use crate::alloc::Family;
use crate::ledger::{ServiceSnapshot, Wants, parse_resource_version};

/// Annotation naming the addresses a Service asks for, comma separated
/// (one per family); `spec.loadBalancerIP` (deprecated upstream) works too.
pub const REQUESTED_IPS_ANNOTATION: &str = concat!(crate::api_group!(), "/load-balancer-ips");

/// The addresses a Service's `status.loadBalancer.ingress` shows (text that
/// is not an address left out), as readers outside the operator see them.
pub fn ingress_ips(s: &k8s_openapi::api::core::v1::Service) -> Vec<std::net::IpAddr> {
    s.status
        .as_ref()
        .and_then(|st| st.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .map(|i| {
            i.iter()
                .filter_map(|x| x.ip.as_deref()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// A Service as the reconciler reads it: the rest (ports, selectors,
/// managedFields, other writers' annotations) is skipped.
#[derive(Clone, Debug, Default, Deserialize, kube::Resource)]
#[resource(inherit = Service)]
pub struct ServiceLite {
    #[serde(deserialize_with = "lite_meta", default)]
    pub metadata: ObjectMeta,
    #[serde(default)]
    pub spec: Option<LiteSpec>,
    #[serde(default)]
    pub status: Option<LiteStatus>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LiteSpec {
    #[serde(rename = "type")]
    pub type_: Option<String>,
    pub load_balancer_class: Option<String>,
    #[serde(rename = "loadBalancerIP")]
    pub load_balancer_ip: Option<String>,
    pub ip_families: Option<Vec<String>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LiteStatus {
    pub load_balancer: Option<LiteLoadBalancer>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct LiteLoadBalancer {
    pub ingress: Option<Vec<LiteIngress>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct LiteIngress {
    pub ip: Option<String>,
}

fn lite_meta<'de, D: Deserializer<'de>>(d: D) -> Result<ObjectMeta, D::Error> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Lite {
        name: Option<String>,
        namespace: Option<String>,
        uid: Option<String>,
        resource_version: Option<String>,
        #[serde(default, deserialize_with = "super::nodes::own_annotations")]
        annotations: Option<BTreeMap<String, String>>,
        deletion_timestamp: Option<Time>,
    }
    let l = Lite::deserialize(d)?;
    Ok(ObjectMeta {
        name: l.name,
        namespace: l.namespace,
        uid: l.uid,
        resource_version: l.resource_version,
        annotations: l.annotations,
        deletion_timestamp: l.deletion_timestamp,
        ..Default::default()
    })
}

/// Which LoadBalancer Services the operator serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Classes {
    /// `spec.loadBalancerClass` of the Services it serves.
    pub class: String,
    /// Also Services with no class (when no cloud provider serves them).
    pub classless: bool,
}

/// The `namespace/name` key of a Service.
pub fn key_of(meta: &ObjectMeta) -> String {
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default()
    )
}

/// Keeps what the ledger reads.
pub fn snapshot(s: &ServiceLite, classes: &Classes) -> ServiceSnapshot {
    let spec = s.spec.clone().unwrap_or_default();
    let load_balancer = spec.type_.as_deref() == Some("LoadBalancer");
    let ours = load_balancer
        && s.metadata.deletion_timestamp.is_none()
        && match spec.load_balancer_class.as_deref() {
            Some(c) => c == classes.class,
            None => classes.classless,
        };
    let wants = ours.then(|| {
        let mut families: Vec<Family> = spec
            .ip_families
            .iter()
            .flatten()
            .filter_map(|f| match f.as_str() {
                "IPv6" => Some(Family::V6),
                "IPv4" => Some(Family::V4),
                _ => None,
            })
            .collect();
        families.dedup();
        let mut requested: Vec<IpAddr> = spec
            .load_balancer_ip
            .iter()
            .filter(|t| !t.is_empty())
            .filter_map(|t| t.parse().ok())
            .collect();
        if let Some(list) = s
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(REQUESTED_IPS_ANNOTATION))
        {
            requested.extend(
                list.split(',')
                    .filter_map(|t| t.trim().parse::<IpAddr>().ok()),
            );
        }
        requested.sort();
        requested.dedup();
        Wants {
            families,
            requested,
        }
    });
    let ingress = s
        .status
        .as_ref()
        .and_then(|st| st.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .map(|i| {
            i.iter()
                .filter_map(|x| x.ip.as_deref()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    ServiceSnapshot {
        key: key_of(&s.metadata),
        uid: s.metadata.uid.clone().unwrap_or_default(),
        resource_version: parse_resource_version(s.metadata.resource_version.as_deref()),
        load_balancer,
        wants,
        ingress,
    }
}

/// Requested addresses in the annotation that do not parse, for an Event.
pub fn unparsable_requests(s: &ServiceLite) -> Vec<String> {
    let mut bad: Vec<String> = s
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(REQUESTED_IPS_ANNOTATION))
        .map(|list| {
            list.split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty() && t.parse::<IpAddr>().is_err())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if let Some(t) = s
        .spec
        .as_ref()
        .and_then(|sp| sp.load_balancer_ip.as_deref())
        && !t.is_empty()
        && t.parse::<IpAddr>().is_err()
    {
        bad.push(t.to_string());
    }
    bad
}

/// Writes `status.loadBalancer.ingress` (each address with `ipMode: VIP`:
/// kube-proxy answers for it on every Node) onto the state of the Service
/// at `resource_version`, or not at all.
pub async fn write_ingress(
    api: &Api<ServiceLite>,
    name: &str,
    resource_version: &str,
    ips: &[IpAddr],
) -> Result<ServiceLite, kube::Error> {
    let ingress: Vec<serde_json::Value> = ips
        .iter()
        .map(|ip| serde_json::json!({"ip": ip.to_string(), "ipMode": "VIP"}))
        .collect();
    let patch = serde_json::json!({
        "metadata": {"resourceVersion": resource_version},
        "status": {"loadBalancer": {"ingress": ingress}},
    });
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(v: serde_json::Value) -> ServiceLite {
        serde_json::from_value(v).expect("a Service")
    }

    #[test]
    fn only_load_balancers_of_the_class_want_addresses() {
        let classes = Classes {
            class: "ipam.prefix-operator.io/lb".into(),
            classless: false,
        };
        let ours = svc(serde_json::json!({
            "metadata": {"name": "a", "namespace": "ns", "uid": "u", "resourceVersion": "5",
                         "annotations": {REQUESTED_IPS_ANNOTATION: "2001:db8::5, nonsense", "other": "x"}},
            "spec": {"type": "LoadBalancer", "loadBalancerClass": "ipam.prefix-operator.io/lb",
                     "ipFamilies": ["IPv6", "IPv4"], "ports": [{"port": 80}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.1"}, {"hostname": "x"}]}},
        }));
        let s = snapshot(&ours, &classes);
        assert_eq!(s.key, "ns/a");
        let w = s.wants.expect("ours");
        assert_eq!(w.families, vec![Family::V6, Family::V4]);
        assert_eq!(
            w.requested,
            vec!["2001:db8::5".parse::<IpAddr>().expect("ip")]
        );
        assert_eq!(s.ingress, vec!["192.0.2.1".parse::<IpAddr>().expect("ip")]);
        assert_eq!(unparsable_requests(&ours), vec!["nonsense"]);
        // Foreign annotations are not even kept.
        assert_eq!(ours.metadata.annotations.as_ref().map(|a| a.len()), Some(1));

        let classless = svc(serde_json::json!({
            "metadata": {"name": "b", "namespace": "ns"},
            "spec": {"type": "LoadBalancer", "ipFamilies": ["IPv6"]},
        }));
        assert!(snapshot(&classless, &classes).wants.is_none());
        let all = Classes {
            classless: true,
            ..classes.clone()
        };
        assert!(snapshot(&classless, &all).wants.is_some());
        let other = svc(serde_json::json!({
            "metadata": {"name": "c", "namespace": "ns"},
            "spec": {"type": "LoadBalancer", "loadBalancerClass": "metallb"},
        }));
        assert!(snapshot(&other, &all).wants.is_none());
        let cluster_ip = svc(serde_json::json!({
            "metadata": {"name": "d", "namespace": "ns"}, "spec": {"type": "ClusterIP"},
        }));
        let s = snapshot(&cluster_ip, &all);
        assert!(s.wants.is_none() && !s.load_balancer);
    }
}
