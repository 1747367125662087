-- Error rate by route before and after each applied policy change, per gateway instance: "before" counts the requests the old version served since the previous change, "after" those the new version served until the next one.
-- @param from 1970-01-01 first partition date (dt), inclusive
-- @param to 9999-12-31 last partition date (dt), inclusive
WITH applied AS (
  SELECT
    gateway_instance,
    event_time,
    old_version,
    new_version,
    array_join(files_changed, ', ') AS files_changed,
    lag(event_time) OVER (PARTITION BY gateway_instance ORDER BY event_time) AS previous_change,
    lead(event_time) OVER (PARTITION BY gateway_instance ORDER BY event_time) AS next_change
  FROM policy_changes
  WHERE dt BETWEEN '{{from}}' AND '{{to}}'
    AND result = 'applied'
),
sides AS (
  SELECT gateway_instance, event_time AS changed_at, old_version, new_version, files_changed,
         'before' AS side, old_version AS version,
         previous_change AS window_start, event_time AS window_end
  FROM applied
  WHERE old_version IS NOT NULL
  UNION ALL
  SELECT gateway_instance, event_time AS changed_at, old_version, new_version, files_changed,
         'after' AS side, new_version AS version,
         event_time AS window_start, next_change AS window_end
  FROM applied
  WHERE old_version IS NOT NULL
),
served AS (
  SELECT
    s.changed_at,
    s.gateway_instance,
    s.old_version,
    s.new_version,
    s.files_changed,
    s.side,
    coalesce(r.route, '(none)') AS route,
    r.status
  FROM sides s
  JOIN access_logs r
    ON r.gateway_instance = s.gateway_instance
   AND r.policy_version = s.version
  WHERE r.dt BETWEEN '{{from}}' AND '{{to}}'
    AND (s.window_start IS NULL OR r.event_time >= s.window_start)
    AND (s.window_end IS NULL OR r.event_time < s.window_end)
)
SELECT
  changed_at,
  gateway_instance,
  old_version,
  new_version,
  files_changed,
  route,
  sum(CASE WHEN side = 'before' THEN 1 ELSE 0 END) AS requests_before,
  sum(CASE WHEN side = 'after' THEN 1 ELSE 0 END) AS requests_after,
  round(CAST(sum(CASE WHEN side = 'before' AND status >= 400 THEN 1 ELSE 0 END) AS DOUBLE)
        / nullif(sum(CASE WHEN side = 'before' THEN 1 ELSE 0 END), 0), 4) AS error_rate_before,
  round(CAST(sum(CASE WHEN side = 'after' AND status >= 400 THEN 1 ELSE 0 END) AS DOUBLE)
        / nullif(sum(CASE WHEN side = 'after' THEN 1 ELSE 0 END), 0), 4) AS error_rate_after,
  round(CAST(sum(CASE WHEN side = 'before' AND status >= 500 THEN 1 ELSE 0 END) AS DOUBLE)
        / nullif(sum(CASE WHEN side = 'before' THEN 1 ELSE 0 END), 0), 4) AS server_error_rate_before,
  round(CAST(sum(CASE WHEN side = 'after' AND status >= 500 THEN 1 ELSE 0 END) AS DOUBLE)
        / nullif(sum(CASE WHEN side = 'after' THEN 1 ELSE 0 END), 0), 4) AS server_error_rate_after
FROM served
GROUP BY changed_at, gateway_instance, old_version, new_version, files_changed, route
ORDER BY changed_at, gateway_instance, route
