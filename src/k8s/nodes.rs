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
pub const POOLS_ANNOTATION: &str = "ipam.prefix-operator.io/pools";
/// Annotation written with podCIDRs: when they were written (RFC 3339, UTC).
/// Events expire (an hour by default); this stays with the Node.
pub const ALLOCATED_AT_ANNOTATION: &str = "ipam.prefix-operator.io/allocated-at";
/// Prefix of this project's annotations: the only ones the reconciler keeps
/// when it decodes a Node.
const OWN_ANNOTATIONS: &str = "ipam.prefix-operator.io/";

/// A Node as the reconciler reads it from watches, lists and write answers:
/// only the fields it uses are decoded. The rest — managedFields, images,
/// conditions, other writers' annotations — is skipped or dropped, which is
/// most of a real Node's bytes. `metadata.annotations` is `Some` exactly when
/// the Node has an annotations map (the podCIDRs patch must know), holding
/// only this project's keys.
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
/// needs to know whether an annotations map exists).
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
        annotated: node.metadata.annotations.is_some(),
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
    /// The Node, as last seen, has an annotations map.
    pub annotated: bool,
    /// RFC 3339 time of the write.
    pub at: &'a str,
}

/// The JSON patch that writes `cidrs` (canonical text, in order) into
/// `spec.podCIDR` and `spec.podCIDRs`, and the pool and time annotations, in
/// one request. The `test` of the UID keeps it from landing on a Node
/// re-created under the same name; the API server's write-once rule keeps it
/// from replacing a value someone else wrote meanwhile.
///
/// JSON patch cannot add a key to a map that does not exist, and adding the
/// whole map would replace one that does. So a Node last seen with an
/// annotations map gets its keys added one by one (if the map vanished
/// meanwhile, the patch fails and the Node is read back); a Node seen without
/// one gets the map, guarded by a `test` that it is still absent (a `null`
/// test matches a missing member), so nobody's annotations are ever dropped.
pub fn pod_cidrs_patch(w: &PodCidrsWrite<'_>) -> serde_json::Value {
    let mut ops = vec![
        serde_json::json!({ "op": "test", "path": "/metadata/uid", "value": w.uid }),
        serde_json::json!({ "op": "add", "path": "/spec/podCIDR", "value": w.cidrs.first() }),
        serde_json::json!({ "op": "add", "path": "/spec/podCIDRs", "value": w.cidrs }),
    ];
    let pools = w.pools.join(",");
    if w.annotated {
        for (k, v) in [
            (POOLS_ANNOTATION, pools.as_str()),
            (ALLOCATED_AT_ANNOTATION, w.at),
        ] {
            ops.push(serde_json::json!({
                "op": "add",
                "path": format!("/metadata/annotations/{}", k.replace('~', "~0").replace('/', "~1")),
                "value": v,
            }));
        }
    } else {
        ops.push(
            serde_json::json!({ "op": "test", "path": "/metadata/annotations", "value": null }),
        );
        ops.push(serde_json::json!({
            "op": "add",
            "path": "/metadata/annotations",
            "value": { POOLS_ANNOTATION: pools, ALLOCATED_AT_ANNOTATION: w.at },
        }));
    }
    serde_json::Value::Array(ops)
}

/// Writes the prefixes; returns the Node as stored.
pub async fn write_pod_cidrs(
    api: &Api<NodeLite>,
    name: &str,
    w: &PodCidrsWrite<'_>,
) -> Result<NodeLite, kube::Error> {
    let patch: json_patch::Patch =
        serde_json::from_value(pod_cidrs_patch(w)).map_err(kube::Error::SerdeError)?;
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

    fn write<'a>(cidrs: &'a [String], pools: &'a [String], annotated: bool) -> PodCidrsWrite<'a> {
        PodCidrsWrite {
            uid: "u1",
            cidrs,
            pools,
            annotated,
            at: "2026-12-03T07:00:00Z",
        }
    }

    /// The patch applied locally with the `json-patch` crate. It applies
    /// RFC 6902 as written, where a `test` of a missing member fails; the API
    /// server's (evanphx/json-patch v4) lets a `null` test match a missing
    /// member, which is what the bare-Node form relies on: that form is
    /// proven against the real API server (tests/dualstack.rs).
    fn apply(node: serde_json::Value, w: &PodCidrsWrite<'_>) -> Result<serde_json::Value, String> {
        let mut doc = node;
        let patch: json_patch::Patch =
            serde_json::from_value(pod_cidrs_patch(w)).map_err(|e| e.to_string())?;
        json_patch::patch(&mut doc, &patch).map_err(|e| e.to_string())?;
        Ok(doc)
    }

    #[test]
    fn patch_sets_both_fields_and_the_annotations() {
        let cidrs = ["2001:db8::/64".to_string(), "10.0.0.0/24".to_string()];
        let pools = ["gua".to_string(), "v4".to_string()];
        let bare = serde_json::json!({"metadata": {"name": "n", "uid": "u1"}, "spec": {}});
        let p = pod_cidrs_patch(&write(&cidrs, &pools, false));
        assert_eq!(
            p[3],
            serde_json::json!({"op": "test", "path": "/metadata/annotations", "value": null})
        );
        assert_eq!(p[4]["value"][POOLS_ANNOTATION], "gua,v4");
        assert_eq!(
            p[4]["value"][ALLOCATED_AT_ANNOTATION],
            "2026-12-03T07:00:00Z"
        );
        // Someone else's annotations are kept.
        let mut annotated = bare.clone();
        annotated["metadata"]["annotations"] = serde_json::json!({"other.example/k": "v"});
        let out = apply(annotated.clone(), &write(&cidrs, &pools, true)).expect("applies");
        assert_eq!(out["spec"]["podCIDR"], "2001:db8::/64");
        assert_eq!(out["spec"]["podCIDRs"][1], "10.0.0.0/24");
        assert_eq!(out["metadata"]["annotations"]["other.example/k"], "v");
        assert_eq!(out["metadata"]["annotations"][POOLS_ANNOTATION], "gua,v4");
        assert_eq!(
            out["metadata"]["annotations"][ALLOCATED_AT_ANNOTATION],
            "2026-12-03T07:00:00Z"
        );
        // Seen without annotations, but a map appeared meanwhile: refused,
        // never replaced.
        assert!(apply(annotated.clone(), &write(&cidrs, &pools, false)).is_err());
        // Seen with annotations that vanished meanwhile: refused.
        assert!(apply(bare, &write(&cidrs, &pools, true)).is_err());
        // Another object under the name: refused.
        let mut other = annotated;
        other["metadata"]["uid"] = "u2".into();
        assert!(apply(other, &write(&cidrs, &pools, true)).is_err());
    }

    #[test]
    fn only_own_annotations_are_kept_and_their_presence_is_known() {
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
        assert!(snapshot(&n).expect("named").annotated);
        let n: NodeLite = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "a", "annotations": {"x": "y"}},
        }))
        .expect("decodes");
        assert!(
            snapshot(&n).expect("named").annotated,
            "an empty kept map still says present"
        );
        let n: NodeLite = serde_json::from_value(serde_json::json!({"metadata": {"name": "a"}}))
            .expect("decodes");
        assert!(!snapshot(&n).expect("named").annotated);
        let n: NodeLite = serde_json::from_value(
            serde_json::json!({"metadata": {"name": "a", "annotations": null}}),
        )
        .expect("decodes");
        assert!(!snapshot(&n).expect("named").annotated, "null is no map");
    }
}
