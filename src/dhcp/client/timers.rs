//! What time does to the client: retransmissions, T1 (Renew), T2
//! (Rebind), the end of valid lifetimes, and the end of a Release; and the
//! times a Reply's lifetimes and T1/T2 come to.

use super::{Client, Lease, Millis, NEVER, Note, Output, Phase};
use crate::dhcp::wire::{INFINITY, Offered};

impl Client {
    /// Advances timers to `now`: retransmissions, T1, T2, expiry.
    pub fn on_timer(&mut self, now: Millis) -> Vec<Output> {
        let mut out = Vec::new();
        if matches!(self.phase, Phase::Releasing | Phase::Released) {
            self.release_timer(now, &mut out);
            return out;
        }
        if let Some(b) = &mut self.binding {
            let (gone, kept): (Vec<Lease>, Vec<Lease>) =
                b.leases.drain(..).partition(|l| l.valid_until <= now);
            b.leases = kept;
            if !gone.is_empty() {
                out.push(Output::Note(Note::Expired(gone)));
            }
            if b.leases.is_empty() {
                self.binding = None;
                if matches!(
                    self.phase,
                    Phase::Bound | Phase::Renewing | Phase::Rebinding
                ) {
                    out.extend(self.solicit(now, 0));
                    return out;
                }
            }
        }
        match self.phase {
            Phase::Soliciting => {
                if now >= self.collect_until
                    && let Some(best) = self.best.take()
                {
                    out.extend(self.request(now, best));
                    return out;
                }
                self.retransmit(now, &mut out);
            }
            Phase::Requesting => {
                let exhausted = self
                    .tx
                    .as_ref()
                    .is_some_and(|tx| now >= tx.next_at && tx.t.mrc.is_some_and(|m| tx.sent >= m));
                if exhausted {
                    out.push(Output::Note(Note::RequestUnanswered));
                    self.failures += 1;
                    let delay = self.backoff();
                    out.extend(self.solicit(now, delay));
                } else {
                    self.retransmit(now, &mut out);
                }
            }
            Phase::Bound => {
                let Some(b) = &self.binding else { return out };
                if now >= b.t2_at {
                    out.extend(self.rebind(now));
                } else if now >= b.t1_at {
                    out.extend(self.renew(now));
                }
            }
            Phase::Renewing => {
                let t2 = self.binding.as_ref().map_or(0, |b| b.t2_at);
                if now >= t2 {
                    out.extend(self.rebind(now));
                } else {
                    self.retransmit(now, &mut out);
                }
            }
            Phase::Rebinding => self.retransmit(now, &mut out),
            Phase::Releasing | Phase::Released => {}
        }
        out
    }

    fn release_timer(&mut self, now: Millis, out: &mut Vec<Output>) {
        if self.phase != Phase::Releasing {
            return;
        }
        let done = self
            .tx
            .as_ref()
            .is_none_or(|t| now >= t.next_at && t.t.mrc.is_some_and(|m| t.sent >= m));
        if done {
            self.phase = Phase::Released;
            self.tx = None;
            out.push(Output::Note(Note::Released));
        } else {
            self.retransmit(now, out);
        }
    }
}

/// `now` plus `secs` seconds; [`INFINITY`] is [`NEVER`].
pub(super) fn at(now: Millis, secs: u32) -> Millis {
    if secs == INFINITY {
        NEVER
    } else {
        now.saturating_add(u64::from(secs) * 1000)
    }
}

/// T1 and T2 as the server gave them, or when it left them to the client
/// (0), 0.5 and 0.8 of the shortest preferred lifetime (RFC 8415 §21.21).
pub(super) fn timers(t1: u32, t2: u32, offered: &[Offered]) -> (u32, u32) {
    let shortest = offered
        .iter()
        .filter(|o| o.valid > 0)
        .map(|o| o.preferred)
        .min()
        .unwrap_or(0);
    let t1 = if t1 == 0 {
        if shortest == INFINITY {
            INFINITY
        } else {
            shortest / 2
        }
    } else {
        t1
    };
    let t2 = if t2 == 0 {
        if shortest == INFINITY {
            INFINITY
        } else {
            (u64::from(shortest) * 4 / 5) as u32
        }
    } else {
        t2
    };
    (t1, t2.max(t1))
}
