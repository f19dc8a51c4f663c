//! What a failed request to the API server means: a short stable name for
//! the metric label, the message to log, what it means for a write's
//! reservation, and how long to wait before trying again.

use std::time::Duration;

/// The delay before attempt `attempt` (1-based) after failures in a row:
/// 200 ms doubling, at most 30 s.
pub fn backoff(attempt: u32) -> Duration {
    let ms = 100u64.saturating_mul(1u64 << attempt.min(9));
    Duration::from_millis(ms.min(30_000))
}

/// What a failed write means for its reservation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    /// The Node is gone.
    Gone,
    /// The server refused this write after looking at the Node (write-once,
    /// UID precondition, admission): it did not land, but the Node may hold
    /// something else now.
    Refused,
    /// Refused before it was processed (authn/authz, bad request, throttled).
    NotApplied,
    /// No answer, or a server error: it may or may not have landed.
    Unknown,
}

pub fn write_outcome(e: &kube::Error) -> WriteOutcome {
    match e {
        kube::Error::Api(s) => match s.code {
            404 => WriteOutcome::Gone,
            409 | 422 => WriteOutcome::Refused,
            403 if s.reason == "Invalid" => WriteOutcome::Refused,
            400 | 401 | 403 | 429 => WriteOutcome::NotApplied,
            _ => WriteOutcome::Unknown,
        },
        _ => WriteOutcome::Unknown,
    }
}

/// The server's message of an API error, or the error's text.
pub fn error_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) => s.message.clone(),
        other => {
            let mut parts = vec![other.to_string()];
            let mut source = std::error::Error::source(other);
            while let Some(s) = source {
                parts.push(s.to_string());
                source = s.source();
            }
            message_chain(parts)
        }
    }
}

/// The messages of an error and its sources joined with `: `, each said
/// once: layers that print their source in their own message (kube's
/// `HyperError: client error (Connect)` over hyper's `client error
/// (Connect)`) would otherwise repeat it.
pub fn message_chain(parts: impl IntoIterator<Item = String>) -> String {
    let mut out: Vec<String> = vec![];
    for p in parts {
        let p = p.trim().to_string();
        if p.is_empty() || out.iter().any(|seen| seen.contains(&p)) {
            continue;
        }
        out.push(p);
    }
    out.join(": ")
}

/// What the API server's fence says when it refuses a write: the message of
/// the chart's fence policy (`templates/admission-policies.yaml`) starts
/// with it. A replica whose write it refused is not the holder of the Lease
/// the API server sees.
pub const FENCE_MARKER: &str = "prefix-operator fence:";

/// Whether the API server's fence refused this request.
pub fn is_fenced(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 403 && s.message.contains(FENCE_MARKER))
}

/// A short, stable name of an error, used as the metric label.
pub fn error_reason(e: &kube::Error) -> &'static str {
    if is_fenced(e) {
        return "Fenced";
    }
    match e {
        kube::Error::Api(s) => match s.code {
            400 => "BadRequest",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "NotFound",
            409 => "Conflict",
            422 => "Invalid",
            429 => "TooManyRequests",
            500..=599 => "ServerError",
            _ => "ApiError",
        },
        kube::Error::HyperError(_) | kube::Error::Service(_) => "Transport",
        kube::Error::SerdeError(_) => "Decode",
        _ => "Other",
    }
}

/// The error a write gets when leadership lapsed before it was sent (a
/// leader past its deadline must not write).
pub fn not_leader() -> kube::Error {
    kube::Error::Api(
        kube::core::Status::failure("leadership lapsed before the write was sent", "NotLeader")
            .with_code(403)
            .boxed(),
    )
}

/// `f`, or a timeout error after `limit`: a request stuck on a dead
/// connection must not hold what waits on it for ever.
pub async fn bounded<T>(
    limit: Duration,
    f: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Result<T, kube::Error> {
    tokio::time::timeout(limit, f)
        .await
        .unwrap_or_else(|_| Err(kube::Error::Service("request timed out".into())))
}

/// How long one request of a claim or a Service may take.
pub const REQUEST_LIMIT: Duration = Duration::from_secs(10);

/// `f` bounded by [`REQUEST_LIMIT`]: a request stuck on a dead connection
/// must not hold its object (and what is reserved for it) for ever.
pub async fn bounded_request<T>(
    f: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Result<T, kube::Error> {
    bounded(REQUEST_LIMIT, f).await
}

/// `write`, bounded by [`REQUEST_LIMIT`], unless leadership had `lapsed`
/// before it would be sent: then the not-leader error, which reads as a
/// refused write ([`WriteOutcome::NotApplied`]).
pub async fn as_leader<T>(
    lapsed: bool,
    write: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Result<T, kube::Error> {
    if lapsed {
        return Err(not_leader());
    }
    bounded_request(write).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chain_says_each_message_once() {
        let parts = [
            "listing Nodes",
            "HyperError: client error (Connect)",
            "client error (Connect)",
            "tcp connect error",
            "Connection refused (os error 111)",
        ]
        .map(String::from);
        assert_eq!(
            message_chain(parts),
            "listing Nodes: HyperError: client error (Connect): tcp connect error: Connection refused (os error 111)"
        );
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = kube::Error::Service(Box::new(io));
        assert_eq!(error_message(&e), "ServiceError: refused");
    }

    #[test]
    fn only_definite_refusals_free_a_reservation() {
        let api = |code: u16, reason: &str| {
            kube::Error::Api(
                kube::core::Status::failure("x", reason)
                    .with_code(code)
                    .boxed(),
            )
        };
        assert_eq!(write_outcome(&api(404, "NotFound")), WriteOutcome::Gone);
        assert_eq!(write_outcome(&api(422, "Invalid")), WriteOutcome::Refused);
        assert_eq!(
            write_outcome(&api(403, "Forbidden")),
            WriteOutcome::NotApplied
        );
        assert_eq!(
            write_outcome(&api(429, "TooManyRequests")),
            WriteOutcome::NotApplied
        );
        assert_eq!(
            write_outcome(&api(500, "InternalError")),
            WriteOutcome::Unknown
        );
        assert_eq!(write_outcome(&api(504, "Timeout")), WriteOutcome::Unknown);
        let fenced = kube::Error::Api(
            kube::core::Status::failure(
                &format!("nodes \"n1\" is forbidden: ValidatingAdmissionPolicy 'x-fence' with binding 'x-fence' denied request: {FENCE_MARKER} pod a is not the holder"),
                "Forbidden",
            )
            .with_code(403)
            .boxed(),
        );
        assert!(is_fenced(&fenced));
        assert_eq!(error_reason(&fenced), "Fenced");
        assert_eq!(write_outcome(&fenced), WriteOutcome::NotApplied);
        assert!(!is_fenced(&api(403, "Forbidden")));
        assert_eq!(error_reason(&api(403, "Forbidden")), "Forbidden");
        assert_eq!(
            write_outcome(&kube::Error::Service("reset".into())),
            WriteOutcome::Unknown
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff(1), Duration::from_millis(200));
        assert!(backoff(3) > backoff(2));
        assert_eq!(backoff(40), Duration::from_secs(30));
    }
}
