//! Deterministic synthetic access-log records, for benchmarks and tests: one generator for
//! `lake generate` (records spread over hours and files in the pipeline's layout, see
//! [`Spec`] and [`file_records`]) and for the pipeline's benchmark commands (a steady
//! stream, [`sequence_record`]). A seed gives the same records every time, so tests compute
//! expected answers from exactly the records that were written.
//!
//! The mix looks like real traffic where queries care: skewed clients, per-route latency,
//! auth failures, rate limiting, a breaker that opens on a schedule ([`breaker_at`]), and
//! the outcome columns spelled by the enums of [`crate::outcome`].

use crate::outcome::{AuthResult, BreakerState, CacheStatus, ErrorClass, RateLimitDecision};
use crate::{AccessLogRecord, RECORD_VERSION};

/// What to generate.
#[derive(Debug, Clone)]
pub struct Spec {
    pub records: u64,
    /// First hour, UTC milliseconds (rounded down to the hour).
    pub start_ms: i64,
    pub hours: u32,
    pub files_per_hour: u32,
    pub seed: u64,
}

impl Spec {
    /// Records in file `file` of hour `hour`.
    pub fn count(&self, hour: u32, file: u32) -> u64 {
        let slots = u64::from(self.hours) * u64::from(self.files_per_hour);
        let slot = u64::from(hour) * u64::from(self.files_per_hour) + u64::from(file);
        self.records / slots + u64::from(slot < self.records % slots)
    }

    pub fn hour_start(&self, hour: u32) -> i64 {
        self.start_ms - self.start_ms.rem_euclid(3_600_000) + i64::from(hour) * 3_600_000
    }

    /// The object name of a generated file, shaped like the pipeline's `<shard>-<firstSeq>`.
    pub fn file_name(&self, hour: u32, file: u32) -> String {
        format!(
            "shardId-{file:012}-{:020}.parquet",
            u64::from(hour) * 1_000_000_000 + self.seed % 1000
        )
    }
}

/// splitmix64: small, fast, and the same everywhere.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (`n` > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }
    /// Skewed pick in 0..n (small indexes are much more frequent), like real client mixes.
    fn skewed(&mut self, n: u64) -> u64 {
        let u = self.unit();
        ((u * u * u) * n as f64) as u64 % n
    }
}

pub const ROUTES: &[(&str, &str, f64)] = &[
    // route, cluster, typical latency (ms)
    ("users", "api", 20.0),
    ("orders", "orders", 40.0),
    ("search", "search", 80.0),
    ("static", "static", 5.0),
    ("login", "api", 15.0),
];
const ISSUERS: &[&str] = &["https://idp.example.com", "https://partners.example.net"];
const AGENTS: &[&str] = &[
    "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
    "Mozilla/5.0 (Macintosh) Safari/605.1.15",
    "curl/8.5.0",
    "okhttp/4.12.0",
    "python-requests/2.32",
];

/// Breaker state of a cluster at an instant: `search` opens for two minutes at minute 10 of
/// every hour and probes half-open in minute 12, so breaker queries have openings to count.
pub fn breaker_at(cluster: &str, t_ms: i64) -> BreakerState {
    let minute = (t_ms.rem_euclid(3_600_000)) / 60_000;
    match (cluster, minute) {
        ("search", 10 | 11) => BreakerState::Open,
        ("search", 12) => BreakerState::HalfOpen,
        _ => BreakerState::Closed,
    }
}

/// The records of one file, in generation order (not sorted).
pub fn file_records(spec: &Spec, hour: u32, file: u32) -> Vec<AccessLogRecord> {
    let n = spec.count(hour, file);
    let mut rng = Rng(spec.seed ^ (u64::from(hour) << 32) ^ (u64::from(file) << 16) ^ 0x5EED);
    let t0 = spec.hour_start(hour);
    (0..n)
        .map(|i| {
            let event_time = t0 + rng.below(3_600_000) as i64;
            let request_id = format!(
                "{:08x}-{:04x}-7{:03x}-8{:03x}-{:012x}",
                (event_time / 1000) as u32,
                spec.seed & 0xffff,
                hour % 0x1000,
                file % 0x1000,
                i
            );
            record(&mut rng, event_time, request_id)
        })
        .collect()
}

