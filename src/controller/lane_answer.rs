//! What comes back to the claim and Service lanes: the answer of a request
//! in flight, or a new leader's re-list. One shape for both (the Node lane
//! has more kinds of requests, see `nodes::Answer`).

use tokio::task::{JoinError, JoinSet};

/// An answer of lane requests `D` or re-lists `L`.
// Answers live for one loop turn; boxing the larger variant buys nothing.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Answer<D, L> {
    Done(Result<D, JoinError>),
    List(Result<L, JoinError>),
}

impl<D, L> Answer<D, L> {
    /// The `kind` label of `prefix_operator_loop_turn_seconds`: `done` for
    /// a request's answer, `list` for a re-list.
    pub(crate) fn kind(&self, done: &'static str, list: &'static str) -> &'static str {
        match self {
            Answer::Done(_) => done,
            Answer::List(_) => list,
        }
    }
}

/// The next answer of `tasks` or `lists`, requests first (pending while
/// neither has anything in flight).
pub(crate) async fn next<D: 'static, L: 'static>(
    tasks: &mut JoinSet<D>,
    lists: &mut JoinSet<L>,
) -> Answer<D, L> {
    tokio::select! {
        biased;
        Some(r) = tasks.join_next(), if !tasks.is_empty() => Answer::Done(r),
        Some(r) = lists.join_next(), if !lists.is_empty() => Answer::List(r),
        else => std::future::pending().await,
    }
}
