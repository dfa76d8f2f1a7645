//! Cursor pagination. A cursor is opaque to clients: it encodes the id of the last item seen
//! (ids are time-ordered UUIDv7, so "after this id" is a stable position even while items are
//! added).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use uuid::Uuid;

pub const DEFAULT_LIMIT: u32 = 50;
pub const MAX_LIMIT: u32 = 200;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cursor(pub Uuid);

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the cursor is not one this server issued")]
pub struct CursorError;

const CURSOR_VERSION: &str = "c1:";

impl Cursor {
    pub fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(format!("{CURSOR_VERSION}{}", self.0.simple()))
    }

    pub fn decode(s: &str) -> Result<Self, CursorError> {
        let bytes = URL_SAFE_NO_PAD.decode(s).map_err(|_| CursorError)?;
        let text = std::str::from_utf8(&bytes).map_err(|_| CursorError)?;
        let id = text.strip_prefix(CURSOR_VERSION).ok_or(CursorError)?;
        Uuid::try_parse(id).map(Self).map_err(|_| CursorError)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: u32,
    pub after: Option<Cursor>,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("limit must be between 1 and {MAX_LIMIT}")]
pub struct LimitError;

impl PageRequest {
    pub fn new(limit: Option<u32>, after: Option<Cursor>) -> Result<Self, LimitError> {
        let limit = limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(LimitError);
        }
        Ok(Self { limit, after })
    }

    pub fn first(limit: u32) -> Self {
        Self {
            limit: limit.clamp(1, MAX_LIMIT),
            after: None,
        }
    }
}

impl Default for PageRequest {
    fn default() -> Self {
        Self::first(DEFAULT_LIMIT)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PageInfo {
    pub next_cursor: Option<String>,
    pub has_next_page: bool,
    pub count: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub page_info: PageInfo,
}

impl<T> Page<T> {
    /// Builds a page from up to `limit + 1` fetched rows: the extra row only tells that there is
    /// a next page.
    pub fn from_fetched(mut rows: Vec<T>, limit: u32, id_of: impl Fn(&T) -> Uuid) -> Self {
        let has_next_page = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let next_cursor = if has_next_page {
            rows.last().map(|r| Cursor(id_of(r)).encode())
        } else {
            None
        };
        Page {
            page_info: PageInfo {
                next_cursor,
                has_next_page,
                count: rows.len(),
            },
            items: rows,
        }
    }

    pub fn map<U>(self, f: impl FnMut(T) -> U) -> Page<U> {
        Page {
            items: self.items.into_iter().map(f).collect(),
            page_info: self.page_info,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn limits() {
        assert_eq!(PageRequest::new(None, None).unwrap().limit, DEFAULT_LIMIT);
        assert!(PageRequest::new(Some(0), None).is_err());
        assert!(PageRequest::new(Some(MAX_LIMIT + 1), None).is_err());
    }

    #[test]
    fn page_from_fetched() {
        let ids: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
        let p = Page::from_fetched(ids.clone(), 2, |u| *u);
        assert!(p.page_info.has_next_page);
        assert_eq!(p.page_info.count, 2);
        assert_eq!(
            Cursor::decode(p.page_info.next_cursor.as_deref().unwrap())
                .unwrap()
                .0,
            ids[1]
        );
        let last = Page::from_fetched(ids, 3, |u| *u);
        assert!(!last.page_info.has_next_page && last.page_info.next_cursor.is_none());
    }

    #[test]
    fn garbage_cursors_are_rejected() {
        for bad in ["", "!!", "YWJj", &URL_SAFE_NO_PAD.encode("c1:not-a-uuid")] {
            assert!(Cursor::decode(bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn cursor_round_trips(bytes in any::<[u8; 16]>()) {
            let c = Cursor(Uuid::from_bytes(bytes));
            prop_assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        }

        #[test]
        fn decode_never_panics(s in "\\PC{0,80}") {
            let _ = Cursor::decode(&s);
        }
    }
}
