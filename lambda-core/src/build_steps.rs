//! The dependencies image of a lambda as plain steps, for a builder that runs no Dockerfile (the
//! Kubernetes Job builder's snapshot agent): `user_docker_commands` and the requirements become
//! commands, each with the user, folder and environment it runs with, plus what the image's
//! config gains (`ENV`, `LABEL`, `EXPOSE`). The agent only executes; every instruction is parsed
//! here, once, and the steps' JSON is part of the key that names the image by its content.
//!
//! Supported: `RUN` (shell and exec form), `USER`, `ENV`, `WORKDIR`, `ARG`, `LABEL`, `EXPOSE`.
//! `$VAR` and `${VAR}` in `ENV`, `WORKDIR`, `LABEL` and `USER` values are replaced from the
//! environment and build arguments so far, as Docker does (the `${VAR:-default}` forms are not).
//! Refused, each with its reason: `COPY`/`ADD` (files come from the archive, which the build pod
//! never sees), `RUN --mount`/`--network`/`--security`, heredocs.

use crate::docker_commands::ALLOWED;
use crate::problem::Problem;
use crate::render::APP_DIR;
use serde::Serialize;
use std::collections::BTreeMap;

/// Instructions the snapshot agent carries out.
pub const SUPPORTED: &[&str] = &["RUN", "ENV", "USER", "WORKDIR", "ARG", "LABEL", "EXPOSE"];

/// Where the build pod finds the lambda's `requirements.txt`.
pub const REQUIREMENTS_PATH: &str = "/lambda-build/requirements.txt";
/// Where the build pod finds the CA bundle for pip, when one is configured.
pub const PIP_CA_PATH: &str = "/lambda-build/pip-ca.pem";

/// One command of the build, run by `/bin/sh -c` (or `argv` directly, for the exec form).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Step {
    /// The instruction as the user wrote it (for the build log and the image history).
    pub shown: String,
    /// Shell command (shell form); empty when `argv` is given.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub run: String,
    /// Program and arguments (exec form).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub argv: Vec<String>,
    /// `root` or `luna`.
    pub user: String,
    /// Working folder (created when missing).
    pub workdir: String,
    /// Environment on top of the image's: `ENV` so far, then `ARG`s.
    pub env: BTreeMap<String, String>,
}

/// What the lambda's instructions and requirements add to its base image.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DepsPlan {
    /// Commands, in order; each becomes a layer (when it changed anything).
    pub steps: Vec<Step>,
    /// `ENV` values the image keeps, in the order first set.
    pub env: Vec<(String, String)>,
    /// `LABEL`s.
    pub labels: BTreeMap<String, String>,
    /// `EXPOSE`d ports (`8080/tcp`).
    pub exposed: Vec<String>,
}

impl DepsPlan {
    /// Whether there is nothing to run: the base image is the dependencies image.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty() && self.env.is_empty() && self.labels.is_empty()
    }
}

/// How pip is run for the requirements.
#[derive(Debug, Clone, Default)]
pub struct Pip<'a> {
    /// `PIP_INDEX_URL`, when configured.
    pub index_url: Option<&'a str>,
    /// Whether a CA bundle is handed to the pod at [`PIP_CA_PATH`].
    pub ca_bundle: bool,
}

/// Problems with instructions the snapshot agent cannot honour (the general rules are
/// [`crate::docker_commands::check`]'s); paths are `user_docker_commands[i]`.
pub fn check(commands: &[String]) -> Vec<Problem> {
    commands
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            unsupported(c).map(|msg| {
                Problem::error(
                    "parameters.user_docker_command",
                    format!("user_docker_commands[{i}]"),
                    msg,
                )
            })
        })
        .collect()
}

/// Whether an instruction takes files of the lambda archive (`COPY`/`ADD`): its image cannot
/// be made without the code.
pub fn copies_archive_files(commands: &[String]) -> bool {
    commands.iter().any(|c| {
        let (kw, _) = keyword_and_args(c);
        kw == "COPY" || kw == "ADD"
    })
}

fn keyword_and_args(cmd: &str) -> (String, &str) {
    let cmd = cmd.trim();
    match cmd.split_once(char::is_whitespace) {
        Some((k, a)) => (k.to_ascii_uppercase(), a.trim()),
        None => (cmd.to_ascii_uppercase(), ""),
    }
}

fn unsupported(cmd: &str) -> Option<String> {
    let (kw, args) = keyword_and_args(cmd);
    if !SUPPORTED.contains(&kw.as_str()) {
        // Only what the general rules allow reaches here; the rest they report.
        return ALLOWED.contains(&kw.as_str()).then(|| {
            format!(
                "{kw} is not supported by the Kubernetes builder, which runs {}: files come \
                 from the lambda archive only (put them in the archive; they are under {APP_DIR})",
                SUPPORTED.join(", ")
            )
        });
    }
    if kw != "RUN" {
        return None;
    }
    if let Some(flag) = args.split_whitespace().find(|w| w.starts_with("--")) {
        return Some(format!(
            "RUN {flag} is not supported by the Kubernetes builder: a step runs as a plain command"
        ));
    }
    if args.starts_with("<<") || (args.contains(" <<") && !args.contains("<<<")) {
        return Some(
            "heredocs are not supported by the Kubernetes builder: write the file with printf or \
             echo in the command instead"
                .into(),
        );
    }
    if args.starts_with('[') && exec_form(args).is_none() {
        return Some("RUN [...] must be a JSON array of strings (the exec form)".into());
    }
    None
}

