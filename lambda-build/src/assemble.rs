//! A lambda image assembled in the registry, with no engine: the dependencies image's layers
//! (the base image's, then those its build steps made) are mounted into the lambda's repository
//! without being downloaded, the code and runtime layer is made here as a reproducible tar, and
//! a config (`Cmd`, `User`, `Env`, `WorkingDir`, `ExposedPorts`, history) and a manifest are
//! pushed. A code-only change is therefore a tar of the lambda's files and a few requests.

use crate::{Error, Result, runtime};
use flate2::write::GzEncoder;
use lambda_core::render::{APP_DIR, LAMBDA_PORT};
use lambda_core::{LambdaType, ValidatedArchive};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::manifest::{OciDescriptor, OciImageManifest, OciManifest};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::io::Write;

/// The uid and gid of `luna` in the base images (`scripts/base-images`).
pub const LUNA_UID: u64 = lambda_core::render::LAMBDA_UID as u64;
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", lambda_core::hex(&Sha256::digest(data)))
}

/// A gzip-compressed layer and the digests that name it.
#[derive(Debug, Clone)]
pub struct Layer {
    /// The `.tar.gz` bytes.
    pub gzip: Vec<u8>,
    /// `sha256:` of the gzip (the blob's digest).
    pub digest: String,
    /// `sha256:` of the tar (the config's diff id).
    pub diff_id: String,
}

/// The code and runtime layer: the runtime's files, then the archive's (which win), under
/// [`APP_DIR`], owned by luna, with fixed times, in a fixed order: the same inputs give the same
/// digest.
pub fn code_layer(archive_bytes: &[u8], archive: &ValidatedArchive) -> Result<Layer> {
    let mut files: std::collections::BTreeMap<String, Vec<u8>> = runtime::files()
        .into_iter()
        .map(|f| (f.path.to_owned(), f.contents.to_vec()))
        .collect();
    lambda_core::archive::for_each_user_file::<_, Error>(
        std::io::Cursor::new(archive_bytes),
        archive,
        |name, data| {
            files.insert(name.to_owned(), data.to_vec());
            Ok(())
        },
    )?;
    let root = APP_DIR.trim_start_matches('/');
    let mut dirs = std::collections::BTreeSet::new();
    for p in files.keys() {
        let mut dir = std::path::Path::new(p).parent();
        while let Some(d) = dir.filter(|d| !d.as_os_str().is_empty()) {
            dirs.insert(format!("{root}/{}", d.display()));
            dir = d.parent();
        }
    }
    let mut tar = tar::Builder::new(Vec::new());
    let header = |kind: tar::EntryType, mode: u32, size: u64| {
        let mut h = tar::Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(0);
        h.set_uid(LUNA_UID);
        h.set_gid(LUNA_UID);
        h
    };
    let parents = root
        .split('/')
        .scan(String::new(), |acc, part| {
            if !acc.is_empty() {
                acc.push('/');
            }
            acc.push_str(part);
            Some(acc.clone())
        })
        .collect::<Vec<_>>();
    for d in parents.iter().chain(dirs.iter()) {
        let mut h = header(tar::EntryType::Directory, 0o755, 0);
        tar.append_data(&mut h, format!("{d}/"), std::io::empty())?;
    }
    for (path, data) in &files {
        let mut h = header(tar::EntryType::Regular, 0o644, data.len() as u64);
        tar.append_data(&mut h, format!("{root}/{path}"), &data[..])?;
    }
    let raw = tar.into_inner()?;
    let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    gz.write_all(&raw)?;
    let gzip = gz.finish()?;
    Ok(Layer {
        digest: sha256(&gzip),
        diff_id: sha256(&raw),
        gzip,
    })
}

