//! Tamper-evident pagination cursors. The store pages by "after this id"; what clients see is
//! that position sealed with an HMAC-SHA256 under a key every instance shares (made once and kept
//! in the database: `platform_secrets`), bound to the list it came from. A changed character, a
//! made-up cursor or one from another list (another tenant's included) is `400 invalid_cursor`.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tenantry_domain::{Cursor, Page, PageRequest};
use uuid::Uuid;

use super::problem::{Kind, Problem};

const SECRET_NAME: &str = "cursor_hmac_v1";
const VERSION: u8 = 2;
const TAG_BYTES: usize = 16;
const SEALED_BYTES: usize = 1 + 16 + TAG_BYTES;

/// The sealing key, read (or made) on first use and kept.
#[derive(Clone)]
pub struct Cursors {
    store: Option<Arc<dyn tenantry_store::Store>>,
    key: Arc<tokio::sync::OnceCell<Vec<u8>>>,
}

impl Cursors {
    /// Cursors sealed under the instance-wide key in `store` (made there by the first instance
    /// that needs it).
    pub fn new(store: Arc<dyn tenantry_store::Store>) -> Self {
        Self {
            store: Some(store),
            key: Arc::default(),
        }
    }

    #[cfg(test)]
    fn with_key(key: &[u8]) -> Self {
        Self {
            store: None,
            key: Arc::new(tokio::sync::OnceCell::new_with(Some(key.to_vec()))),
        }
    }

    async fn key(&self) -> Result<&[u8], Problem> {
        let key = self
            .key
            .get_or_try_init(|| async {
                let candidate: [u8; 32] = rand::random();
                match &self.store {
                    Some(store) => store.secrets().get_or_create(SECRET_NAME, &candidate).await,
                    None => Ok(candidate.to_vec()),
                }
            })
            .await
            .map_err(|e| Problem::from(crate::platform::AppError::from(e)))?;
        Ok(key)
    }

    fn mac(key: &[u8], list: &str, id: &Uuid) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
        mac.update(b"tenantry-cursor\0");
        mac.update(list.as_bytes());
        mac.update(b"\0");
        mac.update(id.as_bytes());
        mac
    }

    fn seal_id(key: &[u8], list: &str, id: Uuid) -> String {
        let tag = Self::mac(key, list, &id).finalize().into_bytes();
        let mut bytes = Vec::with_capacity(SEALED_BYTES);
        bytes.push(VERSION);
        bytes.extend_from_slice(id.as_bytes());
        bytes.extend_from_slice(&tag[..TAG_BYTES]);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn open(key: &[u8], list: &str, sealed: &str) -> Option<Uuid> {
        let bytes = URL_SAFE_NO_PAD.decode(sealed).ok()?;
        if bytes.len() != SEALED_BYTES || bytes[0] != VERSION {
            return None;
        }
        let id = Uuid::from_slice(&bytes[1..17]).ok()?;
        Self::mac(key, list, &id)
            .verify_truncated_left(&bytes[17..])
            .ok()
            .map(|()| id)
    }

    /// The page's `next_cursor`, sealed for `list`.
    pub async fn seal<T>(&self, list: &str, mut page: Page<T>) -> Result<Page<T>, Problem> {
        let Some(raw) = page.page_info.next_cursor.take() else {
            return Ok(page);
        };
        let key = self.key().await?;
        page.page_info.next_cursor = Cursor::decode(&raw)
            .ok()
            .map(|c| Self::seal_id(key, list, c.0));
        Ok(page)
    }

    /// `?limit=&cursor=` of `list`: the cursor must be one this server sealed for this list.
    pub async fn page_request(
        &self,
        list: &str,
        limit: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<PageRequest, Problem> {
        let after = match cursor {
            None => None,
            Some(c) => {
                let key = self.key().await?;
                Some(Cursor(Self::open(key, list, c).ok_or_else(|| {
                    Problem::new(
                        Kind::InvalidCursor,
                        "the cursor is not one this server issued for this list; start again without one",
                    )
                })?))
            }
        };
        PageRequest::new(limit, after).map_err(|e| Problem::new(Kind::InvalidQuery, e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEY: &[u8] = b"test key";

    #[test]
    fn a_sealed_cursor_opens_only_for_its_list_and_key() {
        let id = Uuid::now_v7();
        let c = Cursors::seal_id(KEY, "devices:t1", id);
        assert_eq!(Cursors::open(KEY, "devices:t1", &c), Some(id));
        assert_eq!(
            Cursors::open(KEY, "devices:t2", &c),
            None,
            "another tenant's list"
        );
        assert_eq!(Cursors::open(KEY, "jobs", &c), None, "another list");
        assert_eq!(Cursors::open(b"other", "devices:t1", &c), None);
        // the unsealed form the store makes is not accepted either
        assert_eq!(Cursors::open(KEY, "devices:t1", &Cursor(id).encode()), None);
    }

    #[tokio::test]
    async fn pages_are_sealed_and_opened() {
        let c = Cursors::with_key(KEY);
        let id = Uuid::now_v7();
        let page = Page::from_fetched(vec![id, Uuid::now_v7()], 1, |u| *u);
        let sealed = c.seal("tenants", page).await.unwrap();
        let next = sealed.page_info.next_cursor.unwrap();
        let req = c
            .page_request("tenants", Some(1), Some(&next))
            .await
            .unwrap();
        assert_eq!(req.after, Some(Cursor(id)));
        assert!(c.page_request("devices", None, Some(&next)).await.is_err());
    }

    proptest! {
        #[test]
        fn any_changed_character_is_refused(pos in 0usize..44, with in proptest::sample::select(
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".to_vec()))
        {
            let id = Uuid::now_v7();
            let c = Cursors::seal_id(KEY, "tenants", id);
            let mut bytes = c.clone().into_bytes();
            let pos = pos % bytes.len();
            prop_assume!(bytes[pos] != with);
            bytes[pos] = with;
            let forged = String::from_utf8(bytes).unwrap();
            // the last character carries 2 unused bits: changing only those decodes the same
            let same = URL_SAFE_NO_PAD.decode(&forged).ok() == URL_SAFE_NO_PAD.decode(&c).ok();
            prop_assert!(same || Cursors::open(KEY, "tenants", &forged).is_none());
        }
    }
}