fn exec_form(args: &str) -> Option<Vec<String>> {
    serde_json::from_str::<Vec<String>>(args)
        .ok()
        .filter(|v| !v.is_empty())
}

/// The build's running state while instructions are read.
struct State {
    user: String,
    workdir: String,
    env: Vec<(String, String)>,
    args: BTreeMap<String, String>,
}

impl State {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .or_else(|| self.args.get(name).map(String::as_str))
    }

    fn set_env(&mut self, k: String, v: String) {
        match self.env.iter_mut().find(|(key, _)| *key == k) {
            Some(slot) => slot.1 = v,
            None => self.env.push((k, v)),
        }
    }

    fn step(&self, shown: &str, run: String, argv: Vec<String>) -> Step {
        let mut env: BTreeMap<String, String> = self.args.clone();
        env.extend(self.env.iter().cloned());
        Step {
            shown: shown.to_owned(),
            run,
            argv,
            user: self.user.clone(),
            workdir: self.workdir.clone(),
            env,
        }
    }
}

/// The steps for `commands` (checked by [`check`] and the general rules) followed by the
/// requirements' `pip install`, as luna in [`APP_DIR`], when `requirements` is set.
pub fn plan(commands: &[String], requirements: bool, pip: &Pip<'_>) -> DepsPlan {
    let mut st = State {
        user: "luna".into(),
        workdir: APP_DIR.into(),
        env: Vec::new(),
        args: BTreeMap::new(),
    };
    let mut out = DepsPlan::default();
    for cmd in commands {
        let (kw, args) = keyword_and_args(cmd);
        match kw.as_str() {
            "RUN" => {
                let step = match exec_form(args) {
                    Some(argv) => st.step(cmd.trim(), String::new(), argv),
                    None => st.step(cmd.trim(), args.to_owned(), Vec::new()),
                };
                out.steps.push(step);
            }
            "USER" => st.user = substitute(args, &st),
            "WORKDIR" => {
                let dir = substitute(args, &st);
                st.workdir = if dir.starts_with('/') {
                    dir
                } else {
                    format!("{}/{dir}", st.workdir.trim_end_matches('/'))
                };
            }
            "ENV" => {
                for (k, v) in pairs(args, true) {
                    let v = substitute(&v, &st);
                    st.set_env(k, v);
                }
            }
            "ARG" => {
                for (k, v) in pairs(args, false) {
                    let v = substitute(&v, &st);
                    st.args.insert(k, v);
                }
            }
            "LABEL" => {
                for (k, v) in pairs(args, false) {
                    out.labels.insert(k, substitute(&v, &st));
                }
            }
            "EXPOSE" => {
                for p in args.split_whitespace() {
                    let p = substitute(p, &st);
                    out.exposed.push(if p.contains('/') {
                        p
                    } else {
                        format!("{p}/tcp")
                    });
                }
            }
            _ => {}
        }
    }
    out.env = st.env.clone();
    if requirements {
        st.user = "luna".into();
        st.workdir = APP_DIR.into();
        st.args.clear();
        if pip.ca_bundle {
            st.args.insert("PIP_CERT".into(), PIP_CA_PATH.into());
        }
        if let Some(url) = pip.index_url {
            st.args.insert("PIP_INDEX_URL".into(), url.into());
        }
        let run = format!(
            "python3 -m pip install --no-cache-dir --disable-pip-version-check -r {REQUIREMENTS_PATH}"
        );
        out.steps
            .push(st.step("pip install -r requirements.txt", run, Vec::new()));
    }
    out
}

/// `KEY=VALUE` pairs (quotes and backslash escapes as in a Dockerfile); with `legacy`, also the
/// old `KEY VALUE` form (the rest of the line is the value).
fn pairs(args: &str, legacy: bool) -> Vec<(String, String)> {
    let words = words(args);
    let first_has_eq = words.first().is_some_and(|w| w.contains('='));
    if legacy && !first_has_eq {
        return match args.split_once(char::is_whitespace) {
            Some((k, v)) => vec![(k.to_owned(), unquote_all(v.trim()))],
            None => vec![(args.to_owned(), String::new())],
        };
    }
    words
        .into_iter()
        .map(|w| match w.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (w, String::new()),
        })
        .collect()
}

/// Splits on unquoted whitespace, removing quotes and escapes.
fn words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, c) if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            (None, '"' | '\'') => {
                quote = Some(c);
                in_word = true;
            }
            (Some(q), c) if c == q => quote = None,
            (Some('\''), c) => cur.push(c),
            (_, '\\') => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
                in_word = true;
            }
            (_, c) => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    out
}

fn unquote_all(s: &str) -> String {
    words(s).join(" ")
}

