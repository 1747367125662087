//! Auth metrics. Labels are bounded: route and issuer names come from the policy, results are
//! the `AuthResult` enum. No subject or token is ever a label.

use prometheus::{Gauge, GaugeVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry};

use edgeway_record::outcome::AuthResult;

#[derive(Clone)]
pub struct AuthMetrics {
    decisions: IntCounterVec,
    pub cache_hits: IntCounter,
    pub cache_misses: IntCounter,
    pub jwks_fetches: IntCounterVec,
    pub jwks_age: GaugeVec,
    pub revocation_refreshes: IntCounterVec,
    pub revocation_entries: IntGaugeVec,
    pub revocation_age: Gauge,
}

impl AuthMetrics {
    #[allow(
        clippy::expect_used,
        reason = "static metric definitions, checked at start-up"
    )]
    pub fn new(registry: &Registry) -> AuthMetrics {
        let decisions = IntCounterVec::new(
            Opts::new(
                "gateway_auth_decisions_total",
                "Authentication decisions by route and result (auth_result).",
            ),
            &["route", "result"],
        )
        .expect("static metric");
        let cache = IntCounterVec::new(
            Opts::new(
                "gateway_auth_cache_lookups_total",
                "Verified-token cache lookups by result (hit, miss).",
            ),
            &["result"],
        )
        .expect("static metric");
        let jwks_fetches = IntCounterVec::new(
            Opts::new(
                "gateway_auth_jwks_fetches_total",
                "JWKS URL fetches by issuer, reason (refresh, unknown_kid) and result (ok, error).",
            ),
            &["issuer", "reason", "result"],
        )
        .expect("static metric");
        let jwks_age = GaugeVec::new(
            Opts::new(
                "gateway_auth_jwks_age_seconds",
                "Age of the key set in use, by issuer (-1: never loaded).",
            ),
            &["issuer"],
        )
        .expect("static metric");
        let revocation_refreshes = IntCounterVec::new(
            Opts::new(
                "gateway_auth_revocation_refreshes_total",
                "Refreshes of the Redis revocation list by result (ok, error).",
            ),
            &["result"],
        )
        .expect("static metric");
        let revocation_entries = IntGaugeVec::new(
            Opts::new(
                "gateway_auth_revocation_entries",
                "Revoked values by source (file, redis) and kind (jti, sub).",
            ),
            &["source", "kind"],
        )
        .expect("static metric");
        let revocation_age = Gauge::with_opts(Opts::new(
            "gateway_auth_revocation_age_seconds",
            "Age of the local copy of the Redis revocation list (-1: never loaded).",
        ))
        .expect("static metric");
        for c in [&decisions, &cache, &jwks_fetches, &revocation_refreshes] {
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
        }
        registry
            .register(Box::new(jwks_age.clone()))
            .expect("unique metric");
        registry
            .register(Box::new(revocation_entries.clone()))
            .expect("unique metric");
        registry
            .register(Box::new(revocation_age.clone()))
            .expect("unique metric");
        AuthMetrics {
            cache_hits: cache.with_label_values(&["hit"]),
            cache_misses: cache.with_label_values(&["miss"]),
            decisions,
            jwks_fetches,
            jwks_age,
            revocation_refreshes,
            revocation_entries,
            revocation_age,
        }
    }

    /// One counter per result for `route`, resolved once per policy load.
    pub fn decisions(&self, route: &str) -> Vec<IntCounter> {
        AuthResult::ALL
            .iter()
            .map(|r| self.decisions.with_label_values(&[route, r.as_str()]))
            .collect()
    }
}
