//! Edge gateway library: everything the `gateway` binary runs, split by capability.
//!
//! Requests enter through [`proxy::Gateway`] (Pingora's `ProxyHttp`), which consults the
//! current [`state::Runtime`]: a validated [`policy::Snapshot`] plus the objects built from it
//! ([`route::RoutePlan`]s behind a [`route::Router`], [`upstream::Cluster`]s).
//! [`reload::Reloader`] swaps that runtime when the policy files change; [`admin::Admin`]
//! exposes health and [`metrics`].
//!
//! Each request-path capability is one module with the same five parts: its file section,
//! a pure `validate`, an immutable spec in the snapshot, a runtime part kept across reloads
//! while its spec is unchanged, and a phase step that `proxy` calls and that either lets the
//! request go on or returns a [`reject::Reject`]. `ARCHITECTURE.md` walks through it.

#![forbid(unsafe_code)]
// The request path must not panic: no unwrap/expect/panic outside tests. Start-up code that
// may (static metric definitions) says so with an `allow` and a reason.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::todo,
        clippy::unimplemented
    )
)]

pub mod access_log;
pub mod admin;
pub mod audit;
pub mod auth;
pub mod cache;
pub mod connections;
pub mod forwarding;
#[cfg(test)]
mod fuzz_tests;
pub mod head;
pub mod host;
pub mod key;
pub mod limit;
pub mod metrics;
pub mod policy;
pub mod proxy;
pub mod reject;
pub mod reload;
pub mod request_id;
pub mod resilience;
pub mod route;
pub mod run_dir;
pub mod shard;
pub mod state;
pub mod tls;
pub mod tools;
pub mod upstream;
