//! What a PrefixClaim's status says, from the picture (pure).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::api::{PrefixClaimStatus, Purpose};
use crate::controller::pool_status::conditions::condition;
use crate::ledger::{ClaimState, ClaimWait};

/// The state of a claim's consumer, as far as its status reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Consumer {
    /// Nothing to run (`Static`), or not known yet.
    None,
    /// The ServiceCIDR exists and is the claim's.
    ServiceCidr,
    /// It is being created.
    ServiceCidrPending,
    /// A ServiceCIDR of that name belongs to someone else.
    ServiceCidrTaken,
    /// The claim is deleted; its ServiceCIDR is being drained by the API
    /// server (Services still hold addresses from it).
    ServiceCidrDraining,
    /// The claim is deleted; LoadBalancer Services still hold addresses
    /// of it.
    AddressesHeld,
}

/// Everything the status of one claim shows.
pub struct ClaimFacts<'a> {
    pub name: &'a str,
    pub state: &'a ClaimState,
    pub generation: i64,
    pub wait: Option<&'a ClaimWait>,
    pub conflicts: &'a [String],
    pub consumer: Consumer,
}

/// The status claim `f` should have; `prev` keeps transition times.
pub fn build(f: &ClaimFacts<'_>, prev: &[Condition], now: &Time) -> PrefixClaimStatus {
    let g = f.generation;
    let st = f.state;
    let (ok, reason, message) = bound_state(f);
    let bound = condition(prev, "Bound", ok, reason, message, g, now);
    let ready = if bound.status != "True" {
        let (reason, message) = (bound.reason.clone(), bound.message.clone());
        condition(prev, "Ready", false, &reason, message, g, now)
    } else if !f.conflicts.is_empty() {
        condition(
            prev,
            "Ready",
            false,
            "Conflict",
            f.conflicts.join("; "),
            g,
            now,
        )
    } else {
        let (ok, reason, message) = ready_state(f);
        condition(prev, "Ready", ok, reason, message, g, now)
    };
    let service_cidr = (st.purpose == Some(Purpose::ServiceCIDR)
        && matches!(
            f.consumer,
            Consumer::ServiceCidr | Consumer::ServiceCidrDraining
        ))
    .then(|| f.name.to_string());
    PrefixClaimStatus {
        prefix: st.prefix.map(|p| p.to_string()).or(st.garbage.clone()),
        pool: st.pool.clone(),
        service_cidr,
        observed_generation: Some(g),
        conditions: vec![bound, ready],
    }
}

/// `Bound`: the prefix, or why there is none.
fn bound_state(f: &ClaimFacts<'_>) -> (bool, &'static str, String) {
    let st = f.state;
    match (&st.error, st.prefix, &st.garbage, f.wait) {
        (_, Some(p), _, _) => (
            true,
            "Bound",
            format!("{p} of PrefixPool {}", st.pool.as_deref().unwrap_or("?")),
        ),
        (_, None, Some(g), _) => (
            false,
            "InvalidPrefix",
            format!("status.prefix {g:?} is not a CIDR; delete and re-create the claim"),
        ),
        (Some(e), None, None, _) => (false, "InvalidSpec", e.clone()),
        (None, None, None, Some(ClaimWait::NoPool(why))) => (false, "NoPool", why.clone()),
        (None, None, None, Some(ClaimWait::Exhausted { pools })) => (
            false,
            "PoolExhausted",
            format!(
                "no free prefix of that length in PrefixPool(s) {}; the claim waits",
                pools.join(", ")
            ),
        ),
        (None, None, None, None) => (false, "Pending", "not bound yet".into()),
    }
}

