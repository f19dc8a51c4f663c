//! What the answer to a claim's request means (pure): the claim lane's
//! counterpart of the Node pipeline's `write_failed` and of the Service
//! lane's `outcome`. [`super::answers`] reduces each answer to what it
//! [`Shown`], asks [`after`], and carries the move out.

use std::time::Duration;

use super::step::Request;
use crate::k8s::errors::WriteOutcome;

use crate::controller::lane::{FIRST_SETTLE, SETTLE_AGAIN};

/// What an answer showed, reduced to what decides the next move.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Shown {
    /// The request succeeded.
    Answered,
    /// The claim read back after a bind of unknown outcome: `None` when it
    /// is gone, else whether it holds a prefix and its resourceVersion.
    ReadBack(Option<(bool, String)>),
    /// The request failed; what that says about whether it landed.
    Failed(WriteOutcome),
}

/// The next move after an answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum After {
    /// The bind landed: the claim as answered is the record.
    Bound,
    /// The read-back tells the outcome (the bind landed, or the claim
    /// moved on so it never can): take the claim as read.
    Settled,
    /// It may yet land: keep the reservation, read the claim again after
    /// this long.
    Settle(Duration),
    /// The claim is gone: nothing it held stays reserved.
    Release,
    /// Refused or never applied (the claim changed, leadership lapsed
    /// before it was sent, throttled): it did not land. Free the
    /// reservation, retry after the backoff.
    ReleaseAndRetry,
    /// A request that reserves nothing failed: retry after the backoff.
    Retry,
    /// Done: act on the answer and look at the claim again.
    Next,
}

/// The move after `request` got an answer that showed `shown`.
pub(crate) fn after(request: &Request, shown: &Shown) -> After {
    use WriteOutcome::Unknown;
    match (request, shown) {
        (Request::Bind { .. }, Shown::Answered) => After::Bound,
        (Request::Bind { .. }, Shown::Failed(Unknown)) => After::Settle(FIRST_SETTLE),
        (Request::Bind { .. }, Shown::Failed(_)) => After::ReleaseAndRetry,
        (Request::Settle { rv }, Shown::ReadBack(Some((bound, now_rv)))) => {
            if *bound || now_rv != rv {
                After::Settled
            } else {
                After::Settle(SETTLE_AGAIN)
            }
        }
        (Request::Settle { .. }, Shown::ReadBack(None)) => After::Release,
        // A failed read leaves the outcome as open as it was.
        (Request::Settle { .. }, _) => After::Settle(SETTLE_AGAIN),
        (_, Shown::Failed(_)) => After::Retry,
        (_, _) => After::Next,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::PrefixClaimStatus;

    fn bind() -> Request {
        Request::Bind {
            rv: "7".into(),
            status: Box::new(PrefixClaimStatus::default()),
        }
    }

    fn settle() -> Request {
        Request::Settle { rv: "7".into() }
    }

    #[test]
    fn a_failed_read_of_addresses_or_finalizer_write_retries() {
        for req in [Request::CheckAddresses, Request::AddFinalizer] {
            for o in [
                WriteOutcome::Unknown,
                WriteOutcome::NotApplied,
                WriteOutcome::Refused,
            ] {
                assert_eq!(after(&req, &Shown::Failed(o)), After::Retry, "{req:?}");
            }
        }
    }

    #[test]
    fn a_bind_that_landed_is_the_record() {
        assert_eq!(after(&bind(), &Shown::Answered), After::Bound);
    }

    #[test]
    fn a_refused_bind_frees_its_reservation_and_retries() {
        // 409 (the claim changed since), 422 (a CEL rule), 404 (gone).
        for o in [WriteOutcome::Refused, WriteOutcome::Gone] {
            assert_eq!(after(&bind(), &Shown::Failed(o)), After::ReleaseAndRetry);
        }
    }

    #[test]
    fn leadership_lost_before_a_bind_was_sent_frees_it() {
        // `as_leader` answers a lapsed lease with 403 NotLeader, which
        // `write_outcome` reads as not applied.
        let lapsed = crate::k8s::errors::write_outcome(&crate::k8s::errors::not_leader());
        assert_eq!(lapsed, WriteOutcome::NotApplied);
        assert_eq!(
            after(&bind(), &Shown::Failed(lapsed)),
            After::ReleaseAndRetry
        );
    }

    #[test]
    fn a_bind_with_an_unknown_outcome_keeps_its_reservation_until_read_back() {
        assert_eq!(
            after(&bind(), &Shown::Failed(WriteOutcome::Unknown)),
            After::Settle(FIRST_SETTLE)
        );
    }

    #[test]
    fn a_read_back_settles_once_it_tells() {
        // Bound: it landed.
        let bound = Shown::ReadBack(Some((true, "8".into())));
        assert_eq!(after(&settle(), &bound), After::Settled);
        // Unbound but moved on: the write carried rv 7, so it never can.
        let moved = Shown::ReadBack(Some((false, "9".into())));
        assert_eq!(after(&settle(), &moved), After::Settled);
        // Unbound and still at rv 7: it may yet land.
        let same = Shown::ReadBack(Some((false, "7".into())));
        assert_eq!(after(&settle(), &same), After::Settle(SETTLE_AGAIN));
        // Gone: nothing stays reserved.
        assert_eq!(after(&settle(), &Shown::ReadBack(None)), After::Release);
    }

    #[test]
    fn a_failed_read_back_keeps_the_outcome_open() {
        for o in [WriteOutcome::Unknown, WriteOutcome::NotApplied] {
            assert_eq!(
                after(&settle(), &Shown::Failed(o)),
                After::Settle(SETTLE_AGAIN)
            );
        }
    }

    #[test]
    fn other_requests_go_on_or_retry() {
        for req in [
            Request::AddFinalizer,
            Request::RemoveFinalizer,
            Request::CreateServiceCidr,
            Request::DeleteServiceCidr,
            Request::ServiceCidrFinalizer { keep: false },
            Request::CheckAddresses,
        ] {
            assert_eq!(after(&req, &Shown::Answered), After::Next, "{req:?}");
            assert_eq!(
                after(&req, &Shown::Failed(WriteOutcome::Refused)),
                After::Retry,
                "{req:?}"
            );
        }
    }
}
