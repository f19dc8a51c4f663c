//! The status patches of [`super::KubeletSim`]: what kubelet,
//! cloud-controller-manager and node-problem-detector send when a Node
//! registers, and kubelet's heartbeat.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::Patch;
use serde_json::{Value, json};

fn now() -> Value {
    serde_json::to_value(Time(k8s_openapi::jiff::Timestamp::now())).unwrap_or(Value::Null)
}

/// The Node's InternalIP: 2001:db8:ffff::N (documentation space).
pub fn internal_ip(index: u32) -> String {
    format!("2001:db8:ffff::{:x}:{:x}", index >> 16, index & 0xffff)
}

fn condition(type_: &str, status: &str, reason: &str, message: &str) -> Value {
    json!({
        "type": type_, "status": status, "reason": reason, "message": message,
        "lastHeartbeatTime": now(), "lastTransitionTime": now(),
    })
}

/// The `step`-th patch after a Node appears, cycling through what kubelet,
/// cloud-controller-manager and node-problem-detector send first.
pub(super) fn registration_patch(name: &str, index: u32, step: usize) -> Patch<Value> {
    let addresses = json!([
        {"type": "InternalIP", "address": internal_ip(index)},
        {"type": "Hostname", "address": name},
    ]);
    match step % 4 {
        // kubelet's first status update: not ready until a CNI is set up,
        // which waits for the podCIDRs this operator writes.
        0 => {
            let res =
                json!({"cpu": "4", "memory": "16Gi", "pods": "110", "ephemeral-storage": "100Gi"});
            Patch::Strategic(json!({"status": {
                "addresses": addresses,
                "capacity": res, "allocatable": res,
                "conditions": [
                    condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
                    condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                    condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                    condition("Ready", "False", "KubeletNotReady", "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized"),
                ],
                "nodeInfo": {
                    "machineID": format!("{index:032x}"), "systemUUID": format!("{index:032x}"),
                    "bootID": format!("{:032x}", u128::from(index) << 64), "kernelVersion": "6.12.0",
                    "osImage": "Debian GNU/Linux 13 (trixie)", "containerRuntimeVersion": "containerd://2.1.4",
                    "kubeletVersion": "v1.36.3", "kubeProxyVersion": "", "operatingSystem": "linux",
                    "architecture": "amd64",
                },
            }}))
        }
        // cloud-controller-manager: sets the addresses as the cloud knows them.
        1 => Patch::Merge(json!({"status": {"addresses": addresses}})),
        // node-problem-detector: its own conditions.
        2 => Patch::Strategic(json!({"status": {"conditions": [
            condition("KernelDeadlock", "False", "KernelHasNoDeadlock", "kernel has no deadlock"),
            condition("ReadonlyFilesystem", "False", "FilesystemIsNotReadOnly", "Filesystem is not read-only"),
        ]}})),
        // kubelet again: the next status update.
        _ => heartbeat_patch(),
    }
}

/// kubelet's periodic status update: the Ready condition with a fresh
/// `lastHeartbeatTime` (strategic merge keys conditions by `type`).
pub(super) fn heartbeat_patch() -> Patch<Value> {
    Patch::Strategic(json!({"status": {"conditions": [{
        "type": "Ready", "status": "False", "reason": "KubeletNotReady",
        "message": "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized",
        "lastHeartbeatTime": now(),
    }]}}))
}
