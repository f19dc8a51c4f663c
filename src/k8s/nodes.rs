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

/// Annotation written with podCIDRs: the PrefixPool of each podCIDRs entry,
/// in the same order, comma separated (`gua,v4`).
pub const POOLS_ANNOTATION: &str = concat!(crate::api_group!(), "/pools");
/// Annotation written with podCIDRs: when they were written (RFC 3339, UTC).
/// Events expire (an hour by default); this stays with the Node.
pub const ALLOCATED_AT_ANNOTATION: &str = concat!(crate::api_group!(), "/allocated-at");
/// Prefix of this project's annotations: the only ones the reconciler keeps
/// when it decodes a Node.
const OWN_ANNOTATIONS: &str = concat!(crate::api_group!(), "/");

/// A Node as the reconciler reads it from watches, lists and write answers:
/// only the fields it uses are decoded. The rest — managedFields, images,
/// conditions, other writers' annotations — is skipped or dropped, which is
/// most of a real Node's bytes. `metadata.annotations` holds only this
/// project's keys.
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
/// resumes from `resourceVersion`; Events refer to name and uid; the write
/// and `whois` read this project's annotations).
fn lite_meta<'de, D: Deserializer<'de>>(d: D) -> Result<ObjectMeta, D::Error> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Lite {
        name: Option<String>,
        uid: Option<String>,
        resource_version: Option<String>,
        labels: Option<BTreeMap<String, String>>,
        #[serde(default, deserialize_with = "own_annotations")]
        annotations: Option<BTreeMap<String, String>>,
        deletion_timestamp: Option<Time>,
    }
    let l = Lite::deserialize(d)?;
    Ok(ObjectMeta {
        name: l.name,
        uid: l.uid,
        resource_version: l.resource_version,
        labels: l.labels,
        annotations: l.annotations,
        deletion_timestamp: l.deletion_timestamp,
        ..Default::default()
    })
}

/// Keeps only the fields the ledger reads.
pub fn snapshot(node: &NodeLite) -> Option<NodeSnapshot> {
    let mut s = snapshot_but_labels(node)?;
    s.labels = node.metadata.labels.clone().unwrap_or_default();
    Some(s)
}

/// The same, taking the Node's labels rather than copying them (a list
/// of thousands of Nodes is merged this way).
pub fn into_snapshot(mut node: NodeLite) -> Option<NodeSnapshot> {
    let labels = node.metadata.labels.take().unwrap_or_default();
    let mut s = snapshot_but_labels(&node)?;
    s.labels = labels;
    Some(s)
}

fn snapshot_but_labels(node: &NodeLite) -> Option<NodeSnapshot> {
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
        labels: Default::default(),
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

/// `metadata.annotations` with only this project's keys: other writers'
/// values (some are kilobytes of JSON) are skipped by the parser, never
/// built. `None` when the Node has no map; `Some` (maybe empty) when it has.
pub(crate) fn own_annotations<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<BTreeMap<String, String>>, D::Error> {
    struct Own;
    impl<'de> serde::de::Visitor<'de> for Own {
        type Value = Option<BTreeMap<String, String>>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a map of annotations")
        }
        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
            d.deserialize_map(self)
        }
        fn visit_map<M: serde::de::MapAccess<'de>>(
            self,
            mut m: M,
        ) -> Result<Self::Value, M::Error> {
            let mut out = BTreeMap::new();
            while let Some(k) = m.next_key::<String>()? {
                if k.starts_with(OWN_ANNOTATIONS) {
                    out.insert(k, m.next_value::<String>()?);
                } else {
                    m.next_value::<serde::de::IgnoredAny>()?;
                }
            }
            Ok(Some(out))
        }
    }
    d.deserialize_option(Own)
}

fn internal_ips_of(addresses: &[NodeAddress]) -> impl Iterator<Item = std::net::IpAddr> + '_ {
    addresses
        .iter()
        .filter(|a| a.type_ == "InternalIP")
        .filter_map(|a| a.address.parse().ok())
}

/// What one podCIDRs write sets on a Node.
#[derive(Clone, Debug)]
pub struct PodCidrsWrite<'a> {
    /// The object the write is for (`metadata.uid`).
    pub uid: &'a str,
    /// Canonical prefix text, in podCIDRs order.
    pub cidrs: &'a [String],
    /// The PrefixPool of each entry of `cidrs`.
    pub pools: &'a [String],
    /// RFC 3339 time of the write.
    pub at: &'a str,
}

