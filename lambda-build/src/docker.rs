//! The Docker builder: an image per lambda version, built by a Docker engine (bollard) from the
//! Dockerfile and build context that lambda-core renders, and pushed to the registry.
//!
//! With a registry, the engine builds only the dependencies image (base, the user's
//! instructions, the requirements: `render_deps_dockerfile`), named by its content like the
//! Kubernetes builder's and built only when the registry lacks it; the code and runtime are
//! assembled onto it in the registry ([`crate::assemble`]) and the result pulled into the engine.
//! A code-only change therefore builds nothing (0.07 s against 0.55 s for the engine's cached
//! rebuild, `scripts/bench-build`). Without a registry, or when the user's instructions copy
//! files of the archive (`COPY`/`ADD`), the whole Dockerfile is built, requirements before the
//! code. Failures reported inside the build or push stream (not only the HTTP status) fail the
//! build with the engine's message.

use crate::assemble::Assembler;
use crate::gc::InUse;
use crate::registry::Registry;
use crate::{BuildRequest, Error, ImageBuilder, LogSink, Result, deps, runtime};
use async_trait::async_trait;
use bollard::Docker;
use bollard::query_parameters::{
    BuildImageOptionsBuilder, PushImageOptionsBuilder, RemoveImageOptionsBuilder,
};
use futures::StreamExt;
use lambda_core::api::GcItem;
use lambda_core::build_steps;
use lambda_core::render::{
    ContextSource, DockerfileSpec, base_image_ref, build_context, lambda_image_ref,
    render_deps_dockerfile, render_dockerfile,
};
use lambda_core::{Artifact, LambdaId};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;

/// Settings of the Docker builder.
#[derive(Debug, Clone, Default)]
pub struct DockerBuilderConfig {
    /// Engine address: `unix:///path/docker.sock` or `tcp://host:port` (`DOCKER_HOST`).
    pub docker_host: String,
    /// `lambda_registry`: where base images come from and lambda images go; `None` keeps images
    /// local (no push).
    pub registry: Option<String>,
    /// Tag of the base images (`lpa-lambda-base:<tag>`).
    pub base_tag: String,
    /// Network mode of builds (e.g. `host`, when pip needs the host's network).
    pub network_mode: Option<String>,
    /// CA bundle given to pip during builds (private package mirrors).
    pub pip_ca_bundle: Option<PathBuf>,
    /// Package index for pip during builds.
    pub pip_index_url: Option<String>,
    /// Registry credentials (user, password) for pushes.
    pub registry_auth: Option<(String, String)>,
    /// Registries spoken to over plain HTTP (`lambda_insecure_registries`; loopback registries
    /// always are). Pushes go through the engine, which needs the same list in its own
    /// `insecure-registries` setting; manifest deletion is done here and uses this list.
    pub insecure_registries: Vec<String>,
}

/// Builds lambda images with a Docker engine.
#[derive(Debug)]
pub struct DockerBuilder {
    docker: Docker,
    cfg: DockerBuilderConfig,
    registry: Option<Registry>,
    /// Assembles images in the registry (with one).
    assembler: Option<Assembler>,
}

fn failed(reason: impl Into<String>) -> Error {
    Error::Failed {
        reason: reason.into(),
    }
}

impl DockerBuilder {
    /// Connects to the engine (no request is made until a build or a health check).
    pub fn connect(cfg: DockerBuilderConfig) -> Result<Self> {
        let host = cfg.docker_host.trim();
        let docker = if let Some(path) = host.strip_prefix("unix://") {
            Docker::connect_with_unix(path, 600, bollard::API_DEFAULT_VERSION)
        } else if host.starts_with("tcp://") || host.starts_with("http://") {
            Docker::connect_with_http(
                &host.replacen("tcp://", "http://", 1),
                600,
                bollard::API_DEFAULT_VERSION,
            )
        } else {
            return Err(Error::Unavailable(format!(
                "Docker host {host:?}: use unix:///path/docker.sock or tcp://host:port"
            )));
        }
        .map_err(|e| Error::Unavailable(format!("Docker engine at {host}: {e}")))?;
        let host = cfg.registry.as_deref().filter(|r| !r.is_empty());
        let registry =
            host.map(|r| Registry::new(r, &cfg.insecure_registries, cfg.registry_auth.clone()));
        let assembler =
            host.map(|r| Assembler::new(r, &cfg.insecure_registries, cfg.registry_auth.clone()));
        Ok(Self {
            docker,
            cfg,
            registry,
            assembler,
        })
    }

