//! DHCPv6 prefix delegation (RFC 8415) as a requesting router: the pool's
//! identity towards the server ([`identity`]), the messages it sends and the
//! replies it accepts ([`wire`], on `dhcproto`), and the client state machine
//! ([`client`]): Solicit, Advertise, Request, Reply, Renew at T1, Rebind at
//! T2, Release, with the lifetimes and status codes the server gives.
//!
//! All but [`runner`] is pure: time is passed in (wall-clock milliseconds,
//! so a binding written to the pool's status means the same to the next
//! leader) and messages go in and out as bytes. [`runner`] owns the sockets
//! and writes each binding to its pool's `status.delegation`, from which
//! the allocator takes the pool's prefixes.

pub mod client;
pub mod identity;
pub mod runner;
pub mod wire;

pub use client::{Binding, Client, Config, Lease, Millis, Note, Output, Phase};
pub use identity::Identity;
