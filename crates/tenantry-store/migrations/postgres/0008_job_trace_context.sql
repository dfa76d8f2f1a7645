-- tenantry 0008: the W3C trace context (`traceparent`) of the span that enqueued a job, so that
-- the job's run continues the enqueuing request's (or schedule firing's) trace.
ALTER TABLE jobs ADD COLUMN trace_parent TEXT;