/// Replaces `$NAME` and `${NAME}` with their values so far (unknown ones with nothing); `\$`
/// keeps a dollar.
fn substitute(s: &str, st: &State) -> String {
    let mut out = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\' && chars.peek() == Some(&'$') {
            out.push('$');
            chars.next();
            continue;
        }
        if c != '$' {
            out.push(c);
            continue;
        }
        let braced = chars.peek() == Some(&'{');
        if braced {
            chars.next();
        }
        let mut name = String::new();
        while let Some(&n) = chars.peek() {
            if n.is_ascii_alphanumeric() || n == '_' {
                name.push(n);
                chars.next();
            } else {
                break;
            }
        }
        if braced && chars.peek() == Some(&'}') {
            chars.next();
        }
        if name.is_empty() {
            out.push('$');
        } else {
            out.push_str(st.lookup(&name).unwrap_or_default());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmds(c: &[&str]) -> Vec<String> {
        c.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn copy_and_add_in_any_case_take_archive_files() {
        assert!(copies_archive_files(&cmds(&["RUN echo", "copy a /b"])));
        assert!(copies_archive_files(&cmds(&["  ADD b.tgz /y"])));
        assert!(!copies_archive_files(&cmds(&["RUN cp a b", "ENV COPY=1"])));
    }

    #[test]
    fn copy_add_mounts_and_heredocs_are_refused_with_the_reason() {
        let c = cmds(&[
            "RUN echo ok",
            "COPY a.txt /x",
            "ADD b.tgz /y",
            "RUN --network=none make",
            "RUN <<EOF",
            "RUN cat <<EOF",
            "RUN [\"ls\", 1]",
            "RUN grep x <<< \"$V\"",
            "ENV A=1",
        ]);
        let p = check(&c);
        let at: Vec<&str> = p.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            at,
            [
                "user_docker_commands[1]",
                "user_docker_commands[2]",
                "user_docker_commands[3]",
                "user_docker_commands[4]",
                "user_docker_commands[5]",
                "user_docker_commands[6]"
            ]
        );
        assert!(
            p[0].message
                .contains("COPY is not supported by the Kubernetes builder")
        );
        assert!(p[2].message.contains("--network=none"));
        assert!(p[3].message.contains("heredocs"));
        assert!(p[5].message.contains("exec form"));
    }

    #[test]
    fn instructions_become_steps_with_their_user_folder_and_environment() {
        let c = cmds(&[
            "ARG VERSION=1.2",
            "ENV TOOL_HOME=/opt/tool PATH_EXTRA=\"a b\"",
            "USER root",
            "WORKDIR $TOOL_HOME",
            "RUN apt-get install -y tool=$VERSION",
            "USER luna",
            "WORKDIR sub",
            "ENV LEGACY some value",
            "LABEL team=\"vision ops\" tier=${VERSION}",
            "EXPOSE 9000 9001/udp",
            "RUN [\"python3\", \"-c\", \"print(1)\"]",
        ]);
        assert!(check(&c).is_empty());
        let plan = plan(&c, true, &Pip::default());
        assert_eq!(plan.steps.len(), 3);
        let s = &plan.steps[0];
        assert_eq!(
            (s.user.as_str(), s.workdir.as_str(), s.run.as_str()),
            ("root", "/opt/tool", "apt-get install -y tool=$VERSION")
        );
        assert_eq!(s.env["VERSION"], "1.2");
        assert_eq!(s.env["PATH_EXTRA"], "a b");
        let s = &plan.steps[1];
        assert_eq!(s.user, "luna");
        assert_eq!(s.workdir, "/opt/tool/sub");
        assert_eq!(s.argv, ["python3", "-c", "print(1)"]);
        assert_eq!(s.env["LEGACY"], "some value");
        let pip = &plan.steps[2];
        assert_eq!((pip.user.as_str(), pip.workdir.as_str()), ("luna", APP_DIR));
        assert!(pip.run.ends_with(REQUIREMENTS_PATH), "{}", pip.run);
        assert!(
            !pip.env.contains_key("VERSION"),
            "build args end with the instructions"
        );
        assert_eq!(
            plan.env,
            [
                ("TOOL_HOME".into(), "/opt/tool".into()),
                ("PATH_EXTRA".into(), "a b".into()),
                ("LEGACY".into(), "some value".into())
            ]
        );
        assert_eq!(plan.labels["team"], "vision ops");
        assert_eq!(plan.labels["tier"], "1.2");
        assert_eq!(plan.exposed, ["9000/tcp", "9001/udp"]);
    }

    #[test]
    fn pip_gets_the_index_and_ca_and_nothing_is_planned_for_nothing() {
        let p = plan(
            &[],
            true,
            &Pip {
                index_url: Some("https://pypi.example/simple"),
                ca_bundle: true,
            },
        );
        assert_eq!(
            p.steps[0].env["PIP_INDEX_URL"],
            "https://pypi.example/simple"
        );
        assert_eq!(p.steps[0].env["PIP_CERT"], PIP_CA_PATH);
        assert!(plan(&[], false, &Pip::default()).is_empty());
        assert!(!plan(&cmds(&["LABEL a=b"]), false, &Pip::default()).is_empty());
    }
}
