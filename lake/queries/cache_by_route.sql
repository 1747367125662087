-- Cache ratio by route: share of responses stamped publicly cacheable (what the CDN may serve from cache) and of 304 revalidation hits.
-- @param from 1970-01-01 first partition date (dt), inclusive
-- @param to 9999-12-31 last partition date (dt), inclusive
SELECT
  coalesce(route, '(none)') AS route,
  count(*) AS requests,
  sum(CASE WHEN cache_status = 'public' THEN 1 ELSE 0 END) AS cache_public,
  sum(CASE WHEN cache_status = 'private' THEN 1 ELSE 0 END) AS cache_private,
  sum(CASE WHEN cache_status = 'no-store' THEN 1 ELSE 0 END) AS cache_no_store,
  sum(CASE WHEN status = 304 THEN 1 ELSE 0 END) AS revalidated_304,
  round(CAST(sum(CASE WHEN cache_status = 'public' THEN 1 ELSE 0 END) AS DOUBLE) / count(*), 4) AS cacheable_ratio,
  round(CAST(sum(CASE WHEN status = 304 THEN 1 ELSE 0 END) AS DOUBLE) / count(*), 4) AS hit_ratio_304
FROM access_logs
WHERE dt BETWEEN '{{from}}' AND '{{to}}'
GROUP BY coalesce(route, '(none)')
ORDER BY 1
