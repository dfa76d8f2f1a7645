//! The blob store port: named byte objects under `/`-separated keys, for archives (telemetry's
//! monthly NDJSON files and their manifests). Two adapters, both through the `object_store`
//! crate (Apache Arrow): a local directory (the default, under the data directory) and any
//! S3-compatible service. `conformance` holds the cases every adapter passes.

pub mod conformance;

use std::sync::Arc;

use async_trait::async_trait;
use futures_util::TryStreamExt;
use object_store::ObjectStore;
use object_store::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error(
        "invalid blob key '{0}': letters, digits, '-', '_', '.' and '/'-separated segments only"
    )]
    InvalidKey(String),
    #[error("invalid blob store location '{0}': {1}")]
    InvalidLocation(String, String),
    #[error("blob store: {0}")]
    Backend(String),
}

pub type BlobResult<T> = Result<T, BlobError>;

#[async_trait]
pub trait BlobStore: Send + Sync {
    /// Where the objects live (`file:///…`, `s3://bucket/prefix`), for logs and answers.
    fn location(&self) -> String;
    /// Writes (or replaces) an object whole: readers see the old or the new one, never a part.
    async fn put(&self, key: &str, bytes: Vec<u8>) -> BlobResult<()>;
    /// An object's bytes, `None` when there is none.
    async fn get(&self, key: &str) -> BlobResult<Option<Vec<u8>>>;
    /// Keys under `prefix` (a key prefix ending in `/`, or empty for all), sorted.
    async fn list(&self, prefix: &str) -> BlobResult<Vec<String>>;
    /// Removes an object; removing one that is not there is not an error.
    async fn delete(&self, key: &str) -> BlobResult<()>;
}

/// A key: non-empty segments of `[A-Za-z0-9._-]`, none `.` or `..`, separated by `/`.
pub fn check_key(key: &str) -> BlobResult<Path> {
    let ok = !key.is_empty()
        && key.len() <= 1024
        && key.split('/').all(|s| {
            !s.is_empty()
                && s != "."
                && s != ".."
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        });
    if ok {
        Ok(Path::from(key))
    } else {
        Err(BlobError::InvalidKey(key.to_owned()))
    }
}

fn backend(e: object_store::Error) -> BlobError {
    BlobError::Backend(e.to_string())
}

/// Settings of an S3 store that win over the environment's.
#[derive(Clone, Debug, Default)]
pub struct S3Overrides {
    /// The service's URL (an S3-compatible server); `http://` allows plain HTTP.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// Access key id and secret.
    pub credentials: Option<(String, String)>,
}

/// Either adapter: `object_store` does the I/O.
pub struct ObjectBlobs {
    inner: Arc<dyn ObjectStore>,
    location: String,
}

impl ObjectBlobs {
    /// A directory on the local file system (created if missing).
    pub fn local(dir: &std::path::Path) -> BlobResult<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|e| BlobError::InvalidLocation(dir.display().to_string(), e.to_string()))?;
        let store = object_store::local::LocalFileSystem::new_with_prefix(dir)
            .map_err(|e| BlobError::InvalidLocation(dir.display().to_string(), e.to_string()))?;
        Ok(Self {
            inner: Arc::new(store),
            location: format!("file://{}", dir.display()),
        })
    }

    /// `s3://bucket[/prefix]`, with the credentials, region and endpoint of the standard AWS
    /// environment variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`,
    /// `AWS_ENDPOINT` for an S3-compatible service, `AWS_ALLOW_HTTP=true` for plain HTTP).
    pub fn s3(url: &str) -> BlobResult<Self> {
        Self::s3_with(url, &S3Overrides::default())
    }

    /// `s3://…` with explicit settings over the environment's (tests, and services with their
    /// own endpoint).
    pub fn s3_with(url: &str, o: &S3Overrides) -> BlobResult<Self> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| BlobError::InvalidLocation(url.to_owned(), "not s3://…".into()))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(BlobError::InvalidLocation(
                url.to_owned(),
                "no bucket".into(),
            ));
        }
        let mut builder = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
        if let Some(e) = &o.endpoint {
            builder = builder
                .with_endpoint(e)
                .with_allow_http(e.starts_with("http://"));
        }
        if let Some(r) = &o.region {
            builder = builder.with_region(r);
        }
        if let Some((id, secret)) = &o.credentials {
            builder = builder
                .with_access_key_id(id)
                .with_secret_access_key(secret);
        }
        let store = builder
            .build()
            .map_err(|e| BlobError::InvalidLocation(url.to_owned(), e.to_string()))?;
        let inner: Arc<dyn ObjectStore> = if prefix.trim_matches('/').is_empty() {
            Arc::new(store)
        } else {
            Arc::new(object_store::prefix::PrefixStore::new(
                store,
                prefix.trim_matches('/'),
            ))
        };
        Ok(Self {
            inner,
            location: url.to_owned(),
        })
    }

    /// `file://…` or a plain path: local; `s3://…`: S3.
    pub fn open(location: &str) -> BlobResult<Self> {
        if location.starts_with("s3://") {
            Self::s3(location)
        } else {
            let path = location.strip_prefix("file://").unwrap_or(location);
            Self::local(std::path::Path::new(path))
        }
    }
}

#[async_trait]
impl BlobStore for ObjectBlobs {
    fn location(&self) -> String {
        self.location.clone()
    }

    async fn put(&self, key: &str, bytes: Vec<u8>) -> BlobResult<()> {
        let path = check_key(key)?;
        self.inner
            .put(&path, bytes.into())
            .await
            .map(|_| ())
            .map_err(backend)
    }

    async fn get(&self, key: &str) -> BlobResult<Option<Vec<u8>>> {
        let path = check_key(key)?;
        match self.inner.get(&path).await {
            Ok(r) => Ok(Some(r.bytes().await.map_err(backend)?.to_vec())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(backend(e)),
        }
    }

    async fn list(&self, prefix: &str) -> BlobResult<Vec<String>> {
        let trimmed = prefix.trim_end_matches('/');
        let path = if trimmed.is_empty() {
            None
        } else {
            Some(check_key(trimmed)?)
        };
        let mut keys: Vec<String> = self
            .inner
            .list(path.as_ref())
            .map_ok(|m| m.location.to_string())
            .try_collect()
            .await
            .map_err(backend)?;
        keys.sort();
        Ok(keys)
    }

    async fn delete(&self, key: &str) -> BlobResult<()> {
        let path = check_key(key)?;
        match self.inner.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(backend(e)),
        }
    }
}
