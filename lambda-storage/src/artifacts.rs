//! Archives, build logs and docs.

use crate::backend::Inner;
use crate::error::{Error, Result};
use bytes::{Bytes, BytesMut};
use futures::stream::{BoxStream, StreamExt, TryStreamExt};
use lambda_core::LambdaId;
use lambda_core::api::{ArchiveInfo, VersionRecord};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload, WriteMultipart};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Below this size an archive is written with one PUT; above it, as a multipart upload.
const MULTIPART_THRESHOLD: usize = 8 * 1024 * 1024;

/// Which docs file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DocKind {
    /// `docs/lambda.html`
    Html,
    /// `docs/lambda.yml`
    Yaml,
}

impl DocKind {
    fn file(self) -> &'static str {
        match self {
            Self::Html => "lambda.html",
            Self::Yaml => "lambda.yml",
        }
    }
}

/// What is stored of one version.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VersionFiles {
    /// `archive.zip`
    pub archive: bool,
    /// `artifact.json` (what its build produced, still kept)
    pub artifact: bool,
    /// `version.json`
    pub record: bool,
    /// Bytes of all its objects.
    pub bytes: u64,
}

impl VersionFiles {
    /// Counts one object of the version (`file`: its first part after `v<N>/`).
    fn note(&mut self, file: Option<&object_store::path::PathPart<'_>>, size: u64) {
        self.bytes += size;
        match file.map(|p| p.as_ref()) {
            Some("archive.zip") => self.archive = true,
            Some("artifact.json") => self.artifact = true,
            Some("version.json") => self.record = true,
            _ => {}
        }
    }
}

/// `v<N>` → `N`.
fn version_part(part: &object_store::path::PathPart<'_>) -> Option<u64> {
    part.as_ref().strip_prefix('v')?.parse().ok()
}

fn system_time(unix_secs: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(unix_secs.max(0) as u64)
}

/// What is stored under `lambdas/` ([`ArtifactStore::inventory`]).
#[derive(Debug, Clone, Default)]
pub struct Inventory {
    /// Each lambda with stored versions.
    pub lambdas: BTreeMap<LambdaId, StoredLambda>,
    /// Objects under `lambdas/` outside any `<id>/v<N>/` folder.
    pub strays: Vec<StoredObject>,
    /// Objects the listing returned.
    pub listed: usize,
}

/// What is stored of one lambda.
#[derive(Debug, Clone)]
pub struct StoredLambda {
    /// Its versions.
    pub versions: BTreeMap<u64, VersionFiles>,
    /// The keys of each version's objects.
    pub keys: BTreeMap<u64, Vec<String>>,
    /// Bytes of all its objects.
    pub bytes: u64,
    /// When its newest object was written.
    pub newest: SystemTime,
}

/// One stored object.
#[derive(Debug, Clone)]
pub struct StoredObject {
    /// Its full key.
    pub key: String,
    /// Its size.
    pub bytes: u64,
    /// When it was written.
    pub modified: SystemTime,
}

/// Archives, build logs and docs of every lambda version (see the crate docs for the keys).
#[derive(Debug, Clone)]
pub struct ArtifactStore {
    pub(crate) inner: Arc<Inner>,
}

impl ArtifactStore {
    fn version_key(&self, id: &LambdaId, version: u64, file: &[&str]) -> Path {
        let id = id.to_string();
        let v = format!("v{version}");
        let mut parts = vec!["lambdas", id.as_str(), v.as_str()];
        parts.extend_from_slice(file);
        self.inner.key(&parts)
    }

    /// The key prefix of one version's objects (for reports).
    pub fn version_prefix(&self, id: &LambdaId, version: u64) -> String {
        self.inner
            .key(&["lambdas", &id.to_string(), &format!("v{version}")])
            .to_string()
    }

    /// The key prefix of a lambda's objects (for reports).
    pub fn lambda_prefix(&self, id: &LambdaId) -> String {
        self.inner.key(&["lambdas", &id.to_string()]).to_string()
    }

    /// The key of an archive (for logs and errors).
    pub fn archive_key(&self, id: &LambdaId, version: u64) -> String {
        self.version_key(id, version, &["archive.zip"]).to_string()
    }

