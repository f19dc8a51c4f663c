//! Every transition of the requesting router, driven by a scripted server
//! built with dhcproto, with time passed in; plus the decoder fed hostile
//! bytes and hostile-but-well-formed replies (proptest).

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
/// A hostile reply: Advertise?, type/preference byte, top-level status,
/// IAID, T1, T2, IA status, prefixes (address, length, lifetimes).
type Hostile = (
    bool,
    u8,
    Option<u16>,
    u32,
    u32,
    u32,
    Option<u16>,
    Vec<(u128, u8, u32, u32)>,
);

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

#[test]
fn the_first_solicit_names_the_pool_asks_for_a_prefix_length_and_the_sol_max_rt() {
    let (c, out) = Client::new(cfg(), T0, 1);
    assert_eq!(c.phase(), Phase::Soliciting);
    let m = only_sent(&out);
    assert_eq!(m.msg_type(), MessageType::Solicit);
    assert_eq!(
        m.opts().get(dhcproto::v6::OptionCode::ClientId),
        Some(&DhcpOption::ClientId(Identity::for_pool(UID).duid))
    );
    assert_eq!(server_id(&m), None);
    assert_eq!(
        m.opts().get(dhcproto::v6::OptionCode::ElapsedTime),
        Some(&DhcpOption::ElapsedTime(0))
    );
    assert!(
        matches!(m.opts().get(dhcproto::v6::OptionCode::ORO), Some(DhcpOption::ORO(o)) if o.opts.contains(&dhcproto::v6::OptionCode::from(82)))
    );
    assert_eq!(ia_of(&m).id, 1);
    assert_eq!(asked(&m), vec![(net("::/56"), 0, 0)]);
}

#[test]
fn solicits_are_retransmitted_with_rfc_8415_back_off_up_to_sol_max_rt() {
    let (mut c, out) = Client::new(cfg(), T0, 3);
    assert_eq!(sent(&out).len(), 1);
    let mut now = T0;
    let mut last_rt = 0u64;
    let mut xids = std::collections::BTreeSet::new();
    for i in 0..20 {
        let next = c.next_wakeup().expect("a retransmission is due");
        let rt = next - now;
        if i == 0 {
            assert!(
                (1_000..=1_100).contains(&rt),
                "first RT within IRT + [0, 0.1] IRT: {rt}"
            );
        } else if last_rt < 1_800_000 {
            assert!(
                rt as f64 >= last_rt as f64 * 1.9 && rt as f64 <= last_rt as f64 * 2.1,
                "RT doubles ±10%: {last_rt} → {rt}"
            );
        } else {
            assert!((3_240_000..=3_960_000).contains(&rt), "MRT ±10%: {rt}");
        }
        assert_eq!(c.on_timer(next - 1), vec![], "nothing before it is due");
        let m = only_sent(&c.on_timer(next));
        assert_eq!(m.msg_type(), MessageType::Solicit);
        xids.insert(m.xid());
        let elapsed = match m.opts().get(dhcproto::v6::OptionCode::ElapsedTime) {
            Some(DhcpOption::ElapsedTime(e)) => *e,
            _ => panic!("elapsed"),
        };
        assert_eq!(u64::from(elapsed), ((next - T0) / 10).min(0xffff));
        last_rt = rt;
        now = next;
    }
    assert_eq!(xids.len(), 1, "one transaction id for the exchange");
}

#[test]
fn advertises_are_collected_for_the_first_rt_and_the_most_preferred_is_requested() {
    let (mut c, out) = Client::new(cfg(), T0, 1);
    let sol = only_sent(&out);
    let mut low = Answer::to(
        &sol,
        MessageType::Advertise,
        &[("2001:db8:1::/56", 200, 300)],
        0,
        0,
    );
    low.preference = Some(10);
    low.server = Some(OTHER_SERVER.to_vec());
    let mut high = Answer::to(
        &sol,
        MessageType::Advertise,
        &[("2001:db8:2::/56", 200, 300)],
        0,
        0,
    );
    high.preference = Some(20);
    assert!(sent(&c.on_message(T0 + 1, &low.bytes())).is_empty());
    assert!(sent(&c.on_message(T0 + 2, &high.bytes())).is_empty());
    assert_eq!(c.phase(), Phase::Soliciting);
    let due = c.next_wakeup().expect("end of the first RT");
    assert!(due <= T0 + 1_100);
    let req = only_sent(&c.on_timer(due));
    assert_eq!(req.msg_type(), MessageType::Request);
    assert_ne!(req.xid(), sol.xid(), "a new transaction");
    assert_eq!(server_id(&req).as_deref(), Some(SERVER));
    assert_eq!(asked(&req), vec![(net("2001:db8:2::/56"), 0, 0)]);
    assert_eq!(c.phase(), Phase::Requesting);
}

