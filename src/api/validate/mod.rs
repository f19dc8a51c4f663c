//! The operator's own check of a PrefixPool spec. The CRD's schema and CEL
//! rules refuse most bad specs at admission; this repeats them (an older CRD,
//! or a server without the CIDR CEL library, may have let one through) and
//! turns a valid spec into the parsed form the ledger works with.
//!
//! Here the checks of the spec as a whole; [`parse`] parses its fields
//! (CIDRs, reserved ranges, the node selector).

mod parse;

use ipnet::IpNet;
use kube::core::Selector;

use self::parse::{parse_prefixes, parse_reserved, parse_selector};
use super::{
    DEFAULT_NODE_PREFIX_LENGTH_V4, DEFAULT_NODE_PREFIX_LENGTH_V6, DELEGATED_PREFERRED,
    DelegationStatus, MAX_PREFIXES, MAX_RESERVED, PrefixPoolSpec,
};
use crate::alloc::{Family, PoolSpace};

/// A valid pool, parsed.
#[derive(Clone, Debug)]
pub struct PoolDefinition {
    pub family: Family,
    /// Sorted by address.
    pub prefixes: Vec<IpNet>,
    pub node_prefix_length: u8,
    pub selector: Selector,
    pub reserved: Vec<IpNet>,
    pub priority: i32,
    pub retain_for: std::time::Duration,
    pub reuse_after: std::time::Duration,
    /// The interface of `spec.delegation`, for a pool fed by DHCPv6-PD.
    pub delegation_interface: Option<String>,
}

/// Why a spec cannot be served; the message is shown in the pool's `Ready`
/// condition and in a Warning Event.
#[derive(thiserror::Error, Debug, Clone, PartialEq)]
#[error("{0}")]
pub struct SpecError(pub String);

/// Checks a spec and parses it (a pool with `spec.delegation` as if
/// nothing were delegated yet).
pub fn validate_spec(spec: &PrefixPoolSpec) -> Result<PoolDefinition, SpecError> {
    validate_pool(spec, None)
}

/// Checks a spec and parses it. A pool with `spec.delegation` takes its
/// prefixes from its DHCPv6 binding, `delegation` (as its status holds
/// it): those still `Preferred`. With none it is valid and serves nothing;
/// Nodes keep what they hold from earlier prefixes (retired).
pub fn validate_pool(
    spec: &PrefixPoolSpec,
    delegation: Option<&DelegationStatus>,
) -> Result<PoolDefinition, SpecError> {
    let delegated: Vec<String>;
    // Where the prefixes come from, as error messages name it.
    let (texts, field, scope) = if spec.delegation.is_some() {
        if !spec.prefixes.is_empty() {
            return Err(SpecError(
                "spec.prefixes and spec.delegation are both given: a pool takes its prefixes from one of them".into(),
            ));
        }
        if !spec.reserved.is_empty() {
            return Err(SpecError(
                "spec.reserved needs spec.prefixes: a delegated prefix is not known in advance"
                    .into(),
            ));
        }
        delegated = delegation
            .map(|d| {
                d.prefixes
                    .iter()
                    .filter(|p| p.state == DELEGATED_PREFERRED)
                    .map(|p| p.prefix.clone())
                    .take(MAX_PREFIXES)
                    .collect()
            })
            .unwrap_or_default();
        (&delegated[..], "status.delegation.prefixes", "status")
    } else {
        check_counts(spec)?;
        (&spec.prefixes[..], "spec.prefixes", "spec")
    };
    let mut prefixes = parse_prefixes(texts, field)?;
    let family = match prefixes.first() {
        Some(p) => Family::of(p),
        None => Family::V6,
    };
    if spec.delegation.is_some() && family != Family::V6 {
        return Err(SpecError(format!(
            "{field}: DHCPv6 delegates IPv6 prefixes only"
        )));
    }
    let node_prefix_length = node_prefix_length(spec.node_prefix_length, family)?;
    // PoolSpace checks family mixing, lengths, slot count and overlap.
    if !prefixes.is_empty()
        && let Err(e) = PoolSpace::new(&prefixes, node_prefix_length)
    {
        return Err(SpecError(format!("{scope}: {e}")));
    }
    let reserved = parse_reserved(&spec.reserved, &prefixes)?;
    let selector = parse_selector(spec.node_selector.as_ref())?;
    let retain_for = parse_duration("retainFor", spec.retain_for.as_deref())?;
    let reuse_after = parse_duration("reuseAfter", spec.reuse_after.as_deref())?;
    prefixes.sort();
    Ok(PoolDefinition {
        retain_for,
        reuse_after,
        family,
        prefixes,
        node_prefix_length,
        selector,
        reserved,
        priority: spec.priority,
        delegation_interface: spec.delegation.as_ref().map(|d| d.interface.clone()),
    })
}

