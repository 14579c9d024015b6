//! Backend selection by URL and the shared handle.

use crate::error::{Error, Result, UnavailableKind};
use crate::{ArtifactStore, LambdaRepository};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, UpdateVersion};
use serde::{Serialize, de::DeserializeOwned};
use std::sync::Arc;
use std::time::Duration;

/// S3 settings (the `[s3]` section of the server configuration).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Options {
    /// Endpoint URL, e.g. `http://127.0.0.1:9001`; `None` means AWS.
    pub endpoint: Option<String>,
    /// Region (default `us-east-1`).
    pub region: String,
    /// Access key id (required: the platform never falls back to instance metadata).
    pub access_key_id: Option<String>,
    /// Secret access key (required).
    pub secret_access_key: Option<String>,
    /// Allow plain HTTP endpoints.
    pub allow_http: bool,
    /// The server honours `If-Match` / `If-None-Match` on PUT (AWS, MinIO, R2 do). When false,
    /// writes are serialised in-process and the store serves one server process only.
    pub conditional_put: bool,
    /// Timeout of one request (default 30 s).
    pub request_timeout: Duration,
    /// Retries of a failed request (default 3).
    pub max_retries: usize,
}

impl Default for S3Options {
    fn default() -> Self {
        Self {
            endpoint: None,
            region: "us-east-1".into(),
            access_key_id: None,
            secret_access_key: None,
            allow_http: false,
            conditional_put: true,
            request_timeout: Duration::from_secs(30),
            max_retries: 3,
        }
    }
}

/// Where and how to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageConfig {
    /// `memory://`, `file:///abs/path` or `s3://bucket`.
    pub url: String,
    /// Key prefix inside the store (e.g. `luna-lambda`); empty for none.
    pub prefix: String,
    /// Used when the URL is `s3://`.
    pub s3: S3Options,
}

impl StorageConfig {
    /// A config for a URL with no prefix and default S3 options.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            prefix: String::new(),
            s3: S3Options::default(),
        }
    }
}

/// How compare-and-swap is done on this backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CasMode {
    /// Conditional puts on e-tags: safe across processes.
    Conditional,
    /// An in-process lock around read-compare-write: one process only.
    Serialized,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) prefix: Path,
    pub(crate) cas: CasMode,
    pub(crate) backend: String,
    pub(crate) lock: tokio::sync::Mutex<()>,
}

impl Inner {
    /// Every object under `prefix`.
    pub(crate) async fn list_all(
        &self,
        prefix: &Path,
    ) -> crate::Result<Vec<object_store::ObjectMeta>> {
        use futures::TryStreamExt;
        self.store
            .list(Some(prefix))
            .try_collect()
            .await
            .map_err(|e| Error::backend(prefix, e))
    }

    /// `prefix/part/part/...`
    pub(crate) async fn serial_guard(&self) -> Option<tokio::sync::MutexGuard<'_, ()>> {
        match self.cas {
            CasMode::Serialized => Some(self.lock.lock().await),
            CasMode::Conditional => None,
        }
    }

    pub(crate) async fn read<T: DeserializeOwned>(
        &self,
        key: &Path,
    ) -> Result<Option<(T, UpdateVersion)>> {
        let got = match self.store.get(key).await {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(Error::backend(key, e)),
        };
        let version = UpdateVersion {
            e_tag: got.meta.e_tag.clone(),
            version: got.meta.version.clone(),
        };
        let bytes = got.bytes().await.map_err(|e| Error::backend(key, e))?;
        let value = serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
            path: key.to_string(),
            detail: format!("not a valid document: {e}"),
        })?;
        Ok(Some((value, version)))
    }

    /// Writes a document. `mode` is honoured on conditional backends; on serialised ones the
    /// caller holds the lock and has checked the precondition, so the write overwrites.
    /// Returns false when the precondition failed (already exists / changed since read).
    pub(crate) async fn write<T: Serialize>(
        &self,
        key: &Path,
        value: &T,
        mode: PutMode,
    ) -> Result<bool> {
        let body = serde_json::to_vec(value).map_err(|e| Error::Corrupt {
            path: key.to_string(),
            detail: format!("cannot encode: {e}"),
        })?;
        let mode = match self.cas {
            CasMode::Conditional => mode,
            CasMode::Serialized => PutMode::Overwrite,
        };
        let opts = PutOptions {
            mode,
            ..Default::default()
        };
        match self.store.put_opts(key, PutPayload::from(body), opts).await {
            Ok(_) => Ok(true),
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => Ok(false),
            Err(e) => Err(Error::backend(key, e)),
        }
    }

    pub(crate) async fn exists(&self, key: &Path) -> Result<bool> {
        match self.store.head(key).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(Error::backend(key, e)),
        }
    }

    /// Deletes every object under `prefix`; returns how many there were.
    pub(crate) async fn delete_prefix(&self, prefix: Path) -> Result<usize> {
        let metas = self.list_all(&prefix).await?;
        let n = metas.len();
        let (_, failed) = self
            .delete_many(metas.into_iter().map(|m| m.location).collect())
            .await;
        match failed.into_iter().next() {
            Some(e) => Err(e),
            None => Ok(n),
        }
    }

    /// Deletes many objects, in bulk where the backend can (S3 `DeleteObjects`, 1,000 keys a
    /// request); missing objects count as deleted. Returns the deleted keys and the failures.
    pub(crate) async fn delete_many(&self, paths: Vec<Path>) -> (Vec<Path>, Vec<Error>) {
        use futures::StreamExt;
        let input = futures::stream::iter(paths.clone().into_iter().map(Ok)).boxed();
        let results: Vec<object_store::Result<Path>> =
            self.store.delete_stream(input).collect().await;
        // One result per path, in order, unless a whole batch failed with one error. A missing
        // object counts as deleted; its error names a backend path (a file's, for a folder
        // store), so the key is taken from the input when the results line up.
        let aligned = results.len() == paths.len();
        let (mut deleted, mut failed) = (Vec::new(), Vec::new());
        for (i, r) in results.into_iter().enumerate() {
            match r {
                Ok(p) => deleted.push(p),
                Err(object_store::Error::NotFound { .. }) if aligned => {
                    deleted.push(paths[i].clone())
                }
                Err(e) => failed.push(Error::backend(&self.prefix, e)),
            }
        }
        (deleted, failed)
    }

    pub(crate) fn key(&self, parts: &[&str]) -> Path {
        let mut p = self.prefix.clone();
        for part in parts {
            p = p.clone().join(*part);
        }
        p
    }
}

