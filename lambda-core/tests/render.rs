//! Golden-file tests of the pure renderers (`UPDATE_GOLDEN=1` rewrites the files after a
//! deliberate change; review the diff).

mod support;

use lambda_core::archive::{Limits, validate_bytes};
use lambda_core::render::{
    BuildJobSpec, DeploySpec, DockerfileSpec, build_context, lambda_image_ref,
    parse_lambda_image_ref, render_build_config_map, render_build_job, render_config_map,
    render_deployment, render_dockerfile, render_service,
};
use lambda_core::{BaseImage, LambdaId, LambdaName, LambdaType, Parameters};
use support::{MAIN_OK, golden, zip_of};

const RUNTIME: &[&str] = &[
    "run.py",
    "luna_lambda_tools/__init__.py",
    "requirements.txt",
];

fn id() -> LambdaId {
    "6f1c1a4e-8f0e-4f57-9d1b-2a8f3c9e0b11".parse().unwrap()
}

#[test]
fn dockerfile_minimal() {
    let spec = DockerfileSpec {
        registry: None,
        base_image: BaseImage::Base,
        base_tag: "1.0.0",
        has_requirements: false,
        user_docker_commands: &[],
        lambda_type: LambdaType::Standalone,
        pip_index_url: None,
        pip_ca_bundle: false,
    };
    golden("dockerfile_minimal.txt", &render_dockerfile(&spec));
}

#[test]
fn dockerfile_full() {
    let cmds = vec![
        "USER root".to_owned(),
        "RUN yum install -y epel-release".to_owned(),
        "RUN yum install -y libjpeg-turbo-devel".to_owned(),
        "USER luna".to_owned(),
    ];
    let spec = DockerfileSpec {
        registry: Some("registry.local:5000/"),
        base_image: BaseImage::Fsdk,
        base_tag: "v5.34.0",
        has_requirements: true,
        user_docker_commands: &cmds,
        lambda_type: LambdaType::Handlers,
        pip_index_url: Some("https://pypi.mirror.local/simple"),
        pip_ca_bundle: true,
    };
    let text = render_dockerfile(&spec);
    // The requirements layer comes before any code is copied, so code-only changes reuse it.
    let pip = text.find("pip install").unwrap();
    assert!(pip < text.find("COPY --chown=luna:luna lambda/").unwrap());
    assert!(
        text.trim_end()
            .ends_with("CMD [\"python3\", \"/srv/lambda/run.py\"]")
    );
    golden("dockerfile_full.txt", &text);

    let archive = validate_bytes(
        &zip_of(&[
            ("lambda_main.py", MAIN_OK),
            ("requirements.txt", "pillow==10.0.0\n"),
            ("run.py", "replaced"),
            ("pkg/b.py", ""),
            ("pkg/a.py", ""),
        ]),
        &Limits::default(),
    )
    .unwrap();
    let ctx: Vec<String> = build_context(&archive, RUNTIME, &spec)
        .into_iter()
        .map(|f| format!("{} <- {:?}\n", f.path, f.source))
        .collect();
    golden("context_full.txt", &ctx.concat());
}

fn full_params() -> Parameters {
    Parameters::parse(
        br#"{"workers":2,"env":{"MODE":"fast"},"user_config":{"threshold":0.5},
            "deploy_parameters":{"pod_count":3,"namespace":"lambdas","selector":{"disktype":"ssd"},"enable_gpu":true,
            "resources":{"cpu_request":"250m","cpu_limit":"2","memory_request":"256Mi","memory_limit":"1Gi"}}}"#,
    )
    .unwrap()
}