#[test]
fn an_advertise_after_the_first_rt_is_taken_at_once() {
    let (mut c, out) = Client::new(cfg(), T0, 1);
    let due = c.next_wakeup().expect("due");
    let sol2 = only_sent(&c.on_timer(due));
    assert_eq!(sol2.xid(), only_sent(&out).xid());
    let adv = Answer::to(
        &sol2,
        MessageType::Advertise,
        &[("2001:db8:3::/56", 200, 300)],
        0,
        0,
    );
    let req = only_sent(&c.on_message(due + 1, &adv.bytes()));
    assert_eq!(req.msg_type(), MessageType::Request);
}

#[test]
fn a_reply_binds_the_prefix_with_its_lifetimes_and_timers() {
    let (c, b) = bound();
    assert_eq!(b.server_id, SERVER);
    assert_eq!(
        b.leases,
        vec![Lease {
            prefix: net("2001:db8:100::/56"),
            preferred_until: T0 + 10 + 200_000,
            valid_until: T0 + 10 + 300_000,
        }]
    );
    assert_eq!((b.t1_at, b.t2_at), (T0 + 10 + 100_000, T0 + 10 + 160_000));
    assert_eq!(c.next_wakeup(), Some(b.t1_at), "nothing to do until T1");
    assert_eq!(c.binding(), Some(&b));
}

#[test]
fn at_t1_the_client_renews_with_the_same_server_and_a_reply_extends_the_lifetimes() {
    let (mut c, b) = bound();
    assert_eq!(c.clone().on_timer(b.t1_at - 1), vec![]);
    let ren = only_sent(&c.on_timer(b.t1_at));
    assert_eq!(ren.msg_type(), MessageType::Renew);
    assert_eq!(c.phase(), Phase::Renewing);
    assert_eq!(server_id(&ren).as_deref(), Some(SERVER));
    assert_eq!(asked(&ren), vec![(net("2001:db8:100::/56"), 0, 0)]);
    let now = b.t1_at + 20;
    let reply = Answer::to(
        &ren,
        MessageType::Reply,
        &[("2001:db8:100::/56", 200, 300)],
        100,
        160,
    );
    let out = c.on_message(now, &reply.bytes());
    let Some(Note::Bound(nb)) = notes(&out).into_iter().next() else {
        panic!("renewed: {out:?}")
    };
    assert_eq!(nb.leases[0].valid_until, now + 300_000);
    assert_eq!(nb.t1_at, now + 100_000);
    assert_eq!(c.phase(), Phase::Bound);
}

#[test]
fn renews_are_retransmitted_until_t2_then_the_client_rebinds_to_any_server() {
    let (mut c, b) = bound();
    let ren = only_sent(&c.on_timer(b.t1_at));
    let mut now;
    let mut renews = 1;
    let reb = loop {
        now = c.next_wakeup().expect("due");
        assert!(now <= b.t2_at, "no Renew past T2");
        let m = only_sent(&c.on_timer(now));
        if m.msg_type() == MessageType::Rebind {
            break m;
        }
        assert_eq!(m.msg_type(), MessageType::Renew);
        assert_eq!(m.xid(), ren.xid());
        renews += 1;
    };
    assert_eq!(now, b.t2_at);
    assert!(renews >= 2, "retransmitted: {renews}");
    assert_eq!(c.phase(), Phase::Rebinding);
    // The Rebind names no server; another one may answer, and takes over.
    assert_eq!(server_id(&reb), None);
    assert_ne!(reb.xid(), ren.xid());
    assert_eq!(asked(&reb), vec![(net("2001:db8:100::/56"), 0, 0)]);
    let mut reply = Answer::to(
        &reb,
        MessageType::Reply,
        &[("2001:db8:100::/56", 200, 300)],
        100,
        160,
    );
    reply.server = Some(OTHER_SERVER.to_vec());
    let out = c.on_message(now + 50, &reply.bytes());
    let Some(Note::Bound(nb)) = notes(&out).into_iter().next() else {
        panic!("rebound: {out:?}")
    };
    assert_eq!(
        nb.server_id, OTHER_SERVER,
        "the server that answered the Rebind"
    );
    assert_eq!(c.phase(), Phase::Bound);
}

