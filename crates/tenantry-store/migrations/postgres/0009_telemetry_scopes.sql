-- tenantry 0009: the device-telemetry scopes are `telemetry:read` and `telemetry:write`; the
-- `events:*` names are kept for the platform's domain events. Stored keys are rewritten in place
-- (order kept). Row-level security binds the owner too: the rewrite runs in the system context.
SELECT set_config('tenantry.scope', 'system', true);

UPDATE api_keys
SET scopes = (
    SELECT COALESCE(jsonb_agg(
               CASE s.scope
                   WHEN 'events:read' THEN 'telemetry:read'
                   WHEN 'events:write' THEN 'telemetry:write'
                   ELSE s.scope
               END ORDER BY s.n), '[]'::jsonb)
    FROM jsonb_array_elements_text(api_keys.scopes) WITH ORDINALITY AS s(scope, n)
)
WHERE scopes ?| ARRAY['events:read', 'events:write'];

SELECT set_config('tenantry.scope', '', true);
