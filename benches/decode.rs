//! Decoding a Node as the reconciler receives it (watch event, list item,
//! write answer): k8s-openapi's full `Node` against the reconciler's
//! `NodeLite`, which builds only the fields it reads.
//!
//! The Node is shaped like a kubelet-registered one: managedFields of four
//! managers, 40 container images, the usual conditions, labels and
//! annotations.

use std::hint::black_box;

use criterion::Criterion;
use k8s_openapi::api::core::v1::Node;
use prefix_operator::k8s::nodes::{NodeLite, snapshot};
use serde_json::json;

fn realistic_node() -> Vec<u8> {
    let images: Vec<_> = (0..40)
        .map(|i| {
            json!({
                "names": [
                    format!("registry.example.com/team-{i}/service-{i}@sha256:{:064x}", i * 7919),
                    format!("registry.example.com/team-{i}/service-{i}:v1.{i}.0"),
                ],
                "sizeBytes": 50_000_000 + i * 1_000_003,
            })
        })
        .collect();
    let conditions: Vec<_> = ["MemoryPressure", "DiskPressure", "PIDPressure", "Ready"]
        .iter()
        .map(|t| {
            json!({
                "type": t, "status": if *t == "Ready" { "True" } else { "False" },
                "lastHeartbeatTime": "2026-11-26T09:59:00Z",
                "lastTransitionTime": "2026-11-20T08:00:00Z",
                "reason": format!("Kubelet{t}"), "message": format!("kubelet reports {t}"),
            })
        })
        .collect();
    let managed: Vec<_> = ["kubelet", "kube-controller-manager", "prefix-operator", "kubectl-label"]
        .iter()
        .map(|m| {
            json!({
                "manager": m, "operation": "Update", "apiVersion": "v1",
                "time": "2026-11-26T09:59:00Z", "fieldsType": "FieldsV1",
                "fieldsV1": {
                    "f:metadata": {"f:labels": {".": {}, "f:kubernetes.io/hostname": {}, "f:kubernetes.io/os": {}, "f:topology.kubernetes.io/zone": {}}},
                    "f:spec": {"f:podCIDR": {}, "f:podCIDRs": {".": {}, "v:\"2001:db8:1::/64\"": {}}},
                    "f:status": {"f:addresses": {".": {}, "k:{\"type\":\"InternalIP\"}": {".": {}, "f:address": {}, "f:type": {}}},
                                 "f:conditions": {"k:{\"type\":\"Ready\"}": {"f:lastHeartbeatTime": {}, "f:status": {}}},
                                 "f:images": {}, "f:nodeInfo": {"f:bootID": {}}},
                },
            })
        })
        .collect();
    let node = json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {
            "name": "worker-0042.rack-7.dc-1.example.com",
            "uid": "0b7c3c5e-1111-2222-3333-444455556666",
            "resourceVersion": "98765432",
            "creationTimestamp": "2026-11-20T08:00:00Z",
            "labels": {
                "kubernetes.io/hostname": "worker-0042", "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64", "node.kubernetes.io/instance-type": "m7.large",
                "topology.kubernetes.io/zone": "dc-1-a", "topology.kubernetes.io/region": "dc-1",
                "node-role.example.com/worker": "true",
            },
            "annotations": {
                "node.alpha.kubernetes.io/ttl": "0",
                "volumes.kubernetes.io/controller-managed-attach-detach": "true",
                "csi.volume.kubernetes.io/nodeid": "{\"csi.example.com\":\"worker-0042\"}",
            },
            "managedFields": managed,
        },
        "spec": {"podCIDR": "2001:db8:1::/64", "podCIDRs": ["2001:db8:1::/64"], "providerID": "example://worker-0042"},
        "status": {
            "capacity": {"cpu": "16", "memory": "65536Mi", "pods": "110", "ephemeral-storage": "500Gi"},
            "allocatable": {"cpu": "15800m", "memory": "64000Mi", "pods": "110", "ephemeral-storage": "460Gi"},
            "conditions": conditions,
            "addresses": [
                {"type": "InternalIP", "address": "2001:db8:ffff::42"},
                {"type": "Hostname", "address": "worker-0042"},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "nodeInfo": {
                "machineID": "0123456789abcdef0123456789abcdef", "systemUUID": "0b7c3c5e-aaaa-bbbb-cccc-444455556666",
                "bootID": "0b7c3c5e-dddd-eeee-ffff-444455556666", "kernelVersion": "6.12.0",
                "osImage": "Debian GNU/Linux 13", "containerRuntimeVersion": "containerd://2.1.0",
                "kubeletVersion": "v1.36.3", "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "amd64",
            },
            "images": images,
        },
    });
    serde_json::to_vec(&node).expect("encodes")
}

fn main() {
    let bytes = realistic_node();
    println!("Node JSON: {} bytes", bytes.len());
    let mut c = Criterion::default().configure_from_args();
    c.bench_function("decode Node (k8s-openapi, full)", |b| {
        b.iter(|| black_box(serde_json::from_slice::<Node>(black_box(&bytes)).expect("decodes")))
    });
    c.bench_function("decode NodeLite (the reconciler's)", |b| {
        b.iter(|| {
            let n: NodeLite = serde_json::from_slice(black_box(&bytes)).expect("decodes");
            black_box(snapshot(&n))
        })
    });
    c.final_summary();
}