/// The final image's config: the dependencies image's, with the lambda's layer, command, user,
/// folder, port and environment.
pub fn final_config(deps_config: &str, layer: &Layer, lambda_type: LambdaType) -> Result<Vec<u8>> {
    let mut cfg: Value = serde_json::from_str(deps_config).map_err(|e| Error::Failed {
        reason: format!("the dependencies image's config is not JSON: {e}"),
    })?;
    let c = cfg
        .as_object_mut()
        .ok_or_else(|| Error::Failed {
            reason: "the dependencies image's config is not an object".into(),
        })?
        .entry("config")
        .or_insert_with(|| json!({}));
    let set = [
        format!("LAMBDA_TYPE={lambda_type}"),
        format!("LAMBDA_PORT={LAMBDA_PORT}"),
        "PYTHONUNBUFFERED=1".to_owned(),
    ];
    let mut env: Vec<String> = c["Env"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    for kv in &set {
        let key = &kv[..=kv.find('=').unwrap_or(0)];
        env.retain(|e| !e.starts_with(key));
        env.push(kv.clone());
    }
    c["Env"] = json!(env);
    c["User"] = json!("luna");
    c["WorkingDir"] = json!(APP_DIR);
    c["Cmd"] = json!(["python3", format!("{APP_DIR}/run.py")]);
    c["Entrypoint"] = Value::Null;
    c["ExposedPorts"][format!("{LAMBDA_PORT}/tcp")] = json!({});
    cfg["rootfs"]["type"] = json!("layers");
    match cfg["rootfs"]["diff_ids"].as_array_mut() {
        Some(ids) => ids.push(json!(layer.diff_id)),
        None => cfg["rootfs"]["diff_ids"] = json!([layer.diff_id]),
    }
    let entry = json!({
        "created": "1970-01-01T00:00:00Z",
        "created_by": format!("luna-lambda: runtime and lambda code in {APP_DIR}"),
    });
    match cfg["history"].as_array_mut() {
        Some(h) => h.push(entry),
        None => cfg["history"] = json!([entry]),
    }
    // When it was pushed: the garbage collector's grace for images of lambdas in flight.
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    cfg["created"] = json!(now);
    serde_json::to_vec(&cfg).map_err(|e| Error::Failed {
        reason: format!("writing the image config: {e}"),
    })
}

/// Talks to the registry for assembly.
#[derive(Clone)]
pub struct Assembler {
    client: Client,
    auth: RegistryAuth,
}

impl std::fmt::Debug for Assembler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Assembler").finish_non_exhaustive()
    }
}

fn registry_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Failed {
        reason: format!("registry: {what}: {e}"),
    }
}

/// Parses an image reference.
pub fn reference(r: &str) -> Result<Reference> {
    r.parse()
        .map_err(|e| registry_error(&format!("image reference {r:?}"), e))
}

