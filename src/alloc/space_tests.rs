use super::*;

fn net(s: &str) -> IpNet {
    s.parse().expect("test literal is a CIDR")
}

fn pool(prefixes: &[&str], n: u8) -> PoolSpace {
    let prefixes: Vec<IpNet> = prefixes.iter().map(|s| net(s)).collect();
    PoolSpace::new(&prefixes, n).expect("valid pool")
}

/// first_free + mark, as the controller allocates.
fn allocate(space: &mut PoolSpace) -> Option<IpNet> {
    let slot = space.first_free()?;
    space.mark(&slot);
    Some(slot)
}

#[test]
fn big_ipv6_capacities() {
    let s32 = pool(&["2001:db8::/32"], 64);
    assert_eq!(s32.capacity(), 4_294_967_296);
    assert_eq!(s32.available(), 4_294_967_296);
    let s20 = pool(&["2001:d000::/20"], 64);
    assert_eq!(s20.capacity(), 1 << 44);
    assert_eq!(s20.first_free(), Some(net("2001:d000::/64")));
    let all = pool(&["::/0"], 64);
    assert_eq!(all.capacity(), 1 << 64);
    let v4_all = pool(&["0.0.0.0/0"], 32);
    assert_eq!(v4_all.capacity(), 1 << 32);
    assert_eq!(v4_all.first_free(), Some(net("0.0.0.0/32")));
}

#[test]
fn ipv4_slots() {
    let mut space = pool(&["10.0.0.0/24"], 26);
    assert_eq!(space.family(), Family::V4);
    assert_eq!(space.node_prefix_length(), 26);
    assert_eq!(space.capacity(), 4);
    let got: Vec<IpNet> = std::iter::from_fn(|| allocate(&mut space)).collect();
    assert_eq!(
        got,
        [
            "10.0.0.0/26",
            "10.0.0.64/26",
            "10.0.0.128/26",
            "10.0.0.192/26"
        ]
        .map(net)
    );
    assert_eq!(space.used(), 4);
    assert_eq!(space.available(), 0);
}

#[test]
fn lowest_free_first() {
    let mut space = pool(&["fd00:1::/48", "fd00::/48"], 64);
    assert_eq!(space.prefixes(), &[net("fd00::/48"), net("fd00:1::/48")]);
    let a = allocate(&mut space);
    let b = allocate(&mut space);
    let c = allocate(&mut space);
    assert_eq!(a, Some(net("fd00::/64")));
    assert_eq!(b, Some(net("fd00:0:0:1::/64")));
    assert_eq!(c, Some(net("fd00:0:0:2::/64")));
    assert!(space.unmark(&net("fd00:0:0:1::/64")));
    assert_eq!(space.first_free(), Some(net("fd00:0:0:1::/64")));
    assert_eq!(space.used(), 2);
    assert!(!space.unmark(&net("fd00:0:0:1::/64")), "already released");
    assert_eq!(space.used(), 2);
}

#[test]
fn foreign_56_blocks_exactly_256_slots() {
    let mut space = pool(&["2001:db8:1::/48"], 64);
    space.mark(&net("2001:db8:1::/56"));
    assert_eq!(space.used(), 256);
    assert_eq!(space.available(), 65_536 - 256);
    assert_eq!(space.first_free(), Some(net("2001:db8:1:100::/64")));
    assert!(!space.is_free(&net("2001:db8:1:ff::/64")));
    assert!(space.is_free(&net("2001:db8:1:100::/64")));
    assert!(space.unmark(&net("2001:db8:1::/56")));
    assert_eq!(space.used(), 0);
    assert_eq!(space.first_free(), Some(net("2001:db8:1::/64")));
}

#[test]
fn reserved_slot_is_skipped() {
    let mut space = pool(&["fd00::/48"], 64);
    space.mark(&net("fd00:0:0:1::/64"));
    assert_eq!(allocate(&mut space), Some(net("fd00::/64")));
    assert_eq!(allocate(&mut space), Some(net("fd00:0:0:2::/64")));
    assert_eq!(space.used(), 3);
}

#[test]
fn sub_slot_mark_blocks_its_slot_and_is_exact() {
    let mut space = pool(&["fd00::/48"], 64);
    space.mark(&net("fd00::100/120"));
    assert_eq!(space.used(), 1);
    assert_eq!(space.first_free(), Some(net("fd00:0:0:1::/64")));
    assert!(space.is_marked(&net("fd00::100/120")));
    assert!(
        !space.is_marked(&net("fd00::/112")),
        "same slot, other CIDR"
    );
    assert!(!space.unmark(&net("fd00::/112")));
    assert_eq!(space.used(), 1);
    space.mark(&net("fd00::/112"));
    assert!(space.unmark(&net("fd00::100/120")));
    assert_eq!(space.used(), 1, "the /112 still blocks the slot");
    assert!(space.unmark(&net("fd00::/112")));
    assert_eq!(space.used(), 0);
}

