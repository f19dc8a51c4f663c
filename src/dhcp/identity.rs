//! Who the pool is to a DHCPv6 server: a DUID-UUID (RFC 6355) made from the
//! PrefixPool's UID, and a fixed IAID for its one IA_PD. The UID never
//! changes for the life of the object and every replica reads the same one,
//! so a restarted operator or a new leader presents the same identity and
//! renews the same binding; a pool deleted and re-created under the same
//! name gets a new UID, hence a new DUID and a new binding, as it should
//! (its old Nodes were released with it).

use sha1::{Digest, Sha1};

/// DUID type 4, DUID-UUID (RFC 6355).
pub const DUID_UUID: u16 = 4;

/// The IAID of the pool's IA_PD. One IA_PD per DUID (per pool), so any
/// fixed value is unique within the client, as RFC 8415 §12 asks; 1 is what
/// most requesting routers use for their first IA.
pub const POOL_IAID: u32 = 1;

/// A client's DUID and the IAID of its IA_PD.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    pub duid: Vec<u8>,
    pub iaid: u32,
}

impl Identity {
    /// The identity of the PrefixPool with UID `uid`. A Kubernetes UID is an
    /// RFC 4122 UUID; one that does not parse as such (never seen from a
    /// real API server) still gives a stable DUID-UUID, from the first 16
    /// bytes of its SHA-1, so data from the API cannot make this fail.
    pub fn for_pool(uid: &str) -> Identity {
        let uuid = parse_uuid(uid).unwrap_or_else(|| {
            let digest = Sha1::digest(uid.as_bytes());
            let mut b = [0u8; 16];
            b.copy_from_slice(&digest[..16]);
            b
        });
        let mut duid = DUID_UUID.to_be_bytes().to_vec();
        duid.extend_from_slice(&uuid);
        Identity {
            duid,
            iaid: POOL_IAID,
        }
    }

    /// The DUID as lower-case hex with colons, as Kea prints it in its lease
    /// database and logs.
    pub fn duid_text(&self) -> String {
        hex(&self.duid)
    }
}

/// `aa:bb:...` for `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The 16 bytes of a UUID in its 8-4-4-4-12 text form.
fn parse_uuid(s: &str) -> Option<[u8; 16]> {
    let groups: Vec<&str> = s.split('-').collect();
    if groups.iter().map(|g| g.len()).collect::<Vec<_>>() != [8, 4, 4, 4, 12] {
        return None;
    }
    let digits: String = groups.concat();
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(digits.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_uid_becomes_a_duid_uuid() {
        let id = Identity::for_pool("0f8fad5b-d9cb-469f-a165-70867728950e");
        assert_eq!(
            id.duid_text(),
            "00:04:0f:8f:ad:5b:d9:cb:46:9f:a1:65:70:86:77:28:95:0e"
        );
        assert_eq!(id.iaid, POOL_IAID);
    }

    #[test]
    fn the_same_uid_gives_the_same_identity_and_another_uid_another() {
        let a = Identity::for_pool("0f8fad5b-d9cb-469f-a165-70867728950e");
        let b = Identity::for_pool("0f8fad5b-d9cb-469f-a165-70867728950e");
        let c = Identity::for_pool("7c9e6679-7425-40de-944b-e07fc1f90ae7");
        assert_eq!(a, b);
        assert_ne!(a.duid, c.duid);
    }

    #[test]
    fn a_uid_that_is_no_uuid_still_gives_a_stable_duid_uuid() {
        for uid in [
            "",
            "not-a-uuid",
            "0f8fad5b-d9cb-469f-a165-70867728950",
            "zz8fad5b-d9cb-469f-a165-70867728950e",
            "ü",
        ] {
            let a = Identity::for_pool(uid);
            assert_eq!(a, Identity::for_pool(uid));
            assert_eq!(a.duid.len(), 18, "{uid:?}");
            assert_eq!(&a.duid[..2], &[0, 4], "{uid:?}");
        }
        assert_ne!(Identity::for_pool("a").duid, Identity::for_pool("b").duid);
    }
}
