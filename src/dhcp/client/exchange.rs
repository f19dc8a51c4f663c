//! The exchanges the client starts (Solicit, Request, Renew, Rebind,
//! Release), how each is retransmitted (RFC 8415 §7.6 and §15), and the
//! messages it sends.

use dhcproto::v6::MessageType;
use ipnet::Ipv6Net;

use super::{Candidate, Client, Millis, NEVER, Note, Output, Phase};
use crate::dhcp::wire::{self, Ask};

/// How one kind of exchange is retransmitted (RFC 8415 §7.6 and §15): the
/// message, IRT, MRT (0: none) and MRC (the most transmissions in all; this
/// client counts MRC as the total).
#[derive(Clone, Copy, Debug)]
pub(super) struct Timing {
    kind: MessageType,
    irt: Millis,
    mrt: Millis,
    pub(super) mrc: Option<u32>,
}

const SOLICIT: Timing = Timing {
    kind: MessageType::Solicit,
    irt: 1_000,
    mrt: 3_600_000,
    mrc: None,
};
const REQUEST: Timing = Timing {
    kind: MessageType::Request,
    irt: 1_000,
    mrt: 30_000,
    mrc: Some(10),
};
const RENEW: Timing = Timing {
    kind: MessageType::Renew,
    irt: 10_000,
    mrt: 600_000,
    mrc: None,
};
const REBIND: Timing = Timing {
    kind: MessageType::Rebind,
    irt: 10_000,
    mrt: 600_000,
    mrc: None,
};
const RELEASE: Timing = Timing {
    kind: MessageType::Release,
    irt: 1_000,
    mrt: 0,
    mrc: Some(4),
};

/// One exchange's retransmission state (RFC 8415 §15).
#[derive(Clone, Debug)]
pub(super) struct Tx {
    pub(super) t: Timing,
    pub(super) xid: [u8; 3],
    started: Millis,
    rt: Millis,
    pub(super) next_at: Millis,
    pub(super) sent: u32,
    /// No transmission at or after this (MRD).
    until: Millis,
    server_id: Option<Vec<u8>>,
    ask: Ask,
}

impl Client {
    /// Gives everything back (the pool is being deleted): Release to the
    /// server of the binding, sent up to RELEASE's MRC times.
    pub fn release(&mut self, now: Millis) -> Vec<Output> {
        let Some(b) = self.binding.take() else {
            self.phase = Phase::Released;
            self.tx = None;
            return vec![Output::Note(Note::Released)];
        };
        self.phase = Phase::Releasing;
        let ask = Ask::Prefixes(b.leases.iter().map(|l| l.prefix).collect());
        self.start(now, now, RELEASE, NEVER, Some(b.server_id), ask)
    }

    pub(super) fn held(&self) -> Vec<Ipv6Net> {
        self.binding
            .as_ref()
            .map(|b| b.leases.iter().map(|l| l.prefix).collect())
            .unwrap_or_default()
    }

    pub(super) fn backoff(&self) -> Millis {
        SOLICIT
            .irt
            .saturating_mul(1 << self.failures.min(12))
            .min(SOLICIT.mrt)
    }

    pub(super) fn solicit(&mut self, now: Millis, delay: Millis) -> Vec<Output> {
        self.phase = Phase::Soliciting;
        self.best = None;
        let ask = Ask::Length(self.cfg.hint_length);
        // After a failure the first Solicit waits out the back-off.
        self.start(now, now + delay, SOLICIT, NEVER, None, ask)
    }

    pub(super) fn request(&mut self, now: Millis, cand: Candidate) -> Vec<Output> {
        self.phase = Phase::Requesting;
        let ask = Ask::Prefixes(cand.prefixes);
        self.start(now, now, REQUEST, NEVER, Some(cand.server_id), ask)
    }

    pub(super) fn renew(&mut self, now: Millis) -> Vec<Output> {
        let Some(b) = &self.binding else {
            return Vec::new();
        };
        let (server, until, ask) = (b.server_id.clone(), b.t2_at, Ask::Prefixes(self.held()));
        self.phase = Phase::Renewing;
        self.start(now, now, RENEW, until, Some(server), ask)
    }

    pub(super) fn rebind(&mut self, now: Millis) -> Vec<Output> {
        let Some(b) = &self.binding else {
            return Vec::new();
        };
        let until = b.valid_until();
        let ask = Ask::Prefixes(self.held());
        self.phase = Phase::Rebinding;
        self.start(now, now, REBIND, until, None, ask)
    }

    /// Begins a new exchange (a new transaction id) whose first
    /// transmission is due at `at`, sent now if `at` has come.
    fn start(
        &mut self,
        now: Millis,
        at: Millis,
        t: Timing,
        until: Millis,
        server_id: Option<Vec<u8>>,
        ask: Ask,
    ) -> Vec<Output> {
        let xid = self.xid();
        self.tx = Some(Tx {
            t,
            xid,
            started: at,
            rt: 0,
            next_at: at,
            sent: 0,
            until,
            server_id,
            ask,
        });
        let mut out = Vec::new();
        self.retransmit(now, &mut out);
        out
    }

    /// Sends the exchange's next transmission if it is due (RFC 8415 §15:
    /// RT doubles with ±10% jitter up to MRT; never at or past MRD).
    pub(super) fn retransmit(&mut self, now: Millis, out: &mut Vec<Output>) {
        let first_positive = self
            .tx
            .as_ref()
            .is_some_and(|t| t.t.kind == MessageType::Solicit && t.sent == 0);
        let r = if first_positive {
            self.jitter().abs()
        } else {
            self.jitter()
        };
        let Some(tx) = &mut self.tx else { return };
        if now < tx.next_at || now >= tx.until || tx.t.mrc.is_some_and(|m| tx.sent >= m) {
            return;
        }
        tx.rt = if tx.sent == 0 {
            add_jitter(tx.t.irt, r)
        } else {
            let mut rt = add_jitter(tx.rt.saturating_mul(2), r / 2.0);
            if tx.t.mrt > 0 && rt > tx.t.mrt {
                rt = add_jitter(tx.t.mrt, r);
            }
            rt
        };
        tx.next_at = now.saturating_add(tx.rt.max(1)).min(tx.until);
        tx.sent += 1;
        let elapsed = if tx.sent == 1 {
            0
        } else {
            (now.saturating_sub(tx.started) / 10).min(0xffff) as u16
        };
        let bytes = wire::write(
            tx.t.kind,
            tx.xid,
            &self.cfg.identity,
            tx.server_id.as_deref(),
            elapsed,
            &tx.ask,
        );
        out.push(Output::Send(bytes));
        if tx.t.kind == MessageType::Solicit && tx.sent == 1 {
            // Advertises are collected until the first RT is over.
            self.collect_until = tx.next_at;
        }
    }

    fn next_random(&mut self) -> u64 {
        // splitmix64: deterministic for a seed, good enough for jitter and
        // transaction ids (neither is a secret).
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// RAND of RFC 8415 §15: uniform in [-0.1, 0.1].
    fn jitter(&mut self) -> f64 {
        (self.next_random() >> 11) as f64 / (1u64 << 53) as f64 * 0.2 - 0.1
    }

    fn xid(&mut self) -> [u8; 3] {
        let r = self.next_random().to_be_bytes();
        [r[0], r[1], r[2]]
    }
}

fn add_jitter(base: Millis, r: f64) -> Millis {
    let j = (base as f64 * r) as i64;
    base.saturating_add_signed(j)
}
