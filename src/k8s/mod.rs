//! Kubernetes plumbing: the objects as the API server holds them and the
//! requests made of it. No decisions are taken here.

pub mod claims;
pub mod client;
pub mod errors;
pub mod list_watch;
pub mod nodes;
pub mod pools;
pub mod services;