#[test]
fn with_no_answer_past_the_valid_lifetime_the_prefix_expires_and_the_client_solicits() {
    let (mut c, b) = bound();
    let valid = b.leases[0].valid_until;
    let mut now = b.t1_at;
    c.on_timer(now);
    let mut last = Vec::new();
    while now < valid {
        now = c.next_wakeup().expect("due");
        assert!(now <= valid);
        last = c.on_timer(now);
        if c.phase() == Phase::Soliciting {
            break;
        }
        assert!(
            c.binding().is_some(),
            "still held before the valid lifetime ends"
        );
    }
    assert_eq!(now, valid);
    assert_eq!(c.phase(), Phase::Soliciting);
    assert_eq!(c.binding(), None);
    assert!(
        notes(&last).contains(&Note::Expired(b.leases.clone())),
        "{last:?}"
    );
    assert_eq!(only_sent(&last).msg_type(), MessageType::Solicit);
}

#[test]
fn a_renew_answered_no_binding_turns_into_a_request_for_the_same_prefix() {
    let (mut c, b) = bound();
    let ren = only_sent(&c.on_timer(b.t1_at));
    let mut reply = Answer::to(&ren, MessageType::Reply, &[], 0, 0);
    reply.ia.as_mut().expect("ia").3 = Some(Status::NoBinding);
    let out = c.on_message(b.t1_at + 5, &reply.bytes());
    let req = only_sent(&out);
    assert_eq!(req.msg_type(), MessageType::Request);
    assert_eq!(server_id(&req).as_deref(), Some(SERVER));
    assert_eq!(asked(&req), vec![(net("2001:db8:100::/56"), 0, 0)]);
    assert!(
        notes(&out)
            .iter()
            .any(|n| matches!(n, Note::ServerSaid(s) if s.code == "NoBinding"))
    );
    assert_eq!(c.binding(), Some(&b), "still held while the Request runs");
}

#[test]
fn a_request_answered_no_prefix_avail_goes_back_to_solicit_after_a_back_off() {
    let (mut c, adv) = first_advertise(&[("2001:db8:100::/56", 200, 300)], 0, 0);
    let req = only_sent(&c.on_message(T0 + 1, &adv.bytes()));
    let mut reply = Answer::to(&req, MessageType::Reply, &[], 0, 0);
    reply.ia.as_mut().expect("ia").3 = Some(Status::NoPrefixAvail);
    let out = c.on_message(T0 + 2, &reply.bytes());
    assert!(
        notes(&out)
            .iter()
            .any(|n| matches!(n, Note::ServerSaid(s) if s.code == "NoPrefixAvail"))
    );
    assert!(sent(&out).is_empty(), "not at once");
    assert_eq!(c.phase(), Phase::Soliciting);
    assert_eq!(c.next_wakeup(), Some(T0 + 2 + 2_000), "after a back-off");
    assert_eq!(
        only_sent(&c.on_timer(T0 + 2 + 2_000)).msg_type(),
        MessageType::Solicit
    );
}

#[test]
fn an_advertise_with_no_prefix_avail_is_ignored() {
    let (mut c, mut adv) = first_advertise(&[], 0, 0);
    adv.ia.as_mut().expect("ia").3 = Some(Status::NoPrefixAvail);
    let out = c.on_message(T0 + 1, &adv.bytes());
    assert!(sent(&out).is_empty());
    assert_eq!(c.phase(), Phase::Soliciting);
}

