//! The requesting router's state machine (RFC 8415 §18.2): pure, with time
//! passed in. The caller sends every [`Output::Send`] to ff02::1:2 port 547,
//! feeds every datagram from port 547 to [`Client::on_message`], and calls
//! [`Client::on_timer`] at [`Client::next_wakeup`]; [`Output::Note`]s say
//! what changed (a binding to write to the pool's status, a reason for a
//! condition or an Event).
//!
//! [`Client`] and what it holds and says are here; what each step does is
//! in the submodules: [`exchange`] starts and retransmits the exchanges
//! (Solicit, Request, Renew, Rebind, Release) and builds their messages,
//! [`replies`] takes in what the servers answer, and [`timers`] what time
//! does (T1, T2, retransmissions, expiry).

mod exchange;
mod replies;
mod timers;

use ipnet::Ipv6Net;

use self::exchange::Tx;
use super::identity::Identity;
use super::wire::{Dropped, Refused, ServerStatus};

/// Wall-clock time in milliseconds since the Unix epoch (so a binding read
/// back by another process means the same instant).
pub type Millis = u64;
/// A time that never comes (an infinite lifetime).
pub const NEVER: Millis = Millis::MAX;

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
}

#[cfg(test)]
pub(crate) mod tests;
