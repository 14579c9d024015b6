//! The little of the OCI distribution API the builders need to clean up after themselves:
//! list the platform's repositories and tags, read a tag's manifest (digest, bytes, creation
//! time) and delete a manifest. Deletion must be enabled in the registry; blobs are freed by the
//! registry's own garbage collection.

use crate::gc::{InUse, image_stays, of_known_lambda, own_image};
use crate::{Error, Result};
use lambda_core::api::GcItem;
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::Deserialize;
use std::time::{SystemTime, UNIX_EPOCH};

/// Manifest media types asked for, so the registry answers the digest it stored.
const ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// A registry the platform pushes lambda images to.
#[derive(Debug, Clone)]
pub(crate) struct Registry {
    http: reqwest::Client,
    /// `http(s)://host[:port]`
    base: String,
    /// `host[:port]`, as image references start.
    pub(crate) host: String,
    auth: Option<(String, String)>,
}

/// What a tag points at.
#[derive(Debug, Clone)]
pub(crate) struct Manifest {
    /// `sha256:...`
    pub(crate) digest: String,
    /// Bytes of the config and layers it references (of every platform, for an index).
    pub(crate) bytes: u64,
    /// The config blob, when it is an image manifest.
    config: Option<String>,
    /// Its layers' digests, bottom first.
    pub(crate) layers: Vec<String>,
}

#[derive(Deserialize)]
struct Descriptor {
    #[serde(default)]
    digest: String,
    #[serde(default)]
    size: u64,
}

#[derive(Deserialize)]
struct ManifestDoc {
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

fn unavailable(what: String) -> Error {
    Error::Unavailable(what)
}

/// Whether the registry `host` is spoken to over plain HTTP: a loopback address, or one of
/// `lambda_insecure_registries`.
pub(crate) fn plain_http(host: &str, insecure: &[String]) -> bool {
    host.starts_with("127.") || host.starts_with("localhost") || insecure.iter().any(|r| r == host)
}

impl Registry {
    /// Loopback registries and those in `insecure` are spoken to over plain HTTP.
    pub(crate) fn new(host: &str, insecure: &[String], auth: Option<(String, String)>) -> Self {
        let plain = plain_http(host, insecure);
        Self {
            http: reqwest::Client::new(),
            base: format!("{}://{host}", if plain { "http" } else { "https" }),
            host: host.to_owned(),
            auth,
        }
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let req = self
            .http
            .request(method, format!("{}/v2/{path}", self.base))
            .header(reqwest::header::ACCEPT, ACCEPT);
        match &self.auth {
            Some((u, p)) => req.basic_auth(u, Some(p)),
            None => req,
        }
    }

    /// `GET /v2/<path>`: the answer, or `None` on 404; any other failure says the URL.
    async fn get(&self, path: &str) -> Result<Option<reqwest::Response>> {
        let url = format!("{}/v2/{path}", self.base);
        let r = self
            .request(Method::GET, path)
            .send()
            .await
            .map_err(|e| unavailable(format!("GET {url}: {e}")))?;
        match r.status() {
            StatusCode::NOT_FOUND => Ok(None),
            s if s.is_success() => Ok(Some(r)),
            s => Err(unavailable(format!("GET {url}: HTTP {s}"))),
        }
    }

    async fn json<T: serde::de::DeserializeOwned>(&self, path: &str) -> Result<Option<T>> {
        let Some(r) = self.get(path).await? else {
            return Ok(None);
        };
        let url = r.url().to_string();
        r.json()
            .await
            .map(Some)
            .map_err(|e| unavailable(format!("GET {url}: {e}")))
    }

    /// The platform's repositories (`luna-lambda/<id>`).
    pub(crate) async fn repositories(&self) -> Result<Vec<String>> {
        #[derive(Deserialize)]
        struct Catalog {
            #[serde(default)]
            repositories: Vec<String>,
        }
        let mut out = Vec::new();
        let mut last = String::new();
        loop {
            let page: Catalog = self
                .json(&format!("_catalog?n=1000&last={last}"))
                .await?
                .unwrap_or(Catalog {
                    repositories: Vec::new(),
                });
            let n = page.repositories.len();
            last = page.repositories.last().cloned().unwrap_or_default();
            out.extend(
                page.repositories
                    .into_iter()
                    .filter(|r| r.starts_with("luna-lambda/")),
            );
            if n < 1000 {
                return Ok(out);
            }
        }
    }

