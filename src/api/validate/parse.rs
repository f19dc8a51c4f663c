//! Parsing a pool spec's fields: canonical CIDRs of routable unicast
//! space, reserved ranges inside the pool's prefixes, and the node
//! selector with valid label keys.

use ipnet::IpNet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::core::Selector;

use super::SpecError;
use crate::alloc::parse_canonical;

/// Canonical CIDRs of routable unicast space.
pub(super) fn parse_prefixes(texts: &[String], field: &str) -> Result<Vec<IpNet>, SpecError> {
    let mut prefixes = Vec::with_capacity(texts.len());
    for p in texts {
        let net = parse_canonical(p).map_err(|e| SpecError(format!("{field}: {e}")))?;
        if let Some(special) = non_unicast(&net) {
            return Err(SpecError(format!(
                "{field}: {net} overlaps {special}, which is not unicast space a node can route"
            )));
        }
        prefixes.push(net);
    }
    Ok(prefixes)
}

/// Canonical CIDRs, each inside one of the pool's prefixes.
pub(super) fn parse_reserved(
    texts: &[String],
    prefixes: &[IpNet],
) -> Result<Vec<IpNet>, SpecError> {
    let mut reserved = Vec::with_capacity(texts.len());
    for r in texts {
        let net = parse_canonical(r).map_err(|e| SpecError(format!("spec.reserved: {e}")))?;
        if !prefixes.iter().any(|p| p.contains(&net)) {
            return Err(SpecError(format!(
                "spec.reserved: {r} is not inside any of the pool's prefixes"
            )));
        }
        reserved.push(net);
    }
    Ok(reserved)
}

/// No selector selects every Node.
pub(super) fn parse_selector(given: Option<&LabelSelector>) -> Result<Selector, SpecError> {
    let Some(ls) = given else {
        return Ok(Selector::default());
    };
    let keys = ls
        .match_labels
        .iter()
        .flat_map(|m| m.keys())
        .chain(ls.match_expressions.iter().flatten().map(|e| &e.key));
    for key in keys {
        check_label_key(key).map_err(|m| SpecError(format!("spec.nodeSelector: {m}")))?;
    }
    Selector::try_from(ls.clone()).map_err(|e| SpecError(format!("spec.nodeSelector: {}", e.0)))
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

    #[test]
    fn label_keys() {
        assert!(check_label_key("topology.kubernetes.io/zone").is_ok());
        assert!(check_label_key("role").is_ok());
        assert!(check_label_key("-role").is_err());
        assert!(check_label_key("Bad.Prefix/role").is_err());
        assert!(check_label_key(&"a".repeat(64)).is_err());
    }
}
