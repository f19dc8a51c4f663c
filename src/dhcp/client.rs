//! The requesting router's state machine (RFC 8415 §18.2): pure, with time
//! passed in. The caller sends every [`Output::Send`] to ff02::1:2 port 547,
//! feeds every datagram from port 547 to [`Client::on_message`], and calls
//! [`Client::on_timer`] at [`Client::next_wakeup`]; [`Output::Note`]s say
//! what changed (a binding to write to the pool's status, a reason for a
//! condition or an Event).

use dhcproto::v6::MessageType;
use ipnet::Ipv6Net;

use super::identity::Identity;
use super::wire::{self, Ask, Dropped, INFINITY, Offered, Refused, ServerMessage, ServerStatus};

/// Wall-clock time in milliseconds since the Unix epoch (so a binding read
/// back by another process means the same instant).
pub type Millis = u64;
/// A time that never comes (an infinite lifetime).
pub const NEVER: Millis = Millis::MAX;

/// How one kind of exchange is retransmitted (RFC 8415 §7.6 and §15): the
/// message, IRT, MRT (0: none) and MRC (the most transmissions in all; this
/// client counts MRC as the total).
#[derive(Clone, Copy, Debug)]
struct Timing {
    kind: MessageType,
    irt: Millis,
    mrt: Millis,
    mrc: Option<u32>,
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

/// What the client asks for and accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub identity: Identity,
    /// The prefix length hinted in Solicit, if any.
    pub hint_length: Option<u8>,
    /// Delegated prefixes shorter than this are refused (a pool's prefix
    /// may hold at most 2^64 node prefixes; the runner also never takes
    /// one shorter than /32).
    pub shortest: u8,
    /// Delegated prefixes longer than this are refused (the pool's
    /// `nodePrefixLength`: a prefix must hold at least one node prefix).
    pub longest: u8,
}

/// One delegated prefix and until when it may be used.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    pub prefix: Ipv6Net,
    /// New node prefixes come only from a prefix still preferred.
    pub preferred_until: Millis,
    /// After this nothing from the prefix may be used at all.
    pub valid_until: Millis,
}

/// The client's binding: what it holds, from which server, until when.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    pub server_id: Vec<u8>,
    pub leases: Vec<Lease>,
    /// Last Reply accepted.
    pub updated_at: Millis,
    /// Renew from here ([`NEVER`] for never).
    pub t1_at: Millis,
    /// Rebind from here.
    pub t2_at: Millis,
}

impl Binding {
    /// When the last lease's valid lifetime ends.
    pub fn valid_until(&self) -> Millis {
        self.leases.iter().map(|l| l.valid_until).max().unwrap_or(0)
    }
}

/// Where the client is in RFC 8415's exchanges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Soliciting,
    Requesting,
    Bound,
    Renewing,
    Rebinding,
    Releasing,
    Released,
}

/// Something worth telling the pool about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Note {
    /// A Reply was accepted: the binding as it now is (acquired, renewed,
    /// rebound, or with prefixes added or withdrawn).
    Bound(Binding),
    /// The server set a prefix's valid lifetime to 0: it is gone.
    Withdrawn(Ipv6Net),
    /// Valid lifetimes ended with no Reply: these prefixes are gone.
    Expired(Vec<Lease>),
    /// A datagram not acted on.
    Ignored(Refused),
    /// Parts of a server message dropped.
    Dropped(Dropped),
    /// A delegated prefix outside [`Config::shortest`]..[`Config::longest`].
    PrefixRefused { prefix: Ipv6Net, reason: String },
    /// A status other than Success from the server.
    ServerSaid(ServerStatus),
    /// Requests went unanswered (REQUEST's MRC): back to Solicit.
    RequestUnanswered,
    /// The Release was answered or given up on: nothing is held.
    Released,
}

/// What the caller must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// Send this datagram to All_DHCP_Relay_Agents_and_Servers (ff02::1:2),
    /// port 547.
    Send(Vec<u8>),
    Note(Note),
}

