//! The Helm chart: lint, schema, what the defaults render, the rendered
//! objects accepted by the real API server, the CRD and deploy/ kept in sync,
//! and install / upgrade / uninstall into the shared test control plane.

use prefix_operator_testsupport as support;

#[path = "chart/alerts.rs"]
mod alerts;
#[path = "chart/crds.rs"]
mod crds;
#[path = "chart/flags.rs"]
mod flags;
#[path = "chart/install.rs"]
mod install;
#[path = "chart/policies.rs"]
mod policies;
#[path = "chart/render.rs"]
mod render;
#[path = "chart/sync.rs"]
mod sync;
#[path = "chart/values.rs"]
mod values;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, PolicyRule, Role};
use kube::{Api, Client};
use serde::Deserialize;
use serde_yaml::Value;
use support::helm::{Helm, chart_dir, ok, text};
use support::rbac::grants;
use support::*;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn docs(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|d| Value::deserialize(d).expect("rendered YAML parses"))
        .filter(|v| !v.is_null())
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

fn one<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found = find(docs, kind);
    assert_eq!(found.len(), 1, "expected one {kind}, found {}", found.len());
    found[0]
}

fn strs(v: &Value) -> Vec<String> {
    v.as_sequence()
        .map(|s| {
            s.iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// An admin kubeconfig for the shared control plane, in `dir`.
fn admin_kubeconfig(dir: &Path) -> PathBuf {
    let path = dir.join("admin.kubeconfig");
    shared()
        .write_kubeconfig(&Identity::Admin, &path)
        .expect("write kubeconfig");
    path
}

fn docs_of(helm: &Helm, extra: &[&str]) -> Vec<Value> {
    docs(&ok(
        &format!("helm template {extra:?}"),
        helm.template(extra),
    ))
}