    /// Stores an archive from a stream, hashing as it goes; returns its size and sha256.
    /// Small archives take one PUT, large ones a multipart upload that is aborted on any error,
    /// so a failed upload leaves nothing behind. Overwrites an existing archive of that version.
    pub async fn put_archive<S>(
        &self,
        id: &LambdaId,
        version: u64,
        mut stream: S,
    ) -> Result<ArchiveInfo>
    where
        S: futures::Stream<Item = std::io::Result<Bytes>> + Unpin + Send,
    {
        let key = self.version_key(id, version, &["archive.zip"]);
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let mut head = BytesMut::new();
        while head.len() < MULTIPART_THRESHOLD {
            match stream.next().await {
                Some(Ok(chunk)) => {
                    hasher.update(&chunk);
                    size += chunk.len() as u64;
                    head.extend_from_slice(&chunk);
                }
                Some(Err(source)) => return Err(Error::Input { source }),
                None => {
                    self.put(&key, head.freeze()).await?;
                    return Ok(ArchiveInfo::from_digest(size, &hasher.finalize()));
                }
            }
        }
        let upload = self
            .inner
            .store
            .put_multipart(&key)
            .await
            .map_err(|e| Error::backend(&key, e))?;
        let mut w = WriteMultipart::new(upload);
        w.put(head.freeze());
        loop {
            match stream.next().await {
                Some(Ok(chunk)) => {
                    hasher.update(&chunk);
                    size += chunk.len() as u64;
                    if let Err(e) = w.wait_for_capacity(4).await {
                        return Err(Error::backend(&key, e));
                    }
                    w.put(chunk);
                }
                Some(Err(source)) => {
                    let _ = w.abort().await;
                    return Err(Error::Input { source });
                }
                None => break,
            }
        }
        w.finish().await.map_err(|e| Error::backend(&key, e))?;
        Ok(ArchiveInfo::from_digest(size, &hasher.finalize()))
    }

    /// Stores an archive held in memory.
    pub async fn put_archive_bytes(
        &self,
        id: &LambdaId,
        version: u64,
        bytes: Bytes,
    ) -> Result<ArchiveInfo> {
        self.put_archive(id, version, futures::stream::iter([Ok(bytes)]))
            .await
    }