/// Record `i` of a steady stream starting at `base_ms`, 2 ms apart (the pipeline's benchmark
/// commands). Request ids are unique per (`seed`, `i`).
pub fn sequence_record(seed: u64, i: u64, base_ms: i64) -> AccessLogRecord {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ i.rotate_left(17));
    // Warm the state so that neighbouring (seed, i) pairs do not start alike.
    rng.next_u64();
    let event_time = base_ms + (i as i64) * 2;
    record(&mut rng, event_time, format!("{seed:04x}-{i:012x}"))
}

/// One record at `event_time`; everything else is drawn from `rng`.
fn record(rng: &mut Rng, event_time: i64, request_id: String) -> AccessLogRecord {
    let no_route = rng.chance(0.02);
    let (route, cluster, base_ms) = ROUTES[rng.below(ROUTES.len() as u64) as usize];
    let method = match rng.below(20) {
        0..=15 => "GET",
        16..=18 => "POST",
        _ => "DELETE",
    };
    let client = rng.skewed(500);
    let client_ip = format!("198.51.{}.{}", client / 250, client % 250 + 1);
    let https = rng.chance(0.7);
    let (auth_result, subject, issuer) = match rng.below(100) {
        0..=79 => (
            AuthResult::Ok,
            Some(format!("user-{}", rng.skewed(200))),
            Some(ISSUERS[rng.below(10).min(1) as usize].to_string()),
        ),
        80..=89 => (AuthResult::None, None, None),
        90..=93 => (AuthResult::Missing, None, None),
        94..=96 => (AuthResult::BadSignature, None, None),
        97..=98 => (
            AuthResult::Expired,
            None,
            Some(ISSUERS[rng.below(2) as usize].to_string()),
        ),
        _ => (AuthResult::Forbidden, None, Some(ISSUERS[0].to_string())),
    };
    let limited = rng.chance(0.03);
    let breaker = breaker_at(cluster, event_time);
    // Latency: a log-normal-ish spread around the route's typical value.
    let spread: f64 = (0..4).map(|_| rng.unit()).sum::<f64>() - 2.0;
    let mut duration_ms = base_ms * (spread * 0.9).exp();
    if rng.chance(0.01) {
        duration_ms *= 20.0;
    }
    let (status, error_class, proxied) = if no_route {
        (404, Some(ErrorClass::NoRoute), false)
    } else if matches!(
        auth_result,
        AuthResult::Missing | AuthResult::BadSignature | AuthResult::Expired
    ) && route != "static"
    {
        (401, Some(ErrorClass::Unauthorized), false)
    } else if auth_result == AuthResult::Forbidden && route != "static" {
        (403, Some(ErrorClass::Forbidden), false)
    } else if limited {
        (429, Some(ErrorClass::RateLimited), false)
    } else if breaker == BreakerState::Open {
        (503, Some(ErrorClass::BreakerOpen), false)
    } else {
        match rng.below(1000) {
            0..=9 => (500, None, true),
            10..=14 => (502, Some(ErrorClass::UpstreamConnectFailed), true),
            15..=19 => (504, Some(ErrorClass::UpstreamTimeout), true),
            20..=69 => (304, None, true),
            70..=119 => (400, None, true),
            120..=159 => (404, None, true),
            160..=259 if method != "GET" => (201, None, true),
            _ => (200, None, true),
        }
    };
    if !proxied {
        duration_ms = 0.05 + rng.unit() * 0.5;
    }
    let duration_ms = (duration_ms * 1000.0).round() / 1000.0;
    let cache_status = match (route, status) {
        (_, s) if s >= 400 => CacheStatus::NoStore,
        ("static", _) => {
            if rng.chance(0.9) {
                CacheStatus::Public
            } else {
                CacheStatus::NoStore
            }
        }
        ("search", _) => {
            if rng.chance(0.5) {
                CacheStatus::Public
            } else {
                CacheStatus::Private
            }
        }
        ("users", _) => CacheStatus::Private,
        _ => CacheStatus::NoStore,
    };
    let sharded = matches!(route, "users" | "orders") && !no_route;
    let endpoint = rng.below(3);
    AccessLogRecord {
        record_version: RECORD_VERSION,
        event_time,
        request_id,
        trace_id: rng
            .chance(0.3)
            .then(|| format!("{:016x}{:016x}", rng.next_u64(), rng.next_u64())),
        client_ip,
        client_port: 1024 + rng.below(60_000) as i32,
        method: method.into(),
        scheme: if https { "https" } else { "http" }.into(),
        host: "api.example.com".into(),
        path: format!("/v1/{route}/{}", rng.below(1000)),
        query: rng.chance(0.2).then(|| format!("page={}", rng.below(10))),
        http_version: if https { "HTTP/2" } else { "HTTP/1.1" }.into(),
        status,
        bytes_in: if method == "GET" {
            0
        } else {
            100 + rng.below(4000) as i64
        },
        bytes_out: if status == 304 {
            0
        } else {
            60 + rng.below(40_000) as i64
        },
        duration_ms,
        upstream_connect_ms: (proxied && rng.chance(0.1)).then(|| 0.4 + rng.unit()),
        upstream_response_ms: proxied.then(|| (duration_ms * 0.85 * 1000.0).round() / 1000.0),
        route: (!no_route).then(|| route.to_string()),
        upstream_cluster: (!no_route).then(|| cluster.to_string()),
        upstream_addr: proxied.then(|| format!("10.0.{}.{}:8080", cluster.len(), endpoint + 1)),
        shard: sharded.then(|| format!("{}", rng.below(8))),
        cache_status: Some(cache_status.as_str().into()),
        auth_result: auth_result.as_str().into(),
        auth_subject: subject,
        auth_issuer: issuer,
        rate_limit: Some(
            if limited {
                RateLimitDecision::Limited
            } else {
                RateLimitDecision::Allowed
            }
            .as_str()
            .into(),
        ),
        breaker_state: (!no_route).then(|| breaker.as_str().to_string()),
        error_class: error_class.map(|c| c.as_str().into()),
        tls_version: https.then(|| "TLSv1.3".into()),
        tls_cipher: https.then(|| "TLS13_AES_128_GCM_SHA256".into()),
        user_agent: Some(AGENTS[rng.below(AGENTS.len() as u64) as usize].into()),
        referer: rng.chance(0.1).then(|| "https://www.example.com/".into()),
        policy_version: "bf97fbc0fc64".into(),
        gateway_instance: format!("gw-{}", 1 + rng.below(2)),
        // No draw from `rng` here: the named-query tests pin figures of the generated stream.
        upstream_attempts: proxied.then_some(if error_class.is_some() { 2 } else { 1 }),
        canary: None,
        // Every generated id is the gateway's (no draw from `rng`, as above).
        request_id_from_client: Some(false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::OUTCOME_COLUMNS;

    /// 2025-03-01T05:30:00Z.
    const START: i64 = 1_740_807_000_000;

    fn spec() -> Spec {
        Spec {
            records: 1003,
            start_ms: START,
            hours: 2,
            files_per_hour: 5,
            seed: 7,
        }
    }

    fn all(spec: &Spec) -> Vec<AccessLogRecord> {
        (0..spec.hours)
            .flat_map(|h| (0..spec.files_per_hour).map(move |f| (h, f)))
            .flat_map(|(h, f)| file_records(spec, h, f))
            .collect()
    }

    #[test]
    fn deterministic_evenly_spread_and_in_their_hour() {
        let spec = spec();
        let total: u64 = (0..2)
            .flat_map(|h| (0..5).map(move |f| (h, f)))
            .map(|(h, f)| spec.count(h, f))
            .sum();
        assert_eq!(total, 1003);
        assert_eq!((spec.count(0, 0), spec.count(1, 4)), (101, 100));
        let a = file_records(&spec, 1, 3);
        assert_eq!(a, file_records(&spec, 1, 3));
        assert_ne!(
            a,
            file_records(
                &Spec {
                    seed: 8,
                    ..spec.clone()
                },
                1,
                3
            )
        );
        // Hour 1 starts at 06:00 (the start is rounded down to 05:00).
        assert_eq!(spec.hour_start(1), START - 30 * 60_000 + 3_600_000);
        for r in &a {
            assert!((spec.hour_start(1)..spec.hour_start(2)).contains(&r.event_time));
        }
        let mut ids: Vec<_> = all(&spec).into_iter().map(|r| r.request_id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), 1003, "request ids are unique");
    }

    #[test]
    fn outcome_columns_use_the_contract_spellings() {
        let recs = all(&spec());
        for r in &recs {
            assert!(
                r.auth_result.parse::<AuthResult>().is_ok(),
                "{}",
                r.auth_result
            );
            for (col, v) in [
                ("cache_status", &r.cache_status),
                ("rate_limit", &r.rate_limit),
                ("breaker_state", &r.breaker_state),
                ("error_class", &r.error_class),
            ] {
                if let Some(v) = v {
                    let allowed = crate::outcome::allowed_values(col).unwrap();
                    assert!(allowed.contains(&v.as_str()), "{col} = {v}");
                }
            }
            if let Some(c) = &r.error_class {
                let class: ErrorClass = c.parse().unwrap();
                assert_eq!(i32::from(class.status()), r.status, "{c}");
            }
        }
        // Every outcome column gets more than one value, so queries have something to count.
        assert!(OUTCOME_COLUMNS.contains(&"auth_result"));
        let distinct = |f: fn(&AccessLogRecord) -> Option<String>| {
            let mut v: Vec<_> = recs.iter().filter_map(f).collect();
            v.sort();
            v.dedup();
            v.len()
        };
        assert!(distinct(|r| Some(r.auth_result.clone())) >= 4);
        assert!(distinct(|r| r.cache_status.clone()) >= 3);
        assert!(distinct(|r| r.error_class.clone()) >= 3);
        assert_eq!(distinct(|r| r.rate_limit.clone()), 2);
    }

    #[test]
    fn breaker_opens_on_schedule() {
        let minute = |m: i64| START - 30 * 60_000 + m * 60_000;
        assert_eq!(breaker_at("search", minute(9)), BreakerState::Closed);
        assert_eq!(breaker_at("search", minute(10)), BreakerState::Open);
        assert_eq!(breaker_at("search", minute(11)), BreakerState::Open);
        assert_eq!(breaker_at("search", minute(12)), BreakerState::HalfOpen);
        assert_eq!(breaker_at("api", minute(10)), BreakerState::Closed);
    }

    #[test]
    fn sequence_records_are_two_ms_apart_and_unique() {
        let recs: Vec<_> = (0..500).map(|i| sequence_record(3, i, START)).collect();
        assert_eq!(recs[0], sequence_record(3, 0, START));
        for (i, r) in recs.iter().enumerate() {
            assert_eq!(r.event_time, START + 2 * i as i64);
        }
        let mut ids: Vec<_> = recs.iter().map(|r| r.request_id.clone()).collect();
        ids.dedup();
        assert_eq!(ids.len(), 500);
        assert_ne!(recs[0].request_id, sequence_record(4, 0, START).request_id);
        let statuses: std::collections::BTreeSet<_> = recs.iter().map(|r| r.status).collect();
        assert!(statuses.len() >= 5, "{statuses:?}");
    }
}
