-- Top client IPs by requests, with their 429s and errors.
-- @param from 1970-01-01 first partition date (dt), inclusive
-- @param to 9999-12-31 last partition date (dt), inclusive
-- @param limit 20 rows to show
SELECT
  client_ip,
  count(*) AS requests,
  sum(CASE WHEN status = 429 THEN 1 ELSE 0 END) AS rate_limited,
  sum(CASE WHEN status >= 400 THEN 1 ELSE 0 END) AS errors
FROM access_logs
WHERE dt BETWEEN '{{from}}' AND '{{to}}'
GROUP BY client_ip
ORDER BY requests DESC, client_ip
LIMIT {{limit}}
