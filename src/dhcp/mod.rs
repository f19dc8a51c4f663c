//! DHCPv6 prefix delegation (RFC 8415) as a requesting router: the pool's
//! identity towards the server ([`identity`]), the messages it sends and the
//! replies it accepts ([`wire`], on `dhcproto`), and the client state machine
//! ([`client`]): Solicit, Advertise, Request, Reply, Renew at T1, Rebind at
//! T2, Release, with the lifetimes and status codes the server gives.
//!
//! Everything here is pure: time is passed in (wall-clock milliseconds, so a
//! binding written to the pool's status means the same to the next leader)
//! and messages go in and out as bytes. The socket, the pool status and the
//! ledger live elsewhere.

pub mod client;
pub mod identity;
pub mod wire;

pub use client::{Binding, Client, Config, Lease, Millis, Note, Output, Phase};
pub use identity::Identity;
