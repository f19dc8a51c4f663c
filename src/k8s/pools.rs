//! PrefixPools at the edge: decoding an object as the API server holds it
//! into what the ledger takes (the spec validated here, not in the ledger),
//! and the reads that tell whether the ledger's picture of pools is current.

use std::time::SystemTime;

use kube::api::ListParams;
use kube::core::DeserializeGuard;
use kube::{Api, ResourceExt};

use crate::api::{PrefixPool, PrefixPoolStatus, SpecError, validate_pool};
use crate::ledger::{HeldBackRecord, PoolSnapshot, Revision, parse_resource_version};

/// A PrefixPool as watched: its object, or what could be read of one that
/// does not decode.
pub type WatchedPool = DeserializeGuard<PrefixPool>;

/// The ledger's form of a pool, and its status as last seen. An object that
/// does not decode becomes a pool that serves nothing and says why.
pub fn decode(obj: &WatchedPool) -> (PoolSnapshot, Option<PrefixPoolStatus>) {
    let pool = match &obj.0 {
        Ok(p) => p,
        Err(bad) => {
            let m = &bad.metadata;
            let snap = PoolSnapshot {
                name: m.name.clone().unwrap_or_default(),
                uid: m.uid.clone().unwrap_or_default(),
                resource_version: parse_resource_version(m.resource_version.as_deref()),
                generation: m.generation.unwrap_or_default(),
                def: Err(SpecError(format!(
                    "cannot decode the object: {}",
                    bad.error
                ))),
                retired: vec![],
                held_back: vec![],
                labels: m.labels.clone().unwrap_or_default().into_iter().collect(),
                delegation: None,
            };
            return (snap, None);
        }
    };
    let status = pool.status.as_ref();
    let retired = status
        .map(|s| {
            s.prefixes
                .iter()
                .filter(|p| p.retired)
                .map(|p| p.prefix.clone())
                .collect()
        })
        .unwrap_or_default();
    let held_back = status
        .map(|s| {
            s.held_back
                .iter()
                .map(|h| HeldBackRecord {
                    prefix: h.prefix.clone(),
                    node: h.node.clone(),
                    pending_write: h.pending_write,
                    retained_until: h.retained_until.as_ref().map(|t| SystemTime::from(t.0)),
                    reusable_at: SystemTime::from(h.reusable_at.0),
                })
                .collect()
        })
        .unwrap_or_default();
    let delegation = delegation_now(status);
    let snap = PoolSnapshot {
        name: pool.name_any(),
        uid: pool.metadata.uid.clone().unwrap_or_default(),
        resource_version: parse_resource_version(pool.metadata.resource_version.as_deref()),
        generation: pool.metadata.generation.unwrap_or_default(),
        def: validate_pool(&pool.spec, delegation.as_ref()),
        retired,
        held_back,
        labels: pool.labels().clone().into_iter().collect(),
        delegation,
    };
    (snap, pool.status.clone())
}

/// The pool's DHCPv6 binding as of now, whatever its writer (the leader's
/// DHCPv6 client, which may be gone) last recorded: a prefix past its
/// preferred lifetime gives no new node prefixes, one past its valid
/// lifetime is expired.
fn delegation_now(status: Option<&PrefixPoolStatus>) -> Option<crate::api::DelegationStatus> {
    let mut d = status?.delegation.clone()?;
    let now = k8s_openapi::jiff::Timestamp::now();
    for p in &mut d.prefixes {
        let ended = |t: &Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>| {
            t.as_ref().is_some_and(|t| t.0 <= now)
        };
        if p.state != crate::api::DELEGATED_EXPIRED && ended(&p.valid_until) {
            p.state = crate::api::DELEGATED_EXPIRED.into();
        } else if p.state == crate::api::DELEGATED_PREFERRED && ended(&p.preferred_until) {
            p.state = crate::api::DELEGATED_DEPRECATED.into();
        }
    }
    Some(d)
}

/// Every pool's name and revision, and the list's `resourceVersion`.
pub type Revisions = (Vec<(String, Revision)>, Option<u64>);