    /// The tags of a repository (none when it is gone).
    pub(crate) async fn tags(&self, repo: &str) -> Result<Vec<String>> {
        #[derive(Deserialize)]
        struct Tags {
            tags: Option<Vec<String>>,
        }
        Ok(self
            .json::<Tags>(&format!("{repo}/tags/list"))
            .await?
            .and_then(|t| t.tags)
            .unwrap_or_default())
    }

    /// What a tag points at (`None` when the tag is gone).
    pub(crate) async fn manifest(&self, repo: &str, tag: &str) -> Result<Option<Manifest>> {
        let Some(r) = self.get(&format!("{repo}/manifests/{tag}")).await? else {
            return Ok(None);
        };
        let url = r.url().to_string();
        let digest = r
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = r
            .bytes()
            .await
            .map_err(|e| unavailable(format!("GET {url}: {e}")))?;
        let doc: ManifestDoc = serde_json::from_slice(&body)
            .map_err(|e| unavailable(format!("GET {url}: not a manifest: {e}")))?;
        let digest = digest.unwrap_or_else(|| {
            use sha2::Digest;
            format!("sha256:{:x}", sha2::Sha256::digest(&body))
        });
        let bytes = doc.config.as_ref().map_or(0, |c| c.size)
            + doc.layers.iter().map(|l| l.size).sum::<u64>()
            + doc.manifests.iter().map(|m| m.size).sum::<u64>();
        Ok(Some(Manifest {
            digest,
            bytes,
            config: doc.config.map(|c| c.digest),
            layers: doc.layers.into_iter().map(|l| l.digest).collect(),
        }))
    }

    /// When the image was made (from its config), if the registry says.
    pub(crate) async fn created(
        &self,
        repo: &str,
        manifest: &Manifest,
    ) -> Result<Option<std::time::SystemTime>> {
        #[derive(Deserialize)]
        struct Config {
            created: Option<String>,
        }
        let Some(config) = &manifest.config else {
            return Ok(None);
        };
        let doc: Option<Config> = self.json(&format!("{repo}/blobs/{config}")).await?;
        Ok(doc.and_then(|c| c.created).and_then(|t| {
            time::OffsetDateTime::parse(&t, &time::format_description::well_known::Rfc3339)
                .ok()
                .map(std::time::SystemTime::from)
        }))
    }

    /// Deletes a manifest (every tag pointing at it goes with it). Missing is fine.
    pub(crate) async fn delete(&self, repo: &str, digest: &str) -> Result<()> {
        let path = format!("{repo}/manifests/{digest}");
        let url = format!("{}/v2/{path}", self.base);
        match self.request(Method::DELETE, &path).send().await {
            Ok(r) if r.status().is_success() || r.status() == StatusCode::NOT_FOUND => Ok(()),
            Ok(r) => Err(unavailable(format!("DELETE {url}: HTTP {}", r.status()))),
            Err(e) => Err(unavailable(format!("DELETE {url}: {e}"))),
        }
    }

    /// `http(s)://host[:port]`.
    pub(crate) fn base_url(&self) -> String {
        self.base.clone()
    }

