//! Synthetic input for the pipeline's benchmark commands: generated records (from the shared
//! generator), packed into KPL aggregates as the gateway packs them, and as JSON lines for the
//! pyarrow baseline.

use edgeway_record::kpl::{Aggregator, MAX_KINESIS_RECORD_BYTES};
use edgeway_record::AccessLogRecord;

/// Record `i` of a run starting at `base_ms`, 2 ms apart, with `seed` for uniqueness: the
/// workspace's one generator ([`edgeway_record::gen`]), also behind `lake generate`.
pub fn record(seed: u64, i: u64, base_ms: i64) -> AccessLogRecord {
    edgeway_record::gen::sequence_record(seed, i, base_ms)
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
        "gateway_instance": r.gateway_instance, "upstream_attempts": r.upstream_attempts,
        "gateway_instance": r.gateway_instance, "canary": r.canary,
        "request_id_from_client": r.request_id_from_client,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregates_hold_every_record_in_order_within_the_limit() {
        let recs: Vec<_> = (0..300).map(|i| record(1, i, 0).to_bytes()).collect();
        let blobs = aggregate(recs.clone(), "gen", 16 * 1024);
        assert!(blobs.len() > 1);
        let mut back = Vec::new();
        for (n, (key, blob)) in blobs.iter().enumerate() {
            assert_eq!(key, &format!("gen-{n}"));
            assert!(blob.len() <= 16 * 1024 + 64, "{}", blob.len());
            back.extend(edgeway_record::kpl::deaggregate(blob).unwrap());
        }
        assert_eq!(back, recs);
    }
}
