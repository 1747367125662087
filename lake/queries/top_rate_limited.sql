-- Top clients and subjects by 429 (rate limited) responses.
-- @param from 1970-01-01 first partition date (dt), inclusive
-- @param to 9999-12-31 last partition date (dt), inclusive
-- @param limit 20 rows to show
SELECT
  client_ip,
  coalesce(auth_subject, '(anonymous)') AS subject,
  count(*) AS rate_limited
FROM access_logs
WHERE dt BETWEEN '{{from}}' AND '{{to}}'
  AND status = 429
GROUP BY client_ip, coalesce(auth_subject, '(anonymous)')
ORDER BY rate_limited DESC, client_ip, subject
LIMIT {{limit}}
