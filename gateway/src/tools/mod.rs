//! The offline policy tools security teams use: `gateway explain` (what the policy does with
//! one request, and why) and `gateway test` (policy tests run offline). Both run the proxy's
//! own decision phases through [`simulate`]; nothing here re-implements a decision.

pub mod cli;
pub mod explain;
pub mod policy_test;
pub mod simulate;
mod stream;
