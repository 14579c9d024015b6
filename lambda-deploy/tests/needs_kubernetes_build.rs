//! The Kubernetes builder (`lambda_build::KubeBuilder`) on a real control plane: dependencies
//! built by a Job whose pod the node simulator runs in a container of the real base image (the
//! build agent really runs), the code assembled in the registry, the result run as a Deployment
//! by the Kubernetes orchestrator and invoked. No Docker engine is used by the builder (the
//! simulator, standing in for a kubelet, uses one). Built and run when LAMBDA_IT lists
//! kubernetes (feature `needs-kubernetes`).

mod conformance;
use lambda_testkit::kube_sim;

use conformance::*;
use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use kube_sim::{kubectl, sim};
use lambda_build::{BuildRequest, ImageBuilder, KubeBuilder, KubeBuilderConfig};
use lambda_core::{Artifact, LambdaId, LambdaType, Parameters};
use lambda_deploy::{KubeCredentials, KubeOrchestrator, KubeOrchestratorConfig, Orchestrator};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Builds hold it shared; the garbage collection test alone (it judges the whole registry).
static REGISTRY: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

fn credentials() -> KubeCredentials {
    KubeCredentials::Kubeconfig {
        path: Some(env("KUBECONFIG").into()),
        context: None,
    }
}

fn pip_ca() -> std::path::PathBuf {
    std::env::var("SSL_CERT_FILE")
        .unwrap_or_else(|_| "/etc/ssl/certs/ca-certificates.crt".into())
        .into()
}

async fn builder(instance: &str) -> KubeBuilder {
    sim();
    // A test that finds the garbage collection test running waits for it (see REGISTRY).
    let client = lambda_deploy::kube::client(&credentials()).await.unwrap();
    KubeBuilder::new(
        client,
        KubeBuilderConfig {
            registry: env("LAMBDA_IT_REGISTRY"),
            base_tag: env("LAMBDA_IT_BASE_TAG"),
            namespace: "default".into(),
            instance: instance.to_owned(),
            pip_ca_bundle: Some(pip_ca()),
            job_resources: Some(serde_json::json!({"limits": {"memory": "1Gi"}})),
            ..KubeBuilderConfig::default()
        },
    )
}

async fn orchestrator(instance: &str) -> Arc<KubeOrchestrator> {
    KubeOrchestrator::open(KubeOrchestratorConfig {
        credentials: credentials(),
        instance: instance.to_owned(),
        endpoint: "http://{pod_ip}:8000".into(),
        start_timeout: Duration::from_secs(90),
        stop_timeout: Duration::from_secs(30),
        ..KubeOrchestratorConfig::default()
    })
    .await
    .unwrap()
}

/// Builds `files` as version `version` of `id`: the outcome and the build log.
async fn build(
    b: &KubeBuilder,
    id: LambdaId,
    version: u64,
    lambda_type: LambdaType,
    files: Vec<(String, Vec<u8>)>,
    params: Parameters,
) -> (lambda_build::Result<Artifact>, String) {
    let bytes = lambda_core::pack::pack_files(files);
    let archive = lambda_core::archive::validate_bytes_for(
        &bytes,
        &lambda_core::archive::Limits::default(),
        lambda_type,
    )
    .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let req = BuildRequest {
        lambda_id: id,
        version,
        lambda_type,
        archive,
        archive_bytes: bytes.into(),
        parameters: params,
        timeout: Duration::from_secs(600),
    };
    let r = b.build(req, tx, CancellationToken::new()).await;
    let mut log = String::new();
    while let Ok(line) = rx.try_recv() {
        log.push_str(&line);
        log.push('\n');
    }
    (r, log)
}

fn commands(c: &[&str]) -> Parameters {
    Parameters {
        user_docker_commands: c.iter().map(|s| (*s).to_owned()).collect(),
        ..Parameters::default()
    }
}

/// The build Jobs of lambda `id` the API server has now.
fn jobs_of(id: &LambdaId) -> String {
    kubectl(&[
        "get",
        "jobs,configmaps",
        "-l",
        &format!("luna-lambda.io/id={id},luna-lambda.io/role=build"),
        "-o",
        "name",
    ])
}

