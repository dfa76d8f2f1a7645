-- tenantry 0006: the built-in editions gain `min_schedule_interval_seconds` (the shortest
-- interval between two firings of a tenant's schedule): free 300, standard 60, enterprise 10.
-- Custom editions stored before read it as 60 (the serde default).
UPDATE editions
SET limits = json_set(limits, '$.min_schedule_interval_seconds',
                      CASE key WHEN 'free' THEN 300 WHEN 'enterprise' THEN 10 ELSE 60 END)
WHERE builtin = 1 AND json_extract(limits, '$.min_schedule_interval_seconds') IS NULL;
