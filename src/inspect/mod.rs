//! `prefix-operator status` and `prefix-operator whois`: what the pools and
//! Nodes hold, read from the API server (the statuses the operator wrote,
//! the podCIDRs on the Nodes), for a human at a terminal.
//!
//! Here the commands, which read from the API server; what they print is
//! made, without I/O, by [`status`] (the pools' table) and [`whois`](mod@whois)
//! (who holds an address or prefix).

mod status;
mod whois;

use std::path::PathBuf;

use anyhow::{Context, Result};
use k8s_openapi::api::events::v1::Event;

use crate::api::PrefixPool;

pub use status::status_table;
pub use whois::{Query, whois};

/// `prefix-operator status`.
pub async fn print_status(kubeconfig: Option<&PathBuf>) -> Result<()> {
    let client = crate::k8s::client::client_for(kubeconfig).await?;
    let pools: kube::Api<PrefixPool> = kube::Api::all(client);
    let list = pools
        .list(&Default::default())
        .await
        .context("listing PrefixPools")?;
    print!("{}", status_table(&list.items));
    Ok(())
}

/// `prefix-operator whois`: true when a Node holds the query.
pub async fn print_whois(kubeconfig: Option<&PathBuf>, q: &Query) -> Result<bool> {
    let client = crate::k8s::client::client_for(kubeconfig).await?;
    let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client.clone());
    let events: kube::Api<Event> = kube::Api::namespaced(client.clone(), "default");
    let pools: kube::Api<PrefixPool> = kube::Api::all(client);
    let nodes = nodes
        .list(&Default::default())
        .await
        .context("listing Nodes")?;
    let pools = pools
        .list(&Default::default())
        .await
        .context("listing PrefixPools")?;
    // Allocation Events of Nodes land in "default" (Nodes are
    // cluster-scoped); a missing Event only leaves the time out.
    let events = events
        .list(&kube::api::ListParams::default().fields("reason=PrefixAllocated"))
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let (text, found) = whois(q, &nodes.items, &pools.items, &events);
    print!("{text}");
    Ok(found)
}

#[cfg(test)]
mod tests;
