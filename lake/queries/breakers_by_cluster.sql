-- Circuit-breaker openings (transitions into open, per gateway instance), requests rejected while open, and 503s by upstream cluster.
-- @param from 1970-01-01 first partition date (dt), inclusive
-- @param to 9999-12-31 last partition date (dt), inclusive
WITH seen AS (
  SELECT
    upstream_cluster,
    status,
    breaker_state,
    lag(breaker_state) OVER (
      PARTITION BY upstream_cluster, gateway_instance
      ORDER BY event_time, request_id
    ) AS previous_state
  FROM access_logs
  WHERE dt BETWEEN '{{from}}' AND '{{to}}'
    AND upstream_cluster IS NOT NULL
)
SELECT
  upstream_cluster AS cluster,
  count(*) AS requests,
  sum(CASE WHEN breaker_state = 'open'
            AND (previous_state IS NULL OR previous_state <> 'open') THEN 1 ELSE 0 END) AS openings,
  sum(CASE WHEN breaker_state = 'open' THEN 1 ELSE 0 END) AS rejected_while_open,
  sum(CASE WHEN status = 503 THEN 1 ELSE 0 END) AS status_503
FROM seen
GROUP BY upstream_cluster
ORDER BY 1