#[test]
fn kubernetes_objects() {
    let name = LambdaName::parse("face-filter").unwrap();
    let params = full_params();
    let image = lambda_image_ref(Some("registry.local:5000"), &id(), 3);
    let spec = DeploySpec {
        id: id(),
        name: &name,
        lambda_type: LambdaType::Standalone,
        version: 3,
        image: &image,
        parameters: &params,
        config_hash: "c0ffee",
        instance: "default",
        image_pull_secrets: &["regcred".to_owned()],
        replicas: params.deploy_parameters.pod_count,
    };
    let dep = render_deployment(&spec);
    assert_eq!(dep["metadata"]["name"], format!("lambda-{}", id()));
    assert_eq!(dep["spec"]["replicas"], 3);
    assert_eq!(
        dep["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"],
        0
    );
    let c = &dep["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["resources"]["limits"]["nvidia.com/gpu"], "1");
    assert!(
        c["env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "NVIDIA_DRIVER_CAPABILITIES")
    );
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/healthcheck");
    assert_eq!(
        dep["spec"]["template"]["spec"]["nodeSelector"]["disktype"],
        "ssd"
    );
    golden(
        "deployment_full.json",
        &serde_json::to_string_pretty(&dep).unwrap(),
    );
    golden(
        "service.json",
        &serde_json::to_string_pretty(&render_service(&spec)).unwrap(),
    );
    golden(
        "configmap.json",
        &serde_json::to_string_pretty(&render_config_map(&spec)).unwrap(),
    );
}

#[test]
fn kubernetes_defaults_have_no_gpu_and_no_selector() {
    let name = LambdaName::parse("hello").unwrap();
    let params = Parameters::default();
    let spec = DeploySpec {
        id: id(),
        name: &name,
        lambda_type: LambdaType::Standalone,
        version: 1,
        image: "luna-lambda/x:v1",
        parameters: &params,
        config_hash: "0",
        instance: "default",
        image_pull_secrets: &[],
        replicas: 1,
    };
    let dep = render_deployment(&spec);
    assert_eq!(dep["metadata"]["namespace"], "default");
    assert_eq!(dep["spec"]["replicas"], 1);
    assert!(
        dep["spec"]["template"]["spec"]
            .get("nodeSelector")
            .is_none()
    );
    let c = &dep["spec"]["template"]["spec"]["containers"][0];
    assert!(c["resources"].as_object().unwrap().is_empty());
    golden(
        "deployment_default.json",
        &serde_json::to_string_pretty(&dep).unwrap(),
    );
}

fn build_spec<'a>(
    selector: &'a std::collections::BTreeMap<String, String>,
    resources: Option<&'a serde_json::Value>,
    root: bool,
    registry_secret: Option<&'a str>,
) -> BuildJobSpec<'a> {
    BuildJobSpec {
        name: "lambda-build-x-v2-abcde",
        id: id(),
        version: 2,
        instance: "default",
        image: "registry.local:5000/lpa-lambda-base:1.0.0",
        root,
        deadline_secs: 600,
        resources,
        node_selector: selector,
        registry_secret,
    }
}

#[test]
fn a_build_job_runs_the_agent_unprivileged_by_default() {
    let none = std::collections::BTreeMap::new();
    let spec = build_spec(&none, None, false, None);
    let job = render_build_job(&spec);
    let pod = &job["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    assert_eq!(c["securityContext"]["runAsUser"], 1000);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert_eq!(job["spec"]["backoffLimit"], 0);
    assert_eq!(job["metadata"]["labels"]["luna-lambda.io/role"], "build");
    assert_eq!(c["volumeMounts"].as_array().unwrap().len(), 2);
    golden(
        "build_job_default.json",
        &serde_json::to_string_pretty(&job).unwrap(),
    );
    let data = std::collections::BTreeMap::from([
        ("agent.py".to_owned(), "print('agent')\n".to_owned()),
        ("spec.json".to_owned(), "{}".to_owned()),
    ]);
    let cm = render_build_config_map(&spec, &data);
    assert_eq!(cm["metadata"]["name"], job["metadata"]["name"]);
    assert_eq!(cm["metadata"]["labels"], job["metadata"]["labels"]);
    golden(
        "build_configmap.json",
        &serde_json::to_string_pretty(&cm).unwrap(),
    );
}

#[test]
fn a_build_job_with_root_steps_resources_selector_and_registry_secret() {
    let selector = std::collections::BTreeMap::from([("pool".to_owned(), "builds".to_owned())]);
    let resources = serde_json::json!({"limits": {"memory": "2Gi"}});
    let job = render_build_job(&build_spec(
        &selector,
        Some(&resources),
        true,
        Some("regcred"),
    ));
    let pod = &job["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    assert_eq!(c["securityContext"]["runAsUser"], 0);
    assert_eq!(c["resources"], resources);
    assert_eq!(pod["nodeSelector"]["pool"], "builds");
    assert_eq!(pod["volumes"][2]["secret"]["secretName"], "regcred");
    assert_eq!(c["volumeMounts"][2]["mountPath"], "/lambda-build-auth");
    golden(
        "build_job_full.json",
        &serde_json::to_string_pretty(&job).unwrap(),
    );
}

#[test]
fn image_refs_of_the_platform_parse_back_and_others_do_not() {
    let id = LambdaId::new();
    for registry in [Some("127.0.0.1:5000"), None] {
        assert_eq!(
            parse_lambda_image_ref(&lambda_image_ref(registry, &id, 12)),
            Some((id, 12))
        );
    }
    assert_eq!(
        parse_lambda_image_ref(&format!("luna-lambda/{id}:latest")),
        None
    );
    assert_eq!(parse_lambda_image_ref("luna-lambda/not-an-id:v1"), None);
    assert_eq!(parse_lambda_image_ref("lpa-lambda-base:v1"), None);
    assert_eq!(
        parse_lambda_image_ref(&format!("luna-lambda/x/{id}:v1")),
        None,
        "a nested name is not the platform's"
    );
}
