-- p50/p95/p99 of upstream response time (ms) by upstream cluster and endpoint.
-- @param from 1970-01-01 first partition date (dt), inclusive
-- @param to 9999-12-31 last partition date (dt), inclusive
SELECT
  upstream_cluster AS cluster,
  upstream_addr AS endpoint,
  count(*) AS requests,
  round(approx_percentile(upstream_response_ms, 0.5), 3) AS p50_ms,
  round(approx_percentile(upstream_response_ms, 0.95), 3) AS p95_ms,
  round(approx_percentile(upstream_response_ms, 0.99), 3) AS p99_ms,
  sum(CASE WHEN status >= 500 THEN 1 ELSE 0 END) AS errors_5xx
FROM access_logs
WHERE dt BETWEEN '{{from}}' AND '{{to}}'
  AND upstream_addr IS NOT NULL
  AND upstream_response_ms IS NOT NULL
GROUP BY upstream_cluster, upstream_addr
ORDER BY 1, 2