    fn spec<'a>(&'a self, req: &'a BuildRequest) -> DockerfileSpec<'a> {
        DockerfileSpec {
            registry: self.cfg.registry.as_deref(),
            base_image: req.parameters.base_image,
            base_tag: &self.cfg.base_tag,
            has_requirements: req.archive.has_requirements,
            user_docker_commands: &req.parameters.user_docker_commands,
            lambda_type: req.lambda_type,
            pip_index_url: self.cfg.pip_index_url.as_deref(),
            pip_ca_bundle: self.cfg.pip_ca_bundle.is_some(),
        }
    }

    /// The build context as a tar archive (fixed times and owners, so it is reproducible);
    /// without the runtime and the lambda's files unless `with_code` (a dependencies image).
    fn context_tar(
        &self,
        req: &BuildRequest,
        dockerfile: &str,
        with_code: bool,
    ) -> Result<Vec<u8>> {
        let mut files: HashMap<String, Vec<u8>> = HashMap::new();
        lambda_core::archive::for_each_user_file::<_, Error>(
            std::io::Cursor::new(&req.archive_bytes[..]),
            &req.archive,
            |name, data| {
                files.insert(name.to_owned(), data.to_vec());
                Ok(())
            },
        )?;
        let rt_files = runtime::files();
        let rt_paths: Vec<&str> = rt_files.iter().map(|f| f.path).collect();
        let ca = match &self.cfg.pip_ca_bundle {
            Some(p) => std::fs::read(p).map_err(|source| Error::Io {
                path: p.display().to_string(),
                source,
            })?,
            None => Vec::new(),
        };
        let mut tar = tar::Builder::new(Vec::new());
        for entry in build_context(&req.archive, &rt_paths, &self.spec(req)) {
            let code = matches!(&entry.source, ContextSource::Runtime(_))
                || matches!(&entry.source, ContextSource::Archive(n) if entry.path != *n);
            if code && !with_code {
                continue;
            }
            let data: &[u8] = match &entry.source {
                ContextSource::Dockerfile => dockerfile.as_bytes(),
                ContextSource::PipCaBundle => &ca,
                ContextSource::Archive(name) => {
                    files.get(name).map(Vec::as_slice).unwrap_or_default()
                }
                ContextSource::Runtime(path) => rt_files
                    .iter()
                    .find(|f| f.path == path)
                    .map(|f| f.contents)
                    .unwrap_or_default(),
            };
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_mtime(0);
            header.set_uid(0);
            header.set_gid(0);
            header.set_cksum();
            tar.append_data(&mut header, &entry.path, data)?;
        }
        tar.into_inner().map_err(Error::from)
    }

    async fn build_inner(&self, req: &BuildRequest, log: &LogSink) -> Result<Artifact> {
        if let (Some(registry), Some(assembler)) = (self.cfg.registry.as_deref(), &self.assembler)
            && !build_steps::copies_archive_files(&req.parameters.user_docker_commands)
        {
            return self.build_assembled(req, registry, assembler, log).await;
        }
        let dockerfile = render_dockerfile(&self.spec(req));
        let context = self.context_tar(req, &dockerfile, true)?;
        let reference = lambda_image_ref(self.cfg.registry.as_deref(), &req.lambda_id, req.version);
        let _ = log.send(format!(
            "==> lambda {} v{}: docker build -t {reference}",
            req.lambda_id, req.version
        ));
        self.engine_build(context, &reference, log).await?;
        let digest = match &self.cfg.registry {
            Some(_) => self.push(&reference, log).await?,
            None => None,
        };
        let _ = log.send(format!(
            "==> built {reference}{}",
            digest
                .as_deref()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default()
        ));
        Ok(Artifact::Image { reference, digest })
    }