/// `Ready` of a bound claim without conflicts: what its consumer does.
fn ready_state(f: &ClaimFacts<'_>) -> (bool, &'static str, String) {
    let st = f.state;
    match (st.purpose, &f.consumer) {
        (_, Consumer::ServiceCidrDraining) => (
            false,
            "WaitingForServices",
            format!(
                "ServiceCIDR {} is being deleted and hands out no more ClusterIPs; the prefix is kept while Services hold ClusterIPs inside it and for a grace after the last one, then {}",
                f.name,
                if st.deleting {
                    "the prefix is freed with the claim"
                } else {
                    "the ServiceCIDR is created again"
                }
            ),
        ),
        (_, Consumer::AddressesHeld) => (
            false,
            "WaitingForServices",
            "the claim is deleted; LoadBalancer Services still hold addresses of it, and the prefix is freed once they let go (delete them or change their type)".into(),
        ),
        (Some(Purpose::LoadBalancer), _) => (
            true,
            "Serving",
            "hands out addresses to LoadBalancer Services of the operator's class".into(),
        ),
        (Some(Purpose::ServiceCIDR), Consumer::ServiceCidr) => (
            true,
            "Serving",
            format!("ServiceCIDR {} hands out ClusterIPs from it", f.name),
        ),
        (Some(Purpose::ServiceCIDR), Consumer::ServiceCidrTaken) => (
            false,
            "ServiceCIDRNameTaken",
            format!(
                "a ServiceCIDR named {} exists and is not this claim's; delete it or name the claim differently",
                f.name
            ),
        ),
        (Some(Purpose::ServiceCIDR), _) => (
            false,
            "CreatingServiceCIDR",
            format!("creating ServiceCIDR {}", f.name),
        ),
        (_, _) => (true, "Claimed", "kept from every other use".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(prefix: Option<&str>) -> ClaimState {
        ClaimState {
            uid: "u".into(),
            resource_version: Some(1),
            prefix: prefix.map(|p| p.parse().expect("cidr")),
            garbage: None,
            pool: prefix.map(|_| "gua".into()),
            purpose: Some(Purpose::ServiceCIDR),
            error: None,
            deleting: false,
            finalized: true,
            reserved: false,
        }
    }

    fn now() -> Time {
        Time(k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).expect("time"))
    }

    fn cond<'a>(s: &'a PrefixClaimStatus, t: &str) -> &'a Condition {
        s.conditions
            .iter()
            .find(|c| c.type_ == t)
            .expect("condition")
    }

    #[test]
    fn a_bound_service_cidr_claim_is_ready_once_its_service_cidr_exists() {
        let st = state(Some("2001:db8:0:1::/112"));
        let mut f = ClaimFacts {
            name: "svc",
            state: &st,
            generation: 1,
            wait: None,
            conflicts: &[],
            consumer: Consumer::ServiceCidrPending,
        };
        let s = build(&f, &[], &now());
        assert_eq!(s.prefix.as_deref(), Some("2001:db8:0:1::/112"));
        assert_eq!(cond(&s, "Bound").status, "True");
        assert_eq!(cond(&s, "Ready").reason, "CreatingServiceCIDR");
        assert_eq!(s.service_cidr, None);
        f.consumer = Consumer::ServiceCidr;
        let s = build(&f, &s.conditions, &now());
        assert_eq!(cond(&s, "Ready").status, "True");
        assert_eq!(s.service_cidr.as_deref(), Some("svc"));
        f.consumer = Consumer::ServiceCidrTaken;
        assert_eq!(
            cond(&build(&f, &[], &now()), "Ready").reason,
            "ServiceCIDRNameTaken"
        );
        let conflicts = ["2001:db8:0:1::/112 overlaps 2001:db8:0:1::/64 of Node n".to_string()];
        f.conflicts = &conflicts;
        f.consumer = Consumer::ServiceCidr;
        assert_eq!(cond(&build(&f, &[], &now()), "Ready").reason, "Conflict");
    }

    #[test]
    fn an_unbound_claim_says_why() {
        let st = state(None);
        let wait = ClaimWait::Exhausted {
            pools: vec!["gua".into()],
        };
        let f = ClaimFacts {
            name: "svc",
            state: &st,
            generation: 1,
            wait: Some(&wait),
            conflicts: &[],
            consumer: Consumer::None,
        };
        let s = build(&f, &[], &now());
        assert_eq!(s.prefix, None);
        assert_eq!(cond(&s, "Bound").reason, "PoolExhausted");
        assert_eq!(cond(&s, "Ready").reason, "PoolExhausted");
        let mut bad = state(None);
        bad.error = Some("spec.prefixLength 200 is out of range".into());
        let f = ClaimFacts {
            state: &bad,
            wait: None,
            ..f
        };
        assert_eq!(cond(&build(&f, &[], &now()), "Bound").reason, "InvalidSpec");
    }
}
