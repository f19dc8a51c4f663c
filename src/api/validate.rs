//! The operator's own check of a PrefixPool spec. The CRD's schema and CEL
//! rules refuse most bad specs at admission; this repeats them (an older CRD,
//! or a server without the CIDR CEL library, may have let one through) and
//! turns a valid spec into the parsed form the ledger works with.

use ipnet::IpNet;
use kube::core::Selector;

use super::{
    DEFAULT_NODE_PREFIX_LENGTH_V4, DEFAULT_NODE_PREFIX_LENGTH_V6, MAX_PREFIXES, MAX_RESERVED,
    PrefixPoolSpec,
};
use crate::alloc::{Family, PoolSpace, parse_canonical};

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
}

/// Why a spec cannot be served; the message is shown in the pool's `Ready`
/// condition and in a Warning Event.
#[derive(thiserror::Error, Debug, Clone, PartialEq)]
#[error("{0}")]
pub struct SpecError(pub String);

/// Checks a spec and parses it.
pub fn validate_spec(spec: &PrefixPoolSpec) -> Result<PoolDefinition, SpecError> {
    let err = |m: String| Err(SpecError(m));
    if spec.prefixes.is_empty() {
        return err("spec.prefixes is empty: name at least one delegated block".into());
    }
    if spec.prefixes.len() > MAX_PREFIXES {
        return err(format!(
            "spec.prefixes has {} entries; at most {MAX_PREFIXES} are allowed",
            spec.prefixes.len()
        ));
    }
    if spec.reserved.len() > MAX_RESERVED {
        return err(format!(
            "spec.reserved has {} entries; at most {MAX_RESERVED} are allowed",
            spec.reserved.len()
        ));
    }
    let mut prefixes = Vec::with_capacity(spec.prefixes.len());
    for p in &spec.prefixes {
        match parse_canonical(p) {
            Ok(n) => prefixes.push(n),
            Err(e) => return err(format!("spec.prefixes: {e}")),
        }
    }
    for p in &prefixes {
        if let Some(special) = non_unicast(p) {
            return err(format!(
                "spec.prefixes: {p} overlaps {special}, which is not unicast space a node can route"
            ));
        }
    }
    let family = Family::of(&prefixes[0]);
    let node_prefix_length = match spec.node_prefix_length {
        Some(n) => match u8::try_from(n) {
            Ok(n) if n > 0 => n,
            _ => return err(format!("spec.nodePrefixLength {n} is out of range 1..=128")),
        },
        None => match family {
            Family::V6 => DEFAULT_NODE_PREFIX_LENGTH_V6,
            Family::V4 => DEFAULT_NODE_PREFIX_LENGTH_V4,
        },
    };
    // PoolSpace checks family mixing, lengths, slot count and overlap.
    if let Err(e) = PoolSpace::new(&prefixes, node_prefix_length) {
        return err(format!("spec: {e}"));
    }
    let mut reserved = Vec::with_capacity(spec.reserved.len());
    for r in &spec.reserved {
        let net = match parse_canonical(r) {
            Ok(n) => n,
            Err(e) => return err(format!("spec.reserved: {e}")),
        };
        if !prefixes.iter().any(|p| p.contains(&net)) {
            return err(format!(
                "spec.reserved: {r} is not inside any of the pool's prefixes"
            ));
        }
        reserved.push(net);
    }
    let selector = match &spec.node_selector {
        None => Selector::default(),
        Some(ls) => {
            for key in ls
                .match_labels
                .iter()
                .flat_map(|m| m.keys())
                .chain(ls.match_expressions.iter().flatten().map(|e| &e.key))
            {
                if let Err(m) = check_label_key(key) {
                    return err(format!("spec.nodeSelector: {m}"));
                }
            }
            match Selector::try_from(ls.clone()) {
                Ok(s) => s,
                Err(e) => return err(format!("spec.nodeSelector: {}", e.0)),
            }
        }
    };
    let duration = |field: &str, v: &Option<String>| match v {
        None => Ok(std::time::Duration::ZERO),
        Some(text) => crate::duration::parse(text)
            .map(crate::duration::Duration::get)
            .map_err(|e| SpecError(format!("spec.{field}: {e}"))),
    };
    let retain_for = duration("retainFor", &spec.retain_for)?;
    let reuse_after = duration("reuseAfter", &spec.reuse_after)?;
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
    })
}

/// Ranges no node prefix may come from: multicast, link-local, loopback,
/// unspecified, IPv4-mapped (the same list as the CRD's CEL rule).
const NON_UNICAST: &[&str] = &[
    "ff00::/8",
    "fe80::/10",
    "::/127",
    "::ffff:0:0/96",
    "0.0.0.0/8",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "224.0.0.0/3",
];

fn non_unicast(p: &IpNet) -> Option<IpNet> {
    NON_UNICAST
        .iter()
        .filter_map(|s| s.parse::<IpNet>().ok())
        .find(|s| crate::alloc::cidr::overlaps(s, p))
}

/// A label key is `[prefix/]name`: name up to 63 characters of
/// alphanumerics, `-`, `_`, `.`, starting and ending alphanumeric; prefix a
/// DNS subdomain.
fn check_label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|l| {
                !l.is_empty()
                    && l.len() <= 63
                    && l.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                    && l.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                    && l.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            })
    });
    if name_ok && prefix_ok {
        Ok(())
    } else {
        Err(format!("{key:?} is not a valid label key"))
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

    #[test]
    fn label_keys() {
        assert!(check_label_key("topology.kubernetes.io/zone").is_ok());
        assert!(check_label_key("role").is_ok());
        assert!(check_label_key("-role").is_err());
        assert!(check_label_key("Bad.Prefix/role").is_err());
        assert!(check_label_key(&"a".repeat(64)).is_err());
    }
}