#[test]
fn mark_straddling_prefix_boundaries() {
    let mut space = pool(&["10.0.1.0/24", "10.0.2.0/24"], 26);
    assert_eq!(space.capacity(), 8);
    space.mark(&net("10.0.0.0/23"));
    assert_eq!(space.used(), 4, "only the half inside the pool counts");
    assert_eq!(space.first_free(), Some(net("10.0.2.0/26")));
    space.mark(&net("10.0.2.0/23"));
    assert_eq!(space.used(), 8);
    assert_eq!(space.first_free(), None);
    assert!(space.unmark(&net("10.0.0.0/23")));
    assert_eq!(space.used(), 4);
    assert_eq!(space.first_free(), Some(net("10.0.1.0/26")));
    // One mark spanning both prefixes and the gap around them.
    space.mark(&net("10.0.0.0/22"));
    assert_eq!(space.used(), 8);
    assert!(space.unmark(&net("10.0.2.0/23")));
    assert_eq!(space.used(), 8);
    assert!(space.unmark(&net("10.0.0.0/22")));
    assert_eq!(space.used(), 0);
}

#[test]
fn overlapping_marks_release_only_unshared_slots() {
    let mut space = pool(&["fd00::/48"], 64);
    let wide = net("fd00:0:0:100::/56");
    let inner = net("fd00:0:0:110::/64");
    let inner_sub = net("fd00:0:0:1f0::/72");

    space.mark(&wide);
    space.mark(&inner);
    space.mark(&inner_sub);
    assert_eq!(space.used(), 256);
    assert!(space.unmark(&wide));
    assert_eq!(space.used(), 2);
    assert!(!space.is_free(&inner));
    assert!(!space.is_free(&net("fd00:0:0:1f0::/64")));
    assert!(space.is_free(&net("fd00:0:0:111::/64")));
    assert_eq!(space.first_free(), Some(net("fd00::/64")));

    // The other way round: dropping the inner mark frees nothing.
    space.mark(&wide);
    assert!(space.unmark(&inner));
    assert!(space.unmark(&inner_sub));
    assert_eq!(space.used(), 256);
    assert!(space.unmark(&wide));
    assert_eq!(space.used(), 0);
    assert_eq!(space.mark_count(), 0);
}

#[test]
fn repeated_marks_are_counted() {
    let mut space = pool(&["fd00::/48"], 64);
    let slot = net("fd00::/64");
    space.mark(&slot);
    space.mark(&slot);
    assert_eq!(space.mark_count(), 1);
    assert_eq!(space.used(), 1);
    assert!(space.unmark(&slot));
    assert!(space.is_marked(&slot));
    assert_eq!(space.used(), 1);
    assert!(space.unmark(&slot));
    assert!(!space.is_marked(&slot));
    assert_eq!(space.used(), 0);
    assert!(!space.unmark(&slot));
}

#[test]
fn marks_outside_the_pool_or_family() {
    let mut space = pool(&["fd00::/48"], 64);
    space.mark(&net("fd01::/64"));
    space.mark(&net("10.0.0.0/8"));
    assert_eq!(space.mark_count(), 1, "the other family is ignored");
    assert!(space.is_marked(&net("fd01::/64")));
    assert!(!space.is_marked(&net("10.0.0.0/8")));
    assert!(!space.unmark(&net("10.0.0.0/8")));
    assert_eq!(space.used(), 0);
    assert!(!space.is_free(&net("fd01::/64")), "outside the pool");
    assert!(!space.is_free(&net("fd00::/47")), "larger than the pool");
    assert!(space.contains(&net("fd00:0:0:5::/64")));
    assert!(!space.contains(&net("10.0.0.0/8")));
    assert!(space.overlaps(&net("fd00::/16")));
    assert!(!space.overlaps(&net("fd01::/48")));
    assert!(space.unmark(&net("fd01::/64")));
}

#[test]
fn single_address_pools() {
    let mut space = pool(&["2001:db8::1/128"], 128);
    assert_eq!(space.capacity(), 1);
    assert_eq!(allocate(&mut space), Some(net("2001:db8::1/128")));
    assert_eq!(space.first_free(), None);

    // The top of the address space, where slot + 1 would overflow.
    let mut top = pool(&["ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff00/120"], 128);
    let n = std::iter::from_fn(|| allocate(&mut top)).count();
    assert_eq!(n, 256);
    assert_eq!(top.used(), 256);
    assert!(top.unmark(&net("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128")));
    assert_eq!(
        top.first_free(),
        Some(net("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"))
    );

    // n = 0: the whole family is one slot and shifts reach 128 bits.
    let mut whole = pool(&["::/0"], 0);
    assert_eq!(whole.capacity(), 1);
    whole.mark(&net("fd00::/64"));
    assert_eq!(whole.used(), 1);
    assert_eq!(whole.first_free(), None);
    assert!(whole.unmark(&net("fd00::/64")));
    assert_eq!(whole.first_free(), Some(net("::/0")));
}

#[test]
fn exhausting_a_48() {
    let mut space = pool(&["2001:db8:42::/48"], 64);
    let mut count = 0u32;
    while allocate(&mut space).is_some() {
        count += 1;
    }
    assert_eq!(count, 65_536);
    assert_eq!(space.used(), 65_536);
    assert_eq!(space.available(), 0);
    assert_eq!(space.first_free(), None);
    let hole = net("2001:db8:42:1234::/64");
    assert!(space.unmark(&hole));
    assert_eq!(space.first_free(), Some(hole));
}