#[test]
fn requests_unanswered_ten_times_go_back_to_solicit() {
    let (mut c, adv) = first_advertise(&[("2001:db8:100::/56", 200, 300)], 0, 0);
    assert_eq!(sent(&c.on_message(T0 + 1, &adv.bytes())).len(), 1);
    let mut requests = 1;
    loop {
        let now = c.next_wakeup().expect("due");
        let out = c.on_timer(now);
        if notes(&out).contains(&Note::RequestUnanswered) {
            break;
        }
        assert_eq!(only_sent(&out).msg_type(), MessageType::Request);
        requests += 1;
    }
    assert_eq!(requests, 10);
    assert_eq!(c.phase(), Phase::Soliciting);
}

#[test]
fn renumbering_a_new_prefix_with_the_old_one_withdrawn_swaps_the_leases() {
    let (mut c, b) = bound();
    let ren = only_sent(&c.on_timer(b.t1_at));
    let reply = Answer::to(
        &ren,
        MessageType::Reply,
        &[("2001:db8:100::/56", 0, 0), ("2001:db8:200::/56", 200, 300)],
        100,
        160,
    );
    let now = b.t1_at + 1;
    let out = c.on_message(now, &reply.bytes());
    let n = notes(&out);
    assert!(
        n.contains(&Note::Withdrawn(net("2001:db8:100::/56"))),
        "{n:?}"
    );
    let binding = c.binding().expect("bound");
    assert_eq!(
        binding.leases.iter().map(|l| l.prefix).collect::<Vec<_>>(),
        vec![net("2001:db8:200::/56")]
    );
}

#[test]
fn a_renew_reply_naming_only_another_prefix_keeps_the_old_one_until_it_expires() {
    let (mut c, b) = bound();
    let ren = only_sent(&c.on_timer(b.t1_at));
    let reply = Answer::to(
        &ren,
        MessageType::Reply,
        &[("2001:db8:200::/56", 200, 300)],
        100,
        160,
    );
    c.on_message(b.t1_at + 1, &reply.bytes());
    let binding = c.binding().expect("bound");
    assert_eq!(binding.leases.len(), 2, "{binding:?}");
    assert_eq!(binding.leases[0], b.leases[0], "the old prefix, unchanged");
}

#[test]
fn timers_left_to_the_client_are_half_and_four_fifths_of_the_shortest_preferred_lifetime() {
    let (mut c, adv) = first_advertise(&[("2001:db8:100::/56", 1000, 2000)], 0, 0);
    let req = only_sent(&c.on_message(T0, &adv.bytes()));
    let reply = Answer::to(
        &req,
        MessageType::Reply,
        &[("2001:db8:100::/56", 1000, 2000)],
        0,
        0,
    );
    c.on_message(T0, &reply.bytes());
    let b = c.binding().expect("bound");
    assert_eq!((b.t1_at, b.t2_at), (T0 + 500_000, T0 + 800_000));
}

#[test]
fn infinite_lifetimes_never_expire_and_infinite_timers_never_renew() {
    let (mut c, adv) = first_advertise(&[("2001:db8:100::/56", u32::MAX, u32::MAX)], 0, 0);
    let req = only_sent(&c.on_message(T0, &adv.bytes()));
    let reply = Answer::to(
        &req,
        MessageType::Reply,
        &[("2001:db8:100::/56", u32::MAX, u32::MAX)],
        u32::MAX,
        u32::MAX,
    );
    c.on_message(T0, &reply.bytes());
    let b = c.binding().expect("bound");
    assert_eq!(b.leases[0].valid_until, NEVER);
    assert_eq!(c.next_wakeup(), None, "nothing ever due");
}

#[test]
fn an_ia_pd_with_t1_after_t2_is_discarded() {
    let (mut c, adv) = first_advertise(&[("2001:db8:100::/56", 200, 300)], 150, 100);
    let out = c.on_message(T0, &adv.bytes());
    assert!(sent(&out).is_empty());
    assert!(notes(&out).contains(&Note::Dropped(
        crate::dhcp::wire::Dropped::TimersOutOfOrder { t1: 150, t2: 100 }
    )));
}

