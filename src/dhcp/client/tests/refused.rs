//! What the client refuses: inconsistent IA_PDs, prefixes the pool cannot
//! use, replies for another client or transaction, malformed datagrams; and
//! arbitrary or hostile-but-well-formed replies (proptest).

use super::*;

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
