//! What the inspection commands read from the API server: a client for the
//! kubeconfig and context asked for, then one list of each kind.

use std::path::Path;

use anyhow::{Context, Result, anyhow};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::networking::v1::ServiceCIDR;
use kube::Api;
use kube::api::ListParams;
use kube::config::{KubeConfigOptions, Kubeconfig};

use super::cluster::Cluster;
use crate::api::{PrefixClaim, PrefixPool};

/// The client configuration: the kubeconfig file(s) given (a list
/// separated as in `$KUBECONFIG`), else `~/.kube/config` when a context is
/// named, else the in-cluster configuration or `~/.kube/config`; at
/// `context` when given, else the current context.
pub async fn config(kubeconfig: Option<&Path>, context: Option<&str>) -> Result<kube::Config> {
    let options = KubeConfigOptions {
        context: context.map(str::to_string),
        ..Default::default()
    };
    let at = |what: String| match context {
        Some(c) => format!("{what}, context {c:?}"),
        None => what,
    };
    match kubeconfig {
        Some(path) => {
            let mut merged: Option<Kubeconfig> = None;
            for p in std::env::split_paths(path) {
                let kc = Kubeconfig::read_from(&p)
                    .with_context(|| format!("reading kubeconfig {}", p.display()))?;
                merged = Some(match merged {
                    Some(m) => m.merge(kc).context("merging kubeconfigs")?,
                    None => kc,
                });
            }
            let kc = merged.ok_or_else(|| anyhow!("empty kubeconfig path"))?;
            kube::Config::from_custom_kubeconfig(kc, &options)
                .await
                .with_context(|| at(format!("loading kubeconfig {}", path.display())))
        }
        None if context.is_some() => kube::Config::from_kubeconfig(&options)
            .await
            .with_context(|| at("loading the default kubeconfig".into())),
        None => kube::Config::infer()
            .await
            .context("no kubeconfig given and no in-cluster config found"),
    }
}

/// Every item of one list of `api`.
async fn list<K>(api: Api<K>, what: &str) -> Result<Vec<K>>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.list(&ListParams::default())
        .await
        .map(|l| l.items)
        .map_err(|e| explain(e, what))
}

/// An error of a list, said for a person.
fn explain(e: kube::Error, what: &str) -> anyhow::Error {
    match &e {
        kube::Error::Api(s) if s.code == 404 && what.starts_with("Prefix") => anyhow!(
            "listing {what}: the API server does not serve them: install the CRDs (`prefix-operator crd | kubectl apply -f -`)"
        ),
        kube::Error::Api(s) => anyhow!("listing {what}: {} ({})", s.message, s.code),
        _ => anyhow::Error::new(e).context(format!(
            "listing {what}: cannot reach the Kubernetes API server"
        )),
    }
}

/// What `whois` and `status` need, read at once: Nodes, pools, claims,
/// ServiceCIDRs and Services (`whois`), or pools, claims, ServiceCIDRs and
/// the Lease `lease` (`namespace`, `name`) for `status`.
pub async fn read(client: &kube::Client, lease: Option<(&str, &str)>) -> Result<Cluster> {
    let pools = list(Api::<PrefixPool>::all(client.clone()), "PrefixPools");
    let claims = list(Api::<PrefixClaim>::all(client.clone()), "PrefixClaims");
    let service_cidrs = service_cidrs(client);
    let (pools, claims, service_cidrs) = tokio::try_join!(pools, claims, service_cidrs)?;
    let mut c = Cluster {
        pools,
        claims,
        service_cidrs,
        ..Default::default()
    };
    match lease {
        Some((ns, name)) => {
            let api: Api<Lease> = Api::namespaced(client.clone(), ns);
            c.lease = api
                .get_opt(name)
                .await
                .map_err(|e| explain(e, &format!("Lease {ns}/{name}")))?;
        }
        None => {
            let nodes = list(Api::<Node>::all(client.clone()), "Nodes");
            let services = list(Api::<Service>::all(client.clone()), "Services");
            (c.nodes, c.services) = tokio::try_join!(nodes, services)?;
            c.events = allocation_events(client).await;
        }
    }
    Ok(c)
}

/// ServiceCIDRs; none where the API server does not serve them (before
/// Kubernetes 1.33 without the feature gate).
async fn service_cidrs(client: &kube::Client) -> Result<Vec<ServiceCIDR>> {
    match Api::<ServiceCIDR>::all(client.clone())
        .list(&ListParams::default())
        .await
    {
        Ok(l) => Ok(l.items),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(vec![]),
        Err(e) => Err(explain(e, "ServiceCIDRs")),
    }
}

/// Allocation Events of Nodes land in "default" (Nodes are cluster-scoped);
/// a missing Event only leaves the time out.
async fn allocation_events(client: &kube::Client) -> Vec<Event> {
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    events
        .list(&ListParams::default().fields("reason=PrefixAllocated"))
        .await
        .map(|l| l.items)
        .unwrap_or_default()
}
