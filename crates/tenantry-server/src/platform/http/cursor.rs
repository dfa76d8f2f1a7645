//! Tamper-evident pagination cursors. The store pages by "after this id"; what clients see is
//! that position sealed with an HMAC-SHA256 under a key every instance shares (made once and kept
//! in the database: `platform_secrets`), bound to the list it came from. A changed character, a
//! made-up cursor or one from another list (another tenant's included) is `400 invalid_cursor`.

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

#[derive(Clone)]
pub struct Cursors {
    key: Vec<u8>,
}

impl Cursors {
    pub fn new(key: Vec<u8>) -> Self {
        Self { key }
    }

    /// The instance-wide key: the stored one, or a fresh random one stored now.
    pub async fn load(store: &dyn tenantry_store::Store) -> tenantry_store::StoreResult<Self> {
        let candidate: [u8; 32] = rand::random();
        Ok(Self::new(
            store
                .secrets()
                .get_or_create(SECRET_NAME, &candidate)
                .await?,
        ))
    }

    fn mac(&self, list: &str, id: &Uuid) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(b"tenantry-cursor\0");
        mac.update(list.as_bytes());
        mac.update(b"\0");
        mac.update(id.as_bytes());
        mac
    }

    fn seal_id(&self, list: &str, id: Uuid) -> String {
        let tag = self.mac(list, &id).finalize().into_bytes();
        let mut bytes = Vec::with_capacity(SEALED_BYTES);
        bytes.push(VERSION);
        bytes.extend_from_slice(id.as_bytes());
        bytes.extend_from_slice(&tag[..TAG_BYTES]);
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn open(&self, list: &str, sealed: &str) -> Option<Uuid> {
        let bytes = URL_SAFE_NO_PAD.decode(sealed).ok()?;
        if bytes.len() != SEALED_BYTES || bytes[0] != VERSION {
            return None;
        }
        let id = Uuid::from_slice(&bytes[1..17]).ok()?;
        self.mac(list, &id)
            .verify_truncated_left(&bytes[17..])
            .ok()
            .map(|()| id)
    }

    /// The page's `next_cursor`, sealed for `list`.
    pub fn seal<T>(&self, list: &str, mut page: Page<T>) -> Page<T> {
        page.page_info.next_cursor = page
            .page_info
            .next_cursor
            .take()
            .and_then(|raw| Cursor::decode(&raw).ok())
            .map(|c| self.seal_id(list, c.0));
        page
    }

    /// `?limit=&cursor=` of `list`: the cursor must be one this server sealed for this list.
    pub fn page_request(
        &self,
        list: &str,
        limit: Option<u32>,
        cursor: Option<&str>,
    ) -> Result<PageRequest, Problem> {
        let after = match cursor {
            None => None,
            Some(c) => Some(Cursor(self.open(list, c).ok_or_else(|| {
                Problem::new(
                    Kind::InvalidCursor,
                    "the cursor is not one this server issued for this list; start again without one",
                )
            })?)),
        };
        PageRequest::new(limit, after).map_err(|e| Problem::new(Kind::InvalidQuery, e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cursors() -> Cursors {
        Cursors::new(b"test key".to_vec())
    }

    #[test]
    fn a_sealed_cursor_opens_only_for_its_list_and_key() {
        let id = Uuid::now_v7();
        let c = cursors().seal_id("devices:t1", id);
        assert_eq!(cursors().open("devices:t1", &c), Some(id));
        assert_eq!(
            cursors().open("devices:t2", &c),
            None,
            "another tenant's list"
        );
        assert_eq!(cursors().open("jobs", &c), None, "another list");
        assert_eq!(Cursors::new(b"other".to_vec()).open("devices:t1", &c), None);
        // the unsealed form the store makes is not accepted either
        assert_eq!(cursors().open("devices:t1", &Cursor(id).encode()), None);
    }

    proptest! {
        #[test]
        fn any_changed_character_is_refused(pos in 0usize..44, with in proptest::sample::select(
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".to_vec()))
        {
            let id = Uuid::now_v7();
            let c = cursors().seal_id("tenants", id);
            let mut bytes = c.clone().into_bytes();
            let pos = pos % bytes.len();
            prop_assume!(bytes[pos] != with);
            bytes[pos] = with;
            let forged = String::from_utf8(bytes).unwrap();
            // the last character carries 2 unused bits: changing only those decodes the same
            let same = URL_SAFE_NO_PAD.decode(&forged).ok() == URL_SAFE_NO_PAD.decode(&c).ok();
            prop_assert!(same || cursors().open("tenants", &forged).is_none());
        }
    }
}