#[test]
fn a_prefix_preferred_longer_than_valid_is_dropped() {
    let (mut c, adv) = first_advertise(&[("2001:db8:100::/56", 400, 300)], 0, 0);
    let out = c.on_message(T0, &adv.bytes());
    assert!(sent(&out).is_empty(), "nothing usable advertised");
    assert!(notes(&out).contains(&Note::Dropped(
        crate::dhcp::wire::Dropped::PreferredOverValid(net("2001:db8:100::/56"))
    )));
}

#[test]
fn prefixes_too_long_or_too_short_for_the_pool_are_refused_with_a_reason() {
    for (p, word) in [
        ("2001:db8:100::/80", "longer"),
        ("2001:d00::/24", "shorter"),
    ] {
        let (mut c, adv) = first_advertise(&[(p, 200, 300)], 0, 0);
        let out = c.on_message(T0, &adv.bytes());
        assert!(sent(&out).is_empty(), "{p}");
        assert!(
            notes(&out).iter().any(|n| matches!(n, Note::PrefixRefused { prefix, reason } if *prefix == net(p) && reason.contains(word))),
            "{p}: {out:?}"
        );
    }
}

#[test]
fn a_reply_for_another_iaid_another_client_or_another_transaction_changes_nothing() {
    let (c0, b) = bound();
    let mut c = c0.clone();
    let ren = only_sent(&c.on_timer(b.t1_at));
    let before = c.clone();
    let good = || {
        Answer::to(
            &ren,
            MessageType::Reply,
            &[("2001:db8:900::/56", 200, 300)],
            100,
            160,
        )
    };
    let mut other_iaid = good();
    other_iaid.ia.as_mut().expect("ia").0 = 42;
    let out = c.on_message(b.t1_at + 1, &other_iaid.bytes());
    assert!(
        notes(&out).contains(&Note::Dropped(crate::dhcp::wire::Dropped::OtherIaid(42))),
        "{out:?}"
    );
    let mut other_client = good();
    other_client.client = Identity::for_pool("7c9e6679-7425-40de-944b-e07fc1f90ae7").duid;
    assert!(matches!(
        notes(&c.on_message(b.t1_at + 1, &other_client.bytes()))[..],
        [Note::Ignored(Refused::OtherClient(_))]
    ));
    let mut other_xid = good();
    other_xid.xid = [ren.xid()[0] ^ 1, 0, 0];
    assert_eq!(
        notes(&c.on_message(b.t1_at + 1, &other_xid.bytes())),
        vec![Note::Ignored(Refused::OtherTransaction)]
    );
    let mut no_server = good();
    no_server.server = None;
    assert_eq!(
        notes(&c.on_message(b.t1_at + 1, &no_server.bytes())),
        vec![Note::Ignored(Refused::NoServerId)]
    );
    assert_eq!(c.binding(), before.binding());
    assert_eq!(c.phase(), Phase::Renewing);
    assert_eq!(c.next_wakeup(), before.next_wakeup());
}

