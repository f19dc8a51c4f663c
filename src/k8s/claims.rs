//! PrefixClaims and their ServiceCIDRs at the edge: decoding a claim into
//! what the ledger takes, and the requests that bind, finalize and report a
//! claim and create or delete its ServiceCIDR. No decisions are taken here.

use k8s_openapi::api::networking::v1::{IPAddress, ServiceCIDR, ServiceCIDRSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{DeleteParams, Patch, PatchParams, Preconditions};
use kube::core::DeserializeGuard;
use kube::{Api, Resource, ResourceExt};

use crate::api::{
    CLAIM_FINALIZER, CLAIM_LABEL, PrefixClaim, PrefixClaimStatus, SpecError, validate_claim,
};
use crate::ledger::{AddressSnapshot, ClaimSnapshot, parse_resource_version};

/// The operator's finalizer on the ServiceCIDRs it creates: a deleted one
/// stays (and the API server's allocator, which skips ServiceCIDRs being
/// deleted, hands out nothing more from it) until no ClusterIP inside
/// remains and a grace for every API server's informer to catch up has
/// passed; only then is the claim's space released.
pub const SERVICE_CIDR_FINALIZER: &str = concat!(crate::api_group!(), "/service-cidr");

/// A PrefixClaim as watched: its object, or what could be read of one that
/// does not decode.
pub type WatchedClaim = DeserializeGuard<PrefixClaim>;

/// Field manager of the operator's writes to claims and ServiceCIDRs.
pub const FIELD_MANAGER: &str = "prefix-operator";

/// The ledger's form of a claim. An object that does not decode becomes a
/// claim that asks for nothing and says why; a `status.prefix` it carries
/// is still read when the status itself decodes, so its space stays taken.
pub fn decode(obj: &WatchedClaim) -> ClaimSnapshot {
    match &obj.0 {
        Ok(c) => {
            let status = c.status.as_ref();
            ClaimSnapshot {
                name: c.name_any(),
                uid: c.metadata.uid.clone().unwrap_or_default(),
                resource_version: parse_resource_version(c.metadata.resource_version.as_deref()),
                generation: c.metadata.generation.unwrap_or_default(),
                def: validate_claim(&c.spec),
                prefix: status.and_then(|s| s.prefix.clone()),
                pool: status.and_then(|s| s.pool.clone()),
                deleting: c.metadata.deletion_timestamp.is_some(),
                finalized: c.finalizers().iter().any(|f| f == CLAIM_FINALIZER),
            }
        }
        Err(bad) => {
            let m = &bad.metadata;
            ClaimSnapshot {
                name: m.name.clone().unwrap_or_default(),
                uid: m.uid.clone().unwrap_or_default(),
                resource_version: parse_resource_version(m.resource_version.as_deref()),
                generation: m.generation.unwrap_or_default(),
                def: Err(SpecError(format!(
                    "cannot decode the object: {}",
                    bad.error
                ))),
                prefix: None,
                pool: None,
                deleting: m.deletion_timestamp.is_some(),
                finalized: m.finalizers.iter().flatten().any(|f| f == CLAIM_FINALIZER),
            }
        }
    }
}

/// Adds the operator's finalizer to the claim as last seen at
/// `resource_version` (refused with 409 if it changed since).
pub async fn add_finalizer(
    api: &Api<PrefixClaim>,
    name: &str,
    resource_version: &str,
    finalizers: &[String],
) -> Result<PrefixClaim, kube::Error> {
    let mut list = finalizers.to_vec();
    list.push(CLAIM_FINALIZER.to_string());
    let patch = serde_json::json!({
        "metadata": {"resourceVersion": resource_version, "finalizers": list},
    });
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
}

/// Removes the operator's finalizer from the claim as last seen.
pub async fn remove_finalizer(
    api: &Api<PrefixClaim>,
    name: &str,
    resource_version: &str,
    finalizers: &[String],
) -> Result<PrefixClaim, kube::Error> {
    let list: Vec<&String> = finalizers
        .iter()
        .filter(|f| *f != CLAIM_FINALIZER)
        .collect();
    let patch = serde_json::json!({
        "metadata": {"resourceVersion": resource_version, "finalizers": list},
    });
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
}

/// Writes the claim's status. With `resource_version`, only onto that
/// state of the claim (the write that binds a prefix: it must land on the
/// state the choice was made for, or not at all).
pub async fn write_status(
    api: &Api<PrefixClaim>,
    name: &str,
    resource_version: Option<&str>,
    status: &PrefixClaimStatus,
) -> Result<PrefixClaim, kube::Error> {
    let mut patch = serde_json::json!({ "status": status });
    if let Some(rv) = resource_version {
        patch["metadata"] = serde_json::json!({ "resourceVersion": rv });
    }
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
}

/// The ServiceCIDR the operator keeps for a claim: the claim's name, the
/// claimed prefix, labelled with and owned by the claim.
pub fn service_cidr_for(claim: &PrefixClaim, prefix: &str) -> ServiceCIDR {
    let owner = OwnerReference {
        api_version: PrefixClaim::api_version(&()).into_owned(),
        kind: PrefixClaim::kind(&()).into_owned(),
        name: claim.name_any(),
        uid: claim.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: None,
    };
    ServiceCIDR {
        metadata: ObjectMeta {
            name: Some(claim.name_any()),
            labels: Some([(CLAIM_LABEL.to_string(), claim.name_any())].into()),
            owner_references: Some(vec![owner]),
            finalizers: Some(vec![SERVICE_CIDR_FINALIZER.to_string()]),
            ..Default::default()
        },
        spec: Some(ServiceCIDRSpec {
            cidrs: Some(vec![prefix.to_string()]),
        }),
        status: None,
    }
}

/// Creates the ServiceCIDR. (Only ever created: its spec is immutable,
/// and an existing object of that name is the watch's to show.)
pub async fn create_service_cidr(
    api: &Api<ServiceCIDR>,
    sc: &ServiceCIDR,
) -> Result<ServiceCIDR, kube::Error> {
    api.create(
        &kube::api::PostParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        },
        sc,
    )
    .await
}

