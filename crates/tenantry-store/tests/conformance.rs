//! The store conformance suite on every adapter.

#![allow(clippy::unwrap_used)]

mod sqlite {
    tenantry_store::conformance_suite!(Some(tenantry_store::testing::sqlite().await));
}

mod postgres {
    tenantry_store::conformance_suite!(tenantry_store::testing::postgres().await);
}
