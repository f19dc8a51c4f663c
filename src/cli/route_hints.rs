//! `prefix-operator routes`: the route hints of the Nodes and the claims,
//! read from the API server and printed in the format asked for.

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::k8s::client::client_for;

/// `prefix-operator routes`.
pub async fn print_routes(
    kubeconfig: Option<&PathBuf>,
    format: crate::routes::Format,
) -> Result<()> {
    let client = client_for(kubeconfig).await?;
    let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client.clone());
    let list = nodes
        .list(&Default::default())
        .await
        .context("listing Nodes")?;
    let routes = crate::routes::routes(&list.items);
    let claims: kube::Api<crate::api::PrefixClaim> = kube::Api::all(client.clone());
    let claimed: Vec<(String, String, ipnet::IpNet)> = match claims.list(&Default::default()).await
    {
        Ok(l) => l
            .items
            .iter()
            .filter_map(|c| {
                let p = c.status.as_ref()?.prefix.as_deref()?.parse().ok()?;
                Some((
                    kube::ResourceExt::name_any(c),
                    c.spec.purpose.as_str().to_string(),
                    p,
                ))
            })
            .collect(),
        // An older install without the PrefixClaim CRD: node routes only.
        Err(kube::Error::Api(s)) if s.code == 404 => vec![],
        Err(e) => return Err(e).context("listing PrefixClaims"),
    };
    let mut claim_routes = crate::routes::claim_routes(&claimed, &list.items);
    if claimed
        .iter()
        .any(|(_, purpose, _)| purpose == "LoadBalancer")
    {
        let services: kube::Api<k8s_openapi::api::core::v1::Service> =
            kube::Api::all(client.clone());
        let slices: kube::Api<k8s_openapi::api::discovery::v1::EndpointSlice> =
            kube::Api::all(client);
        let services = services
            .list(&Default::default())
            .await
            .context("listing Services")?;
        let slices = slices
            .list(&Default::default())
            .await
            .context("listing EndpointSlices")?;
        claim_routes.extend(crate::routes::local_routes(
            &claimed,
            &services.items,
            &slices.items,
            &list.items,
        ));
    }
    let conflicted = routes
        .iter()
        .filter(|r| !r.conflicts_with.is_empty())
        .count();
    let missing = routes
        .iter()
        .filter(|r| r.conflicts_with.is_empty() && r.next_hop.is_none())
        .count();
    print!("{}", crate::routes::render(&routes, &claim_routes, format));
    if conflicted > 0 {
        eprintln!(
            "{conflicted} node prefix(es) overlap another Node's and are not routed (see the PrefixPool's Conflicts condition)"
        );
    }
    if missing > 0 {
        eprintln!("{missing} node prefix(es) have no InternalIP of their family to route to");
    }
    Ok(())
}
