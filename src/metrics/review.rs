//! Who may read `/metrics`: the caller's bearer token authenticated by the
//! API server (a TokenReview), the identity it names authorized for `get`
//! on the non-resource URL `/metrics` (a SubjectAccessReview) — what
//! kube-rbac-proxy and controller-runtime's metrics filter do. Both answers
//! are kept for a short time, in caches of bounded size.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec, UserInfo};
use k8s_openapi::api::authorization::v1::{
    NonResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use kube::api::PostParams;
use kube::{Api, Client};
use tracing::warn;

/// How long a token's identity, and an identity's permission, is kept.
pub const ALLOWED_TTL: Duration = Duration::from_secs(60);
/// How long a refusal is kept: shorter, so a token or a binding just made
/// works soon.
pub const DENIED_TTL: Duration = Duration::from_secs(10);
/// Entries per cache at most.
pub const CACHE_ENTRIES: usize = 1024;

/// The answer for one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// No bearer token, or one the API server does not authenticate: 401.
    Unauthenticated,
    /// Authenticated, but not allowed to get /metrics: 403.
    Forbidden,
    /// The SubjectAccessReview could not be made: 500.
    Failed,
}

/// A map whose entries expire, holding at most `cap` of them: when full,
/// the expired go first, then the one closest to expiry.
pub struct Cache<K, V> {
    cap: usize,
    entries: Mutex<HashMap<K, (Instant, V)>>,
}

impl<K: Hash + Eq, V: Clone> Cache<K, V> {
    pub fn new(cap: usize) -> Self {
        Cache {
            cap: cap.max(1),
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub fn get(&self, key: &K, now: Instant) -> Option<V> {
        let map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        map.get(key)
            .filter(|(until, _)| *until > now)
            .map(|(_, v)| v.clone())
    }

    pub fn put(&self, key: K, value: V, until: Instant, now: Instant) {
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= self.cap && !map.contains_key(&key) {
            map.retain(|_, (u, _)| *u > now);
            if map.len() >= self.cap {
                evict_soonest(&mut map);
            }
        }
        map.insert(key, (until, value));
    }

    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn evict_soonest<K: Hash + Eq, V>(map: &mut HashMap<K, (Instant, V)>) {
    let Some(until) = map.values().map(|(u, _)| *u).min() else {
        return;
    };
    let mut removed = false;
    map.retain(|_, (u, _)| {
        let drop = !removed && *u == until;
        removed |= drop;
        !drop
    });
}

/// Reviews requests with the API server, through its own client.
pub struct Reviewer {
    client: Client,
    /// SHA-256 of a token → who it is (None: not authenticated).
    identities: Cache<[u8; 32], Option<UserInfo>>,
    /// An identity (as JSON) → whether it may get /metrics.
    permissions: Cache<String, bool>,
}

impl Reviewer {
    pub fn new(client: Client) -> Self {
        Reviewer {
            client,
            identities: Cache::new(CACHE_ENTRIES),
            permissions: Cache::new(CACHE_ENTRIES),
        }
    }

    /// The verdict on a request with this `Authorization` header.
    pub async fn review(&self, authorization: Option<&str>) -> Verdict {
        let Some(token) = authorization.and_then(bearer) else {
            return Verdict::Unauthenticated;
        };
        let user = match self.authenticate(token).await {
            Ok(Some(user)) => user,
            Ok(None) => return Verdict::Unauthenticated,
            Err(e) => {
                warn!(error = %e, "TokenReview for /metrics failed");
                return Verdict::Unauthenticated;
            }
        };
        match self.authorize(&user).await {
            Ok(true) => Verdict::Allowed,
            Ok(false) => Verdict::Forbidden,
            Err(e) => {
                warn!(error = %e, "SubjectAccessReview for /metrics failed");
                Verdict::Failed
            }
        }
    }

    async fn authenticate(&self, token: &str) -> kube::Result<Option<UserInfo>> {
        let key: [u8; 32] = ring::digest::digest(&ring::digest::SHA256, token.as_bytes())
            .as_ref()
            .try_into()
            .unwrap_or([0; 32]);
        if let Some(known) = self.identities.get(&key, Instant::now()) {
            return Ok(known);
        }
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                ..Default::default()
            },
            ..Default::default()
        };
        let api: Api<TokenReview> = Api::all(self.client.clone());
        let status = api
            .create(&PostParams::default(), &review)
            .await?
            .status
            .unwrap_or_default();
        let user = (status.authenticated == Some(true)).then(|| status.user.unwrap_or_default());
        let ttl = if user.is_some() {
            ALLOWED_TTL
        } else {
            DENIED_TTL
        };
        let now = Instant::now();
        self.identities.put(key, user.clone(), now + ttl, now);
        Ok(user)
    }

    async fn authorize(&self, user: &UserInfo) -> kube::Result<bool> {
        let key = serde_json::to_string(user).unwrap_or_default();
        if let Some(known) = self.permissions.get(&key, Instant::now()) {
            return Ok(known);
        }
        let review = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: user.username.clone(),
                uid: user.uid.clone(),
                groups: user.groups.clone(),
                extra: user.extra.clone(),
                non_resource_attributes: Some(NonResourceAttributes {
                    path: Some("/metrics".into()),
                    verb: Some("get".into()),
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let api: Api<SubjectAccessReview> = Api::all(self.client.clone());
        let allowed = api
            .create(&PostParams::default(), &review)
            .await?
            .status
            .is_some_and(|s| s.allowed);
        let ttl = if allowed { ALLOWED_TTL } else { DENIED_TTL };
        let now = Instant::now();
        self.permissions.put(key, allowed, now + ttl, now);
        Ok(allowed)
    }
}

/// The token of an `Authorization: Bearer TOKEN` header (the scheme in any
/// case, as RFC 7235 has it).
pub fn bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic YTpi"), None);
        assert_eq!(bearer("Bearer "), None);
        assert_eq!(bearer("abc"), None);
    }

    #[test]
    fn cache_entries_expire() {
        let c: Cache<&str, bool> = Cache::new(4);
        let t0 = Instant::now();
        c.put("a", true, t0 + Duration::from_secs(10), t0);
        assert_eq!(c.get(&"a", t0 + Duration::from_secs(9)), Some(true));
        assert_eq!(c.get(&"a", t0 + Duration::from_secs(10)), None);
        assert_eq!(c.get(&"b", t0), None);
    }

    #[test]
    fn a_full_cache_drops_the_expired_then_the_soonest_to_expire() {
        let c: Cache<u32, u32> = Cache::new(3);
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        c.put(1, 1, at(5), t0);
        c.put(2, 2, at(50), t0);
        c.put(3, 3, at(20), t0);
        // Full; none expired: the one expiring first (1) goes.
        c.put(4, 4, at(60), t0);
        assert_eq!(c.len(), 3);
        assert_eq!(c.get(&1, t0), None);
        // Full; 3 has expired at 30 s: it alone goes.
        c.put(5, 5, at(90), at(30));
        assert_eq!(c.len(), 3);
        assert_eq!(c.get(&2, at(30)), Some(2));
        assert_eq!(c.get(&4, at(30)), Some(4));
        assert_eq!(c.get(&5, at(30)), Some(5));
        // Replacing a key never evicts another.
        c.put(5, 6, at(95), at(30));
        assert_eq!(c.len(), 3);
        assert_eq!(c.get(&5, at(30)), Some(6));
    }
}
