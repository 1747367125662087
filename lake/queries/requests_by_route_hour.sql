-- Requests and error rates by route and hour.
-- @param from 1970-01-01 first partition date (dt), inclusive
-- @param to 9999-12-31 last partition date (dt), inclusive
SELECT
  dt,
  hour,
  coalesce(route, '(none)') AS route,
  count(*) AS requests,
  sum(CASE WHEN status >= 400 AND status < 500 THEN 1 ELSE 0 END) AS errors_4xx,
  sum(CASE WHEN status >= 500 THEN 1 ELSE 0 END) AS errors_5xx,
  round(CAST(sum(CASE WHEN status >= 500 THEN 1 ELSE 0 END) AS DOUBLE) / count(*), 4) AS error_rate_5xx
FROM access_logs
WHERE dt BETWEEN '{{from}}' AND '{{to}}'
GROUP BY dt, hour, coalesce(route, '(none)')
ORDER BY 1, 2, 3
