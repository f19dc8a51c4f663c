//! Keeping a binding: Renew at T1, Rebind at T2, expiry, the server losing
//! or renumbering the binding, the timers the client picks, a binding
//! resumed from the pool's status, and Release.

use super::*;

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