/// Every version of every object of kind `K` labelled for `id` from now on, seen through a
/// watch of the API server.
fn watch<K>(id: LambdaId) -> Arc<Mutex<Vec<K>>>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + 'static,
{
    let seen = Arc::new(Mutex::new(Vec::new()));
    let out = seen.clone();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    tokio::spawn(async move {
        let client = lambda_deploy::kube::client(&credentials()).await.unwrap();
        let objects: kube::Api<K> = kube::Api::namespaced(client, "default");
        let cfg =
            kube::runtime::watcher::Config::default().labels(&format!("luna-lambda.io/id={id}"));
        let mut events = kube::runtime::watcher(objects, cfg).boxed();
        let mut ready = Some(ready_tx);
        while let Some(ev) = events.next().await {
            match ev {
                Ok(kube::runtime::watcher::Event::InitDone) => {
                    if let Some(r) = ready.take() {
                        let _ = r.send(());
                    }
                }
                Ok(
                    kube::runtime::watcher::Event::Apply(o)
                    | kube::runtime::watcher::Event::InitApply(o),
                ) => out.lock().unwrap().push(o),
                _ => {}
            }
        }
    });
    ready_rx.recv_timeout(Duration::from_secs(30)).unwrap();
    seen
}

/// Deploys an artifact and waits for its endpoint: (orchestrator endpoint, time to Ready).
async fn deploy(
    orch: &KubeOrchestrator,
    id: LambdaId,
    version: u64,
    lambda_type: LambdaType,
    artifact: Artifact,
) -> (String, Duration) {
    let t = Instant::now();
    let mut s = spec(
        id,
        "built-in-cluster",
        version,
        artifact,
        Parameters::default(),
    );
    s.lambda_type = lambda_type;
    orch.deploy(s).await.unwrap();
    (orch.endpoint(&id).unwrap(), t.elapsed())
}

