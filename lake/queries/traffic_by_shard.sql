-- Traffic by shard: requests, bytes in and out, and 5xx.
-- @param from 1970-01-01 first partition date (dt), inclusive
-- @param to 9999-12-31 last partition date (dt), inclusive
SELECT
  coalesce(shard, '(none)') AS shard,
  count(*) AS requests,
  sum(bytes_in) AS bytes_in,
  sum(bytes_out) AS bytes_out,
  sum(CASE WHEN status >= 500 THEN 1 ELSE 0 END) AS errors_5xx
FROM access_logs
WHERE dt BETWEEN '{{from}}' AND '{{to}}'
GROUP BY coalesce(shard, '(none)')
ORDER BY 1
