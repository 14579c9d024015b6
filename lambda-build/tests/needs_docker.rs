//! The Docker builder against a real engine and registry (scripts/infra/docker-start,
//! registry-start and scripts/base-images/build). Built and run when LAMBDA_IT lists docker
//! (feature `needs-docker`); then a missing engine FAILS these tests.

use bytes::Bytes;
use futures::StreamExt;
use lambda_build::{BuildRequest, DockerBuilder, DockerBuilderConfig, Error, ImageBuilder};
use lambda_core::archive::{Limits, validate_bytes};
use lambda_core::{Artifact, LambdaId, LambdaType, Parameters};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The tests of this file build images with the same first steps. On a cold
/// engine, two classic-builder builds running at once each create their own
/// layer for a shared step, and a later build may then pick the sibling whose
/// children do not hold the layer we want to see reused. Building one test at
/// a time keeps the cache assertions about this file's own builds.
static ENGINE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: LAMBDA_IT lists docker, so start the engine, the registry and the base images with scripts/infra/ and scripts/base-images/")
    })
}

fn builder() -> DockerBuilder {
    DockerBuilder::connect(DockerBuilderConfig {
        docker_host: env("DOCKER_HOST"),
        registry: Some(env("LAMBDA_IT_REGISTRY")),
        base_tag: env("LAMBDA_IT_BASE_TAG"),
        network_mode: Some("host".into()),
        pip_ca_bundle: std::env::var("SSL_CERT_FILE")
            .ok()
            .or_else(|| Some("/etc/ssl/certs/ca-certificates.crt".into()))
            .map(Into::into),
        pip_index_url: None,
        registry_auth: None,
        insecure_registries: Vec::new(),
    })
    .unwrap()
}

async fn build(
    id: LambdaId,
    version: u64,
    files: &[(&str, &str)],
    params: Parameters,
) -> (lambda_build::Result<Artifact>, String) {
    let bytes = lambda_core::pack::pack_files(
        files
            .iter()
            .map(|(n, d)| (n.to_string(), d.as_bytes().to_vec()))
            .collect(),
    );
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let req = BuildRequest {
        lambda_id: id,
        version,
        lambda_type: LambdaType::Standalone,
        archive: validate_bytes(&bytes, &Limits::default()).unwrap(),
        archive_bytes: Bytes::from(bytes),
        parameters: params,
        timeout: Duration::from_secs(600),
    };
    let r = builder().build(req, tx, CancellationToken::new()).await;
    let mut log = String::new();
    while let Ok(l) = rx.try_recv() {
        log.push_str(&l);
        log.push('\n');
    }
    (r, log)
}

const MAIN: &str = "import six\n\nasync def main(request):\n    return {'six': six.__version__}\n";

#[tokio::test]
async fn builds_pushes_and_reuses_the_requirements_layer() {
    let _engine = ENGINE.lock().await;
    let id = LambdaId::new();
    // Requirements of this run only, so the first build really installs them.
    let reqs = format!("six==1.17.0\n# run {id}\n");
    let files = [
        ("lambda_main.py", MAIN),
        ("requirements.txt", reqs.as_str()),
    ];
    let (r, log) = build(id, 1, &files, Parameters::default()).await;
    let Artifact::Image { reference, digest } = r.unwrap_or_else(|e| panic!("{e}\n{log}")) else {
        panic!()
    };
    assert!(
        reference.ends_with(&format!("luna-lambda/{id}:v1")),
        "{reference}"
    );
    assert!(
        digest.as_deref().is_some_and(|d| d.starts_with("sha256:")),
        "{digest:?}\n{log}"
    );
    // The pushed image can be pulled back by its digest.
    let docker = bollard::Docker::connect_with_unix(
        env("DOCKER_HOST").trim_start_matches("unix://"),
        120,
        bollard::API_DEFAULT_VERSION,
    )
    .unwrap();
    let repo = reference.rsplit_once(':').unwrap().0.to_owned();
    let by_digest = format!("{repo}@{}", digest.as_deref().unwrap());
    let pull = |image: String| {
        let docker = docker.clone();
        async move {
            let opts = bollard::query_parameters::CreateImageOptionsBuilder::default()
                .from_image(&image)
                .build();
            let mut s = docker.create_image(Some(opts), None, None);
            while let Some(item) = s.next().await {
                item?;
            }
            Ok::<_, bollard::errors::Error>(())
        }
    };
    pull(by_digest.clone()).await.unwrap();
    assert!(docker.inspect_image(&by_digest).await.is_ok());
    // A code-only change: the requirements layer comes from the cache.
    let files2 = [
        (
            "lambda_main.py",
            "import six\n\nasync def main(request):\n    return {'v': 2}\n",
        ),
        ("requirements.txt", reqs.as_str()),
    ];
    let (r2, log2) = build(id, 2, &files2, Parameters::default()).await;
    r2.unwrap_or_else(|e| panic!("{e}\n{log2}"));
    // Removing an artifact removes the image and its manifest in the registry.
    let v1 = Artifact::Image {
        reference: reference.clone(),
        digest: digest.clone(),
    };
    builder().remove(&id, &v1).await.unwrap();
    let manifest = format!(
        "http://{}/v2/{}/manifests/{}",
        env("LAMBDA_IT_REGISTRY"),
        repo.split_once('/').unwrap().1,
        digest.as_deref().unwrap()
    );
    let status = reqwest::Client::new()
        .get(&manifest)
        .header(
            "Accept",
            "application/vnd.docker.distribution.manifest.v2+json",
        )
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(
        status.as_u16(),
        404,
        "the manifest is gone from the registry: {manifest}"
    );
    assert!(
        docker.inspect_image(&reference).await.is_err(),
        "the tag is gone from the engine"
    );
    let first = log
        .lines()
        .position(|l| l.starts_with("Step") && l.contains("pip install"))
        .expect("the pip step");
    assert!(
        !log.lines()
            .skip(first + 1)
            .take(2)
            .any(|l| l.contains("Using cache")),
        "the first build installs: {log}"
    );
    // A code-only change: the dependencies image is in the registry, the code is assembled
    // onto it there, and the engine builds nothing.
    assert!(
        log2.contains("is in the registry: no docker build") && !log2.contains("Step"),
        "{log2}"
    );
}

