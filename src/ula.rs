//! RFC 4193 §3.2.2 Unique Local IPv6 prefixes: a 40-bit pseudo-random
//! Global ID from the SHA-1 of a 64-bit NTP time stamp and a machine
//! identifier, under fd00::/8.

use std::net::Ipv6Addr;
use std::time::{SystemTime, UNIX_EPOCH};

use ipnet::Ipv6Net;
use sha1::{Digest, Sha1};

/// Seconds between the NTP epoch (1900) and the Unix epoch (1970).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// The current time in 64-bit NTP format: 32 bits of seconds, 32 of fraction.
pub fn ntp_timestamp(now: SystemTime) -> u64 {
    let d = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs().wrapping_add(NTP_UNIX_OFFSET) & 0xffff_ffff;
    let frac = (u64::from(d.subsec_nanos()) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

/// An identifier of this machine: `/etc/machine-id`, else the first
/// non-zero interface MAC address, else the host name.
pub fn machine_identifier() -> Vec<u8> {
    if let Ok(id) = std::fs::read_to_string("/etc/machine-id")
        && !id.trim().is_empty()
    {
        return id.trim().as_bytes().to_vec();
    }
    if let Ok(dir) = std::fs::read_dir("/sys/class/net") {
        let mut macs: Vec<String> = dir
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.path().join("address")).ok())
            .map(|s| s.trim().to_string())
            .filter(|m| !m.is_empty() && m != "00:00:00:00:00:00")
            .collect();
        macs.sort();
        if let Some(m) = macs.into_iter().next() {
            return m.into_bytes();
        }
    }
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .into_bytes()
}

/// The ULA /48 for a time stamp and machine identifier (RFC 4193 §3.2.2
/// steps 1–5: SHA-1 over both, the least significant 40 bits as Global ID).
pub fn ula_from(ntp: u64, machine: &[u8]) -> Ipv6Net {
    let mut h = Sha1::new();
    h.update(ntp.to_be_bytes());
    h.update(machine);
    let digest = h.finalize();
    let g = &digest[digest.len() - 5..];
    let addr = Ipv6Addr::new(
        0xfd00 | u16::from(g[0]),
        (u16::from(g[1]) << 8) | u16::from(g[2]),
        (u16::from(g[3]) << 8) | u16::from(g[4]),
        0,
        0,
        0,
        0,
        0,
    );
    Ipv6Net::new(addr, 48).expect("48 is a valid IPv6 prefix length")
}

/// A fresh ULA /48.
pub fn generate() -> Ipv6Net {
    ula_from(ntp_timestamp(SystemTime::now()), &machine_identifier())
}

/// A PrefixPool manifest for `prefix`.
pub fn pool_manifest(name: &str, prefix: &Ipv6Net) -> String {
    format!(
        "# A Unique Local /48 generated as RFC 4193 section 3.2.2 describes.\n\
apiVersion: ipam.prefix-operator.io/v1alpha1\n\
kind: PrefixPool\n\
metadata:\n  name: {name}\n\
spec:\n  prefixes:\n    - {prefix}\n  nodePrefixLength: 64\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_a_ula_48() {
        let p = generate();
        assert_eq!(p.prefix_len(), 48);
        assert_eq!(p.addr().segments()[0] >> 8, 0xfd);
        assert!("fd00::/8".parse::<Ipv6Net>().expect("net").contains(&p));
        assert_eq!(p, p.trunc());
    }

    #[test]
    fn differs_between_runs_and_is_deterministic_for_equal_inputs() {
        let a = ula_from(1, b"m");
        assert_eq!(a, ula_from(1, b"m"));
        assert_ne!(a, ula_from(2, b"m"));
        assert_ne!(a, ula_from(1, b"n"));
    }

    #[test]
    fn ntp_epoch() {
        let t = ntp_timestamp(UNIX_EPOCH);
        assert_eq!(t >> 32, NTP_UNIX_OFFSET);
        assert_eq!(t & 0xffff_ffff, 0);
    }

    #[test]
    fn manifest_is_a_valid_pool() {
        let p = generate();
        let m = pool_manifest("ula", &p);
        let pool: crate::api::PrefixPool = serde_yaml::from_str(&m).expect("parses");
        assert_eq!(pool.spec.prefixes, vec![p.to_string()]);
        crate::api::validate_spec(&pool.spec).expect("valid");
    }
}