    /// Deletes the manifest of `reference` (`<host>/<repo>:<tag>`) at `digest`, unless another
    /// tag shares it (identical builds share a digest: deleting it would take the other too).
    pub(crate) async fn remove_manifest(
        &self,
        reference: &str,
        digest: Option<&str>,
    ) -> std::result::Result<(), String> {
        let (Some(digest), Some((repo, tag))) = (
            digest,
            reference
                .strip_prefix(&format!("{}/", self.host))
                .and_then(|r| r.rsplit_once(':')),
        ) else {
            return Ok(());
        };
        match self.digest_shared(repo, digest, tag).await {
            Ok(true) => Ok(()),
            Ok(false) => self.delete(repo, digest).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Removes the manifest of an image the builder pushing as `name` made for `lambda_id`
    /// (an imported image is its owner's: left alone).
    pub(crate) async fn remove_own(
        &self,
        name: Option<&str>,
        lambda_id: &lambda_core::LambdaId,
        artifact: &lambda_core::Artifact,
    ) -> std::result::Result<(), String> {
        let lambda_core::Artifact::Image { reference, digest } = artifact else {
            return Ok(());
        };
        if own_image(name, reference).is_none_or(|(owner, _)| owner != *lambda_id) {
            return Ok(());
        }
        self.remove_manifest(reference, digest.as_deref()).await
    }

    /// Registry manifests of versions nothing keeps (never one a kept tag shares).
    async fn collect_manifests(
        &self,
        name: Option<&str>,
        in_use: &InUse,
        dry_run: bool,
    ) -> Result<Vec<GcItem>> {
        let registry = self;
        let mut out = Vec::new();
        for repo in registry.repositories().await? {
            let mut kept_digests = Vec::new();
            let mut candidates = Vec::new();
            for tag in registry.tags(&repo).await? {
                let Some(manifest) = registry.manifest(&repo, &tag).await? else {
                    continue;
                };
                let reference = format!("{}/{repo}:{tag}", registry.host);
                // The registry has no upload time: the image's own creation time stands in,
                // read only for lambdas the collector does not know (those in flight).
                let created = if of_known_lambda(name, in_use, &reference) {
                    UNIX_EPOCH
                } else {
                    registry
                        .created(&repo, &manifest)
                        .await?
                        .unwrap_or_else(SystemTime::now)
                };
                if image_stays(name, in_use, &reference, created) {
                    kept_digests.push(manifest.digest);
                } else {
                    candidates.push((reference, manifest));
                }
            }
            for (reference, manifest) in candidates {
                if kept_digests.contains(&manifest.digest) {
                    continue;
                }
                if !dry_run && let Err(e) = registry.delete(&repo, &manifest.digest).await {
                    tracing::warn!(manifest = %reference, error = %e, "collecting a manifest failed");
                    continue;
                }
                kept_digests.push(manifest.digest.clone());
                out.push(GcItem::new(
                    "manifest",
                    format!("{reference}@{}", manifest.digest),
                    manifest.bytes,
                ));
            }
        }
        Ok(out)
    }

    /// What the garbage collector removes from the registry for an image builder pushing as
    /// `name`: manifests of versions nothing keeps, then the dependencies images no remaining
    /// lambda image is built on.
    pub(crate) async fn collect(
        &self,
        name: Option<&str>,
        in_use: &InUse,
        dry_run: bool,
    ) -> Result<Vec<GcItem>> {
        let mut out = self.collect_manifests(name, in_use, dry_run).await?;
        let going: Vec<String> = out
            .iter()
            .filter_map(|i| i.what.rsplit_once('@').map(|(_, d)| d.to_owned()))
            .collect();
        out.extend(
            self.collect_deps(crate::deps::REPOSITORY, in_use, &going, dry_run)
                .await?,
        );
        Ok(out)
    }

    /// Dependencies images (`repo`, the Kubernetes builder's) that no lambda image in the
    /// registry is built on any more, older than the grace: a lambda image built on one holds
    /// its top layer. The manifests in `going` (the lambda images being collected in the same
    /// run) count as gone already, so a dry run lists what the real run removes.
    async fn collect_deps(
        &self,
        repo: &str,
        in_use: &InUse,
        going: &[String],
        dry_run: bool,
    ) -> Result<Vec<GcItem>> {
        let tags = self.tags(repo).await?;
        if tags.is_empty() {
            return Ok(Vec::new());
        }
        let mut used = std::collections::HashSet::new();
        for lambda_repo in self.repositories().await? {
            if !lambda_repo.starts_with("luna-lambda/") {
                continue;
            }
            for tag in self.tags(&lambda_repo).await? {
                if let Some(m) = self.manifest(&lambda_repo, &tag).await?
                    && !going.contains(&m.digest)
                {
                    used.extend(m.layers);
                }
            }
        }
        let mut out = Vec::new();
        for tag in tags {
            let Some(m) = self.manifest(repo, &tag).await? else {
                continue;
            };
            let built_on = m.layers.last().is_some_and(|l| used.contains(l));
            let created = self
                .created(repo, &m)
                .await?
                .unwrap_or_else(SystemTime::now);
            if built_on || in_use.young(created) {
                continue;
            }
            if !dry_run && let Err(e) = self.delete(repo, &m.digest).await {
                tracing::warn!(image = %tag, error = %e, "collecting a dependencies image failed");
                continue;
            }
            out.push(GcItem::new(
                "dependencies image",
                format!("{}/{repo}:{tag}@{}", self.host, m.digest),
                m.bytes,
            ));
        }
        Ok(out)
    }

    /// Whether a tag of `repo` other than `except` points at `digest` (deleting the manifest
    /// would take that tag too: identical builds share a digest).
    pub(crate) async fn digest_shared(
        &self,
        repo: &str,
        digest: &str,
        except: &str,
    ) -> Result<bool> {
        for tag in self.tags(repo).await? {
            if tag != except
                && self
                    .manifest(repo, &tag)
                    .await?
                    .is_some_and(|m| m.digest == digest)
            {
                return Ok(true);
            }
        }
        Ok(false)
    }
}
