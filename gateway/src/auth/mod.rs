//! Authentication: JWTs verified at the edge against the issuers in the policy files.

pub mod identity;

pub use identity::Identity;