/// The strategic merge patch that writes `cidrs` (canonical text, in order)
/// into `spec.podCIDR` and `spec.podCIDRs`, and the pool and time
/// annotations, in one request:
/// - `metadata.uid` in the body is a precondition: the API server refuses
///   (422, the UID is immutable) a patch whose UID is not the stored
///   object's, so it never lands on a Node re-created under the same name;
/// - the API server's write-once rule for podCIDRs refuses (422) a write
///   over a value someone else wrote meanwhile (podCIDRs merge as a set, so
///   any other value makes the list change, which is refused);
/// - annotations merge key by key: nobody else's are dropped, whether or
///   not the Node had any.
///
/// This is the request shape kube-controller-manager's range allocator sends
/// (it adds no UID and no annotations). It costs the API server less than a
/// JSON patch with `test`s: no encoding of the stored object to JSON and
/// back (`make bench-kcm` reports the control plane's CPU per allocator).
pub fn pod_cidrs_patch(w: &PodCidrsWrite<'_>) -> serde_json::Value {
    serde_json::json!({
        "metadata": {
            "uid": w.uid,
            "annotations": {
                POOLS_ANNOTATION: w.pools.join(","),
                ALLOCATED_AT_ANNOTATION: w.at,
            },
        },
        "spec": { "podCIDR": w.cidrs.first(), "podCIDRs": w.cidrs },
    })
}

/// The patch parameters of the podCIDRs write: this project's field
/// manager, and no unknown-field check (the body is built here, every field
/// is known; the check is work the API server would do per write).
pub fn pod_cidrs_params() -> PatchParams {
    PatchParams {
        field_manager: Some(NODE_MANAGER.into()),
        ..Default::default()
    }
    .validation_ignore()
}

/// Writes the prefixes; returns the Node as stored.
pub async fn write_pod_cidrs(
    api: &Api<NodeLite>,
    name: &str,
    w: &PodCidrsWrite<'_>,
) -> Result<NodeLite, kube::Error> {
    api.patch(
        name,
        &pod_cidrs_params(),
        &Patch::Strategic(pod_cidrs_patch(w)),
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

    fn write<'a>(cidrs: &'a [String], pools: &'a [String]) -> PodCidrsWrite<'a> {
        PodCidrsWrite {
            uid: "u1",
            cidrs,
            pools,
            at: "2026-12-03T07:00:00Z",
        }
    }

    #[test]
    fn patch_sets_both_fields_the_annotations_and_the_uid() {
        let cidrs = ["2001:db8::/64".to_string(), "10.0.0.0/24".to_string()];
        let pools = ["gua".to_string(), "v4".to_string()];
        let p = pod_cidrs_patch(&write(&cidrs, &pools));
        assert_eq!(p["metadata"]["uid"], "u1");
        assert_eq!(p["spec"]["podCIDR"], "2001:db8::/64");
        assert_eq!(p["spec"]["podCIDRs"][1], "10.0.0.0/24");
        assert_eq!(p["metadata"]["annotations"][POOLS_ANNOTATION], "gua,v4");
        assert_eq!(
            p["metadata"]["annotations"][ALLOCATED_AT_ANNOTATION],
            "2026-12-03T07:00:00Z"
        );
        // Applied as a merge (what the API server's strategic merge does
        // with these fields on a Node without podCIDRs), someone else's
        // annotations are kept; the guards are proven against the real API
        // server (tests/dualstack.rs).
        let mut node = serde_json::json!({
            "metadata": {"name": "n", "uid": "u1", "annotations": {"other.example/k": "v"}},
            "spec": {},
        });
        json_patch::merge(&mut node, &p);
        assert_eq!(node["metadata"]["annotations"]["other.example/k"], "v");
        assert_eq!(node["metadata"]["annotations"][POOLS_ANNOTATION], "gua,v4");
        assert_eq!(node["spec"]["podCIDRs"][0], "2001:db8::/64");
        let q = pod_cidrs_params();
        assert_eq!(q.field_manager.as_deref(), Some(NODE_MANAGER));
    }

    #[test]
    fn only_own_annotations_are_kept() {
        let n: NodeLite = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "a", "annotations": {
                "node.alpha.kubernetes.io/ttl": "0",
                "ipam.prefix-operator.io/pools": "gua",
            }},
        }))
        .expect("decodes");
        let a = n.metadata.annotations.as_ref().expect("present");
        assert_eq!(a.len(), 1);
        assert_eq!(a.get(POOLS_ANNOTATION).map(String::as_str), Some("gua"));
        let n: NodeLite = serde_json::from_value(
            serde_json::json!({"metadata": {"name": "a", "annotations": null}}),
        )
        .expect("decodes");
        assert!(n.metadata.annotations.is_none(), "null is no map");
    }
}
