//! Node I/O: what the ledger keeps of a Node, and the guarded podCIDRs write.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, NodeAddress};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::Api;
use kube::api::{Patch, PatchParams};
use serde::{Deserialize, Deserializer};

use crate::alloc::Family;
use crate::ledger::{NodeSnapshot, parse_resource_version};

/// Field manager of the podCIDRs writes.
pub const NODE_MANAGER: &str = "prefix-operator";

/// A Node as the reconciler reads it from watches, lists and write answers:
/// only the fields it uses are decoded. The rest — managedFields, images,
/// conditions, annotations — is skipped by the JSON parser without being
/// built, which is most of a real Node's bytes.
#[derive(Clone, Debug, Default, Deserialize, kube::Resource)]
#[resource(inherit = Node)]
pub struct NodeLite {
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
    #[serde(rename = "podCIDR")]
    pub pod_cidr: Option<String>,
    #[serde(rename = "podCIDRs")]
    pub pod_cidrs: Option<Vec<String>>,
}

#[derive(Clone, Debug, Default, Deserialize)]
pub struct LiteStatus {
    pub addresses: Option<Vec<NodeAddress>>,
}

/// The metadata fields the reconciler and the watcher use (the watcher
/// resumes from `resourceVersion`; Events refer to name and uid).
fn lite_meta<'de, D: Deserializer<'de>>(d: D) -> Result<ObjectMeta, D::Error> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Lite {
        name: Option<String>,
        uid: Option<String>,
        resource_version: Option<String>,
        labels: Option<BTreeMap<String, String>>,
        deletion_timestamp: Option<Time>,
    }
    let l = Lite::deserialize(d)?;
    Ok(ObjectMeta {
        name: l.name,
        uid: l.uid,
        resource_version: l.resource_version,
        labels: l.labels,
        deletion_timestamp: l.deletion_timestamp,
        ..Default::default()
    })
}

/// Keeps only the fields the ledger reads.
pub fn snapshot(node: &NodeLite) -> Option<NodeSnapshot> {
    let name = node.metadata.name.clone()?;
    let spec = node.spec.as_ref();
    let mut pod_cidrs: Vec<String> = spec.and_then(|s| s.pod_cidrs.clone()).unwrap_or_default();
    if pod_cidrs.is_empty()
        && let Some(one) = spec.and_then(|s| s.pod_cidr.clone())
        && !one.is_empty()
    {
        pod_cidrs.push(one);
    }
    let addresses = node.status.as_ref().and_then(|s| s.addresses.as_deref());
    let mut address_families: Vec<Family> = internal_ips_of(addresses.unwrap_or_default())
        .map(|ip| if ip.is_ipv6() { Family::V6 } else { Family::V4 })
        .collect();
    address_families.sort();
    address_families.dedup();
    Some(NodeSnapshot {
        address_families,
        name,
        uid: node.metadata.uid.clone().unwrap_or_default(),
        resource_version: parse_resource_version(node.metadata.resource_version.as_deref()),
        labels: node.metadata.labels.clone().unwrap_or_default(),
        pod_cidrs,
        deleting: node.metadata.deletion_timestamp.is_some(),
    })
}

/// The Node's InternalIP addresses (the next hops for its prefixes).
/// The Node's `spec.podCIDRs` that parse as prefixes (host bits cleared);
/// anything else is skipped (the reconciler reports it as a conflict).
pub fn pod_cidr_nets(node: &Node) -> Vec<ipnet::IpNet> {
    node.spec
        .as_ref()
        .and_then(|s| s.pod_cidrs.as_deref())
        .unwrap_or_default()
        .iter()
        .filter_map(|c| c.parse::<ipnet::IpNet>().ok())
        .map(|n| n.trunc())
        .collect()
}

pub fn internal_ips(node: &Node) -> impl Iterator<Item = std::net::IpAddr> + '_ {
    internal_ips_of(
        node.status
            .as_ref()
            .and_then(|s| s.addresses.as_deref())
            .unwrap_or_default(),
    )
}

