//! The DHCPv6 client at work: while this replica leads, every PrefixPool
//! with `spec.delegation` gets a [`Client`](super::Client) on its interface (one UDP socket
//! on port 546 per interface, shared by the pools on it), and its binding is
//! written to the pool's `status.delegation` under a field manager of its
//! own. The allocator reads the pool's prefixes from there, as it reads
//! everything else from the API server. A replica that stops leading drops
//! its clients without a Release (the next leader resumes the binding from
//! the status); a deleted pool's binding is released.
//!
//! [`status`] maps a pool's binding to its `status.delegation` and back,
//! [`links`] owns the client sockets, and [`lead`] is the leader's loop.

mod lead;
mod links;
mod status;

use std::time::{SystemTime, UNIX_EPOCH};

use kube::Api;
use tokio::sync::watch;

use super::client::Millis;
use crate::api::PrefixPool;

/// Field manager of `status.delegation`.
pub const FIELD_MANAGER: &str = "prefix-operator-dhcpv6";
/// The shortest delegated prefix a pool takes.
pub const MIN_DELEGATED_LENGTH: u8 = 32;

/// Wall-clock now, in the state machine's unit.
pub fn now_ms() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as Millis)
}

/// Runs forever: leads the pools' DHCPv6 clients whenever `leader` is true.
pub async fn run(client: kube::Client, mut leader: watch::Receiver<bool>) -> anyhow::Result<()> {
    let api: Api<PrefixPool> = Api::all(client);
    loop {
        if leader.wait_for(|l| *l).await.is_err() {
            // Leadership can no longer change, and this replica does not lead.
            std::future::pending::<()>().await;
        }
        lead::lead(&api, &mut leader).await;
    }
}