impl Assembler {
    /// A client for the registry `host` (`host[:port]`), spoken to over plain HTTP when it is a
    /// loopback address or listed in `insecure` (as `crate::registry` does).
    pub fn new(host: &str, insecure: &[String], auth: Option<(String, String)>) -> Self {
        let config = ClientConfig {
            protocol: if crate::registry::plain_http(host, insecure) {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            ..Default::default()
        };
        Self {
            client: Client::new(config),
            auth: match auth {
                Some((u, p)) => RegistryAuth::Basic(u, p),
                None => RegistryAuth::Anonymous,
            },
        }
    }

    /// The digest of `image`'s manifest, `None` when the registry does not have it.
    pub async fn digest(&self, image: &Reference) -> Result<Option<String>> {
        match self.client.fetch_manifest_digest(image, &self.auth).await {
            Ok(d) => Ok(Some(d)),
            Err(oci_client::errors::OciDistributionError::ImageManifestNotFoundError(_)) => {
                Ok(None)
            }
            Err(oci_client::errors::OciDistributionError::RegistryError { envelope, .. })
                if envelope.errors.iter().any(|e| {
                    matches!(e.code, oci_client::errors::OciErrorCode::ManifestUnknown)
                }) =>
            {
                Ok(None)
            }
            Err(oci_client::errors::OciDistributionError::ServerError { code: 404, .. }) => {
                Ok(None)
            }
            Err(e) => Err(registry_error(&format!("looking up {image}"), e)),
        }
    }

    /// Whether the registry has the image `image` (a reference in text).
    pub async fn has(&self, image: &str) -> Result<bool> {
        Ok(self.digest(&reference(image)?).await?.is_some())
    }

    /// The digest of the base image `base`, which must be in the registry.
    pub async fn base_digest(&self, base: &str) -> Result<String> {
        self.digest(&reference(base)?).await?.ok_or_else(|| Error::Failed {
            reason: format!(
                "the base image {base} is not in the registry (scripts/base-images/build pushes it)"
            ),
        })
    }

    /// Version `req.version` of the lambda assembled onto `deps` in `registry`: the code and
    /// runtime layer made, pushed with the config and manifest; (reference, digest).
    pub async fn lambda_image(
        &self,
        registry: &str,
        deps: &str,
        req: &crate::BuildRequest,
        log: &crate::LogSink,
    ) -> Result<(String, String)> {
        let target =
            lambda_core::render::lambda_image_ref(Some(registry), &req.lambda_id, req.version);
        let _ = log.send(format!("==> assembling {target} in the registry"));
        let layer = code_layer(&req.archive_bytes, &req.archive)?;
        let digest = self
            .assemble(
                &reference(deps)?,
                &reference(&target)?,
                &layer,
                req.lambda_type,
            )
            .await?;
        Ok((target, digest))
    }

    /// Pushes `target`: `deps`' layers mounted, `layer` on top, the final config. Answers the
    /// manifest's digest.
    pub async fn assemble(
        &self,
        deps: &Reference,
        target: &Reference,
        layer: &Layer,
        lambda_type: LambdaType,
    ) -> Result<String> {
        let (manifest, _, config) = self
            .client
            .pull_manifest_and_config(deps, &self.auth)
            .await
            .map_err(|e| registry_error(&format!("reading {deps}"), e))?;
        self.client
            .auth(target, &self.auth, oci_client::RegistryOperation::Push)
            .await
            .map_err(|e| registry_error(&format!("signing in for {target}"), e))?;
        let mut layers = Vec::new();
        for l in &manifest.layers {
            self.mount(deps, target, &l.digest).await?;
            let mut l = l.clone();
            if l.media_type == DOCKER_LAYER {
                l.media_type = OCI_LAYER.into();
            }
            layers.push(l);
        }
        self.push_blob(target, &layer.gzip, &layer.digest).await?;
        layers.push(OciDescriptor {
            media_type: OCI_LAYER.into(),
            digest: layer.digest.clone(),
            size: layer.gzip.len() as i64,
            ..Default::default()
        });
        let config = final_config(&config, layer, lambda_type)?;
        let config_digest = sha256(&config);
        self.push_blob(target, &config, &config_digest).await?;
        let image = OciImageManifest {
            schema_version: 2,
            media_type: Some(OCI_MANIFEST.into()),
            config: OciDescriptor {
                media_type: OCI_CONFIG.into(),
                digest: config_digest,
                size: config.len() as i64,
                ..Default::default()
            },
            layers,
            ..Default::default()
        };
        let body = serde_json::to_vec(&OciManifest::Image(image))
            .map_err(|e| registry_error("writing the manifest", e))?;
        let digest = sha256(&body);
        self.client
            .push_manifest_raw(target, body, OCI_MANIFEST.parse().expect("a header value"))
            .await
            .map_err(|e| registry_error(&format!("pushing {target}"), e))?;
        Ok(digest)
    }

    /// Whether `target`'s repository has the blob (an error counts as no: it is pushed again).
    async fn has_blob(&self, target: &Reference, digest: &str) -> bool {
        self.client
            .blob_exists(target, digest)
            .await
            .unwrap_or(false)
    }

    async fn push_blob(&self, target: &Reference, data: &[u8], digest: &str) -> Result<()> {
        if self.has_blob(target, digest).await {
            return Ok(());
        }
        self.client
            .push_blob(target, data.to_vec(), digest)
            .await
            .map_err(|e| registry_error(&format!("pushing {digest} to {target}"), e))?;
        Ok(())
    }

    /// Links a blob of `from` into `target`'s repository; copies it when the registry cannot
    /// mount across repositories.
    async fn mount(&self, from: &Reference, target: &Reference, digest: &str) -> Result<()> {
        if self.has_blob(target, digest).await {
            return Ok(());
        }
        if self.client.mount_blob(target, from, digest).await.is_ok() {
            return Ok(());
        }
        let mut data = Vec::new();
        self.client
            .pull_blob(
                from,
                &oci_client::manifest::OciDescriptor {
                    digest: digest.to_owned(),
                    ..Default::default()
                },
                &mut data,
            )
            .await
            .map_err(|e| registry_error(&format!("copying {digest} from {from}"), e))?;
        self.push_blob(target, &data, digest).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive() -> (Vec<u8>, ValidatedArchive) {
        let zip = lambda_core::pack::pack_dir(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hello"),
        )
        .unwrap();
        let v = lambda_core::validate_bytes(&zip, &lambda_core::Limits::default()).unwrap();
        (zip, v)
    }

    #[test]
    fn the_code_layer_is_reproducible_and_owned_by_luna() {
        let (zip, v) = archive();
        let a = code_layer(&zip, &v).unwrap();
        let b = code_layer(&zip, &v).unwrap();
        assert_eq!(
            (a.digest.as_str(), a.diff_id.as_str()),
            (b.digest.as_str(), b.diff_id.as_str())
        );
        let raw = {
            let mut out = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&a.gzip[..]), &mut out)
                .unwrap();
            out
        };
        assert_eq!(a.diff_id, sha256(&raw));
        let mut names = Vec::new();
        for e in tar::Archive::new(&raw[..]).entries().unwrap() {
            let e = e.unwrap();
            assert_eq!(e.header().uid().unwrap(), LUNA_UID);
            assert_eq!(e.header().mtime().unwrap(), 0);
            names.push(e.path().unwrap().display().to_string());
        }
        assert!(names.contains(&"srv/lambda/".to_owned()));
        assert!(names.contains(&"srv/lambda/run.py".to_owned()));
        assert!(names.contains(&"srv/lambda/lambda_main.py".to_owned()));
        assert!(names.contains(&"srv/lambda/luna_lambda_tools/".to_owned()));
    }

