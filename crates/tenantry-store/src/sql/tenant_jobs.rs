//! Pausing and resuming a tenant's queued jobs with its lifecycle ([`crate::TenantJobs`]), in
//! the unit of work of the status change. The Rust is written once here; each adapter's jobs
//! file expands [`hold_tenant_jobs`] next to its SQL (`PAUSE_TENANT_JOBS`, `RESUME_TENANT_JOBS`:
//! tenant, then the time for `run_at`) and its `db_time` and `err`.

macro_rules! hold_tenant_jobs {
    ($conn:ty) => {
        /// Pauses or resumes a tenant's queued jobs. Returns whether jobs came back to the queue
        /// (workers are then woken).
        pub(super) async fn hold_tenant_jobs(
            conn: &mut $conn,
            held: $crate::TenantJobs,
        ) -> $crate::StoreResult<bool> {
            let n = match held {
                $crate::TenantJobs::Pause(t) => {
                    sqlx::query(PAUSE_TENANT_JOBS)
                        .bind(t.as_uuid())
                        .execute(&mut *conn)
                        .await
                }
                $crate::TenantJobs::Resume(t, now) => {
                    sqlx::query(RESUME_TENANT_JOBS)
                        .bind(t.as_uuid())
                        .bind(db_time(now))
                        .execute(&mut *conn)
                        .await
                }
            }
            .map_err(err)?
            .rows_affected();
            Ok(matches!(held, $crate::TenantJobs::Resume(..)) && n > 0)
        }
    };
}

pub(crate) use hold_tenant_jobs;
