//! Every transition of the requesting router, driven by a scripted server
//! built with dhcproto, with time passed in; plus the decoder fed hostile
//! bytes and hostile-but-well-formed replies (proptest).
//!
//! Here the scripted server and the helpers the tests share; the tests are
//! in [`acquire`] (getting a binding), [`renew`] (keeping, renewing,
//! renumbering and releasing it) and [`refused`] (what the client will not
//! take, and hostile bytes).

mod acquire;
mod refused;
mod renew;

use dhcproto::v6::{
    DhcpOption, DhcpOptions, IAPD, IAPrefix, Message, MessageType, Status, StatusCode,
};
use dhcproto::{Decodable, Decoder, Encodable};
use ipnet::Ipv6Net;
use proptest::prelude::*;

use super::*;
use crate::dhcp::identity::Identity;
use crate::dhcp::wire::Refused;

/// A scripted IA_PD: IAID, T1, T2, status, prefixes with lifetimes.
type ScriptedIa = (u32, u32, u32, Option<Status>, Vec<(Ipv6Net, u32, u32)>);

/// The pool the tests' client works for, and when they start.
pub(crate) const UID: &str = "0f8fad5b-d9cb-469f-a165-70867728950e";
pub(crate) const T0: Millis = 1_800_000_000_000;
const SERVER: &[u8] = &[0, 1, 0, 1, 0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6];
const OTHER_SERVER: &[u8] = &[0, 1, 0, 1, 0xca, 0xfe, 0xba, 0xbe, 6, 5, 4, 3, 2, 1];

/// The tests' client: a /56 hinted, /32 to /64 taken.
pub(crate) fn cfg() -> Config {
    Config {
        identity: Identity::for_pool(UID),
        hint_length: Some(56),
        shortest: 32,
        longest: 64,
    }
}

fn net(s: &str) -> Ipv6Net {
    s.parse().expect("net")
}

fn sent(out: &[Output]) -> Vec<Message> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send(b) => Some(
                Message::decode(&mut Decoder::new(b)).expect("the client sends what it can decode"),
            ),
            _ => None,
        })
        .collect()
}

fn notes(out: &[Output]) -> Vec<Note> {
    out.iter()
        .filter_map(|o| match o {
            Output::Note(n) => Some(n.clone()),
            _ => None,
        })
        .collect()
}

fn only_sent(out: &[Output]) -> Message {
    let s = sent(out);
    assert_eq!(s.len(), 1, "one message sent: {out:?}");
    s.into_iter().next().expect("one")
}

fn ia_of(m: &Message) -> IAPD {
    match m.opts().get(dhcproto::v6::OptionCode::IAPD) {
        Some(DhcpOption::IAPD(ia)) => ia.clone(),
        other => panic!("no IA_PD: {other:?}"),
    }
}

fn asked(m: &Message) -> Vec<(Ipv6Net, u32, u32)> {
    ia_of(m)
        .opts
        .iter()
        .filter_map(|o| match o {
            DhcpOption::IAPrefix(p) => Some((
                Ipv6Net::new(p.prefix_ip, p.prefix_len).expect("len"),
                p.preferred_lifetime,
                p.valid_lifetime,
            )),
            _ => None,
        })
        .collect()
}

fn server_id(m: &Message) -> Option<Vec<u8>> {
    match m.opts().get(dhcproto::v6::OptionCode::ServerId) {
        Some(DhcpOption::ServerId(id)) => Some(id.clone()),
        _ => None,
    }
}

/// A scripted server message.
struct Answer {
    kind: MessageType,
    xid: [u8; 3],
    client: Vec<u8>,
    server: Option<Vec<u8>>,
    preference: Option<u8>,
    status: Option<Status>,
    ia: Option<ScriptedIa>,
}

impl Answer {
    fn to(
        req: &Message,
        kind: MessageType,
        prefixes: &[(&str, u32, u32)],
        t1: u32,
        t2: u32,
    ) -> Answer {
        Answer {
            kind,
            xid: req.xid(),
            client: Identity::for_pool(UID).duid,
            server: Some(SERVER.to_vec()),
            preference: None,
            status: None,
            ia: Some((
                1,
                t1,
                t2,
                None,
                prefixes
                    .iter()
                    .map(|(p, pl, vl)| (net(p), *pl, *vl))
                    .collect(),
            )),
        }
    }

    fn bytes(&self) -> Vec<u8> {
        let mut m = Message::new_with_id(self.kind, self.xid);
        let o = m.opts_mut();
        o.insert(DhcpOption::ClientId(self.client.clone()));
        if let Some(s) = &self.server {
            o.insert(DhcpOption::ServerId(s.clone()));
        }
        if let Some(p) = self.preference {
            o.insert(DhcpOption::Preference(p));
        }
        if let Some(s) = self.status {
            o.insert(DhcpOption::StatusCode(StatusCode {
                status: s,
                msg: "scripted".into(),
            }));
        }
        if let Some((id, t1, t2, st, prefixes)) = &self.ia {
            let mut ia = DhcpOptions::new();
            if let Some(s) = st {
                ia.insert(DhcpOption::StatusCode(StatusCode {
                    status: *s,
                    msg: "scripted".into(),
                }));
            }
            for (p, pl, vl) in prefixes {
                ia.insert(DhcpOption::IAPrefix(IAPrefix {
                    preferred_lifetime: *pl,
                    valid_lifetime: *vl,
                    prefix_len: p.prefix_len(),
                    prefix_ip: p.network(),
                    opts: DhcpOptions::new(),
                }));
            }
            o.insert(DhcpOption::IAPD(IAPD {
                id: *id,
                t1: *t1,
                t2: *t2,
                opts: ia,
            }));
        }
        m.to_vec().expect("encode")
    }
}

/// A fresh client and a server's Advertise (preference 255) to its first
/// Solicit, not yet fed to it.
fn first_advertise(prefixes: &[(&str, u32, u32)], t1: u32, t2: u32) -> (Client, Answer) {
    let (c, out) = Client::new(cfg(), T0, 1);
    let mut adv = Answer::to(&only_sent(&out), MessageType::Advertise, prefixes, t1, t2);
    adv.preference = Some(255);
    (c, adv)
}

/// Solicit → Advertise (preference 255) → Request → Reply: bound to
/// 2001:db8:100::/56 with T1 100 s, T2 160 s, preferred 200 s, valid 300 s.
fn bound() -> (Client, Binding) {
    let (mut c, out) = Client::new(cfg(), T0, 7);
    let sol = only_sent(&out);
    let mut adv = Answer::to(
        &sol,
        MessageType::Advertise,
        &[("2001:db8:100::/56", 200, 300)],
        100,
        160,
    );
    adv.preference = Some(255);
    let req = only_sent(&c.on_message(T0 + 5, &adv.bytes()));
    let reply = Answer::to(
        &req,
        MessageType::Reply,
        &[("2001:db8:100::/56", 200, 300)],
        100,
        160,
    );
    let out = c.on_message(T0 + 10, &reply.bytes());
    let b = notes(&out)
        .into_iter()
        .find_map(|n| match n {
            Note::Bound(b) => Some(b),
            _ => None,
        })
        .expect("bound");
    assert_eq!(c.phase(), Phase::Bound);
    (c, b)
}
