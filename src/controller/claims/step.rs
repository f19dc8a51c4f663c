//! What a PrefixClaim needs next, decided from the ledger's picture alone
//! (pure): the requests a claim's lane can send, and [`next_step`], which
//! picks one. `claims.rs` gathers the facts, acts on the step and handles
//! the answers.

use k8s_openapi::api::networking::v1::ServiceCIDR;

use super::status::Consumer;
use crate::api::{PrefixClaimStatus, Purpose};
use crate::k8s::claims as edge;
use crate::ledger::ClaimState;

/// A request for one claim.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Request {
    AddFinalizer,
    Bind {
        rv: String,
        status: Box<PrefixClaimStatus>,
    },
    /// A bind with an unknown outcome: read the claim back.
    Settle {
        rv: String,
    },
    Status(Consumer),
    CreateServiceCidr,
    DeleteServiceCidr,
    /// Puts the operator's finalizer on the claim's ServiceCIDR (one
    /// created before it had one), or takes it off a drained one.
    ServiceCidrFinalizer {
        keep: bool,
    },
    /// Before the finalizer goes: does any Service still hold an address
    /// (an IPAddress object) inside the prefix?
    CheckAddresses,
    RemoveFinalizer,
}

/// The ServiceCIDR of the claim's name, as the watch shows it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct CidrView {
    /// Owned by this claim (its UID).
    pub ours: bool,
    /// Has a deletionTimestamp.
    pub deleting: bool,
    /// Carries the operator's finalizer.
    pub our_finalizer: bool,
}

impl CidrView {
    pub(crate) fn of(sc: &ServiceCIDR, claim_uid: &str) -> CidrView {
        CidrView {
            ours: edge::owned_by(sc, claim_uid),
            deleting: sc.metadata.deletion_timestamp.is_some(),
            our_finalizer: edge::has_service_cidr_finalizer(sc),
        }
    }
}

/// Everything [`next_step`] looks at.
#[derive(Clone, Debug)]
pub(crate) struct Facts<'a> {
    pub state: &'a ClaimState,
    /// The ServiceCIDR named like the claim, if any.
    pub cidr: Option<CidrView>,
    /// The last plan told the claim to wait.
    pub waiting: bool,
    /// Space freed or pools changed since: plan again.
    pub replan: bool,
    /// The Service watch has delivered its first list.
    pub services_synced: bool,
    /// LoadBalancer Services hold addresses inside the claim's prefix.
    pub services_inside: bool,
}

/// What to do for the claim now.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Step {
    Nothing,
    /// Choose the claim's prefix and bind it, once the pool gate lets it
    /// (a check of the pools sent after the claim was seen passed).
    Plan,
    Send(Request),
    /// Write the status this consumer state gives, if it differs from the
    /// claim's.
    Status(Consumer),
    /// The prefix is a ServiceCIDR's that must be drained first (no
    /// ClusterIP inside for the grace): once it is, send this; until
    /// then, show [`Consumer::ServiceCidrDraining`].
    WhenDrained(Request),
}

/// The one thing the claim needs next.
pub(crate) fn next_step(f: &Facts) -> Step {
    let st = f.state;
    let ours = f.cidr.is_some_and(|c| c.ours);
    let draining = ours && f.cidr.is_some_and(|c| c.deleting);
    if draining && st.prefix.is_some() {
        // Deleted (with the claim, or by hand): nothing more is handed out
        // of it. Let it go once drained; its watch event wakes the claim.
        if f.cidr.is_some_and(|c| c.our_finalizer) {
            return Step::WhenDrained(Request::ServiceCidrFinalizer { keep: false });
        }
        return Step::Status(Consumer::ServiceCidrDraining);
    }
    if st.deleting {
        return deleting_step(f, ours);
    }
    if st.error.is_some() || st.garbage.is_some() {
        return Step::Status(Consumer::None);
    }
    if !st.finalized {
        return Step::Send(Request::AddFinalizer);
    }
    if st.prefix.is_none() {
        if st.reserved {
            return Step::Nothing;
        }
        if f.waiting && !f.replan {
            // Told to wait: say so; planned again when space frees or
            // pools change.
            return Step::Status(Consumer::None);
        }
        return Step::Plan;
    }
    match (st.purpose, f.cidr) {
        (Some(Purpose::ServiceCIDR), None) => Step::Send(Request::CreateServiceCidr),
        (Some(Purpose::ServiceCIDR), Some(c)) if c.ours && !c.our_finalizer => {
            Step::Send(Request::ServiceCidrFinalizer { keep: true })
        }
        (Some(Purpose::ServiceCIDR), Some(c)) if c.ours => Step::Status(Consumer::ServiceCidr),
        (Some(Purpose::ServiceCIDR), Some(_)) => Step::Status(Consumer::ServiceCidrTaken),
        _ => Step::Status(Consumer::None),
    }
}

