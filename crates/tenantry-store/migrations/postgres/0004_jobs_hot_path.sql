-- tenantry 0004: the job queue's hot path under sustained load (ADR 0010).
--
-- A lease owner is set exactly while a job runs. Fenced writes (heartbeat, completion, failure,
-- checkpoint, release) test the owner and the attempt instead of the state, so the planner never
-- reaches for jobs_lease_idx: every claim leaves a dead entry there until the next VACUUM, and a
-- completion that combined it with the primary key walked every job claimed since (5 ms of a
-- 7 ms completion at 10 000 jobs/s). The constraint makes the equivalence a guarantee.
ALTER TABLE jobs ADD CONSTRAINT jobs_lease_only_while_running
    CHECK ((state = 'running') = (lease_owner IS NOT NULL));

-- The claim with a cap on the jobs each tenant may have running at once, across every worker
-- (`job_tenant_max_running`). Claims with a cap take a transaction-scoped advisory lock first,
-- so each one counts the running jobs that the previous one committed: the cap is exact, at
-- the price of claims one at a time (a cap is for long jobs, where claims are rare). Platform
-- jobs (no tenant) are not capped. Same pinned plan as tenantry_claim_jobs.
CREATE FUNCTION tenantry_claim_jobs_capped(p_owner TEXT, p_now TIMESTAMPTZ, p_queues TEXT[], p_limit BIGINT, p_cap BIGINT)
    RETURNS SETOF jobs
    LANGUAGE plpgsql VOLATILE
    SET enable_sort = off SET enable_bitmapscan = off SET enable_seqscan = off
AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('tenantry_claim_jobs_capped'));
    RETURN QUERY
    WITH busy AS (
        SELECT lane, count(*) AS n FROM jobs WHERE state = 'running' AND lane <> '' GROUP BY lane),
    candidates AS (
        SELECT id, lane, priority, fair_key FROM jobs
        WHERE state IN ('scheduled', 'available', 'retryable')
          AND run_at <= p_now AND queue = ANY (p_queues)
          AND lane NOT IN (SELECT b.lane FROM busy b WHERE b.n >= p_cap)
        ORDER BY priority DESC, fair_key, id
        LIMIT p_limit
        FOR UPDATE SKIP LOCKED),
    ranked AS (
        SELECT c.id, c.lane,
               row_number() OVER (PARTITION BY c.lane ORDER BY c.priority DESC, c.fair_key, c.id) AS rn
        FROM candidates c),
    picked AS (
        SELECT r.id FROM ranked r LEFT JOIN busy b ON b.lane = r.lane
        WHERE r.lane = '' OR r.rn + COALESCE(b.n, 0) <= p_cap)
    UPDATE jobs j SET state = 'running', attempt = j.attempt + 1, lease_owner = p_owner,
        lease_expires_at = p_now + j.lease_ms * interval '1 millisecond',
        heartbeat_at = p_now, attempted_at = p_now
    FROM picked WHERE j.id = picked.id
    RETURNING j.*;
END
$$;