fn check_counts(spec: &PrefixPoolSpec) -> Result<(), SpecError> {
    if spec.prefixes.is_empty() {
        return Err(SpecError(
            "spec.prefixes is empty: name at least one delegated block".into(),
        ));
    }
    if spec.prefixes.len() > MAX_PREFIXES {
        return Err(SpecError(format!(
            "spec.prefixes has {} entries; at most {MAX_PREFIXES} are allowed",
            spec.prefixes.len()
        )));
    }
    if spec.reserved.len() > MAX_RESERVED {
        return Err(SpecError(format!(
            "spec.reserved has {} entries; at most {MAX_RESERVED} are allowed",
            spec.reserved.len()
        )));
    }
    Ok(())
}

fn node_prefix_length(given: Option<i32>, family: Family) -> Result<u8, SpecError> {
    match given {
        Some(n) => match u8::try_from(n) {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(SpecError(format!(
                "spec.nodePrefixLength {n} is out of range 1..=128"
            ))),
        },
        None => Ok(match family {
            Family::V6 => DEFAULT_NODE_PREFIX_LENGTH_V6,
            Family::V4 => DEFAULT_NODE_PREFIX_LENGTH_V4,
        }),
    }
}

/// An absent duration is zero.
fn parse_duration(field: &str, text: Option<&str>) -> Result<std::time::Duration, SpecError> {
    match text {
        None => Ok(std::time::Duration::ZERO),
        Some(text) => crate::duration::parse(text)
            .map(crate::duration::Duration::get)
            .map_err(|e| SpecError(format!("spec.{field}: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};

    fn spec(prefixes: &[&str]) -> PrefixPoolSpec {
        PrefixPoolSpec {
            prefixes: prefixes.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn defaults_by_family() {
        let v6 = validate_spec(&spec(&["2001:db8::/48"])).expect("valid");
        assert_eq!(v6.node_prefix_length, 64);
        assert_eq!(v6.family, Family::V6);
        let v4 = validate_spec(&spec(&["10.0.0.0/16"])).expect("valid");
        assert_eq!(v4.node_prefix_length, 24);
        assert_eq!(v4.family, Family::V4);
    }

    #[test]
    fn refuses_bad_specs_with_a_reason() {
        let cases: Vec<(PrefixPoolSpec, &str)> = vec![
            (spec(&[]), "empty"),
            (spec(&["2001:db8::1/48"]), "host bits"),
            (spec(&["not-a-cidr"]), "not a CIDR"),
            (spec(&["::/0"]), "not unicast"),
            (spec(&["fe80::/64"]), "not unicast"),
            (spec(&["127.0.0.0/16"]), "not unicast"),
            (spec(&["2001:db8::/48", "10.0.0.0/8"]), ""),
            (spec(&["2001:db8::/48", "2001:db8:0:1::/64"]), ""),
            (
                PrefixPoolSpec {
                    node_prefix_length: Some(40),
                    ..spec(&["2001:db8::/48"])
                },
                "",
            ),
            (
                PrefixPoolSpec {
                    reserved: vec!["2001:db9::/64".into()],
                    ..spec(&["2001:db8::/48"])
                },
                "not inside",
            ),
            (
                PrefixPoolSpec {
                    node_selector: Some(LabelSelector {
                        match_expressions: Some(vec![LabelSelectorRequirement {
                            key: "zone".into(),
                            operator: "Near".into(),
                            values: None,
                        }]),
                        ..Default::default()
                    }),
                    ..spec(&["2001:db8::/48"])
                },
                "operator",
            ),
            (
                PrefixPoolSpec {
                    node_selector: Some(LabelSelector {
                        match_labels: Some([("bad key!".to_string(), "x".to_string())].into()),
                        ..Default::default()
                    }),
                    ..spec(&["2001:db8::/48"])
                },
                "label key",
            ),
        ];
        for (s, needle) in cases {
            let e = validate_spec(&s).expect_err(&format!("{s:?} must be refused"));
            assert!(
                e.0.to_lowercase().contains(&needle.to_lowercase()),
                "{e} should mention {needle:?}"
            );
        }
    }

    #[test]
    fn durations_use_the_one_grammar() {
        use std::time::Duration;
        let def = |retain: &str, reuse: &str| {
            validate_spec(&PrefixPoolSpec {
                retain_for: Some(retain.into()),
                reuse_after: Some(reuse.into()),
                ..spec(&["2001:db8::/48"])
            })
        };
        let d = def("1m30s", "1.5s").expect("valid");
        assert_eq!(d.retain_for, Duration::from_secs(90));
        assert_eq!(d.reuse_after, Duration::from_millis(1500));
        let d = def("1h", "500ms").expect("valid");
        assert_eq!(d.retain_for, Duration::from_secs(3600));
        assert_eq!(d.reuse_after, Duration::from_millis(500));
        let e = def("forever", "1s").expect_err("refused");
        assert!(
            e.0.starts_with("spec.retainFor: \"forever\" is not a duration"),
            "{e}"
        );
        let e = def("1s", "-1s").expect_err("refused");
        assert!(e.0.starts_with("spec.reuseAfter:"), "{e}");
    }

    /// What a delegated pool's record may hold, checked like spec.prefixes:
    /// IPv6 only, canonical, routable unicast, fit for nodePrefixLength.
    #[test]
    fn delegated_prefixes_are_checked_like_given_ones() {
        use crate::api::{DelegatedPrefix, DelegationSpec, DelegationStatus};
        let pool = PrefixPoolSpec {
            delegation: Some(DelegationSpec {
                interface: "eth1".into(),
                prefix_length: None,
            }),
            ..Default::default()
        };
        let with = |prefixes: &[&str]| DelegationStatus {
            prefixes: prefixes
                .iter()
                .map(|p| DelegatedPrefix {
                    prefix: p.to_string(),
                    state: DELEGATED_PREFERRED.into(),
                    preferred_until: None,
                    valid_until: None,
                })
                .collect(),
            ..Default::default()
        };
        let ok = validate_pool(&pool, Some(&with(&["2001:db8:1::/56"]))).expect("valid");
        assert_eq!(ok.prefixes.len(), 1);
        for (bad, phrase) in [
            (vec!["10.1.0.0/16"], "IPv6 prefixes only"),
            (vec!["2001:db8:1::1/56"], "status.delegation.prefixes"),
            (vec!["fe80::/56"], "not unicast space"),
            (vec!["2001:db8:1::/72"], "status"),
            (vec!["2001:db8:1::/56", "2001:db8:1::/60"], "status"),
        ] {
            let e = validate_pool(&pool, Some(&with(&bad))).expect_err(&format!("{bad:?}"));
            assert!(e.0.contains(phrase), "{bad:?}: {e}");
        }
        let both = PrefixPoolSpec {
            prefixes: vec!["2001:db8::/48".into()],
            ..pool.clone()
        };
        assert!(
            validate_pool(&both, None).is_err(),
            "prefixes and a delegation"
        );
        let reserved = PrefixPoolSpec {
            reserved: vec!["2001:db8::/64".into()],
            ..pool.clone()
        };
        assert!(
            validate_pool(&reserved, None).is_err(),
            "reserved with a delegation"
        );
    }
}
