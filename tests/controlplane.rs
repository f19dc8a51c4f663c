//! The API-server facts the operator is built on, shown on the real
//! kube-apiserver the harness starts.

use prefix_operator_testsupport as support;

use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject};
use kube::Api;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use support::*;

fn pod_cidr_patch(cidrs: &[&str]) -> Patch<serde_json::Value> {
    Patch::Merge(serde_json::json!({"spec": {"podCIDR": cidrs[0], "podCIDRs": cidrs}}))
}

#[tokio::test]
async fn pod_cidrs_are_write_once() {
    let cp = shared();
    let _d = DumpOnPanic(cp);
    let client = admin(cp).await;
    let name = unique("write-once");
    create_node(&client, &name, labels(&[]), &["fd00:1::/64"]).await;
    let nodes: Api<Node> = Api::all(client.clone());
    let err = nodes
        .patch(
            &name,
            &PatchParams::default(),
            &pod_cidr_patch(&["fd00:2::/64"]),
        )
        .await
        .expect_err("changing podCIDRs must fail");
    match err {
        kube::Error::Api(s) => {
            assert!(
                s.code == 422 || s.code == 403,
                "unexpected code {}: {}",
                s.code,
                s.message
            );
            assert!(
                s.message.contains("Forbidden") && s.message.contains("may not change podCIDR"),
                "{}",
                s.message
            );
        }
        other => panic!("unexpected error {other}"),
    }
    assert_eq!(pod_cidrs(&client, &name).await, vec!["fd00:1::/64"]);
}

#[tokio::test]
async fn two_cidrs_of_one_family_are_invalid() {
    let cp = shared();
    let _d = DumpOnPanic(cp);
    let client = admin(cp).await;
    let nodes: Api<Node> = Api::all(client);
    let name = unique("two-v6");
    let node = Node {
        metadata: ObjectMeta {
            name: Some(name),
            ..Default::default()
        },
        spec: Some(k8s_openapi::api::core::v1::NodeSpec {
            pod_cidr: Some("fd00:1::/64".into()),
            pod_cidrs: Some(vec!["fd00:1::/64".into(), "fd00:2::/64".into()]),
            ..Default::default()
        }),
        ..Default::default()
    };
    let err = nodes
        .create(&PostParams::default(), &node)
        .await
        .expect_err("must be refused");
    match err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 422, "{}", s.message);
            assert_eq!(s.reason, "Invalid");
        }
        other => panic!("unexpected error {other}"),
    }
}

#[tokio::test]
async fn rbac_is_enforced() {
    let cp = shared();
    let _d = DumpOnPanic(cp);
    let admin_client = admin(cp).await;
    let user = unique("user");
    let node = unique("rbac-node");
    create_node(&admin_client, &node, labels(&[]), &[]).await;
    let as_user = cp
        .client(&Identity::User {
            name: user.clone(),
            groups: vec!["system:authenticated".into()],
        })
        .await
        .expect("user client");
    let nodes: Api<Node> = Api::all(as_user);
    let patch = Patch::Merge(serde_json::json!({"metadata": {"labels": {"touched": "yes"}}}));
    match nodes.patch(&node, &PatchParams::default(), &patch).await {
        Err(kube::Error::Api(s)) => assert_eq!(s.code, 403, "{}", s.message),
        other => panic!("expected 403, got {other:?}"),
    }

    let role = ClusterRole {
        metadata: ObjectMeta {
            name: Some(user.clone()),
            ..Default::default()
        },
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec!["".into()]),
            resources: Some(vec!["nodes".into()]),
            verbs: vec!["patch".into()],
            ..Default::default()
        }]),
        ..Default::default()
    };
    Api::<ClusterRole>::all(admin_client.clone())
        .create(&PostParams::default(), &role)
        .await
        .expect("create role");
    let binding = ClusterRoleBinding {
        metadata: ObjectMeta {
            name: Some(user.clone()),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "ClusterRole".into(),
            name: user.clone(),
        },
        subjects: Some(vec![Subject {
            kind: "User".into(),
            name: user.clone(),
            api_group: Some("rbac.authorization.k8s.io".into()),
            ..Default::default()
        }]),
    };
    Api::<ClusterRoleBinding>::all(admin_client.clone())
        .create(&PostParams::default(), &binding)
        .await
        .expect("create binding");
    // RBAC changes reach the authorizer through its informer: wait for it.
    wait_for(
        "patch allowed after binding",
        Duration::from_secs(20),
        || async {
            nodes
                .patch(&node, &PatchParams::default(), &patch)
                .await
                .ok()
        },
    )
    .await;
    let n = Api::<Node>::all(admin_client)
        .get(&node)
        .await
        .expect("get");
    assert_eq!(
        n.metadata
            .labels
            .unwrap_or_default()
            .get("touched")
            .map(String::as_str),
        Some("yes")
    );
}

#[tokio::test]
async fn version_is_the_pinned_release() {
    let cp = shared();
    let client = admin(cp).await;
    let v = client.apiserver_version().await.expect("version");
    let script = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/e2e/controlplane/build.sh"
    ))
    .expect("build.sh");
    let pinned = script
        .lines()
        .find_map(|l| l.strip_prefix("KUBE_VERSION="))
        .expect("KUBE_VERSION pin")
        .trim()
        .to_string();
    assert_eq!(v.git_version, pinned);
    assert!(pinned.starts_with("v1.36."), "pinned {pinned}");
}

#[test]
fn a_panicking_process_leaves_no_control_plane_behind() {
    let dir = tempfile::tempdir().expect("tmp");
    let pidfile = dir.path().join("pids");
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_prefix-operator"))
        .parent()
        .expect("target dir")
        .join("controlplane");
    assert!(
        exe.exists(),
        "{} is built by `cargo build --workspace` (make test does it)",
        exe.display()
    );
    let out = std::process::Command::new(&exe)
        .args(["panic-probe", "--pidfile"])
        .arg(&pidfile)
        .env("PREFIX_OPERATOR_CP_QUIET", "1")
        .output()
        .expect("run panic-probe");
    assert!(!out.status.success(), "the probe must panic");
    assert!(String::from_utf8_lossy(&out.stderr).contains("panic-probe: panicking"));
    let pids: Vec<u32> = std::fs::read_to_string(&pidfile)
        .expect("pidfile written before the panic")
        .lines()
        .map(|l| l.parse().expect("pid"))
        .collect();
    assert_eq!(pids.len(), 2, "etcd and kube-apiserver were running");
    // The kernel delivers SIGKILL on parent death; wait for the processes to vanish.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    for pid in pids {
        loop {
            let alive = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map(|s| !s.contains(") Z "))
                .unwrap_or(false);
            if !alive {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "process {pid} outlived its panicking parent"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
