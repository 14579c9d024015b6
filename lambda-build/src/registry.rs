//! The little of the OCI distribution API the builders need to clean up after themselves:
//! list the platform's repositories and tags, read a tag's manifest (digest, bytes, creation
//! time) and delete a manifest. Deletion must be enabled in the registry; blobs are freed by the
//! registry's own garbage collection.

use crate::{Error, Result};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::Deserialize;

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

impl Registry {
    /// Loopback registries and those in `insecure` are spoken to over plain HTTP.
    pub(crate) fn new(host: &str, insecure: &[String], auth: Option<(String, String)>) -> Self {
        let plain = host.starts_with("127.")
            || host.starts_with("localhost")
            || insecure.iter().any(|r| r == host);
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