#[test]
fn truncated_or_padded_replies_are_malformed_not_read_as_shorter_ones() {
    let (c0, b) = bound();
    let mut c = c0.clone();
    let ren = only_sent(&c.on_timer(b.t1_at));
    let good = Answer::to(
        &ren,
        MessageType::Reply,
        &[("2001:db8:100::/56", 200, 300)],
        100,
        160,
    )
    .bytes();
    for cut in [3usize, 9, 20, good.len() - 6] {
        let out = c.on_message(b.t1_at + 1, &good[..good.len() - cut]);
        assert!(
            matches!(&notes(&out)[..], [Note::Ignored(Refused::Malformed(_))]),
            "cut {cut}: {out:?}"
        );
    }
    let mut padded = good.clone();
    padded.extend_from_slice(&[0, 25, 0]);
    assert!(matches!(
        &notes(&c.on_message(b.t1_at + 1, &padded))[..],
        [Note::Ignored(Refused::Malformed(_))]
    ));
    // An IA_PD whose IA Prefix inside is cut short: the outer lengths fit.
    let mut m = Message::new_with_id(MessageType::Reply, ren.xid());
    m.opts_mut()
        .insert(DhcpOption::ClientId(Identity::for_pool(UID).duid));
    m.opts_mut().insert(DhcpOption::ServerId(SERVER.to_vec()));
    let mut bytes = m.to_vec().expect("encode");
    bytes.extend_from_slice(&[
        0, 25, 0, 16, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 26, 0, 25,
    ]);
    assert!(matches!(
        &notes(&c.on_message(b.t1_at + 1, &bytes))[..],
        [Note::Ignored(Refused::Malformed(_))]
    ));
    assert_eq!(c.phase(), Phase::Renewing);
    assert_eq!(c.binding(), Some(&b));
    // And the whole reply is still read.
    assert!(matches!(
        notes(&c.on_message(b.t1_at + 1, &good))[..],
        [Note::Bound(_)]
    ));
}

#[test]
fn a_top_level_failure_status_keeps_the_exchange_retransmitting() {
    let (mut c, b) = bound();
    let ren = only_sent(&c.on_timer(b.t1_at));
    let mut reply = Answer::to(&ren, MessageType::Reply, &[], 0, 0);
    reply.status = Some(Status::UnspecFail);
    let out = c.on_message(b.t1_at + 1, &reply.bytes());
    assert!(
        notes(&out)
            .iter()
            .any(|n| matches!(n, Note::ServerSaid(s) if s.code == "UnspecFail"))
    );
    assert_eq!(c.phase(), Phase::Renewing);
    assert_eq!(c.binding(), Some(&b));
}

#[test]
fn a_resumed_binding_is_renewed_when_due_not_solicited_again() {
    let (_, b) = bound();
    // Before T1: bound, nothing sent until T1.
    let (c, out) = Client::resume(cfg(), b.clone(), b.t1_at - 1_000, 9);
    assert_eq!(c.phase(), Phase::Bound);
    assert!(out.is_empty());
    assert_eq!(c.next_wakeup(), Some(b.t1_at));
    // Between T1 and T2: a Renew at once, to the same server, same prefix.
    let (c, out) = Client::resume(cfg(), b.clone(), b.t1_at + 1_000, 9);
    let m = only_sent(&out);
    assert_eq!(
        (m.msg_type(), c.phase()),
        (MessageType::Renew, Phase::Renewing)
    );
    assert_eq!(server_id(&m).as_deref(), Some(SERVER));
    assert_eq!(asked(&m), vec![(net("2001:db8:100::/56"), 0, 0)]);
    // Past T2: a Rebind.
    let (c, out) = Client::resume(cfg(), b.clone(), b.t2_at + 1_000, 9);
    assert_eq!(
        (only_sent(&out).msg_type(), c.phase()),
        (MessageType::Rebind, Phase::Rebinding)
    );
    // Past the valid lifetime: nothing is held; Solicit.
    let (c, out) = Client::resume(cfg(), b.clone(), b.leases[0].valid_until, 9);
    assert_eq!(
        (only_sent(&out).msg_type(), c.phase()),
        (MessageType::Solicit, Phase::Soliciting)
    );
    assert_eq!(c.binding(), None);
}

#[test]
fn release_names_the_server_and_the_prefixes_and_ends_on_reply_or_after_four_tries() {
    let (c0, _) = bound();
    let mut c = c0.clone();
    let rel = only_sent(&c.release(T0 + 1_000));
    assert_eq!(rel.msg_type(), MessageType::Release);
    assert_eq!(server_id(&rel).as_deref(), Some(SERVER));
    assert_eq!(asked(&rel), vec![(net("2001:db8:100::/56"), 0, 0)]);
    assert_eq!(c.phase(), Phase::Releasing);
    assert_eq!(c.binding(), None, "nothing is used once released");
    let mut reply = Answer::to(&rel, MessageType::Reply, &[], 0, 0);
    reply.ia = None;
    assert_eq!(
        notes(&c.on_message(T0 + 1_100, &reply.bytes())),
        vec![Note::Released]
    );
    assert_eq!(c.phase(), Phase::Released);
    assert_eq!(c.next_wakeup(), None);

    let mut c = c0.clone();
    let mut releases = sent(&c.release(T0)).len();
    loop {
        let now = c.next_wakeup().expect("due");
        let out = c.on_timer(now);
        if notes(&out).contains(&Note::Released) {
            break;
        }
        releases += sent(&out).len();
    }
    assert_eq!(releases, 4);
    assert_eq!(c.phase(), Phase::Released);
}