/// A store handle: cheap to clone; hands out the artifact store and the record repository.
#[derive(Debug, Clone)]
pub struct Storage {
    pub(crate) inner: Arc<Inner>,
}

/// Opens the store named by `config.url`. Does no I/O for memory and S3 (see
/// [`Storage::healthcheck`]); creates the folder of a `file://` store.
pub fn open(config: &StorageConfig) -> Result<Storage> {
    let url = config.url.trim();
    let (store, cas, backend): (Arc<dyn ObjectStore>, CasMode, String) = if url == "memory://"
        || url == "memory:"
    {
        (
            Arc::new(object_store::memory::InMemory::new()),
            CasMode::Conditional,
            "memory://".into(),
        )
    } else if let Some(path) = url.strip_prefix("file://") {
        if !path.starts_with('/') {
            return Err(Error::InvalidConfig(format!(
                "{url}: a file:// URL needs an absolute path, e.g. file:///var/lib/luna-lambda"
            )));
        }
        std::fs::create_dir_all(path).map_err(|e| {
            Error::InvalidConfig(format!("cannot create the storage folder {path}: {e}"))
        })?;
        let fs = object_store::local::LocalFileSystem::new_with_prefix(path)
            .map_err(|e| {
                Error::InvalidConfig(format!("cannot use the storage folder {path}: {e}"))
            })?
            // Deleting a lambda's last object removes its (now empty) folders too.
            .with_automatic_cleanup(true);
        (Arc::new(fs), CasMode::Serialized, url.to_owned())
    } else if let Some(rest) = url.strip_prefix("s3://") {
        let bucket = rest.trim_end_matches('/');
        if bucket.is_empty() || bucket.contains('/') {
            return Err(Error::InvalidConfig(format!(
                "{url}: an s3 URL names just the bucket (s3://bucket); use `prefix` for a key prefix"
            )));
        }
        let o = &config.s3;
        let (Some(key), Some(secret)) = (&o.access_key_id, &o.secret_access_key) else {
            return Err(Error::InvalidConfig(
                "s3 needs access_key_id and secret_access_key ([s3] section)".into(),
            ));
        };
        let retry = object_store::RetryConfig {
            max_retries: o.max_retries,
            retry_timeout: o.request_timeout * (o.max_retries as u32 + 1),
            ..Default::default()
        };
        let client = object_store::ClientOptions::new()
            .with_timeout(o.request_timeout)
            .with_connect_timeout(Duration::from_secs(5))
            .with_allow_http(o.allow_http);
        let mut b = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_region(&o.region)
            .with_access_key_id(key)
            .with_secret_access_key(secret)
            .with_allow_http(o.allow_http)
            .with_retry(retry)
            .with_client_options(client)
            .with_conditional_put(if o.conditional_put {
                object_store::aws::S3ConditionalPut::ETagMatch
            } else {
                object_store::aws::S3ConditionalPut::Disabled
            });
        if let Some(ep) = &o.endpoint {
            b = b.with_endpoint(ep).with_virtual_hosted_style_request(false);
        }
        let s3 = b
            .build()
            .map_err(|e| Error::InvalidConfig(format!("s3 bucket {bucket}: {e}")))?;
        let cas = if o.conditional_put {
            CasMode::Conditional
        } else {
            CasMode::Serialized
        };
        let backend = match &o.endpoint {
            Some(ep) => format!("s3://{bucket} at {ep}"),
            None => format!("s3://{bucket}"),
        };
        (Arc::new(s3), cas, backend)
    } else {
        return Err(Error::InvalidConfig(format!(
            "unknown storage URL {url:?}; use memory://, file:///path or s3://bucket"
        )));
    };
    let prefix = Path::parse(config.prefix.trim_matches('/'))
        .map_err(|e| Error::InvalidConfig(format!("prefix {:?}: {e}", config.prefix)))?;
    Ok(Storage {
        inner: Arc::new(Inner {
            store,
            prefix,
            cas,
            backend,
            lock: tokio::sync::Mutex::new(()),
        }),
    })
}