#[tokio::test]
async fn a_failing_requirement_and_a_failing_user_command_fail_with_their_step() {
    let _engine = ENGINE.lock().await;
    let (r, log) = build(
        LambdaId::new(),
        1,
        &[
            ("lambda_main.py", MAIN),
            ("requirements.txt", "luna-lambda-no-such-package-xyz==1\n"),
        ],
        Parameters::default(),
    )
    .await;
    let e = r.unwrap_err();
    assert!(matches!(e, Error::Failed { .. }), "{e}");
    assert!(log.contains("luna-lambda-no-such-package-xyz"), "{log}");
    let params = Parameters {
        user_docker_commands: vec!["RUN false".into()],
        ..Parameters::default()
    };
    let (r, log) = build(LambdaId::new(), 1, &[("lambda_main.py", MAIN)], params).await;
    let e = r.unwrap_err();
    assert!(
        e.to_string().contains("false") || log.contains("RUN false"),
        "{e}\n{log}"
    );
}

/// Runs `cmd` in a container of `image` (host network, as root when `root`) with `binds` and
/// `env`; answers (exit code, output). With `wait` false it answers at once, the container
/// running (the caller removes it).
async fn run_container(
    docker: &bollard::Docker,
    image: &str,
    cmd: Option<Vec<String>>,
    binds: Vec<String>,
    env: Vec<String>,
    wait: bool,
) -> (String, i64, String) {
    use bollard::models::{ContainerCreateBody, HostConfig};
    let name = format!("lambda-build-test-{}", uuid::Uuid::new_v4().simple());
    let created = docker
        .create_container(
            Some(
                bollard::query_parameters::CreateContainerOptionsBuilder::default()
                    .name(&name)
                    .build(),
            ),
            ContainerCreateBody {
                image: Some(image.to_owned()),
                cmd,
                user: wait.then(|| "0".to_owned()),
                env: Some(env),
                host_config: Some(HostConfig {
                    network_mode: Some("host".into()),
                    binds: Some(binds),
                    ..Default::default()
                }),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    docker
        .start_container(
            &created.id,
            None::<bollard::query_parameters::StartContainerOptions>,
        )
        .await
        .unwrap();
    if !wait {
        return (created.id, 0, String::new());
    }
    let mut waited = docker.wait_container(
        &created.id,
        None::<bollard::query_parameters::WaitContainerOptions>,
    );
    let code = match waited.next().await {
        Some(Ok(r)) => r.status_code,
        Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => code,
        other => panic!("waiting for the container: {other:?}"),
    };
    let mut logs = docker.logs(
        &created.id,
        Some(
            bollard::query_parameters::LogsOptionsBuilder::default()
                .stdout(true)
                .stderr(true)
                .build(),
        ),
    );
    let mut out = String::new();
    while let Some(Ok(chunk)) = logs.next().await {
        out.push_str(&chunk.to_string());
    }
    let _ = docker
        .remove_container(
            &created.id,
            Some(
                bollard::query_parameters::RemoveContainerOptionsBuilder::default()
                    .force(true)
                    .build(),
            ),
        )
        .await;
    (created.id, code, out)
}

/// The Kubernetes builder's two halves with a Docker engine standing in for the pod: the agent
/// runs in a container of the base image (a root step with a deleted file, pip), pushes a
/// dependencies image; the server's assembly puts the code on top in the registry; the result,
/// pulled by digest, runs the lambda as luna with the step's changes and whiteout honoured.
#[tokio::test]
async fn in_cluster_build_agent_and_registry_assembly_make_a_runnable_image() {
    use lambda_build::assemble::{Assembler, code_layer, reference};
    use lambda_core::build_steps::{PIP_CA_PATH, Pip, plan};
    let registry = env("LAMBDA_IT_REGISTRY");
    let tag = env("LAMBDA_IT_BASE_TAG");
    let docker = bollard::Docker::connect_with_unix(
        env("DOCKER_HOST").trim_start_matches("unix://"),
        300,
        bollard::API_DEFAULT_VERSION,
    )
    .unwrap();
    let id = LambdaId::new();
    let commands: Vec<String> = [
        "USER root",
        "RUN rm /etc/debian_version && echo made > /opt/made-by-root",
        "USER luna",
        "ENV GREETING=\"hello there\"",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let plan = plan(
        &commands,
        true,
        &Pip {
            index_url: None,
            ca_bundle: true,
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let deps_tag = format!("test-{id}");
    let spec = lambda_build::deps::agent_spec(
        &format!("http://{registry}"),
        ("lpa-lambda-base", &tag),
        &deps_tag,
        &plan,
    );
    let mut spec = spec;
    spec["scratch"] = "/lambda-build/scratch".into();
    std::fs::create_dir(dir.path().join("scratch")).unwrap();
    std::fs::write(dir.path().join("agent.py"), lambda_build::deps::AGENT).unwrap();
    std::fs::write(dir.path().join("spec.json"), spec.to_string()).unwrap();
    std::fs::write(
        dir.path().join("requirements.txt"),
        format!("six==1.17.0\n# {id}\n"),
    )
    .unwrap();
    let ca = std::env::var("SSL_CERT_FILE").unwrap_or("/etc/ssl/certs/ca-certificates.crt".into());
    std::fs::copy(&ca, dir.path().join("pip-ca.pem")).unwrap();
    assert!(PIP_CA_PATH.starts_with("/lambda-build/"));
    let base = format!("{registry}/lpa-lambda-base:{tag}");
    let (_, code, log) = run_container(
        &docker,
        &base,
        Some(vec![
            "python3".into(),
            "/lambda-build/agent.py".into(),
            "/lambda-build/spec.json".into(),
        ]),
        vec![format!("{}:/lambda-build", dir.path().display())],
        Vec::new(),
        true,
    )
    .await;
    assert_eq!(code, 0, "the agent failed:\n{log}");
    assert!(log.contains("[1/2] RUN rm /etc/debian_version"), "{log}");
    let pushed = log.lines().last().unwrap_or_default();
    assert!(pushed.starts_with("pushed sha256:"), "{log}");

    let main = "import os, six\n\nasync def main(request):\n    return {'six': six.__version__, \
        'uid': os.getuid(), 'made': open('/opt/made-by-root').read().strip(), \
        'debian_version': os.path.exists('/etc/debian_version'), \
        'greeting': os.environ.get('GREETING'), \
        'owns_code': os.stat('/srv/lambda/run.py').st_uid == os.getuid()}\n";
    let zip = lambda_core::pack::pack_files(vec![
        ("lambda_main.py".into(), main.as_bytes().to_vec()),
        ("requirements.txt".into(), b"six==1.17.0\n".to_vec()),
    ]);
    let archive = validate_bytes(&zip, &Limits::default()).unwrap();
    let layer = code_layer(&zip, &archive).unwrap();
    let assembler = Assembler::new(&registry, &[], None);
    let deps = reference(&format!(
        "{registry}/{}:{deps_tag}",
        lambda_build::deps::REPOSITORY
    ))
    .unwrap();
    assert!(assembler.digest(&deps).await.unwrap().is_some());
    let target = reference(&format!("{registry}/luna-lambda/{id}:v1")).unwrap();
    assert!(assembler.digest(&target).await.unwrap().is_none());
    let digest = assembler
        .assemble(&deps, &target, &layer, LambdaType::Standalone)
        .await
        .unwrap();
    assert_eq!(
        assembler.digest(&target).await.unwrap(),
        Some(digest.clone())
    );

    // Pulled back by digest and run as a lambda replica would be.
    let image = format!("{registry}/luna-lambda/{id}@{digest}");
    let mut pull = docker.create_image(
        Some(
            bollard::query_parameters::CreateImageOptionsBuilder::default()
                .from_image(&image)
                .build(),
        ),
        None,
        None,
    );
    while let Some(item) = pull.next().await {
        item.unwrap();
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (container, _, _) = run_container(
        &docker,
        &image,
        None,
        Vec::new(),
        vec![format!("LAMBDA_PORT={port}")],
        false,
    )
    .await;
    let client = reqwest::Client::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let answer = loop {
        if let Ok(r) = client
            .post(format!("http://127.0.0.1:{port}/main"))
            .json(&serde_json::json!({}))
            .send()
            .await
            && r.status().is_success()
        {
            break r.json::<serde_json::Value>().await.unwrap();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the lambda never answered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _ = docker
        .remove_container(
            &container,
            Some(
                bollard::query_parameters::RemoveContainerOptionsBuilder::default()
                    .force(true)
                    .build(),
            ),
        )
        .await;
    assert_eq!(
        answer,
        serde_json::json!({"six": "1.17.0", "uid": 1000, "made": "made",
            "debian_version": false, "greeting": "hello there", "owns_code": true})
    );
}