/// A server message with arbitrary fields for the client's transaction.
fn hostile_reply() -> impl Strategy<Value = Hostile> {
    (
        any::<bool>(),
        any::<u8>(),
        proptest::option::of(0u16..30),
        prop_oneof![Just(1u32), any::<u32>()],
        prop_oneof![Just(0u32), Just(u32::MAX), any::<u32>()],
        prop_oneof![Just(0u32), Just(u32::MAX), any::<u32>()],
        proptest::option::of(0u16..30),
        proptest::collection::vec(
            (
                any::<u128>(),
                prop_oneof![0u8..=140, Just(48u8), Just(56u8), Just(64u8)],
                prop_oneof![Just(0u32), Just(u32::MAX), 0u32..1_000],
                prop_oneof![Just(0u32), Just(u32::MAX), 0u32..1_000],
            ),
            0..4,
        ),
    )
}

proptest! {
    /// Arbitrary bytes, in every phase: never a panic, never a change.
    #[test]
    fn arbitrary_datagrams_never_panic_and_change_nothing(steps in 0usize..4, bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let (mut c, b) = bound();
        let mut now = T0 + 10;
        for _ in 0..steps {
            now = c.next_wakeup().unwrap_or(now);
            c.on_timer(now);
        }
        let before = (c.phase(), c.binding().cloned());
        let _ = b;
        let out = c.on_message(now, &bytes);
        prop_assert!(sent(&out).is_empty() || before.0 != c.phase());
        // Random bytes cannot carry our transaction id and DUID.
        prop_assert_eq!((c.phase(), c.binding().cloned()), before);
    }

    /// Well-formed replies with hostile fields (other IAIDs, statuses,
    /// lifetimes, lengths, timers) to a Renew: never a panic, and whatever
    /// is held afterwards is a prefix the pool can use, with sane lifetimes.
    #[test]
    fn hostile_replies_leave_only_usable_leases((adv, kind, top, iaid, t1, t2, ia_status, prefixes) in hostile_reply(), truncate in proptest::option::of(0usize..120)) {
        let (mut c, b) = bound();
        let ren = only_sent(&c.on_timer(b.t1_at));
        let answer = Answer {
            kind: if adv { MessageType::Advertise } else if kind % 7 == 0 { MessageType::from(kind) } else { MessageType::Reply },
            xid: ren.xid(),
            client: Identity::for_pool(UID).duid,
            server: Some(SERVER.to_vec()),
            preference: Some(kind),
            status: top.map(Status::from),
            ia: Some((iaid, t1, t2, ia_status.map(Status::from), prefixes.iter().map(|(ip, len, pl, vl)| {
                let len = (*len).min(128);
                (Ipv6Net::new(std::net::Ipv6Addr::from(*ip), len).expect("len").trunc(), *pl, *vl)
            }).collect())),
        };
        let mut bytes = answer.bytes();
        if let Some(t) = truncate {
            bytes.truncate(t);
        }
        let now = b.t1_at + 1;
        c.on_message(now, &bytes);
        if let Some(held) = c.binding() {
            prop_assert!(!held.leases.is_empty());
            for l in &held.leases {
                let len = l.prefix.prefix_len();
                prop_assert!((32..=64).contains(&len), "{:?}", l);
                prop_assert!(l.preferred_until <= l.valid_until, "{:?}", l);
                prop_assert!(l.valid_until > now, "{:?}", l);
            }
            prop_assert!(held.t1_at <= held.t2_at);
        }
        let _ = c.next_wakeup();
    }
}