    /// Streams a stored archive, checking it against `expected` as it goes: the stream ends with
    /// [`Error::Corrupt`] when the size or sha256 differ, and [`Error::NotFound`] is returned when
    /// the archive is gone.
    pub async fn open_archive(
        &self,
        id: &LambdaId,
        version: u64,
        expected: &ArchiveInfo,
    ) -> Result<BoxStream<'static, Result<Bytes>>> {
        let key = self.version_key(id, version, &["archive.zip"]);
        let got = self
            .inner
            .store
            .get(&key)
            .await
            .map_err(|e| Error::backend(&key, e))?;
        let expected = expected.clone();
        let key_s = key.to_string();
        let state = (Sha256::new(), 0u64);
        let body = got.into_stream().map_err({
            let key = key.clone();
            move |e| Error::backend(&key, e)
        });
        let checked = futures::stream::unfold((body, Some(state)), move |(mut body, state)| {
            let expected = expected.clone();
            let key_s = key_s.clone();
            async move {
                let (mut hasher, mut size) = state?;
                match body.next().await {
                    Some(Ok(chunk)) => {
                        hasher.update(&chunk);
                        size += chunk.len() as u64;
                        if size > expected.size {
                            let err = Error::Corrupt {
                                path: key_s,
                                detail: format!("larger than the recorded {} bytes", expected.size),
                            };
                            return Some((Err(err), (body, None)));
                        }
                        Some((Ok(chunk), (body, Some((hasher, size)))))
                    }
                    Some(Err(e)) => Some((Err(e), (body, None))),
                    None => {
                        let got = ArchiveInfo::from_digest(size, &hasher.finalize());
                        if got != expected {
                            let err = Error::Corrupt {
                                path: key_s,
                                detail: format!(
                                    "{size} bytes with sha256 {}, but {} bytes with sha256 {} were recorded",
                                    got.sha256, expected.size, expected.sha256
                                ),
                            };
                            Some((Err(err), (body, None)))
                        } else {
                            None
                        }
                    }
                }
            }
        });
        Ok(checked.boxed())
    }

    /// Reads a whole stored archive (checked like [`Self::open_archive`]).
    pub async fn read_archive(
        &self,
        id: &LambdaId,
        version: u64,
        expected: &ArchiveInfo,
    ) -> Result<Bytes> {
        let mut stream = self.open_archive(id, version, expected).await?;
        let mut buf = BytesMut::with_capacity(expected.size as usize);
        while let Some(chunk) = stream.next().await {
            buf.extend_from_slice(&chunk?);
        }
        Ok(buf.freeze())
    }

    /// Stores the build log of a version (replacing any earlier one).
    pub async fn put_build_log(&self, id: &LambdaId, version: u64, log: Bytes) -> Result<()> {
        self.put(&self.version_key(id, version, &["build.log"]), log)
            .await
    }

    /// The build log of a version.
    pub async fn get_build_log(&self, id: &LambdaId, version: u64) -> Result<Bytes> {
        self.get(self.version_key(id, version, &["build.log"]))
            .await
    }

    /// Records what the build of a version produced (so a restart can deploy it again
    /// without rebuilding).
    pub async fn put_artifact(
        &self,
        id: &LambdaId,
        version: u64,
        artifact: &lambda_core::Artifact,
    ) -> Result<()> {
        let key = self.version_key(id, version, &["artifact.json"]);
        let body = serde_json::to_vec(artifact).map_err(|e| Error::Corrupt {
            path: key.to_string(),
            detail: e.to_string(),
        })?;
        self.put(&key, Bytes::from(body)).await
    }

    /// What the build of a version produced.
    pub async fn get_artifact(&self, id: &LambdaId, version: u64) -> Result<lambda_core::Artifact> {
        let key = self.version_key(id, version, &["artifact.json"]);
        let bytes = self.get(key.clone()).await?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
            path: key.to_string(),
            detail: e.to_string(),
        })
    }

    /// Stores the docs of a version.
    pub async fn put_docs(
        &self,
        id: &LambdaId,
        version: u64,
        html: Bytes,
        yaml: Bytes,
    ) -> Result<()> {
        for (kind, body) in [(DocKind::Html, html), (DocKind::Yaml, yaml)] {
            self.put(&self.version_key(id, version, &["docs", kind.file()]), body)
                .await?;
        }
        Ok(())
    }

    /// One docs file of a version.
    pub async fn get_doc(&self, id: &LambdaId, version: u64, kind: DocKind) -> Result<Bytes> {
        self.get(self.version_key(id, version, &["docs", kind.file()]))
            .await
    }

    async fn put(&self, key: &Path, body: Bytes) -> Result<()> {
        self.inner
            .store
            .put(key, PutPayload::from(body))
            .await
            .map(|_| ())
            .map_err(|e| Error::backend(key, e))
    }

    async fn get(&self, key: Path) -> Result<Bytes> {
        let got = self
            .inner
            .store
            .get(&key)
            .await
            .map_err(|e| Error::backend(&key, e))?;
        got.bytes().await.map_err(|e| Error::backend(&key, e))
    }

    /// Records what a version is made of (`v<N>/version.json`).
    pub async fn put_version(&self, id: &LambdaId, meta: &VersionRecord) -> Result<()> {
        let key = self.version_key(id, meta.version, &["version.json"]);
        let body = serde_json::to_vec(meta).map_err(|e| Error::Corrupt {
            path: key.to_string(),
            detail: e.to_string(),
        })?;
        self.put(&key, Bytes::from(body)).await
    }

    /// What a version is made of.
    pub async fn get_version(&self, id: &LambdaId, version: u64) -> Result<VersionRecord> {
        let key = self.version_key(id, version, &["version.json"]);
        let bytes = self.get(key.clone()).await?;
        serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
            path: key.to_string(),
            detail: e.to_string(),
        })
    }

    /// Every stored version of a lambda with what is stored of it, oldest first.
    pub async fn versions(&self, id: &LambdaId) -> Result<BTreeMap<u64, VersionFiles>> {
        let prefix = self.inner.key(&["lambdas", &id.to_string()]);
        let depth = prefix.parts().count();
        let mut out: BTreeMap<u64, VersionFiles> = BTreeMap::new();
        for m in self.inner.list_all(&prefix).await? {
            let mut parts = m.location.parts().skip(depth);
            let Some(v) = parts.next().as_ref().and_then(version_part) else {
                continue;
            };
            out.entry(v)
                .or_default()
                .note(parts.next().as_ref(), m.size);
        }
        Ok(out)
    }

    /// Everything stored under `lambdas/`, from one listing: each lambda's versions, and the
    /// objects that are in no version folder of a lambda (the garbage collector's view).
    pub async fn inventory(&self) -> Result<Inventory> {
        let prefix = self.inner.key(&["lambdas"]);
        let depth = prefix.parts().count();
        let metas = self.inner.list_all(&prefix).await?;
        let mut out = Inventory {
            listed: metas.len(),
            ..Inventory::default()
        };
        for m in metas {
            let modified = system_time(m.last_modified.timestamp());
            let mut parts = m.location.parts().skip(depth);
            let id = parts
                .next()
                .and_then(|p| p.as_ref().parse::<LambdaId>().ok());
            let version = parts.next().as_ref().and_then(version_part);
            let (Some(id), Some(v)) = (id, version) else {
                out.strays.push(StoredObject {
                    key: m.location.to_string(),
                    bytes: m.size,
                    modified,
                });
                continue;
            };
            let lambda = out.lambdas.entry(id).or_insert_with(|| StoredLambda {
                versions: BTreeMap::new(),
                keys: BTreeMap::new(),
                bytes: 0,
                newest: modified,
            });
            lambda.bytes += m.size;
            lambda.newest = lambda.newest.max(modified);
            lambda
                .versions
                .entry(v)
                .or_default()
                .note(parts.next().as_ref(), m.size);
            lambda
                .keys
                .entry(v)
                .or_default()
                .push(m.location.to_string());
        }
        Ok(out)
    }

    /// Deletes objects by their full keys, in bulk where the backend can (the collector's
    /// removals, keys from [`ArtifactStore::inventory`]). Returns the keys that are gone (missing
    /// ones count) and the failures.
    pub async fn delete_keys(&self, keys: &[String]) -> (BTreeSet<String>, Vec<Error>) {
        let mut paths = Vec::with_capacity(keys.len());
        let mut failed = Vec::new();
        for key in keys {
            match Path::parse(key) {
                Ok(p) => paths.push(p),
                Err(e) => failed.push(Error::Corrupt {
                    path: key.clone(),
                    detail: e.to_string(),
                }),
            }
        }
        let (deleted, errors) = self.inner.delete_many(paths).await;
        failed.extend(errors);
        (deleted.iter().map(|p| p.to_string()).collect(), failed)
    }

    /// Copies a version's archive and docs to a new version (a rollback's new version).
    pub async fn copy_version(&self, id: &LambdaId, from: u64, to: u64) -> Result<()> {
        let v = format!("v{from}");
        let source = self.inner.key(&["lambdas", &id.to_string(), &v]);
        let depth = source.parts().count();
        for m in self.inner.list_all(&source).await? {
            let rest: Vec<String> = m
                .location
                .parts()
                .skip(depth)
                .map(|p| p.as_ref().to_owned())
                .collect();
            let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
            if !matches!(rest.first(), Some(&"archive.zip") | Some(&"docs")) {
                continue;
            }
            let target = self.version_key(id, to, &rest);
            self.inner
                .store
                .copy(&m.location, &target)
                .await
                .map_err(|e| Error::backend(&target, e))?;
        }
        Ok(())
    }

    /// Forgets what the build of a version produced (its artifact was removed).
    pub async fn delete_artifact(&self, id: &LambdaId, version: u64) -> Result<()> {
        let key = self.version_key(id, version, &["artifact.json"]);
        match self.inner.store.delete(&key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(Error::backend(&key, e)),
        }
    }

    /// Deletes every object of one version (archive, log, docs).
    pub async fn delete_version(&self, id: &LambdaId, version: u64) -> Result<usize> {
        let v = format!("v{version}");
        self.inner
            .delete_prefix(self.inner.key(&["lambdas", &id.to_string(), &v]))
            .await
    }

    /// Deletes every object of a lambda; returns how many were deleted.
    pub async fn delete_lambda(&self, id: &LambdaId) -> Result<usize> {
        self.inner
            .delete_prefix(self.inner.key(&["lambdas", &id.to_string()]))
            .await
    }

    /// Every lambda id that has artifacts, with the time its newest object was written.
    pub async fn lambda_ids(&self) -> Result<Vec<(LambdaId, SystemTime)>> {
        Ok(self
            .inventory()
            .await?
            .lambdas
            .into_iter()
            .map(|(id, l)| (id, l.newest))
            .collect())
    }
}
