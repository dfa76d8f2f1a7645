//! The job-queue conformance suite on every adapter.

#![allow(clippy::unwrap_used)]

mod sqlite {
    tenantry_store::job_conformance_suite!(Some(tenantry_store::testing::sqlite().await));
}

mod postgres {
    tenantry_store::job_conformance_suite!(tenantry_store::testing::postgres().await);
}
