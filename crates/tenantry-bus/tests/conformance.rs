//! The bus conformance suite on every adapter: in process, and NATS JetStream at
//! `TENANTRY_TEST_NATS_URL` (each case on a stream of its own, deleted afterwards). Without the
//! variable the NATS cases are skipped with a notice, except under CI, which sets it.

#![allow(clippy::unwrap_used)]

mod in_process {
    use tenantry_bus::InProcessBus;

    async fn make() -> Option<Box<InProcessBus>> {
        Some(Box::new(InProcessBus::new(
            &tenantry_bus::conformance::fresh("p"),
        )))
    }

    async fn cleanup(_: Box<InProcessBus>) {}

    tenantry_bus::bus_conformance_suite!(make().await);
}

mod nats {
    use tenantry_bus::NatsBus;
    use tenantry_bus::conformance::{NATS_URL_VAR, fresh};

    async fn make() -> Option<Box<NatsBus>> {
        let Ok(url) = std::env::var(NATS_URL_VAR) else {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI is set but {NATS_URL_VAR} is not"
            );
            return None;
        };
        let name = fresh("bus");
        let bus = NatsBus::connect(&url, &name, &name, std::time::Duration::from_secs(600))
            .await
            .unwrap();
        Some(Box::new(bus))
    }

    async fn cleanup(bus: Box<NatsBus>) {
        bus.delete_stream().await.unwrap();
    }

    tenantry_bus::bus_conformance_suite!(make().await);
}
