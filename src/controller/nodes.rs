//! Node I/O: what the ledger keeps of a Node, and the guarded podCIDRs write.

use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::{Patch, PatchParams};

use crate::alloc::Family;
use crate::ledger::NodeSnapshot;

/// Field manager of the podCIDRs writes.
pub const NODE_MANAGER: &str = "prefix-operator";

/// Keeps only the fields the ledger reads; the rest of the Node (status,
/// images, managedFields) is dropped at once so memory does not grow with it.
pub fn snapshot(node: &Node) -> Option<NodeSnapshot> {
    let name = node.metadata.name.clone()?;
    let spec = node.spec.as_ref();
    let mut pod_cidrs: Vec<String> = spec.and_then(|s| s.pod_cidrs.clone()).unwrap_or_default();
    if pod_cidrs.is_empty()
        && let Some(one) = spec.and_then(|s| s.pod_cidr.clone())
        && !one.is_empty()
    {
        pod_cidrs.push(one);
    }
    let mut address_families: Vec<Family> = internal_ips(node)
        .map(|ip| if ip.is_ipv6() { Family::V6 } else { Family::V4 })
        .collect();
    address_families.sort();
    address_families.dedup();
    Some(NodeSnapshot {
        address_families,
        name,
        uid: node.metadata.uid.clone().unwrap_or_default(),
        labels: node.metadata.labels.clone().unwrap_or_default(),
        pod_cidrs,
        deleting: node.metadata.deletion_timestamp.is_some(),
    })
}

/// The Node's InternalIP addresses (the next hops for its prefixes).
pub fn internal_ips(node: &Node) -> impl Iterator<Item = std::net::IpAddr> + '_ {
    node.status
        .as_ref()
        .and_then(|s| s.addresses.as_ref())
        .into_iter()
        .flatten()
        .filter(|a| a.type_ == "InternalIP")
        .filter_map(|a| a.address.parse().ok())
}

/// The JSON patch that writes `cidrs` (canonical text, in order) into
/// `spec.podCIDR` and `spec.podCIDRs` in one request. The `test` of the UID
/// keeps it from landing on a Node re-created under the same name; the API
/// server's write-once rule keeps it from replacing a value someone else
/// wrote meanwhile.
pub fn pod_cidrs_patch(uid: &str, cidrs: &[String]) -> serde_json::Value {
    serde_json::json!([
        { "op": "test", "path": "/metadata/uid", "value": uid },
        { "op": "add", "path": "/spec/podCIDR", "value": cidrs.first() },
        { "op": "add", "path": "/spec/podCIDRs", "value": cidrs },
    ])
}

/// Writes the prefixes; returns the Node as stored.
pub async fn write_pod_cidrs(
    api: &Api<Node>,
    name: &str,
    uid: &str,
    cidrs: &[String],
) -> Result<Node, kube::Error> {
    let patch: json_patch::Patch =
        serde_json::from_value(pod_cidrs_patch(uid, cidrs)).map_err(kube::Error::SerdeError)?;
    api.patch(
        name,
        &PatchParams {
            field_manager: Some(NODE_MANAGER.into()),
            ..Default::default()
        },
        &Patch::<()>::Json(patch),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_reads_pod_cidr_when_list_is_empty() {
        let mut n = Node::default();
        n.metadata.name = Some("a".into());
        n.spec = Some(k8s_openapi::api::core::v1::NodeSpec {
            pod_cidr: Some("10.0.0.0/24".into()),
            ..Default::default()
        });
        let s = snapshot(&n).expect("named");
        assert_eq!(s.pod_cidrs, vec!["10.0.0.0/24".to_string()]);
        assert!(snapshot(&Node::default()).is_none());
    }

    #[test]
    fn patch_sets_both_fields() {
        let p = pod_cidrs_patch("u1", &["2001:db8::/64".into(), "10.0.0.0/24".into()]);
        assert_eq!(p[0]["value"], "u1");
        assert_eq!(p[1]["value"], "2001:db8::/64");
        assert_eq!(p[2]["value"][1], "10.0.0.0/24");
    }
}
