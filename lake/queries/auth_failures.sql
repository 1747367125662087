-- Authentication failures by reason (auth_result) and token issuer.
-- @param from 1970-01-01 first partition date (dt), inclusive
-- @param to 9999-12-31 last partition date (dt), inclusive
SELECT
  auth_result AS reason,
  coalesce(auth_issuer, '(unknown)') AS issuer,
  count(*) AS failures,
  count(DISTINCT client_ip) AS clients
FROM access_logs
WHERE dt BETWEEN '{{from}}' AND '{{to}}'
  AND auth_result NOT IN ('ok', 'none', 'anonymous')
GROUP BY auth_result, coalesce(auth_issuer, '(unknown)')
ORDER BY failures DESC, reason, issuer