    /// With a registry, when the user's instructions need no file of the archive (`COPY`/`ADD`):
    /// the dependencies image by the engine (only when the registry lacks it), the code
    /// assembled onto it in the registry, the result pulled into the engine for its containers.
    /// A code-only change needs no engine build at all.
    async fn build_assembled(
        &self,
        req: &BuildRequest,
        registry: &str,
        assembler: &Assembler,
        log: &LogSink,
    ) -> Result<Artifact> {
        let base = base_image_ref(
            Some(registry),
            req.parameters.base_image,
            &self.cfg.base_tag,
        );
        let base_digest = assembler.base_digest(&base).await?;
        let pip = build_steps::Pip {
            index_url: self.cfg.pip_index_url.as_deref(),
            ca_bundle: self.cfg.pip_ca_bundle.is_some(),
        };
        let deps_ref = match deps::needed(req, registry, &base_digest, &pip)? {
            None => base,
            Some(needed) if assembler.has(&needed.reference).await? => {
                let _ = log.send(format!(
                    "==> dependencies image {} is in the registry: no docker build",
                    needed.reference
                ));
                needed.reference
            }
            Some(needed) => {
                let _ = log.send(format!(
                    "==> lambda {} v{}: docker build -t {} (its dependencies)",
                    req.lambda_id, req.version, needed.reference
                ));
                let dockerfile = render_deps_dockerfile(&self.spec(req));
                let context = self.context_tar(req, &dockerfile, false)?;
                self.engine_build(context, &needed.reference, log).await?;
                self.push(&needed.reference, log).await?;
                needed.reference
            }
        };
        let (target, digest) = assembler
            .lambda_image(registry, &deps_ref, req, log)
            .await?;
        self.pull(&target).await?;
        let _ = log.send(format!("==> built {target} ({digest})"));
        Ok(Artifact::Image {
            reference: target,
            digest: Some(digest),
        })
    }

    /// The registry credentials for the engine.
    fn credentials(&self) -> Option<bollard::auth::DockerCredentials> {
        let registry = self.cfg.registry.clone()?;
        self.cfg
            .registry_auth
            .as_ref()
            .map(|(u, p)| bollard::auth::DockerCredentials {
                username: Some(u.clone()),
                password: Some(p.clone()),
                serveraddress: Some(registry),
                ..Default::default()
            })
    }

    /// Builds `context` as `tag`, its output into the build log; fails with the engine's words.
    async fn engine_build(&self, context: Vec<u8>, tag: &str, log: &LogSink) -> Result<()> {
        let mut options = BuildImageOptionsBuilder::default()
            .dockerfile("Dockerfile")
            .t(tag)
            .rm(true)
            .forcerm(true);
        if let Some(mode) = &self.cfg.network_mode {
            options = options.networkmode(mode);
        }
        let mut stream = self.docker.build_image(
            options.build(),
            None,
            Some(bollard::body_full(context.into())),
        );
        let mut last_lines: Vec<String> = Vec::new();
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    if let Some(text) = info.stream.or(info.status) {
                        for line in text.lines().filter(|l| !l.trim().is_empty()) {
                            last_lines.push(line.to_owned());
                            if last_lines.len() > 5 {
                                last_lines.remove(0);
                            }
                            let _ = log.send(line.to_owned());
                        }
                    }
                    if let Some(detail) = info.error_detail {
                        let message = detail.message.unwrap_or_else(|| "the build failed".into());
                        let _ = log.send(format!("==> build failed: {message}"));
                        return Err(failed(format!("docker build failed: {message}")));
                    }
                }
                Err(e) => {
                    let _ = log.send(format!("==> build failed: {e}"));
                    return Err(failed(format!(
                        "docker build failed: {e}; last output: {}",
                        last_lines.join(" | ")
                    )));
                }
            }
        }
        Ok(())
    }

    /// Pushes `reference` to the registry: the digest the engine reports.
    async fn push(&self, reference: &str, log: &LogSink) -> Result<Option<String>> {
        let registry = self.cfg.registry.clone().unwrap_or_default();
        let (repo, tag) = reference.rsplit_once(':').unwrap_or((reference, "latest"));
        let _ = log.send(format!("==> docker push {reference}"));
        let mut push = self.docker.push_image(
            repo,
            Some(PushImageOptionsBuilder::default().tag(tag).build()),
            self.credentials(),
        );
        let mut digest = None;
        while let Some(item) = push.next().await {
            match item {
                Ok(info) => {
                    if let Some(detail) = info.error_detail {
                        let message = detail.message.unwrap_or_else(|| "the push failed".into());
                        return Err(failed(format!(
                            "docker push to {registry} failed: {message}"
                        )));
                    }
                    if let Some(status) = info.status {
                        if let Some(d) = status.split("digest: ").nth(1) {
                            digest = d.split_whitespace().next().map(str::to_owned);
                        }
                        if status.contains("digest:") || status.starts_with("The push refers") {
                            let _ = log.send(status);
                        }
                    }
                }
                Err(e) => return Err(failed(format!("docker push to {registry} failed: {e}"))),
            }
        }
        Ok(digest)
    }

    /// Pulls `reference` into the engine (an image assembled in the registry).
    async fn pull(&self, reference: &str) -> Result<()> {
        let mut pull = self.docker.create_image(
            Some(
                bollard::query_parameters::CreateImageOptionsBuilder::default()
                    .from_image(reference)
                    .build(),
            ),
            None,
            self.credentials(),
        );
        while let Some(item) = pull.next().await {
            item.map_err(|e| failed(format!("docker pull {reference}: {e}")))?;
        }
        Ok(())
    }
}

