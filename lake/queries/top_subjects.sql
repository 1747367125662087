-- Top authenticated subjects by requests, with their 429s and distinct client IPs.
-- @param from 1970-01-01 first partition date (dt), inclusive
-- @param to 9999-12-31 last partition date (dt), inclusive
-- @param limit 20 rows to show
SELECT
  auth_subject AS subject,
  count(*) AS requests,
  sum(CASE WHEN status = 429 THEN 1 ELSE 0 END) AS rate_limited,
  count(DISTINCT client_ip) AS clients
FROM access_logs
WHERE dt BETWEEN '{{from}}' AND '{{to}}'
  AND auth_subject IS NOT NULL
GROUP BY auth_subject
ORDER BY requests DESC, subject
LIMIT {{limit}}