/// A claim being deleted: its consumer goes first, then the finalizer.
fn deleting_step(f: &Facts, ours: bool) -> Step {
    let st = f.state;
    if !st.finalized {
        return Step::Nothing;
    }
    let Some(_) = st.prefix else {
        return Step::Send(Request::RemoveFinalizer);
    };
    if ours {
        return Step::Send(Request::DeleteServiceCidr);
    }
    match st.purpose {
        Some(Purpose::ServiceCIDR) => Step::WhenDrained(Request::CheckAddresses),
        Some(Purpose::LoadBalancer) if !f.services_synced => Step::Nothing,
        // Freed once no Service holds an address of it; a Service's
        // release wakes the claim.
        Some(Purpose::LoadBalancer) if f.services_inside => Step::Status(Consumer::AddressesHeld),
        _ => Step::Send(Request::RemoveFinalizer),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(purpose: Purpose) -> ClaimState {
        ClaimState {
            uid: "u1".into(),
            resource_version: Some(5),
            prefix: None,
            garbage: None,
            pool: None,
            purpose: Some(purpose),
            error: None,
            deleting: false,
            finalized: true,
            reserved: false,
        }
    }

    fn bound(purpose: Purpose) -> ClaimState {
        ClaimState {
            prefix: Some("2001:db8:42:3::/112".parse().expect("prefix")),
            pool: Some("gua".into()),
            ..claim(purpose)
        }
    }

    fn facts(state: &ClaimState) -> Facts<'_> {
        Facts {
            state,
            cidr: None,
            waiting: false,
            replan: false,
            services_synced: true,
            services_inside: false,
        }
    }

    const OURS: CidrView = CidrView {
        ours: true,
        deleting: false,
        our_finalizer: true,
    };

    #[test]
    fn a_new_claim_gets_the_finalizer_then_a_plan() {
        let mut st = claim(Purpose::Static);
        st.finalized = false;
        assert_eq!(next_step(&facts(&st)), Step::Send(Request::AddFinalizer));
        st.finalized = true;
        assert_eq!(next_step(&facts(&st)), Step::Plan);
    }

    #[test]
    fn a_waiting_claim_shows_why_until_told_to_plan_again() {
        let st = claim(Purpose::Static);
        let f = Facts {
            waiting: true,
            ..facts(&st)
        };
        assert_eq!(next_step(&f), Step::Status(Consumer::None));
        let f = Facts { replan: true, ..f };
        assert_eq!(next_step(&f), Step::Plan);
    }

    #[test]
    fn a_bind_in_flight_sends_nothing_more() {
        let st = ClaimState {
            reserved: true,
            ..claim(Purpose::Static)
        };
        assert_eq!(next_step(&facts(&st)), Step::Nothing);
    }

    #[test]
    fn a_refused_spec_or_a_garbage_prefix_only_shows_its_status() {
        let st = ClaimState {
            error: Some("no pool named x".into()),
            finalized: false,
            ..claim(Purpose::Static)
        };
        assert_eq!(next_step(&facts(&st)), Step::Status(Consumer::None));
        let st = ClaimState {
            garbage: Some("not-a-cidr".into()),
            ..claim(Purpose::Static)
        };
        assert_eq!(next_step(&facts(&st)), Step::Status(Consumer::None));
    }

    #[test]
    fn a_bound_service_cidr_claim_creates_adopts_or_reports_its_service_cidr() {
        let st = bound(Purpose::ServiceCIDR);
        assert_eq!(
            next_step(&facts(&st)),
            Step::Send(Request::CreateServiceCidr)
        );
        let old = CidrView {
            our_finalizer: false,
            ..OURS
        };
        let f = Facts {
            cidr: Some(old),
            ..facts(&st)
        };
        assert_eq!(
            next_step(&f),
            Step::Send(Request::ServiceCidrFinalizer { keep: true }),
            "one made before the finalizer existed gets it"
        );
        let f = Facts {
            cidr: Some(OURS),
            ..facts(&st)
        };
        assert_eq!(next_step(&f), Step::Status(Consumer::ServiceCidr));
        let f = Facts {
            cidr: Some(CidrView::default()),
            ..facts(&st)
        };
        assert_eq!(next_step(&f), Step::Status(Consumer::ServiceCidrTaken));
    }

    #[test]
    fn other_bound_claims_only_keep_their_status() {
        for p in [Purpose::Static, Purpose::LoadBalancer] {
            let st = bound(p);
            assert_eq!(
                next_step(&facts(&st)),
                Step::Status(Consumer::None),
                "{p:?}"
            );
        }
    }

    #[test]
    fn a_service_cidr_deleted_under_a_live_claim_is_drained_before_it_goes() {
        let st = bound(Purpose::ServiceCIDR);
        let f = Facts {
            cidr: Some(CidrView {
                deleting: true,
                ..OURS
            }),
            ..facts(&st)
        };
        assert_eq!(
            next_step(&f),
            Step::WhenDrained(Request::ServiceCidrFinalizer { keep: false })
        );
        let f = Facts {
            cidr: Some(CidrView {
                deleting: true,
                our_finalizer: false,
                ..OURS
            }),
            ..facts(&st)
        };
        assert_eq!(
            next_step(&f),
            Step::Status(Consumer::ServiceCidrDraining),
            "without our finalizer there is nothing of ours to take off"
        );
    }

    #[test]
    fn a_deleted_claim_lets_its_consumer_go_before_its_finalizer() {
        let deleted = |p| ClaimState {
            deleting: true,
            ..bound(p)
        };
        let st = deleted(Purpose::ServiceCIDR);
        let f = Facts {
            cidr: Some(OURS),
            ..facts(&st)
        };
        assert_eq!(next_step(&f), Step::Send(Request::DeleteServiceCidr));
        assert_eq!(
            next_step(&facts(&st)),
            Step::WhenDrained(Request::CheckAddresses),
            "the ServiceCIDR gone: no ClusterIP may remain inside"
        );
        let st = deleted(Purpose::LoadBalancer);
        let f = Facts {
            services_inside: true,
            ..facts(&st)
        };
        assert_eq!(next_step(&f), Step::Status(Consumer::AddressesHeld));
        let f = Facts {
            services_synced: false,
            ..facts(&st)
        };
        assert_eq!(next_step(&f), Step::Nothing, "no Service list yet");
        assert_eq!(next_step(&facts(&st)), Step::Send(Request::RemoveFinalizer));
        let st = deleted(Purpose::Static);
        assert_eq!(next_step(&facts(&st)), Step::Send(Request::RemoveFinalizer));
    }

    #[test]
    fn a_deleted_claim_without_our_finalizer_or_prefix() {
        let st = ClaimState {
            deleting: true,
            finalized: false,
            ..bound(Purpose::Static)
        };
        assert_eq!(next_step(&facts(&st)), Step::Nothing, "not ours to finish");
        let st = ClaimState {
            deleting: true,
            ..claim(Purpose::ServiceCIDR)
        };
        assert_eq!(
            next_step(&facts(&st)),
            Step::Send(Request::RemoveFinalizer),
            "nothing was carved"
        );
    }
}