fn example_type(name: &str) -> LambdaType {
    match name {
        "handlers" | "handlers-msgpack" => LambdaType::Handlers,
        "tasks-sum" => LambdaType::Tasks,
        _ => LambdaType::Standalone,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_cluster_build_of_every_example_is_pushed_run_and_answers() {
    let _registry = REGISTRY.read().await;
    let instance = format!("build-{}", LambdaId::new());
    let b = builder(&instance).await;
    let orch = orchestrator(&instance).await;
    let mut examples: Vec<String> = std::fs::read_dir(workspace().join("examples"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    examples.sort();
    assert!(examples.len() >= 10, "{examples:?}");
    let registry = env("LAMBDA_IT_REGISTRY");
    for name in &examples {
        let id = LambdaId::new();
        let kind = example_type(name);
        let (r, log) = build(
            &b,
            id,
            1,
            kind,
            example_files_of(name, kind),
            Parameters::default(),
        )
        .await;
        let artifact = r.unwrap_or_else(|e| panic!("{name}: {e}\n{log}"));
        let Artifact::Image { reference, digest } = &artifact else {
            panic!("{name}: {artifact:?}")
        };
        assert_eq!(reference, &format!("{registry}/luna-lambda/{id}:v1"));
        let digest = digest.clone().unwrap();
        let has_job = log.contains("==> build job");
        assert_eq!(
            has_job,
            name == "with-requirements",
            "{name}: only requirements need a build job\n{log}"
        );
        // The registry serves the manifest by its digest.
        let by_digest = reqwest::Client::new()
            .head(format!(
                "http://{registry}/v2/luna-lambda/{id}/manifests/{digest}"
            ))
            .header("Accept", "application/vnd.oci.image.manifest.v1+json")
            .send()
            .await
            .unwrap();
        assert_eq!(by_digest.status(), 200, "{name}");
        let (url, _) = deploy(&orch, id, 1, kind, artifact.clone()).await;
        let health = reqwest::get(format!("{url}/healthcheck")).await.unwrap();
        assert_eq!(health.status(), 200, "{name}");
        if kind != LambdaType::Tasks {
            // Invoked: the lambda's own answer to an empty request (some refuse it with a 4xx).
            let r = reqwest::Client::new()
                .post(format!("{url}/main"))
                .json(&serde_json::json!({}))
                .send()
                .await
                .unwrap();
            assert!(
                r.status().as_u16() < 500,
                "{name}: {}",
                r.text().await.unwrap()
            );
        }
        if name == "with-requirements" {
            let (status, body) = post(&url, serde_json::json!({})).await.unwrap();
            assert_eq!(
                (status, body),
                (
                    200,
                    serde_json::json!({"six_version": "1.17.0", "is_py3": true})
                )
            );
        }
        if name == "hello" {
            let (status, body) = post(&url, serde_json::json!({"k": 1})).await.unwrap();
            assert_eq!((status, body), (200, serde_json::json!({"echo": {"k": 1}})));
        }
        orch.undeploy(&id).await.unwrap();
        b.remove(&id, &artifact).await.unwrap();
        eventually(
            "the build's Job and ConfigMap are gone",
            Duration::from_secs(30),
            async || jobs_of(&id).is_empty(),
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_cluster_build_failures_end_with_the_step_and_its_output() {
    let _registry = REGISTRY.read().await;
    let instance = format!("build-{}", LambdaId::new());
    let b = builder(&instance).await;
    let id = LambdaId::new();
    let config_maps = watch::<ConfigMap>(id);
    let files = |reqs: &str| {
        let mut f = example_files("hello");
        f.push(("requirements.txt".into(), reqs.as_bytes().to_vec()));
        f
    };
    let (r, log) = build(
        &b,
        id,
        1,
        LambdaType::Standalone,
        files(&format!(
            "no-such-package-{}==1.0\n",
            uuid::Uuid::new_v4().simple()
        )),
        Parameters::default(),
    )
    .await;
    let e = r.unwrap_err().to_string();
    assert!(
        e.contains("step 1/1 failed (exit code 1): pip install -r requirements.txt"),
        "{e}\n{log}"
    );
    assert!(
        log.contains("No matching distribution found for no-such-package-"),
        "{log}"
    );
    let (r, log) = build(
        &b,
        id,
        2,
        LambdaType::Standalone,
        example_files("hello"),
        commands(&["RUN echo about to fail && exit 7"]),
    )
    .await;
    let e = r.unwrap_err().to_string();
    assert!(
        e.contains("step 1/1 failed (exit code 7): RUN echo about to fail && exit 7"),
        "{e}\n{log}"
    );
    assert!(log.contains("about to fail"), "{log}");
    // Each build's ConfigMap was owned by its Job (so a server killed mid-build leaves nothing
    // once Kubernetes removes the finished Job).
    let seen = config_maps.lock().unwrap().clone();
    let mut owned = std::collections::BTreeMap::<String, bool>::new();
    for cm in &seen {
        let name = cm.metadata.name.clone().unwrap_or_default();
        let by_job = cm
            .metadata
            .owner_references
            .iter()
            .flatten()
            .any(|o| o.kind == "Job" && o.name == name && !o.uid.is_empty());
        *owned.entry(name).or_default() |= by_job;
    }
    assert_eq!(owned.len(), 2, "a ConfigMap per build: {seen:#?}");
    assert!(owned.values().all(|o| *o), "{owned:?}");
    eventually(
        "failed builds leave no Job",
        Duration::from_secs(30),
        async || jobs_of(&id).is_empty(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_cluster_build_root_step_with_apt_and_a_deleted_file() {
    let _registry = REGISTRY.read().await;
    let instance = format!("build-{}", LambdaId::new());
    let b = builder(&instance).await;
    let orch = orchestrator(&instance).await;
    let id = LambdaId::new();
    let main = "import os, subprocess\n\nasync def main(request):\n    return {\
        'jq': subprocess.run(['jq', '--version'], capture_output=True, text=True).stdout.strip(), \
        'debian_version': os.path.exists('/etc/debian_version'), 'uid': os.getuid()}\n";
    let params = commands(&[
        "USER root",
        "RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends jq && rm -rf /var/lib/apt/lists/*",
        "RUN rm /etc/debian_version",
        "USER luna",
    ]);
    let (r, log) = build(
        &b,
        id,
        1,
        LambdaType::Standalone,
        vec![("lambda_main.py".into(), main.as_bytes().to_vec())],
        params,
    )
    .await;
    let artifact = r.unwrap_or_else(|e| panic!("{e}\n{log}"));
    assert!(log.contains("(as root: a step is USER root)"), "{log}");
    let (url, _) = deploy(&orch, id, 1, LambdaType::Standalone, artifact.clone()).await;
    let (status, body) = post(&url, serde_json::json!({})).await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body["jq"].as_str().unwrap().starts_with("jq-"), "{body}");
    assert_eq!(
        body["debian_version"], false,
        "the whiteout hides the deleted file"
    );
    assert_eq!(body["uid"], 1000, "the lambda runs as luna");
    orch.undeploy(&id).await.unwrap();
    b.remove(&id, &artifact).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_cluster_build_code_only_update_starts_no_job() {
    let _registry = REGISTRY.read().await;
    let instance = format!("build-{}", LambdaId::new());
    let b = builder(&instance).await;
    let orch = orchestrator(&instance).await;
    let id = LambdaId::new();
    let reqs = format!("six==1.17.0\n# {id}\n");
    let files = |v: u32| {
        vec![
            (
                "lambda_main.py".to_owned(),
                format!("import six\n\nasync def main(request):\n    return {{'v': {v}}}\n")
                    .into_bytes(),
            ),
            ("requirements.txt".to_owned(), reqs.clone().into_bytes()),
        ]
    };
    let (r, log) = build(
        &b,
        id,
        1,
        LambdaType::Standalone,
        files(1),
        Parameters::default(),
    )
    .await;
    let v1 = r.unwrap_or_else(|e| panic!("{e}\n{log}"));
    assert!(log.contains("==> build job"), "{log}");
    deploy(&orch, id, 1, LambdaType::Standalone, v1).await;
    let jobs = watch::<Job>(id);
    let t = Instant::now();
    let (r, log) = build(
        &b,
        id,
        2,
        LambdaType::Standalone,
        files(2),
        Parameters::default(),
    )
    .await;
    let v2 = r.unwrap_or_else(|e| panic!("{e}\n{log}"));
    let built = t.elapsed();
    let (url, rolled) = deploy(&orch, id, 2, LambdaType::Standalone, v2).await;
    let live = t.elapsed();
    assert!(log.contains("is in the registry: no build job"), "{log}");
    let started: Vec<String> = jobs
        .lock()
        .unwrap()
        .iter()
        .map(|j| j.metadata.name.clone().unwrap_or_default())
        .collect();
    assert_eq!(
        started,
        [] as [String; 0],
        "a code-only update starts no Job"
    );
    let (status, body) = post(&url, serde_json::json!({})).await.unwrap();
    assert_eq!((status, body), (200, serde_json::json!({"v": 2})));
    eprintln!(
        "code-only update: assembled in {} ms, rolled out in {} ms, {} ms from build to new pods Ready",
        built.as_millis(),
        rolled.as_millis(),
        live.as_millis()
    );
    orch.undeploy(&id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_cluster_build_gc_removes_dependencies_images_no_lambda_image_is_built_on() {
    let _registry = REGISTRY.write().await;
    let instance = format!("build-{}", LambdaId::new());
    let b = builder(&instance).await;
    let registry = env("LAMBDA_IT_REGISTRY");
    let id = LambdaId::new();
    let mut files = example_files("hello");
    files.push((
        "requirements.txt".into(),
        format!("six==1.17.0\n# {id}\n").into_bytes(),
    ));
    let (r, log) = build(
        &b,
        id,
        1,
        LambdaType::Standalone,
        files,
        Parameters::default(),
    )
    .await;
    let artifact = r.unwrap_or_else(|e| panic!("{e}\n{log}"));
    let key = log
        .lines()
        .find_map(|l| l.split("luna-lambda-deps:").nth(1))
        .map(|k| k.split_whitespace().next().unwrap().to_owned())
        .unwrap_or_else(|| panic!("the log names the dependencies image: {log}"));
    let deps = format!("http://{registry}/v2/luna-lambda-deps/manifests/{key}");
    let status = |url: String| async move {
        reqwest::Client::new()
            .head(url)
            .header("Accept", "application/vnd.oci.image.manifest.v1+json")
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(status(deps.clone()).await, 200);
    // Kept: the lambda's version is in use, so is what it is built on.
    let mut in_use = lambda_build::InUse::default();
    in_use.lambdas.insert(
        id,
        lambda_build::KeptVersions {
            versions: [1].into(),
            current: 1,
        },
    );
    in_use.artifacts.push(artifact.clone());
    let kept = b.collect(&in_use, false).await.unwrap();
    assert!(
        !kept
            .iter()
            .any(|i| i.what.contains(&key) || i.what.contains(&id.to_string())),
        "{kept:?}"
    );
    assert_eq!(status(deps.clone()).await, 200);
    // What a server killed mid-build leaves: a build Job (and its ConfigMap) that ended.
    eventually(
        "the build's own Job is removed",
        Duration::from_secs(30),
        async || jobs_of(&id).is_empty(),
    )
    .await;
    let left = left_build_job(&instance, id).await;
    // The lambda gone: a dry run lists its image, its dependencies and the Job left behind, the
    // real run removes them.
    let gone = lambda_build::InUse::default();
    let listed = b.collect(&gone, true).await.unwrap();
    let ours = |items: &[lambda_core::api::GcItem]| {
        let mut v: Vec<String> = items
            .iter()
            .filter(|i| i.what.contains(&key) || i.what.contains(&id.to_string()))
            .map(|i| i.kind.clone())
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        ours(&listed),
        ["build-job", "dependencies image", "manifest"],
        "{listed:?}"
    );
    assert!(
        listed.iter().any(|i| i.what == format!("default/{left}")),
        "{listed:?}"
    );
    assert_eq!(status(deps.clone()).await, 200, "a dry run removes nothing");
    assert_eq!(jobs_of(&id).lines().count(), 2, "a dry run removes nothing");
    let removed = b.collect(&gone, false).await.unwrap();
    assert_eq!(ours(&removed), ours(&listed));
    assert_eq!(status(deps).await, 404);
    eventually(
        "the Job left behind and its ConfigMap are removed",
        Duration::from_secs(30),
        async || jobs_of(&id).is_empty(),
    )
    .await;
}

/// A build Job of `instance` for `id` that ran (its agent only says so) and ended, with its
/// ConfigMap, as a server killed mid-build leaves them: its name, once the Job has completed.
async fn left_build_job(instance: &str, id: LambdaId) -> String {
    use lambda_core::render;
    let name = format!("lambda-build-{id}-v9-crash");
    let image = render::base_image_ref(
        Some(&env("LAMBDA_IT_REGISTRY")),
        lambda_core::BaseImage::Base,
        &env("LAMBDA_IT_BASE_TAG"),
    );
    let selector = std::collections::BTreeMap::new();
    let spec = render::BuildJobSpec {
        name: &name,
        id,
        version: 9,
        instance,
        image: &image,
        root: false,
        deadline_secs: 600,
        resources: None,
        node_selector: &selector,
        registry_secret: None,
    };
    let data = std::collections::BTreeMap::from([
        ("agent.py".to_owned(), "print('built')\n".to_owned()),
        ("spec.json".to_owned(), "{}".to_owned()),
    ]);
    let client = lambda_deploy::kube::client(&credentials()).await.unwrap();
    let post = kube::api::PostParams::default();
    let cms: kube::Api<ConfigMap> = kube::Api::namespaced(client.clone(), "default");
    let cm = serde_json::from_value(render::render_build_config_map(&spec, &data)).unwrap();
    cms.create(&post, &cm).await.unwrap();
    let jobs: kube::Api<Job> = kube::Api::namespaced(client, "default");
    let job = serde_json::from_value(render::render_build_job(&spec)).unwrap();
    jobs.create(&post, &job).await.unwrap();
    eventually(
        "the Job left behind completes",
        Duration::from_secs(90),
        async || {
            jobs.get(&name)
                .await
                .ok()
                .and_then(|j| j.status)
                .is_some_and(|s| {
                    s.conditions
                        .unwrap_or_default()
                        .iter()
                        .any(|c| c.type_ == "Complete" && c.status == "True")
                })
        },
    )
    .await;
    name
}
