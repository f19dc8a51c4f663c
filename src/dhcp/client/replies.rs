//! What the servers answer: an Advertise while soliciting, a Reply to a
//! Request, Renew, Rebind or Release, and which offered prefixes the pool
//! can use.

use dhcproto::v6::MessageType;
use ipnet::Ipv6Net;

use super::timers::{at, timers};
use super::{Binding, Candidate, Client, Lease, Millis, Note, Output, Phase};
use crate::dhcp::wire::{self, Offered, Refused, ServerMessage};

impl Client {
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
}
