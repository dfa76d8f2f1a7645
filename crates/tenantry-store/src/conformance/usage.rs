//! Conformance cases of the usage port.

use chrono::Duration;
use serde_json::json;

use super::access::{tenant_key, two_tenants};
use super::now;
use crate::{Changes, DeviceRecord, Store};

/// A footprint counts the scope's tenant only: its devices whose key was used recently (not
/// deleted ones, not idle ones) and bytes that grow with what it stores.
pub async fn footprints_count_one_tenant(store: &dyn Store) {
    let (a, b) = two_tenants(store).await;
    let since = now() - Duration::hours(24);
    let empty = store.usage().footprint(&a, since).await.unwrap();
    assert_eq!(empty.active_devices, 0);
    for (i, (device, used)) in [("used", true), ("idle", false), ("revoked", true)]
        .into_iter()
        .enumerate()
    {
        let key = tenant_key(&a, &format!("tnt_dk_usage{i:07}"), Some(device));
        store
            .access()
            .insert_device(
                &a,
                &DeviceRecord {
                    id: uuid::Uuid::now_v7(),
                    tenant_id: a.tenant_id(),
                    device_id: device.into(),
                    name: None,
                    metadata: json!({ "note": "x".repeat(1000) }),
                    created_at: now(),
                },
                &key,
                &Changes::default(),
            )
            .await
            .unwrap();
        if used {
            store.access().touch_key(key.id, now()).await.unwrap();
        }
        if device == "revoked" {
            store
                .access()
                .delete_device(&a, device, now(), &Changes::default())
                .await
                .unwrap();
        }
    }
    let fa = store.usage().footprint(&a, since).await.unwrap();
    assert_eq!(
        fa.active_devices, 1,
        "only the used, unrevoked device is active"
    );
    assert!(
        fa.storage_bytes >= empty.storage_bytes + 2000,
        "two devices of 1 KB metadata kept (the third was deleted): {empty:?} → {fa:?}"
    );
    // the other tenant's footprint is its own
    let fb = store.usage().footprint(&b, since).await.unwrap();
    assert_eq!(fb.active_devices, 0);
    assert!(fb.storage_bytes < 2000, "{fb:?}");
    // activity older than the window does not count
    let later = store
        .usage()
        .footprint(&a, now() + Duration::minutes(1))
        .await
        .unwrap();
    assert_eq!(later.active_devices, 0);
}