impl DockerBuilder {
    /// Removes one tag from the engine (missing is fine).
    async fn remove_image(&self, reference: &str) -> std::result::Result<(), String> {
        match self
            .docker
            .remove_image(
                reference,
                Some(RemoveImageOptionsBuilder::default().force(true).build()),
                None,
            )
            .await
        {
            Ok(_)
            | Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 404, ..
            }) => Ok(()),
            Err(e) => Err(format!("removing image {reference}: {e}")),
        }
    }

    fn own_image(&self, reference: &str) -> Option<(LambdaId, u64)> {
        crate::gc::own_image(self.cfg.registry.as_deref(), reference)
    }

    fn image_stays(&self, in_use: &InUse, reference: &str, created: SystemTime) -> bool {
        crate::gc::image_stays(self.cfg.registry.as_deref(), in_use, reference, created)
    }

    fn of_known_lambda(&self, in_use: &InUse, reference: &str) -> bool {
        crate::gc::of_known_lambda(self.cfg.registry.as_deref(), in_use, reference)
    }

    /// Engine images of versions nothing keeps.
    async fn collect_images(&self, in_use: &InUse, dry_run: bool) -> Result<Vec<GcItem>> {
        let images = self
            .docker
            .list_images(None::<bollard::query_parameters::ListImagesOptions>)
            .await
            .map_err(|e| Error::Unavailable(format!("listing images: {e}")))?;
        let mut out = Vec::new();
        for image in images {
            let built = UNIX_EPOCH + Duration::from_secs(image.created.max(0) as u64);
            for tag in &image.repo_tags {
                let created = if self.of_known_lambda(in_use, tag) {
                    UNIX_EPOCH
                } else {
                    built
                };
                // A dependencies image in the engine is a build's leftover (the registry has it).
                let leftover = tag.contains(&format!("/{}:", deps::REPOSITORY));
                let stays = if leftover {
                    in_use.young(built)
                } else {
                    self.image_stays(in_use, tag, created)
                };
                if stays {
                    continue;
                }
                if !dry_run && let Err(e) = self.remove_image(tag).await {
                    tracing::warn!(image = %tag, error = %e, "collecting an image failed");
                    continue;
                }
                out.push(GcItem::new("image", tag.clone(), image.size.max(0) as u64));
            }
        }
        Ok(out)
    }
}

#[async_trait]
impl ImageBuilder for DockerBuilder {
    fn kind(&self) -> &'static str {
        "docker"
    }

    async fn build(
        &self,
        req: BuildRequest,
        log: LogSink,
        cancel: CancellationToken,
    ) -> Result<Artifact> {
        crate::bounded(req.timeout, &cancel, &log, self.build_inner(&req, &log)).await
    }

    async fn remove(&self, lambda_id: &LambdaId, artifact: &Artifact) -> Result<()> {
        let Artifact::Image { reference, digest } = artifact else {
            return Ok(());
        };
        // Only images this builder made for this lambda: an imported image is its owner's.
        let ours = self
            .own_image(reference)
            .is_some_and(|(owner, _)| owner == *lambda_id);
        if !ours {
            return Ok(());
        }
        let mut problems = Vec::new();
        if let Err(e) = self.remove_image(reference).await {
            problems.push(e);
        }
        if let Some(registry) = &self.registry
            && let Err(e) = registry.remove_manifest(reference, digest.as_deref()).await
        {
            problems.push(e);
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(failed(problems.join("; ")))
        }
    }

    async fn collect(&self, in_use: &InUse, dry_run: bool) -> Result<Vec<GcItem>> {
        let mut out = self.collect_images(in_use, dry_run).await?;
        if let Some(registry) = &self.registry {
            out.extend(
                registry
                    .collect(self.cfg.registry.as_deref(), in_use, dry_run)
                    .await?,
            );
        }
        Ok(out)
    }

    async fn health(&self) -> Result<()> {
        self.docker.ping().await.map(|_| ()).map_err(|e| {
            Error::Unavailable(format!("Docker engine at {}: {e}", self.cfg.docker_host))
        })
    }
}
