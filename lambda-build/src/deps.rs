//! Dependencies images: what a lambda's requirements and build instructions add to its base
//! image, made once by the build agent (`agent/agent.py`, run in a pod of the base image) and
//! named by their content, so that a code-only change, or another lambda with the same
//! dependencies, never runs a build step again.

use lambda_core::build_steps::{self, DepsPlan, Pip};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The build agent (Python standard library only), embedded like the runtime.
pub const AGENT: &str = include_str!("../agent/agent.py");

/// The repository of dependencies images in the lambda registry (tags: their keys).
pub const REPOSITORY: &str = "luna-lambda-deps";

/// The tag of the dependencies image of `plan` over the base image `base_digest` with
/// `requirements`: sha256 of the three (each length-prefixed).
pub fn key(base_digest: &str, requirements: Option<&[u8]>, plan: &DepsPlan) -> String {
    let mut h = Sha256::new();
    let plan = serde_json::to_vec(plan).expect("a plan serialises");
    for part in [
        base_digest.as_bytes(),
        requirements.unwrap_or_default(),
        &plan,
    ] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    lambda_core::hex(&h.finalize())
}

/// The dependencies image one build needs: its steps, its key, its reference in the registry,
/// and the requirements it installs.
#[derive(Debug)]
pub struct Needed {
    /// The instructions and requirements as steps.
    pub plan: DepsPlan,
    /// Its tag ([`key`]).
    pub key: String,
    /// `<registry>/`[`REPOSITORY`]`:<key>`.
    pub reference: String,
    /// The lambda's `requirements.txt`, when it has one.
    pub requirements: Option<Vec<u8>>,
}

/// The dependencies image `req` is built on in `registry` over the base image `base_digest`;
/// `None` when it has neither requirements nor instructions (the code goes on the base).
pub fn needed(
    req: &crate::BuildRequest,
    registry: &str,
    base_digest: &str,
    pip: &Pip<'_>,
) -> crate::Result<Option<Needed>> {
    let plan = build_steps::plan(
        &req.parameters.user_docker_commands,
        req.archive.has_requirements,
        pip,
    );
    if plan.is_empty() {
        return Ok(None);
    }
    let requirements = requirements(req)?;
    let key = key(base_digest, requirements.as_deref(), &plan);
    Ok(Some(Needed {
        reference: format!("{registry}/{REPOSITORY}:{key}"),
        plan,
        key,
        requirements,
    }))
}

/// The lambda's `requirements.txt`, when its archive has one.
fn requirements(req: &crate::BuildRequest) -> crate::Result<Option<Vec<u8>>> {
    let mut found = None;
    lambda_core::archive::for_each_user_file::<_, crate::Error>(
        std::io::Cursor::new(&req.archive_bytes[..]),
        &req.archive,
        |name, data| {
            if name == lambda_core::archive::REQUIREMENTS_FILE {
                found = Some(data.to_vec());
            }
            Ok(())
        },
    )?;
    Ok(found)
}

/// The agent's `spec.json`: where the base is, where the image goes, the steps and the
/// config's additions. `registry_url` is `http(s)://host[:port]`.
pub fn agent_spec(
    registry_url: &str,
    (base_repo, base_ref): (&str, &str),
    tag: &str,
    plan: &DepsPlan,
) -> Value {
    json!({
        "registry": registry_url,
        "base_repo": base_repo,
        "base_ref": base_ref,
        "repo": REPOSITORY,
        "tag": tag,
        "steps": plan.steps,
        "config": {"env": plan.env, "labels": plan.labels, "exposed": plan.exposed},
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_core::build_steps::{Pip, plan};

    #[test]
    fn the_key_changes_with_each_input_and_only_with_them() {
        let cmds = vec!["RUN echo a".to_owned()];
        let p = plan(&cmds, true, &Pip::default());
        let k = key("sha256:1", Some(b"six\n"), &p);
        assert_eq!(k, key("sha256:1", Some(b"six\n"), &p));
        assert_eq!(k.len(), 64);
        assert_ne!(k, key("sha256:2", Some(b"six\n"), &p));
        assert_ne!(k, key("sha256:1", Some(b"six==1\n"), &p));
        let other = plan(&["RUN echo b".to_owned()], true, &Pip::default());
        assert_ne!(k, key("sha256:1", Some(b"six\n"), &other));
    }

    #[test]
    fn the_agent_spec_carries_the_steps_and_config() {
        let cmds = vec!["ENV A=1".to_owned(), "RUN echo a".to_owned()];
        let spec = agent_spec(
            "http://127.0.0.1:5000",
            ("lpa-lambda-base", "sha256:1"),
            "k",
            &plan(&cmds, false, &Pip::default()),
        );
        assert_eq!(spec["steps"][0]["run"], "echo a");
        assert_eq!(spec["steps"][0]["env"]["A"], "1");
        assert_eq!(spec["config"]["env"], json!([["A", "1"]]));
        assert_eq!(spec["repo"], REPOSITORY);
    }
}
