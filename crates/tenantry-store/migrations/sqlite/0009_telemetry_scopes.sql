-- tenantry 0009: the device-telemetry scopes are `telemetry:read` and `telemetry:write`; the
-- `events:*` names are kept for the platform's domain events. Stored keys are rewritten in place
-- (order kept).
UPDATE api_keys
SET scopes = (
    SELECT json_group_array(
               CASE value
                   WHEN 'events:read' THEN 'telemetry:read'
                   WHEN 'events:write' THEN 'telemetry:write'
                   ELSE value
               END)
    FROM (SELECT value FROM json_each(api_keys.scopes) ORDER BY key)
)
WHERE EXISTS (SELECT 1 FROM json_each(api_keys.scopes) WHERE value IN ('events:read', 'events:write'));
