-- p50/p95/p99 of total latency (ms) by route (approximate percentiles).
-- @param from 1970-01-01 first partition date (dt), inclusive
-- @param to 9999-12-31 last partition date (dt), inclusive
SELECT
  coalesce(route, '(none)') AS route,
  count(*) AS requests,
  round(approx_percentile(duration_ms, 0.5), 3) AS p50_ms,
  round(approx_percentile(duration_ms, 0.95), 3) AS p95_ms,
  round(approx_percentile(duration_ms, 0.99), 3) AS p99_ms,
  round(max(duration_ms), 3) AS max_ms
FROM access_logs
WHERE dt BETWEEN '{{from}}' AND '{{to}}'
GROUP BY coalesce(route, '(none)')
ORDER BY 1
