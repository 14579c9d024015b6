//! Export and import of a lambda: a zip of its current archive and a manifest (name, type,
//! parameters, version, sha256), made again on this or another platform by an import that
//! validates it like any upload; the image a lambda runs, for use elsewhere; and a lambda made
//! from an image built elsewhere (`import_image`: no archive, no build).

use super::Platform;
use crate::service::error::{Error, Result};
use bytes::Bytes;
use lambda_core::api::{ArchiveInfo, Credentials, ErrorCode, ExportManifest, ImageExport};
use lambda_core::{Artifact, LambdaId, LambdaStatus, pack};
use std::io::Read;

/// Names inside an export.
const MANIFEST: &str = "manifest.json";
const ARCHIVE: &str = "archive.zip";
/// Largest manifest read from an export.
const MAX_MANIFEST_BYTES: u64 = 1024 * 1024;

fn tampered(what: impl std::fmt::Display) -> Error {
    Error::BadRequest(
        ErrorCode::Validation,
        format!("the export is not valid: {what}"),
    )
}

/// Longest image reference taken by `import_image`.
const MAX_IMAGE_REF: usize = 512;

/// Checks an image reference's shape (`[registry/]name[:tag][@digest]`): the engine or the
/// cluster says at deploy whether it can be pulled.
fn check_image_ref(reference: &str) -> std::result::Result<(), String> {
    let ok_char = |c: char| c.is_ascii_alphanumeric() || "._-/:@".contains(c);
    if reference.is_empty() {
        return Err("import_image is empty".into());
    }
    if reference.len() > MAX_IMAGE_REF {
        return Err(format!(
            "import_image is {} characters long; at most {MAX_IMAGE_REF}",
            reference.len()
        ));
    }
    if let Some(c) = reference.chars().find(|c| !ok_char(*c)) {
        return Err(format!(
            "import_image {reference:?} has the character {c:?}; an image reference is [registry/]name[:tag][@sha256:digest]"
        ));
    }
    if reference.starts_with(['/', ':', '@', '.', '-']) || reference.ends_with(['/', ':', '@']) {
        return Err(format!(
            "import_image {reference:?} is not an image reference ([registry/]name[:tag][@sha256:digest])"
        ));
    }
    Ok(())
}

impl Platform {
    /// Makes a lambda from an image built elsewhere: no archive, no build. Its one version's
    /// artifact is the image; the deploy pulls it and waits for its `/healthcheck`, so an
    /// image that does not serve the runtime contract ends as a terminated lambda with the
    /// reason. Needs an orchestrator that runs images.
    pub async fn create_from_image(
        &self,
        account_id: uuid::Uuid,
        credentials: Credentials,
        parameters: Option<Bytes>,
        image: String,
    ) -> Result<LambdaId> {
        let problem = |path: &str, msg: String| {
            let mut report = lambda_core::ValidationReport::default();
            report.push(lambda_core::Problem::error(path, path, msg));
            Error::Invalid(report)
        };
        check_image_ref(&image).map_err(|m| problem("import_image", m))?;
        if self.inner.orchestrator.kind() == "local" {
            return Err(problem(
                "import_image",
                "this server runs lambdas as local processes ([orchestrator] kind = \"local\"), which cannot run an image; import_image needs kind = \"docker\" or \"kubernetes\"".into(),
            ));
        }
        let params = match parameters {
            Some(p) => lambda_core::Parameters::parse_for(&p, Some(self.inner.cfg.base_os))
                .map_err(Error::Invalid)?,
            None => lambda_core::Parameters::default(),
        };
        let id = LambdaId::new();
        let artifact = Artifact::Image {
            reference: image.clone(),
            digest: None,
        };
        let log = format!("==> lambda {id} v1: made from the imported image {image}; no build\n");
        let stored = async {
            self.inner.artifacts.put_artifact(&id, 1, &artifact).await?;
            self.inner.artifacts.put_build_log(&id, 1, log.into()).await
        };
        if let Err(e) = stored.await {
            let _ = self.inner.artifacts.delete_lambda(&id).await;
            return Err(e.into());
        }
        let archive = ArchiveInfo {
            size: 0,
            sha256: String::new(),
        };
        let rec = super::first_record(
            id,
            account_id,
            credentials,
            params,
            archive,
            false,
            Some(image),
        );
        self.insert_record(rec).await?;
        self.spawn_job(id, 1);
        Ok(id)
    }

