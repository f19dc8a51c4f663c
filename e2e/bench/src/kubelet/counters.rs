//! What the writer of [`super::KubeletSim`] has sent so far.

use std::sync::atomic::{AtomicU64, Ordering};

/// What was sent so far.
#[derive(Default, Debug)]
pub struct Counters {
    pub registration: AtomicU64,
    pub heartbeats: AtomicU64,
    pub hot: AtomicU64,
    pub failed: AtomicU64,
    /// Hot patches not sent because `max_in_flight` were in flight.
    pub skipped: AtomicU64,
}

/// A copy of [`Counters`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sent {
    pub registration: u64,
    pub heartbeats: u64,
    pub hot: u64,
    pub failed: u64,
    pub skipped: u64,
}

impl Sent {
    /// Patches that landed.
    pub fn total(&self) -> u64 {
        self.registration + self.heartbeats + self.hot
    }
}

impl std::fmt::Display for Sent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} status patches ({} registration, {} heartbeat, {} hot), {} failed, {} hot skipped",
            self.total(),
            self.registration,
            self.heartbeats,
            self.hot,
            self.failed,
            self.skipped
        )
    }
}

impl Counters {
    pub fn snapshot(&self) -> Sent {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Sent {
            registration: g(&self.registration),
            heartbeats: g(&self.heartbeats),
            hot: g(&self.hot),
            failed: g(&self.failed),
            skipped: g(&self.skipped),
        }
    }
}