/// Deletes the ServiceCIDR if it is still the object `uid` (a ServiceCIDR
/// someone created under the same name since is left alone).
pub async fn delete_service_cidr(
    api: &Api<ServiceCIDR>,
    name: &str,
    uid: &str,
) -> Result<(), kube::Error> {
    let dp = DeleteParams {
        preconditions: Some(Preconditions {
            uid: Some(uid.to_string()),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(name, &dp).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

/// Whether the ServiceCIDR carries the operator's finalizer.
pub fn has_service_cidr_finalizer(sc: &ServiceCIDR) -> bool {
    sc.finalizers().iter().any(|f| f == SERVICE_CIDR_FINALIZER)
}

/// Adds (`keep`) or removes the operator's finalizer on the ServiceCIDR as
/// last seen (`resource_version`): other finalizers, kube-controller-
/// manager's among them, stay as they are.
pub async fn set_service_cidr_finalizer(
    api: &Api<ServiceCIDR>,
    sc: &ServiceCIDR,
    keep: bool,
) -> Result<ServiceCIDR, kube::Error> {
    let mut list: Vec<String> = sc
        .finalizers()
        .iter()
        .filter(|f| *f != SERVICE_CIDR_FINALIZER)
        .cloned()
        .collect();
    if keep {
        list.push(SERVICE_CIDR_FINALIZER.to_string());
    }
    let patch = serde_json::json!({
        "metadata": {"resourceVersion": sc.metadata.resource_version, "finalizers": list},
    });
    api.patch(
        &sc.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
}

/// The ledger's form of an IPAddress object.
pub fn decode_address(a: &IPAddress) -> AddressSnapshot {
    let service = a
        .spec
        .as_ref()
        .map(|s| &s.parent_ref)
        .map(|r| match &r.namespace {
            Some(ns) if !ns.is_empty() => format!("{ns}/{}", r.name),
            _ => r.name.clone(),
        });
    AddressSnapshot {
        name: a.name_any(),
        uid: a.metadata.uid.clone().unwrap_or_default(),
        resource_version: parse_resource_version(a.metadata.resource_version.as_deref()),
        service,
    }
}

/// The address of every IPAddress object (what the API server's ClusterIP
/// allocator holds for Services), from one consistent list of metadata.
pub async fn ip_addresses(api: &Api<IPAddress>) -> Result<Vec<String>, kube::Error> {
    let mut out = vec![];
    let mut token: Option<String> = None;
    loop {
        let mut lp = kube::api::ListParams::default().limit(super::list_watch::LIST_PAGE);
        lp.continue_token = token.take();
        let page = api.list_metadata(&lp).await?;
        out.extend(page.items.iter().map(|a| a.name_any()));
        match page.metadata.continue_.filter(|t| !t.is_empty()) {
            Some(t) => token = Some(t),
            None => return Ok(out),
        }
    }
}

/// Whether ServiceCIDR `sc` is the one the operator keeps for claim `uid`.
pub fn owned_by(sc: &ServiceCIDR, claim_uid: &str) -> bool {
    sc.owner_references()
        .iter()
        .any(|o| o.uid == claim_uid && o.kind == "PrefixClaim")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_that_does_not_decode_keeps_its_identity_and_finalizer() {
        let obj: WatchedClaim = serde_json::from_value(serde_json::json!({
            "apiVersion": "ipam.prefix-operator.io/v1alpha1",
            "kind": "PrefixClaim",
            "metadata": {"name": "bad", "uid": "u1", "resourceVersion": "42",
                         "finalizers": [CLAIM_FINALIZER], "deletionTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"prefixLength": "long"},
        }))
        .expect("the guard always decodes");
        let snap = decode(&obj);
        assert_eq!((snap.name.as_str(), snap.uid.as_str()), ("bad", "u1"));
        assert!(snap.deleting && snap.finalized);
        assert!(snap.def.is_err());
    }

    #[test]
    fn the_service_cidr_is_named_labelled_and_owned_by_its_claim() {
        let mut claim = PrefixClaim::new("svc", Default::default());
        claim.metadata.uid = Some("cu".into());
        let sc = service_cidr_for(&claim, "2001:db8:0:1::/112");
        assert_eq!(sc.name_any(), "svc");
        assert!(owned_by(&sc, "cu"));
        assert!(!owned_by(&sc, "other"));
        assert_eq!(
            sc.spec.and_then(|s| s.cidrs),
            Some(vec!["2001:db8:0:1::/112".to_string()])
        );
    }
}
