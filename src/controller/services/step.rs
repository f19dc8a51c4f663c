//! The decisions of the LoadBalancer Service lane, pure: what a Service
//! told to wait says ([`wait_reason`]), and what the answer to a status
//! write means ([`outcome`]). `services.rs` plans with the ledger, sends the
//! writes and acts on these.

use std::net::IpAddr;

use crate::k8s::errors::WriteOutcome;
use crate::ledger::AddressWait;

/// What a Service write was for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// These addresses, each with the claim it comes from.
    Assign(Vec<(String, IpAddr)>),
    Release,
}

/// The reason (an Event's) and the message for a Service that waits.
pub(crate) fn wait_reason(w: &AddressWait) -> (&'static str, String) {
    match w {
        AddressWait::NoClaim(f) => (
            "NoLoadBalancerClaim",
            format!(
                "no bound PrefixClaim of purpose LoadBalancer has {f} addresses; create one to serve this Service"
            ),
        ),
        AddressWait::Exhausted { family, claims } => (
            "LoadBalancerAddressesExhausted",
            format!(
                "every {family} address of PrefixClaim(s) {} is taken; the Service waits",
                claims.join(", ")
            ),
        ),
        AddressWait::Taken { address, by } => (
            "RequestedAddressTaken",
            format!(
                "the requested address {address} is held by Service {by} (addresses are not shared); the Service waits"
            ),
        ),
        AddressWait::Outside(a) => (
            "RequestedAddressOutsideClaims",
            format!(
                "the requested address {a} is in no LoadBalancer PrefixClaim (or not of a family the Service asks for, or a claim's network address)"
            ),
        ),
    }
}

/// The Service as an answer shows it.
#[derive(Clone, Debug)]
pub(crate) struct Answered<'a> {
    /// Its LoadBalancer ingress addresses.
    pub ingress: &'a [IpAddr],
    pub resource_version: Option<&'a str>,
}

/// What the answer to a write (or to the read-back of one) means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The object as answered is the truth: commit it; `assigned` when the
    /// addresses written are on it (an Event says so).
    Commit { assigned: bool },
    /// Still at the state written onto and without the addresses: the write
    /// may yet land. Read again later; the reservation stays.
    SettleAgain,
    /// The Service is gone: nothing is held.
    Gone,
    /// No answer, or one that does not say whether it landed: read it back;
    /// the reservation stays.
    ReadBack,
    /// Refused or not applied (leadership lapsed before it was sent, the
    /// Service changed since, throttled): nothing landed. Release the
    /// reservation, retry after the backoff.
    Retry,
}

/// What the answer to a write of `purpose` onto resourceVersion `rv`
/// means. `settle`: the answer is a read-back of a write whose outcome was
/// unknown.
pub(crate) fn outcome(
    purpose: &Purpose,
    rv: &str,
    settle: bool,
    answer: Result<Option<Answered>, WriteOutcome>,
) -> Outcome {
    match answer {
        Ok(Some(a)) => {
            let landed = match purpose {
                Purpose::Assign(picks) => picks.iter().all(|(_, ip)| a.ingress.contains(ip)),
                Purpose::Release => true,
            };
            let moved_on = a.resource_version != Some(rv);
            if settle && !landed && !moved_on {
                return Outcome::SettleAgain;
            }
            Outcome::Commit {
                assigned: landed && matches!(purpose, Purpose::Assign(_)),
            }
        }
        Ok(None) => Outcome::Gone,
        Err(_) if settle => Outcome::ReadBack,
        Err(WriteOutcome::Unknown) => Outcome::ReadBack,
        Err(_) => Outcome::Retry,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alloc::Family;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    fn assign() -> Purpose {
        Purpose::Assign(vec![("lb".into(), ip("2001:db8:42:4::1"))])
    }

    fn answered<'a>(
        ingress: &'a [IpAddr],
        rv: &'a str,
    ) -> Result<Option<Answered<'a>>, WriteOutcome> {
        Ok(Some(Answered {
            ingress,
            resource_version: Some(rv),
        }))
    }

    #[test]
    fn a_write_that_landed_is_committed_and_announced() {
        let on = [ip("2001:db8:42:4::1")];
        assert_eq!(
            outcome(&assign(), "5", false, answered(&on, "6")),
            Outcome::Commit { assigned: true }
        );
        assert_eq!(
            outcome(&Purpose::Release, "5", false, answered(&[], "6")),
            Outcome::Commit { assigned: false },
            "a release is not announced"
        );
    }

    #[test]
    fn a_read_back_still_at_the_written_state_waits_for_the_write() {
        assert_eq!(
            outcome(&assign(), "5", true, answered(&[], "5")),
            Outcome::SettleAgain
        );
        assert_eq!(
            outcome(&assign(), "5", true, answered(&[], "7")),
            Outcome::Commit { assigned: false },
            "moved on without the addresses: they never will land"
        );
    }

    #[test]
    fn unknown_outcomes_are_read_back_and_refusals_retried() {
        assert_eq!(
            outcome(&assign(), "5", false, Err(WriteOutcome::Unknown)),
            Outcome::ReadBack
        );
        for refused in [
            WriteOutcome::Refused,
            WriteOutcome::NotApplied,
            WriteOutcome::Gone,
        ] {
            assert_eq!(
                outcome(&assign(), "5", false, Err(refused.clone())),
                Outcome::Retry,
                "{refused:?}"
            );
        }
        assert_eq!(
            outcome(&assign(), "5", true, Err(WriteOutcome::Refused)),
            Outcome::ReadBack,
            "a failed read-back reads again: the first write's outcome is still unknown"
        );
    }

    #[test]
    fn leadership_lost_before_the_write_releases_and_retries() {
        let e = crate::k8s::errors::not_leader();
        let w = crate::k8s::errors::write_outcome(&e);
        assert_eq!(outcome(&assign(), "5", false, Err(w)), Outcome::Retry);
    }

    #[test]
    fn a_service_gone_holds_nothing() {
        assert_eq!(outcome(&assign(), "5", false, Ok(None)), Outcome::Gone);
    }

    #[test]
    fn each_wait_has_its_own_reason_naming_what_to_do() {
        let cases = [
            (
                AddressWait::NoClaim(Family::V6),
                "NoLoadBalancerClaim",
                "create one",
            ),
            (
                AddressWait::Exhausted {
                    family: Family::V6,
                    claims: vec!["lb".into(), "lb2".into()],
                },
                "LoadBalancerAddressesExhausted",
                "lb, lb2",
            ),
            (
                AddressWait::Taken {
                    address: ip("2001:db8::1"),
                    by: "default/a".into(),
                },
                "RequestedAddressTaken",
                "default/a",
            ),
            (
                AddressWait::Outside(ip("2001:db8::1")),
                "RequestedAddressOutsideClaims",
                "2001:db8::1",
            ),
        ];
        for (w, reason, says) in cases {
            let (r, msg) = wait_reason(&w);
            assert_eq!(r, reason);
            assert!(msg.contains(says), "{msg}");
        }
    }
}
