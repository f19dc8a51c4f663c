use super::*;

fn net(s: &str) -> IpNet {
    s.parse().expect("test literal is a CIDR")
}

#[test]
fn canonical_accepts_canonical_text() {
    for s in [
        "10.0.0.0/8",
        "0.0.0.0/0",
        "255.255.255.255/32",
        "fd00::/64",
        "2001:db8::/32",
        "::/0",
        "::1/128",
        "::ffff:10.0.0.0/104",
    ] {
        assert_eq!(parse_canonical(s), Ok(net(s)), "{s}");
    }
    assert_eq!(
        Family::of(&parse_canonical("::ffff:10.0.0.0/104").expect("mapped")),
        Family::V6
    );
}

#[test]
fn canonical_rejects_host_bits_with_suggestion() {
    let err = parse_canonical("10.0.0.1/8").expect_err("host bits");
    assert_eq!(
        err.to_string(),
        r#""10.0.0.1/8" has host bits set; did you mean "10.0.0.0/8"?"#
    );
    let err = parse_canonical("fd00::1/64").expect_err("host bits");
    assert_eq!(
        err,
        CidrError::HostBitsSet {
            input: "fd00::1/64".into(),
            canonical: "fd00::/64".into()
        }
    );
}

#[test]
fn canonical_rejects_non_cidrs() {
    for s in [
        "fd00::/129",
        "10.0.0.0/33",
        "10.0.0.0",
        "",
        "banana",
        " 10.0.0.0/8",
        "10.0.0.0/8 ",
        "fe80::1%eth0/64",
        "10.0.0.0/-1",
    ] {
        assert_eq!(
            parse_canonical(s),
            Err(CidrError::NotCidr { input: s.into() }),
            "{s:?}"
        );
    }
    assert_eq!(
        parse_canonical("fd00::/129").expect_err("bad").to_string(),
        r#""fd00::/129" is not a CIDR"#
    );
}

#[test]
fn canonical_rejects_non_canonical_spelling() {
    let err = parse_canonical("FD00::/64").expect_err("upper case");
    assert_eq!(
        err.to_string(),
        r#""FD00::/64" is not in canonical form; write "fd00::/64""#
    );
    for (s, want) in [
        ("fd00:0:0:0::/64", "fd00::/64"),
        ("fd00:0000::/64", "fd00::/64"),
        ("10.0.0.0/08", "10.0.0.0/8"),
    ] {
        assert_eq!(
            parse_canonical(s),
            Err(CidrError::NotCanonical {
                input: s.into(),
                canonical: want.into()
            }),
            "{s}"
        );
    }
}

#[test]
fn lenient_truncates_host_bits() {
    assert_eq!(parse_lenient("10.1.2.3/16"), Ok(net("10.1.0.0/16")));
    assert_eq!(parse_lenient("FD00::1/64"), Ok(net("fd00::/64")));
    assert_eq!(parse_lenient("10.0.0.0/24"), Ok(net("10.0.0.0/24")));
    assert!(matches!(
        parse_lenient("10.0.0.0"),
        Err(CidrError::NotCidr { .. })
    ));
}

#[test]
fn ranges_and_net_from_round_trip() {
    assert_eq!(range(&net("10.0.0.0/8")), (0x0a00_0000, 0x0aff_ffff));
    assert_eq!(range(&net("0.0.0.0/0")), (0, u128::from(u32::MAX)));
    assert_eq!(range(&net("::/0")), (0, u128::MAX));
    assert_eq!(
        range(&net("fd00::/64")),
        (
            0xfd00u128 << 112,
            (0xfd00u128 << 112) | u128::from(u64::MAX)
        )
    );
    // Host bits are ignored on input and cleared on output.
    assert_eq!(range(&net("10.0.0.7/24")).0, 0x0a00_0000);
    assert_eq!(net_from(Family::V4, 0x0a00_0007, 24), net("10.0.0.0/24"));
    assert_eq!(
        net_from(Family::V6, 0xfd00u128 << 112, 64),
        net("fd00::/64")
    );
    assert_eq!(
        net_from(Family::V6, u128::MAX, 128),
        net("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128")
    );
    assert_eq!(net_from(Family::V4, 0, 40), net("0.0.0.0/32"));
}

#[test]
fn overlap_requires_same_family_and_shared_addresses() {
    assert!(overlaps(&net("10.0.0.0/8"), &net("10.1.0.0/16")));
    assert!(overlaps(&net("10.1.0.0/16"), &net("10.0.0.0/8")));
    assert!(!overlaps(&net("10.0.0.0/24"), &net("10.0.1.0/24")));
    assert!(overlaps(&net("::/0"), &net("fd00::/64")));
    assert!(!overlaps(&net("::ffff:10.0.0.0/104"), &net("10.0.0.0/8")));
    assert!(!overlaps(&net("0.0.0.0/0"), &net("::/0")));
}

#[test]
fn scopes() {
    let cases = [
        ("2001:db8::/32", Scope::GlobalUnicast),
        ("2a00::/12", Scope::GlobalUnicast),
        ("fd12:3456::/48", Scope::UniqueLocal),
        ("fc00::/7", Scope::UniqueLocal),
        ("fe80::/64", Scope::Other),
        ("::/0", Scope::Other),
        ("::1/128", Scope::Other),
        ("ff02::/16", Scope::Other),
        ("10.0.0.0/8", Scope::Private),
        ("172.20.0.0/16", Scope::Private),
        ("192.168.1.0/24", Scope::Private),
        ("100.64.0.0/10", Scope::Shared),
        ("100.127.255.0/24", Scope::Shared),
        ("8.8.8.0/24", Scope::Public),
        ("172.32.0.0/16", Scope::Public),
        ("127.0.0.0/8", Scope::Other),
        ("169.254.0.0/16", Scope::Other),
        ("224.0.0.0/4", Scope::Other),
        ("240.0.0.0/4", Scope::Other),
        ("192.0.2.0/24", Scope::Other),
        ("8.0.0.0/6", Scope::Other),
        ("0.0.0.0/0", Scope::Other),
    ];
    for (s, want) in cases {
        assert_eq!(scope(&net(s)), want, "{s}");
    }
    assert_eq!(Scope::GlobalUnicast.to_string(), "GlobalUnicast");
    assert_eq!(Family::V4.to_string(), "IPv4");
    assert_eq!(Family::V6.to_string(), "IPv6");
    assert_eq!(Family::V4.bits(), 32);
    assert_eq!(Family::V6.bits(), 128);
}