/// One exchange's retransmission state (RFC 8415 §15).
#[derive(Clone, Debug)]
struct Tx {
    t: Timing,
    xid: [u8; 3],
    started: Millis,
    rt: Millis,
    next_at: Millis,
    sent: u32,
    /// No transmission at or after this (MRD).
    until: Millis,
    server_id: Option<Vec<u8>>,
    ask: Ask,
}

#[derive(Clone, Debug)]
struct Candidate {
    server_id: Vec<u8>,
    preference: u8,
    prefixes: Vec<Ipv6Net>,
}

/// A DHCPv6-PD requesting router for one pool.
#[derive(Clone, Debug)]
pub struct Client {
    cfg: Config,
    phase: Phase,
    binding: Option<Binding>,
    tx: Option<Tx>,
    /// Soliciting: the best Advertise so far, and until when to collect.
    best: Option<Candidate>,
    collect_until: Millis,
    /// Consecutive acquisitions that failed, for the back-off before the
    /// next Solicit.
    failures: u32,
    rng: u64,
}

impl Client {
    /// A client with nothing: it solicits at once.
    pub fn new(cfg: Config, now: Millis, seed: u64) -> (Client, Vec<Output>) {
        let mut c = Client::idle(cfg, seed);
        let out = c.solicit(now, 0);
        (c, out)
    }

    fn idle(cfg: Config, seed: u64) -> Client {
        Client {
            cfg,
            phase: Phase::Soliciting,
            binding: None,
            tx: None,
            best: None,
            collect_until: 0,
            failures: 0,
            rng: seed ^ 0x9e37_79b9_7f4a_7c15,
        }
    }

