//! Deterministic synthetic access-log records, for benchmarks and tests.

use edgeway_record::kpl::{Aggregator, MAX_KINESIS_RECORD_BYTES};
use edgeway_record::{AccessLogRecord, RECORD_VERSION};

const PATHS: &[&str] = &[
    "/v1/users",
    "/v1/orders",
    "/v1/orders/42",
    "/static/app.js",
    "/",
    "/healthz",
    "/v2/search",
];
const METHODS: &[&str] = &["GET", "GET", "GET", "POST", "PUT", "DELETE"];
const HOSTS: &[&str] = &["api.example.com", "www.example.com", "acme.example.com"];
const STATUSES: &[i32] = &[200, 200, 200, 201, 204, 304, 404, 429, 502];
const AGENTS: &[&str] = &["curl/8.5.0", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Safari/537.36", "okhttp/4.12.0"];

fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

/// Record `i` of a run starting at `base_ms`, about 2 ms apart, with `seed` for uniqueness.
pub fn record(seed: u64, i: u64, base_ms: i64) -> AccessLogRecord {
    let h = mix(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ i);
    let pick = |xs: &[&str], k: u32| xs[((h >> k) as usize) % xs.len()].to_string();
    let status = STATUSES[((h >> 7) as usize) % STATUSES.len()];
    let tls = h & 1 == 0;
    AccessLogRecord {
        record_version: RECORD_VERSION,
        event_time: base_ms + (i as i64) * 2,
        request_id: format!("{seed:04x}-{i:012x}"),
        trace_id: (h & 3 == 0).then(|| format!("{:016x}{:016x}", h, mix(h))),
        client_ip: format!("203.0.{}.{}", (h >> 16) & 255, (h >> 24) & 255),
        client_port: 1024 + ((h >> 32) % 60_000) as i32,
        method: pick(METHODS, 3),
        scheme: if tls { "https" } else { "http" }.into(),
        host: pick(HOSTS, 11),
        path: pick(PATHS, 13),
        query: (h & 7 == 1).then(|| "page=2".to_string()),
        http_version: if tls { "HTTP/2" } else { "HTTP/1.1" }.into(),
        status,
        bytes_in: ((h >> 40) % 2048) as i64,
        bytes_out: ((h >> 20) % 65_536) as i64,
        duration_ms: ((h >> 8) % 50_000) as f64 / 100.0,
        upstream_connect_ms: (h & 16 == 0).then(|| ((h >> 5) % 300) as f64 / 100.0),
        upstream_response_ms: Some(((h >> 9) % 40_000) as f64 / 100.0),
        route: Some(pick(&["api-v1", "static", "tenants"], 17)),
        upstream_cluster: Some(pick(&["api", "static"], 19)),
        upstream_addr: Some(format!("10.0.0.{}:8080", (h >> 21) % 8)),
        shard: (h & 32 == 0).then(|| ((h >> 23) % 16).to_string()),
        cache_status: Some(pick(&["public", "private", "no-store"], 25)),
        auth_result: pick(&["ok", "ok", "none", "missing", "invalid"], 27),
        auth_subject: (h & 64 == 0).then(|| format!("user-{}", (h >> 29) % 1000)),
        auth_issuer: (h & 64 == 0).then(|| "https://idp.example.com".to_string()),
        rate_limit: Some(if status == 429 { "limited" } else { "allowed" }.into()),
        breaker_state: Some("closed".into()),
        error_class: (status >= 500).then(|| "upstream_error".to_string()),
        tls_version: tls.then(|| "TLSv1.3".to_string()),
        tls_cipher: tls.then(|| "TLS13_AES_128_GCM_SHA256".to_string()),
        user_agent: Some(pick(AGENTS, 31)),
        referer: (h & 128 == 0).then(|| "https://www.example.com/".to_string()),
        policy_version: "bf97fbc0fc64".into(),
        gateway_instance: format!("gw-{}", seed % 4),
    }
}

/// Pack encoded records into KPL aggregates as the gateway does (batch id as partition key).
pub fn aggregate(
    records: impl IntoIterator<Item = Vec<u8>>,
    instance: &str,
    limit: usize,
) -> Vec<(String, Vec<u8>)> {
    let limit = limit.min(MAX_KINESIS_RECORD_BYTES - 64);
    let mut out = Vec::new();
    let mut n = 0u64;
    let key = |n: u64| format!("{instance}-{n}");
    let mut agg = Aggregator::new(&key(n), limit);
    for data in records {
        if !agg.try_push(&data) {
            let k = key(n);
            let full = std::mem::replace(&mut agg, Aggregator::new(&key(n + 1), limit));
            n += 1;
            if !full.is_empty() {
                out.push((k, full.finish()));
            }
            if !agg.try_push(&data) {
                continue;
            }
        }
    }
    if !agg.is_empty() {
        out.push((key(n), agg.finish()));
    }
    out
}

/// JSON line of a record, as a JSON-lines producer would write it (for the pyarrow baseline).
pub fn json_line(r: &AccessLogRecord) -> String {
    serde_json::json!({
        "record_version": r.record_version, "event_time": r.event_time, "request_id": r.request_id,
        "trace_id": r.trace_id, "client_ip": r.client_ip, "client_port": r.client_port,
        "method": r.method, "scheme": r.scheme, "host": r.host, "path": r.path, "query": r.query,
        "http_version": r.http_version, "status": r.status, "bytes_in": r.bytes_in,
        "bytes_out": r.bytes_out, "duration_ms": r.duration_ms,
        "upstream_connect_ms": r.upstream_connect_ms, "upstream_response_ms": r.upstream_response_ms,
        "route": r.route, "upstream_cluster": r.upstream_cluster, "upstream_addr": r.upstream_addr,
        "shard": r.shard, "cache_status": r.cache_status, "auth_result": r.auth_result,
        "auth_subject": r.auth_subject, "auth_issuer": r.auth_issuer, "rate_limit": r.rate_limit,
        "breaker_state": r.breaker_state, "error_class": r.error_class,
        "tls_version": r.tls_version, "tls_cipher": r.tls_cipher, "user_agent": r.user_agent,
        "referer": r.referer, "policy_version": r.policy_version,
        "gateway_instance": r.gateway_instance,
    })
    .to_string()
}
