-- The slowest requests, with their request ids for tracing.
-- @param from 1970-01-01 first partition date (dt), inclusive
-- @param to 9999-12-31 last partition date (dt), inclusive
-- @param limit 20 rows to show
SELECT
  request_id,
  event_time,
  route,
  method,
  path,
  status,
  duration_ms,
  upstream_addr,
  error_class
FROM access_logs
WHERE dt BETWEEN '{{from}}' AND '{{to}}'
ORDER BY duration_ms DESC, request_id
LIMIT {{limit}}