fn internal_ips_of(addresses: &[NodeAddress]) -> impl Iterator<Item = std::net::IpAddr> + '_ {
    addresses
        .iter()
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
    api: &Api<NodeLite>,
    name: &str,
    uid: &str,
    cidrs: &[String],
) -> Result<NodeLite, kube::Error> {
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
        let n: NodeLite = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "a"},
            "spec": {"podCIDR": "10.0.0.0/24"},
        }))
        .expect("decodes");
        let s = snapshot(&n).expect("named");
        assert_eq!(s.pod_cidrs, vec!["10.0.0.0/24".to_string()]);
        assert!(snapshot(&NodeLite::default()).is_none());
    }

    /// A full Node, as the API server sends it, reads the same through the
    /// lightweight type as through k8s-openapi's Node.
    #[test]
    fn lite_node_reads_what_the_full_node_holds() {
        let json = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": "worker-1",
                "uid": "0b7c3c5e-1111-2222-3333-444455556666",
                "resourceVersion": "4711",
                "labels": {"kubernetes.io/hostname": "worker-1", "zone": "a"},
                "annotations": {"node.alpha.kubernetes.io/ttl": "0"},
                "deletionTimestamp": "2026-11-26T10:00:00Z",
                "finalizers": ["example.com/keep"],
                "managedFields": [{
                    "manager": "kubelet", "operation": "Update", "apiVersion": "v1",
                    "time": "2026-11-26T09:00:00Z", "fieldsType": "FieldsV1",
                    "fieldsV1": {"f:status": {"f:addresses": {".": {}}}}
                }]
            },
            "spec": {
                "podCIDR": "2001:db8:1::/64",
                "podCIDRs": ["2001:db8:1::/64", "10.1.0.0/24"],
                "taints": [{"key": "k", "effect": "NoSchedule"}]
            },
            "status": {
                "addresses": [
                    {"type": "Hostname", "address": "worker-1"},
                    {"type": "InternalIP", "address": "2001:db8:ffff::1"},
                    {"type": "InternalIP", "address": "192.0.2.1"},
                    {"type": "ExternalIP", "address": "198.51.100.1"}
                ],
                "images": [{"names": ["registry.example/app:1"], "sizeBytes": 123}],
                "conditions": [{"type": "Ready", "status": "True"}]
            }
        });
        let lite: NodeLite = serde_json::from_value(json.clone()).expect("lite decodes");
        let full: Node = serde_json::from_value(json).expect("full decodes");
        let s = snapshot(&lite).expect("named");
        assert_eq!(s.name, "worker-1");
        assert_eq!(s.uid, "0b7c3c5e-1111-2222-3333-444455556666");
        assert_eq!(s.pod_cidrs, full.spec.and_then(|s| s.pod_cidrs).unwrap());
        assert_eq!(Some(&s.labels), full.metadata.labels.as_ref());
        assert!(s.deleting);
        assert_eq!(s.address_families, vec![Family::V4, Family::V6]);
        assert_eq!(lite.metadata.resource_version.as_deref(), Some("4711"));
        assert!(lite.metadata.managed_fields.is_none());
        let r = kube::Resource::object_ref(&lite, &());
        assert_eq!(
            (
                r.kind.as_deref(),
                r.api_version.as_deref(),
                r.name.as_deref()
            ),
            (Some("Node"), Some("v1"), Some("worker-1"))
        );
    }

    #[test]
    fn patch_sets_both_fields() {
        let p = pod_cidrs_patch("u1", &["2001:db8::/64".into(), "10.0.0.0/24".into()]);
        assert_eq!(p[0]["value"], "u1");
        assert_eq!(p[1]["value"], "2001:db8::/64");
        assert_eq!(p[2]["value"][1], "10.0.0.0/24");
    }
}
