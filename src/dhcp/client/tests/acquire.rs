//! Getting a binding: Solicit and its retransmissions, Advertises
//! collected and chosen, Request and Reply, and the back-offs when the
//! servers do not give one.

use super::*;

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