impl Storage {
    /// Wraps an existing object store (tests, embedding).
    pub fn from_store(store: Arc<dyn ObjectStore>, prefix: &str, cas: CasMode) -> Result<Storage> {
        let prefix = Path::parse(prefix.trim_matches('/'))
            .map_err(|e| Error::InvalidConfig(format!("prefix {prefix:?}: {e}")))?;
        Ok(Storage {
            inner: Arc::new(Inner {
                backend: store.to_string(),
                store,
                prefix,
                cas,
                lock: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// The archives, build logs and docs.
    pub fn artifacts(&self) -> ArtifactStore {
        ArtifactStore {
            inner: self.inner.clone(),
        }
    }

    /// The tasks of `tasks` lambdas.
    pub fn tasks(&self) -> crate::TaskStore {
        crate::TaskStore {
            inner: self.inner.clone(),
        }
    }

    /// The audit log.
    pub fn audit(&self) -> crate::AuditStore {
        crate::AuditStore {
            inner: self.inner.clone(),
        }
    }

    /// The API tokens.
    pub fn tokens(&self) -> crate::TokenStore {
        crate::TokenStore {
            inner: self.inner.clone(),
        }
    }

    /// The lambda record repository.
    pub fn records(&self) -> LambdaRepository {
        LambdaRepository {
            inner: self.inner.clone(),
        }
    }

    /// How this backend does compare-and-swap.
    pub fn cas_mode(&self) -> CasMode {
        self.inner.cas
    }

    /// The backend, for logs (never holds credentials).
    pub fn backend(&self) -> &str {
        &self.inner.backend
    }

    /// The key prefix every object of this storage lives under.
    pub fn prefix(&self) -> &Path {
        &self.inner.prefix
    }

    /// The underlying object store.
    pub fn object_store(&self) -> &Arc<dyn ObjectStore> {
        &self.inner.store
    }

    /// Lists the prefix (a read that fails on a missing bucket before anything is written, since
    /// some servers create buckets on write), then writes, reads back and deletes a probe
    /// object. Names the failure: a missing bucket, refused credentials or an unreachable endpoint.
    pub async fn healthcheck(&self) -> Result<()> {
        let key = self
            .inner
            .key(&[".healthcheck", &uuid::Uuid::new_v4().to_string()]);
        let body = b"luna-lambda-rs storage probe".as_slice();
        let classify = |e: object_store::Error| {
            let detail = error_chain(&e);
            Error::Unavailable {
                backend: self.inner.backend.clone(),
                kind: classify(&detail),
                detail,
            }
        };
        self.inner
            .store
            .list_with_delimiter(Some(&self.inner.prefix))
            .await
            .map_err(classify)?;
        self.inner
            .store
            .put(&key, PutPayload::from_static(body))
            .await
            .map_err(classify)?;
        let got = self.inner.store.get(&key).await.map_err(classify)?;
        let bytes = got.bytes().await.map_err(classify)?;
        self.inner.store.delete(&key).await.map_err(classify)?;
        if bytes.as_ref() != body {
            return Err(Error::Unavailable {
                backend: self.inner.backend.clone(),
                kind: UnavailableKind::Other,
                detail: "the probe object read back differs from what was written".into(),
            });
        }
        Ok(())
    }
}

/// The error and all its sources, joined.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

fn classify(detail: &str) -> UnavailableKind {
    let d = detail.to_ascii_lowercase();
    if d.contains("nosuchbucket")
        || d.contains("bucket does not exist")
        || d.contains("bucket not found")
    {
        UnavailableKind::BucketMissing
    } else if d.contains("signaturedoesnotmatch")
        || d.contains("invalidaccesskeyid")
        || d.contains("accessdenied")
        || d.contains("access denied")
        || d.contains("403")
    {
        UnavailableKind::Credentials
    } else if d.contains("connection refused")
        || d.contains("error sending request")
        || d.contains("dns error")
        || d.contains("timed out")
        || d.contains("connect")
    {
        UnavailableKind::Unreachable
    } else if d.contains("404") || d.contains("not found") {
        UnavailableKind::BucketMissing
    } else {
        UnavailableKind::Other
    }
}