/// Every pool's name and revision from one consistent list of metadata
/// (small however large the statuses are), with the list's
/// `resourceVersion`. The API server serves a consistent list from its
/// watch cache once the cache has caught up with etcd: for pools, which
/// see few writes of their own, that is etcd's next progress notification
/// (requested at most every 100 ms), so a check takes tens of
/// milliseconds under Node traffic; one check serves every Node queued
/// meanwhile.
pub async fn list_revisions(api: &Api<PrefixPool>) -> Result<Revisions, kube::Error> {
    let mut out = vec![];
    let mut token: Option<String> = None;
    loop {
        let mut lp = ListParams::default().limit(super::list_watch::LIST_PAGE);
        lp.continue_token = token.take();
        let page = api.list_metadata(&lp).await?;
        out.extend(page.items.iter().map(|p| {
            let rev = Revision {
                uid: p.metadata.uid.clone().unwrap_or_default(),
                rv: parse_resource_version(p.metadata.resource_version.as_deref()),
            };
            (p.name_any(), rev)
        }));
        match page.metadata.continue_.filter(|t| !t.is_empty()) {
            Some(t) => token = Some(t),
            None => {
                let rv = parse_resource_version(page.metadata.resource_version.as_deref());
                return Ok((out, rv));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_object_that_does_not_decode_keeps_its_identity_and_says_why() {
        let obj: WatchedPool = serde_json::from_value(serde_json::json!({
            "apiVersion": "ipam.prefix-operator.io/v1alpha1",
            "kind": "PrefixPool",
            "metadata": {"name": "bad", "uid": "u1", "resourceVersion": "42", "generation": 3},
            "spec": {"prefixes": "not-a-list"},
        }))
        .expect("the guard always decodes");
        let (snap, status) = decode(&obj);
        assert_eq!((snap.name.as_str(), snap.uid.as_str()), ("bad", "u1"));
        assert_eq!((snap.resource_version, snap.generation), (Some(42), 3));
        let err = snap.def.expect_err("serves nothing");
        assert!(err.0.starts_with("cannot decode the object"), "{err}");
        assert!(status.is_none());
    }

    #[test]
    fn a_valid_object_is_validated_here() {
        let obj: WatchedPool = serde_json::from_value(serde_json::json!({
            "apiVersion": "ipam.prefix-operator.io/v1alpha1",
            "kind": "PrefixPool",
            "metadata": {"name": "p", "uid": "u2", "resourceVersion": "7", "generation": 1},
            "spec": {"prefixes": ["2001:db8::1/64"]},
        }))
        .expect("decodes");
        let (snap, _) = decode(&obj);
        assert!(snap.def.is_err(), "host bits set: refused by validation");
    }

    /// A delegated pool's prefixes are the Preferred ones of its recorded
    /// binding, and only while the clock agrees, whoever wrote the record:
    /// a prefix recorded as Preferred past its preferred lifetime gives
    /// nothing new, one past its valid lifetime counts as expired.
    #[test]
    fn a_delegated_pool_takes_its_recorded_prefixes_only_while_the_clock_agrees() {
        let now = k8s_openapi::jiff::Timestamp::now().as_second();
        let t = |d: i64| {
            k8s_openapi::jiff::Timestamp::from_second(now + d)
                .expect("time")
                .to_string()
        };
        let obj: WatchedPool = serde_json::from_value(serde_json::json!({
            "apiVersion": "ipam.prefix-operator.io/v1alpha1",
            "kind": "PrefixPool",
            "metadata": {"name": "pd", "uid": "u3", "resourceVersion": "9", "generation": 1},
            "spec": {"delegation": {"interface": "eth1"}},
            "status": {"delegation": {"duid": "00:04", "iaid": 1, "phase": "Bound", "prefixes": [
                {"prefix": "2001:db8:1::/56", "state": "Preferred", "preferredUntil": t(600), "validUntil": t(900)},
                {"prefix": "2001:db8:2::/56", "state": "Preferred", "preferredUntil": t(-60), "validUntil": t(900)},
                {"prefix": "2001:db8:3::/56", "state": "Preferred", "preferredUntil": t(-120), "validUntil": t(-60)},
                {"prefix": "2001:db8:4::/56", "state": "Preferred"},
                {"prefix": "2001:db8:5::/56", "state": "Deprecated", "validUntil": t(900)},
            ]}},
        }))
        .expect("decodes");
        let (snap, _) = decode(&obj);
        let def = snap.def.expect("valid");
        let served: Vec<String> = def.prefixes.iter().map(|p| p.to_string()).collect();
        assert_eq!(served, vec!["2001:db8:1::/56", "2001:db8:4::/56"]);
        assert_eq!(def.delegation_interface.as_deref(), Some("eth1"));
        let states: Vec<(String, String)> = snap
            .delegation
            .expect("carried")
            .prefixes
            .into_iter()
            .map(|p| (p.prefix, p.state))
            .collect();
        assert_eq!(states[1].1, "Deprecated", "{states:?}");
        assert_eq!(states[2].1, "Expired", "{states:?}");
        assert_eq!(states[3].1, "Preferred", "no end recorded: infinite");
    }

    #[test]
    fn a_delegated_pool_with_nothing_recorded_is_valid_and_serves_nothing() {
        let obj: WatchedPool = serde_json::from_value(serde_json::json!({
            "apiVersion": "ipam.prefix-operator.io/v1alpha1",
            "kind": "PrefixPool",
            "metadata": {"name": "pd", "uid": "u4", "resourceVersion": "1", "generation": 1},
            "spec": {"delegation": {"interface": "eth1"}},
        }))
        .expect("decodes");
        let (snap, _) = decode(&obj);
        let def = snap.def.expect("valid");
        assert!(def.prefixes.is_empty());
        assert_eq!(def.family, crate::alloc::Family::V6);
    }
}