#[test]
fn construction_errors() {
    assert_eq!(PoolSpace::new(&[], 64).err(), Some(SpaceError::NoPrefixes));
    assert_eq!(
        PoolSpace::new(&[net("fd00::/48"), net("10.0.0.0/8")], 64).err(),
        Some(SpaceError::MixedFamilies)
    );
    assert_eq!(
        PoolSpace::new(&[net("10.0.0.0/8")], 33).err(),
        Some(SpaceError::NodePrefixTooLong {
            node_prefix_length: 33,
            max: 32
        })
    );
    let err = PoolSpace::new(&[net("fd00::/48")], 40).err();
    assert_eq!(
        err,
        Some(SpaceError::NodePrefixTooShort {
            prefix: net("fd00::/48"),
            node_prefix_length: 40
        })
    );
    assert_eq!(
        err.map(|e| e.to_string()).as_deref(),
        Some(
            "node prefix length /40 is shorter than pool prefix fd00::/48; it must be at least /48"
        )
    );
    let err = PoolSpace::new(&[net("fd00::/48")], 128).err();
    assert_eq!(
        err.map(|e| e.to_string()).as_deref(),
        Some("splitting fd00::/48 into /128 gives 2^80 slots; at most 2^64 are supported")
    );
    assert!(PoolSpace::new(&[net("fd00::/64")], 128).is_ok());
    assert_eq!(
        PoolSpace::new(&[net("fd00:0:0:100::/56"), net("fd00::/48")], 64).err(),
        Some(SpaceError::Overlapping(
            net("fd00::/48"),
            net("fd00:0:0:100::/56")
        ))
    );
    assert_eq!(
        PoolSpace::new(&[net("fd00::/48"), net("fd00::/48")], 64).err(),
        Some(SpaceError::Overlapping(net("fd00::/48"), net("fd00::/48")))
    );
}

#[test]
fn blocks_longer_than_a_slot_take_a_whole_free_slot() {
    let mut s = pool(&["2001:db8::/48"], 64);
    s.mark(&net("2001:db8::/64"));
    let b = s.first_free_block(112).expect("room");
    assert_eq!(b, net("2001:db8:0:1::/112"));
    s.mark(&b);
    // The rest of that /64 is not handed out.
    assert_eq!(s.first_free(), Some(net("2001:db8:0:2::/64")));
    assert!(!s.is_free(&net("2001:db8:0:1::1:0/112")));
}

#[test]
fn blocks_shorter_than_a_slot_are_aligned_and_wholly_free() {
    let mut s = pool(&["2001:db8::/48"], 64);
    // One node in the first /56: the claim skips to the second.
    s.mark(&net("2001:db8:0:5::/64"));
    assert_eq!(s.first_free_block(56), Some(net("2001:db8:0:100::/56")));
    // A mark inside the second /56 pushes it on again.
    s.mark(&net("2001:db8:0:1ff::/64"));
    assert_eq!(s.first_free_block(56), Some(net("2001:db8:0:200::/56")));
    // A block as large as the prefix fits only when it is all free.
    assert_eq!(s.first_free_block(48), None);
    assert_eq!(
        pool(&["2001:db8::/48"], 64).first_free_block(48),
        Some(net("2001:db8::/48"))
    );
    // Shorter than every prefix: never.
    assert_eq!(s.first_free_block(40), None);
    // Past the last block of the last prefix.
    let mut tiny = pool(&["10.0.0.0/23"], 24);
    tiny.mark(&net("10.0.1.0/24"));
    assert_eq!(tiny.first_free_block(23), None);
    assert_eq!(tiny.first_free_block(24), Some(net("10.0.0.0/24")));
    assert_eq!(tiny.first_free_block(33), None);
}

proptest::proptest! {
    /// Against a brute force over every aligned block: the answer is the
    /// lowest block of that length that is inside the pool and free.
    #[test]
    fn first_free_block_is_the_lowest_free_block(
        marks in proptest::collection::vec((0u32..256, 20u8..=28), 0..12),
        len in 16u8..=30,
    ) {
        let mut s = pool(&["10.0.0.0/18", "10.1.0.0/17"], 24);
        for (i, l) in &marks {
            let addr = u32::from(std::net::Ipv4Addr::new(10, 0, 0, 0)) + (i << 9);
            let m = IpNet::new(std::net::Ipv4Addr::from(addr).into(), *l).expect("len").trunc();
            s.mark(&m);
        }
        let got = s.first_free_block(len);
        let base = u32::from(std::net::Ipv4Addr::new(10, 0, 0, 0));
        let end = u32::from(std::net::Ipv4Addr::new(10, 2, 0, 0));
        let step = 1u32 << (32 - u32::from(len.min(24)));
        let want = (base..end)
            .step_by(step as usize)
            .map(|a| IpNet::new(std::net::Ipv4Addr::from(a).into(), len).expect("len"))
            .find(|n| s.is_free(n));
        proptest::prop_assert_eq!(got, want);
    }
}