    #[test]
    fn the_final_config_runs_the_runtime_as_luna_on_top_of_the_dependencies() {
        let (zip, v) = archive();
        let layer = code_layer(&zip, &v).unwrap();
        let deps = r#"{"config":{"Env":["PATH=/opt/venv/bin:/usr/bin","LAMBDA_TYPE=old","TOOL=1"],"User":"root"},
            "rootfs":{"type":"layers","diff_ids":["sha256:aa"]},"history":[{"created_by":"base"}]}"#;
        let cfg: Value =
            serde_json::from_slice(&final_config(deps, &layer, LambdaType::Standalone).unwrap())
                .unwrap();
        assert_eq!(
            cfg["config"]["Env"],
            json!([
                "PATH=/opt/venv/bin:/usr/bin",
                "TOOL=1",
                "LAMBDA_TYPE=standalone",
                "LAMBDA_PORT=8000",
                "PYTHONUNBUFFERED=1"
            ])
        );
        assert_eq!(cfg["config"]["User"], "luna");
        assert_eq!(
            cfg["config"]["Cmd"],
            json!(["python3", "/srv/lambda/run.py"])
        );
        assert_eq!(cfg["config"]["WorkingDir"], APP_DIR);
        assert_eq!(
            cfg["rootfs"]["diff_ids"],
            json!(["sha256:aa", layer.diff_id])
        );
        assert_eq!(cfg["history"].as_array().unwrap().len(), 2);
        assert!(cfg["config"]["ExposedPorts"]["8000/tcp"].is_object());
    }
}