    /// A client that already holds `binding` (read back from the pool's
    /// status after a restart or by a new leader): it keeps the binding and
    /// renews or rebinds when due, so the server sees the same client renew
    /// the same prefix; with nothing valid left it solicits.
    pub fn resume(cfg: Config, binding: Binding, now: Millis, seed: u64) -> (Client, Vec<Output>) {
        let mut c = Client::idle(cfg, seed);
        let mut b = binding;
        b.leases.retain(|l| l.valid_until > now);
        if b.leases.is_empty() {
            let out = c.solicit(now, 0);
            return (c, out);
        }
        c.binding = Some(b);
        c.phase = Phase::Bound;
        let out = c.on_timer(now);
        (c, out)
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    pub fn binding(&self) -> Option<&Binding> {
        self.binding.as_ref()
    }

    /// When [`Client::on_timer`] must next be called.
    pub fn next_wakeup(&self) -> Option<Millis> {
        let mut at = Vec::new();
        if let Some(tx) = &self.tx {
            at.push(tx.next_at);
        }
        if self.phase == Phase::Soliciting && self.best.is_some() {
            at.push(self.collect_until);
        }
        if let Some(b) = &self.binding {
            at.extend(b.leases.iter().map(|l| l.valid_until));
            match self.phase {
                Phase::Bound => at.extend([b.t1_at, b.t2_at]),
                Phase::Renewing => at.push(b.t2_at),
                _ => {}
            }
        }
        at.into_iter().filter(|t| *t != NEVER).min()
    }

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

    /// A datagram from a server (port 547).
    pub fn on_message(&mut self, now: Millis, bytes: &[u8]) -> Vec<Output> {
        let Some(xid) = self.tx.as_ref().map(|t| t.xid) else {
            return vec![Output::Note(Note::Ignored(Refused::OtherTransaction))];
        };
        let msg = match wire::read(bytes, &self.cfg.identity, xid) {
            Ok(m) => m,
            Err(e) => return vec![Output::Note(Note::Ignored(e))],
        };
        let mut out: Vec<Output> = msg
            .dropped
            .iter()
            .cloned()
            .map(|d| Output::Note(Note::Dropped(d)))
            .collect();
        match (self.phase, msg.kind) {
            (Phase::Soliciting, MessageType::Advertise) => self.on_advertise(now, msg, &mut out),
            (Phase::Requesting | Phase::Renewing | Phase::Rebinding, MessageType::Reply) => {
                self.on_reply(now, msg, &mut out)
            }
            (Phase::Releasing, MessageType::Reply) => {
                self.phase = Phase::Released;
                self.tx = None;
                out.push(Output::Note(Note::Released));
            }
            (_, kind) => out.push(Output::Note(Note::Ignored(Refused::NotFromServer(kind)))),
        }
        out
    }

    fn on_advertise(&mut self, now: Millis, msg: ServerMessage, out: &mut Vec<Output>) {
        if let Some(s) = &msg.status {
            out.push(Output::Note(Note::ServerSaid(s.clone())));
        }
        let Some(ia) = msg.ia_pd else { return };
        if let Some(s) = &ia.status {
            out.push(Output::Note(Note::ServerSaid(s.clone())));
            if s.is("NoPrefixAvail") {
                return;
            }
        }
        let prefixes: Vec<Ipv6Net> = self
            .acceptable(&ia.prefixes, out)
            .into_iter()
            .filter(|o| o.valid > 0)
            .map(|o| o.prefix)
            .collect();
        if prefixes.is_empty() {
            return;
        }
        let cand = Candidate {
            server_id: msg.server_id,
            preference: msg.preference,
            prefixes,
        };
        let first_rt_over = self.tx.as_ref().is_some_and(|t| t.sent > 1);
        if cand.preference == 255 || first_rt_over {
            self.best = None;
            out.extend(self.request(now, cand));
            return;
        }
        if self
            .best
            .as_ref()
            .is_none_or(|b| cand.preference > b.preference)
        {
            self.best = Some(cand);
        }
    }

    fn on_reply(&mut self, now: Millis, msg: ServerMessage, out: &mut Vec<Output>) {
        if let Some(s) = &msg.status {
            out.push(Output::Note(Note::ServerSaid(s.clone())));
            // UnspecFail, UseMulticast (this client always multicasts) and
            // the like: keep retransmitting, as RFC 8415 §18.2.10 says.
            return;
        }
        let Some(ia) = msg.ia_pd else {
            // No IA_PD for us in the Reply: as if it said NoPrefixAvail.
            self.ia_refused(now, out);
            return;
        };
        if let Some(s) = &ia.status {
            out.push(Output::Note(Note::ServerSaid(s.clone())));
            if s.is("NoBinding") && matches!(self.phase, Phase::Renewing | Phase::Rebinding) {
                // The server lost our binding: ask for the same prefixes.
                let cand = Candidate {
                    server_id: msg.server_id,
                    preference: 0,
                    prefixes: self.held(),
                };
                out.extend(self.request(now, cand));
                return;
            }
            self.ia_refused(now, out);
            return;
        }
        let offered = self.acceptable(&ia.prefixes, out);
        if offered.is_empty() {
            // Nothing usable, and nothing said about what is held.
            self.ia_refused(now, out);
            return;
        }
        let mut leases = self.binding.take().map(|b| b.leases).unwrap_or_default();
        for o in &offered {
            leases.retain(|l| l.prefix != o.prefix);
            if o.valid == 0 {
                out.push(Output::Note(Note::Withdrawn(o.prefix)));
                continue;
            }
            leases.push(Lease {
                prefix: o.prefix,
                preferred_until: at(now, o.preferred),
                valid_until: at(now, o.valid),
            });
        }
        leases.retain(|l| l.valid_until > now);
        if leases.is_empty() {
            self.ia_refused(now, out);
            return;
        }
        leases.sort_by_key(|l| l.prefix);
        let (t1, t2) = timers(ia.t1, ia.t2, &offered);
        let b = Binding {
            server_id: msg.server_id,
            leases,
            updated_at: now,
            t1_at: at(now, t1),
            t2_at: at(now, t2),
        };
        self.binding = Some(b.clone());
        self.phase = Phase::Bound;
        self.tx = None;
        self.failures = 0;
        out.push(Output::Note(Note::Bound(b)));
    }

    /// The server would not give the IA: in Request, back to Solicit after
    /// a back-off; in Renew and Rebind, keep what is held until it expires
    /// and keep asking (RFC 8415 §18.2.10.1).
    fn ia_refused(&mut self, now: Millis, out: &mut Vec<Output>) {
        if self.phase == Phase::Requesting || self.binding.is_none() {
            self.binding = None;
            self.failures += 1;
            let delay = self.backoff();
            out.extend(self.solicit(now, delay));
        }
    }

    /// Offered prefixes of a length the pool can use; the rest noted.
    fn acceptable(&self, offered: &[Offered], out: &mut Vec<Output>) -> Vec<Offered> {
        let mut ok = Vec::new();
        for o in offered {
            let len = o.prefix.prefix_len();
            let reason = if len > self.cfg.longest {
                Some(format!(
                    "/{len} is longer than the pool's nodePrefixLength /{}: it holds no node prefix",
                    self.cfg.longest
                ))
            } else if len < self.cfg.shortest {
                Some(format!(
                    "/{len} is shorter than /{}, the shortest delegated prefix the pool takes (no more than 2^64 node prefixes, and never more than an ISP's own /32)",
                    self.cfg.shortest
                ))
            } else {
                None
            };
            match reason {
                Some(reason) => out.push(Output::Note(Note::PrefixRefused {
                    prefix: o.prefix,
                    reason,
                })),
                None => ok.push(o.clone()),
            }
        }
        ok
    }

    fn held(&self) -> Vec<Ipv6Net> {
        self.binding
            .as_ref()
            .map(|b| b.leases.iter().map(|l| l.prefix).collect())
            .unwrap_or_default()
    }

    fn backoff(&self) -> Millis {
        SOLICIT
            .irt
            .saturating_mul(1 << self.failures.min(12))
            .min(SOLICIT.mrt)
    }

    fn solicit(&mut self, now: Millis, delay: Millis) -> Vec<Output> {
        self.phase = Phase::Soliciting;
        self.best = None;
        let ask = Ask::Length(self.cfg.hint_length);
        // After a failure the first Solicit waits out the back-off.
        self.start(now, now + delay, SOLICIT, NEVER, None, ask)
    }

    fn request(&mut self, now: Millis, cand: Candidate) -> Vec<Output> {
        self.phase = Phase::Requesting;
        let ask = Ask::Prefixes(cand.prefixes);
        self.start(now, now, REQUEST, NEVER, Some(cand.server_id), ask)
    }

    fn renew(&mut self, now: Millis) -> Vec<Output> {
        let Some(b) = &self.binding else {
            return Vec::new();
        };
        let (server, until, ask) = (b.server_id.clone(), b.t2_at, Ask::Prefixes(self.held()));
        self.phase = Phase::Renewing;
        self.start(now, now, RENEW, until, Some(server), ask)
    }

    fn rebind(&mut self, now: Millis) -> Vec<Output> {
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
    fn retransmit(&mut self, now: Millis, out: &mut Vec<Output>) {
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

/// `now` plus `secs` seconds; [`INFINITY`] is [`NEVER`].
fn at(now: Millis, secs: u32) -> Millis {
    if secs == INFINITY {
        NEVER
    } else {
        now.saturating_add(u64::from(secs) * 1000)
    }
}

/// T1 and T2 as the server gave them, or when it left them to the client
/// (0), 0.5 and 0.8 of the shortest preferred lifetime (RFC 8415 §21.21).
fn timers(t1: u32, t2: u32, offered: &[Offered]) -> (u32, u32) {
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

#[cfg(test)]
#[path = "client_tests.rs"]
pub(crate) mod tests;