    /// The image the lambda runs, for use elsewhere (409/42016 when it is not running, or runs
    /// from a local environment instead of an image).
    pub async fn image(&self, id: &LambdaId, account: Option<uuid::Uuid>) -> Result<ImageExport> {
        let rec = self.get(id, account).await?;
        let not_exportable = |why: String| Error::BadRequest(ErrorCode::NotExportable, why);
        let version = match rec.running_version {
            Some(v) if rec.alive && rec.status == LambdaStatus::Running => v,
            _ => {
                return Err(not_exportable(format!(
                    "lambda {id} isn't running and cannot be exported (status {})",
                    rec.status
                )));
            }
        };
        match self.inner.artifacts.get_artifact(id, version).await {
            Ok(Artifact::Image { reference, digest }) => Ok(ImageExport {
                lambda_id: *id,
                lambda_version: version,
                reference,
                digest,
            }),
            Ok(Artifact::Local { .. }) => Err(not_exportable(format!(
                "lambda {id} runs from a local environment, not an image ([builder] kind = \"local\"); export its archive with GET /1/lambdas/{id}/export"
            ))),
            Err(lambda_storage::Error::NotFound { .. }) => Err(not_exportable(format!(
                "the artifact of version {version} of lambda {id} is no longer kept"
            ))),
            Err(e) => Err(e.into()),
        }
    }

    /// The export of a lambda's current version and a file name for it (`<name>-v<N>.zip`);
    /// 410/42012 when its archive is gone.
    pub async fn export(
        &self,
        id: &LambdaId,
        account: Option<uuid::Uuid>,
    ) -> Result<(String, Bytes)> {
        let rec = self.get(id, account).await?;
        let archive = self.current_archive(&rec).await?;
        let manifest = ExportManifest {
            format: 1,
            lambda_name: rec.lambda_name.clone(),
            lambda_type: rec.lambda_type,
            version: rec.lambda_version,
            parameters: rec.parameters.clone(),
            archive: rec.archive.clone(),
            source_lambda_id: *id,
            exported_at: super::now(),
        };
        let manifest =
            serde_json::to_vec_pretty(&manifest).map_err(|e| Error::Internal(e.to_string()))?;
        let zip = tokio::task::spawn_blocking(move || {
            pack::pack_files(vec![
                (MANIFEST.to_owned(), manifest),
                (ARCHIVE.to_owned(), archive.to_vec()),
            ])
        })
        .await
        .map_err(|e| Error::Internal(e.to_string()))?;
        let file_name = format!("{}-v{}.zip", rec.lambda_name.as_str(), rec.lambda_version);
        Ok((file_name, Bytes::from(zip)))
    }

    /// Makes a lambda again from an export, for `account`: the manifest must match the archive
    /// (size and sha256), and both are validated like any upload.
    pub async fn import(&self, account: uuid::Uuid, export: Bytes) -> Result<LambdaId> {
        let max = self.inner.cfg.limits.max_archive_bytes;
        let (manifest, archive) = tokio::task::spawn_blocking(move || read_export(&export, max))
            .await
            .map_err(|e| Error::Internal(e.to_string()))??;
        let credentials = Credentials {
            lambda_name: manifest.lambda_name,
            lambda_type: manifest.lambda_type,
        };
        let parameters =
            serde_json::to_vec(&manifest.parameters).map_err(|e| Error::Internal(e.to_string()))?;
        self.create(account, credentials, Some(Bytes::from(parameters)), archive)
            .await
    }
}

/// The manifest and the archive of an export, checked against each other.
fn read_export(export: &[u8], max_archive: u64) -> Result<(ExportManifest, Bytes)> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(export))
        .map_err(|e| tampered(format!("not a zip ({e})")))?;
    let names: Vec<String> = zip
        .file_names()
        .map(|n| n.map(|n| n.into_owned()))
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| tampered(format!("unreadable names ({e})")))?;
    let mut sorted = names.clone();
    sorted.sort();
    if sorted != [ARCHIVE, MANIFEST] {
        return Err(tampered(format!(
            "it must hold exactly {MANIFEST} and {ARCHIVE}, not {names:?}"
        )));
    }
    let read = |zip: &mut zip::ZipArchive<_>, name: &str, limit: u64| -> Result<Vec<u8>> {
        let entry = zip
            .by_name(name)
            .map_err(|e| tampered(format!("{name}: {e}")))?;
        let mut out = Vec::new();
        entry
            .take(limit + 1)
            .read_to_end(&mut out)
            .map_err(|e| tampered(format!("{name}: {e}")))?;
        if out.len() as u64 > limit {
            return Err(tampered(format!("{name} is larger than {limit} bytes")));
        }
        Ok(out)
    };
    let manifest: ExportManifest =
        serde_json::from_slice(&read(&mut zip, MANIFEST, MAX_MANIFEST_BYTES)?)
            .map_err(|e| tampered(format!("{MANIFEST}: {e}")))?;
    if manifest.format != 1 {
        return Err(tampered(format!(
            "{MANIFEST}: format {} is not known (this server reads format 1)",
            manifest.format
        )));
    }
    let archive = read(&mut zip, ARCHIVE, max_archive)?;
    let got = ArchiveInfo::of(&archive);
    if got != manifest.archive {
        return Err(tampered(format!(
            "{ARCHIVE} ({} bytes, sha256 {}) is not the archive the manifest names ({} bytes, sha256 {})",
            got.size, got.sha256, manifest.archive.size, manifest.archive.sha256
        )));
    }
    Ok((manifest, Bytes::from(archive)))
}
