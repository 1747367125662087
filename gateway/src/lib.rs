//! Edge gateway library: everything the `gateway` binary runs, split by capability.
//!
//! Requests enter through [`proxy::Gateway`] (Pingora's `ProxyHttp`), which consults the
//! current [`state::Runtime`]: a validated [`policy::Snapshot`] plus the objects built from it
//! ([`route::Router`], [`upstream::Cluster`]). [`reload::Reloader`] swaps that runtime when
//! the policy files change; [`admin::Admin`] exposes health and [`metrics`].

#![forbid(unsafe_code)]

pub mod access_log;
pub mod admin;
pub mod metrics;
pub mod policy;
pub mod proxy;
pub mod reload;
pub mod request_id;
pub mod route;
pub mod state;
pub mod tls;
pub mod upstream;
