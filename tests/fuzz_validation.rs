//! Property-based fuzzing of everything that reads data from the API:
//! CIDR parsing, spec decoding and spec validation never panic, and what they
//! accept is consistent.

use prefix_operator::alloc::{PoolSpace, parse_canonical, parse_lenient};
use prefix_operator::api::{PrefixPoolSpec, validate_spec};
use prefix_operator::duration;
use proptest::prelude::*;

/// Strings near the shape of a CIDR, so the parser's edges get exercised.
fn cidrish() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[0-9a-fA-F:.]{0,45}/[0-9]{0,4}",
        "(2001:db8|fd[0-9a-f]{2}|fe80|ff0[0-9]|::ffff)(:[0-9a-f]{0,4}){0,7}(::)?/[0-9]{1,3}",
        "([0-9]{1,3}\\.){3}[0-9]{1,3}/[0-9]{1,2}",
        (any::<u128>(), 0u8..=130)
            .prop_map(|(a, l)| format!("{}/{l}", std::net::Ipv6Addr::from(a))),
        (any::<u32>(), 0u8..=34).prop_map(|(a, l)| format!("{}/{l}", std::net::Ipv4Addr::from(a))),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn cidr_parsing_never_panics_and_round_trips(s in cidrish()) {
        if let Ok(n) = parse_canonical(&s) {
            prop_assert_eq!(n.to_string(), s.clone());
            prop_assert_eq!(n, n.trunc());
        }
        if let Ok(n) = parse_lenient(&s) {
            prop_assert_eq!(n, n.trunc());
            prop_assert_eq!(parse_canonical(&n.to_string()), Ok(n));
        }
    }

    #[test]
    fn durations_never_panic(s in "[0-9mhs.]{0,20}|\\PC{0,20}") {
        if let Ok(d) = duration::parse(&s) {
            prop_assert!(d.get().as_secs() <= 10 * 366 * 24 * 3600);
            prop_assert_eq!(duration::parse(&d.to_string()), Ok(d));
        }
    }

    /// Every text the CRD's CEL rule lets through (below the 10-year cap)
    /// is a duration to the operator too; tests/admission.rs checks the
    /// other direction on the API server.
    #[test]
    fn the_cel_pattern_and_the_parser_agree(
        s in duration::PATTERN.trim_start_matches('^').trim_end_matches('$')
    ) {
        match duration::parse(&s) {
            Ok(_) => {}
            Err(e) => prop_assert_eq!(e.problem, duration::Problem::TooLong, "{}", s),
        }
    }

    #[test]
    fn spec_validation_never_panics_and_accepts_only_servable_pools(
        prefixes in proptest::collection::vec(cidrish(), 0..5),
        reserved in proptest::collection::vec(cidrish(), 0..4),
        npl in proptest::option::of(-5i32..140),
        priority in any::<i32>(),
        retain in proptest::option::of("[0-9]{1,4}([.][0-9]{1,3})?(ms|s|m|h)|\\PC{0,6}"),
        key in "[a-zA-Z0-9./_ !-]{0,70}",
    ) {
        let spec = PrefixPoolSpec {
            prefixes,
            node_prefix_length: npl,
            reserved,
            priority,
            retain_for: retain,
            node_selector: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
                match_labels: Some([(key, "v".to_string())].into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        if let Ok(def) = validate_spec(&spec) {
            let space = PoolSpace::new(&def.prefixes, def.node_prefix_length);
            prop_assert!(space.is_ok(), "accepted a spec PoolSpace refuses: {:?}", spec);
            for r in &def.reserved {
                prop_assert!(def.prefixes.iter().any(|p| p.contains(r)));
            }
        }
    }

    #[test]
    fn arbitrary_json_specs_decode_or_fail_cleanly(v in json_value(3)) {
        if let Ok(spec) = serde_json::from_value::<PrefixPoolSpec>(v) {
            let _ = validate_spec(&spec);
        }
    }
}

fn json_value(depth: u32) -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        cidrish().prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(depth, 32, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(serde_json::Value::from),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("prefixes".to_string()),
                    Just("reserved".to_string()),
                    Just("nodePrefixLength".to_string()),
                    Just("nodeSelector".to_string()),
                    Just("matchLabels".to_string()),
                    Just("priority".to_string()),
                    Just("retainFor".to_string()),
                    "[a-z]{1,8}",
                ],
                inner,
                0..6
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}
