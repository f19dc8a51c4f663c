//! PrefixClaims in the history: when each claim UID was first seen bound
//! (`status.prefix`), so a claim can be ordered against the Node writes
//! and reserved ranges around it.

use std::time::Instant;

use prefix_operator::api::{PrefixClaim, Purpose};

use super::history::Record;

#[derive(Clone, Debug)]
pub struct ClaimRec {
    pub name: String,
    pub purpose: Purpose,
    /// The prefix and when it was first seen bound.
    pub bound: Option<(String, Instant)>,
    pub gone: Option<Instant>,
}

impl Record {
    pub fn observe_claim(&mut self, c: &PrefixClaim, now: Instant) {
        let Some(uid) = c.metadata.uid.clone() else {
            return;
        };
        let rec = self.claims.entry(uid).or_insert_with(|| ClaimRec {
            name: c.metadata.name.clone().unwrap_or_default(),
            purpose: c.spec.purpose,
            bound: None,
            gone: None,
        });
        if rec.bound.is_none()
            && let Some(p) = c.status.as_ref().and_then(|s| s.prefix.clone())
        {
            rec.bound = Some((p, now));
        }
    }

    pub fn claim_gone(&mut self, uid: &str, now: Instant) {
        if let Some(r) = self.claims.get_mut(uid) {
            r.gone.get_or_insert(now);
        }
    }
}
