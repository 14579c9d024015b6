//! `user_docker_commands`: extra Dockerfile instructions a lambda may add to its image.
//!
//! Each list entry must be exactly one instruction from an allowed set. We cannot prove a `RUN`
//! harmless, but we can refuse what breaks the image's contract: another `FROM`, a changed
//! entrypoint, smuggled second instructions (newlines, line continuations), build-time mounts,
//! and files from outside the build context.

use crate::problem::Problem;

/// Instructions a user may add.
pub const ALLOWED: &[&str] = &[
    "RUN", "ENV", "USER", "WORKDIR", "ARG", "LABEL", "EXPOSE", "COPY", "ADD",
];
/// Every Dockerfile instruction keyword (to spot several instructions in one string).
const KEYWORDS: &[&str] = &[
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

/// Checks every command; problems carry the path `user_docker_commands[i]`.
pub fn check(commands: &[String]) -> Vec<Problem> {
    let mut problems = Vec::new();
    for (i, cmd) in commands.iter().enumerate() {
        if let Err(msg) = check_one(cmd) {
            problems.push(Problem::error(
                "parameters.user_docker_command",
                format!("user_docker_commands[{i}]"),
                msg,
            ));
        }
    }
    problems
}

fn check_one(cmd: &str) -> Result<(), String> {
    let cmd_t = cmd.trim();
    if cmd_t.is_empty() {
        return Err("the command is empty".into());
    }
    if cmd.contains(['\n', '\r']) {
        return Err(
            "the command contains a line break; give each instruction as its own list entry".into(),
        );
    }
    if cmd_t.ends_with('\\') {
        return Err("the command ends with a line continuation '\\'; give one complete instruction per entry".into());
    }
    let (keyword, args) = match cmd_t.split_once(char::is_whitespace) {
        Some((k, a)) => (k, a.trim()),
        None => (cmd_t, ""),
    };
    let upper = keyword.to_ascii_uppercase();
    if upper == "FROM" {
        return Err(
            "FROM is not allowed: the platform chooses the base image (parameter base_image)"
                .into(),
        );
    }
    if !ALLOWED.contains(&upper.as_str()) {
        return Err(if KEYWORDS.contains(&upper.as_str()) {
            format!(
                "{upper} is not allowed; allowed instructions: {}",
                ALLOWED.join(", ")
            )
        } else {
            format!(
                "{keyword:?} is not a Dockerfile instruction; each entry must start with one of {}",
                ALLOWED.join(", ")
            )
        });
    }
    if args.is_empty() {
        return Err(format!("{upper} needs arguments"));
    }
    let parts = split_instructions(cmd_t);
    if parts.len() > 1 {
        let listed: Vec<String> = parts.iter().map(|p| format!("{p:?}")).collect();
        return Err(format!(
            "this entry holds {} instructions; give each as its own list entry: [{}]",
            parts.len(),
            listed.join(", ")
        ));
    }
    if args.split_whitespace().any(|a| a.starts_with("--mount")) {
        return Err("RUN --mount is not allowed: builds may not mount host or cache paths".into());
    }
    match upper.as_str() {
        "USER" if !matches!(args, "root" | "luna") => {
            return Err(format!("USER must be root or luna, got {args:?}"));
        }
        "COPY" | "ADD" => check_copy(&upper, args)?,
        _ => {}
    }
    Ok(())
}

fn check_copy(kw: &str, args: &str) -> Result<(), String> {
    let words: Vec<&str> = args.split_whitespace().collect();
    let mut sources = Vec::new();
    for w in &words {
        if w.starts_with("--from") {
            return Err(format!(
                "{kw} --from is not allowed: files must come from the lambda archive"
            ));
        }
        if !w.starts_with("--") {
            sources.push(*w);
        }
    }
    if args.trim_start().starts_with('[') {
        return Err(format!(
            "{kw} in JSON form is not supported; use `{kw} src dest`"
        ));
    }
    if sources.len() < 2 {
        return Err(format!("{kw} needs a source and a destination"));
    }
    for src in &sources[..sources.len() - 1] {
        if src.contains("://") {
            return Err(format!(
                "{kw} from a URL ({src}) is not allowed; add the file to the archive"
            ));
        }
        if src.starts_with('/') || src.split('/').any(|c| c == "..") {
            return Err(format!(
                "{kw} source {src:?} is outside the build context; use a path inside the archive"
            ));
        }
    }
    Ok(())
}

/// Splits `RUN a RUN b` into its instructions: an upper-case keyword after whitespace, outside
/// quotes, starts a new one.
fn split_instructions(cmd: &str) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut quote: Option<char> = None;
    let words: Vec<&str> = cmd.split(' ').collect();
    for (i, w) in words.iter().enumerate() {
        if i > 0 && quote.is_none() && KEYWORDS.contains(w) && !current.trim().is_empty() {
            parts.push(current.trim().to_owned());
            current.clear();
        }
        if !current.is_empty() {
            current.push(' ');
        }
        current.push_str(w);
        for c in w.chars() {
            match quote {
                Some(q) if c == q => quote = None,
                None if c == '"' || c == '\'' => quote = Some(c),
                _ => {}
            }
        }
    }
    if !current.trim().is_empty() {
        parts.push(current.trim().to_owned());
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(cmd: &str) -> Option<String> {
        check(&[cmd.to_owned()]).pop().map(|p| p.message)
    }

    #[test]
    fn allowed_instructions_pass() {
        for ok in [
            "RUN yum install -y epel-release",
            "USER root",
            "USER luna",
            "ENV A=1",
            "WORKDIR /srv/x",
            "ARG X=1",
            "LABEL team=cv",
            "EXPOSE 9000",
            "COPY data/ /srv/lambda/data/",
            "run echo 'RUN inside quotes'",
        ] {
            assert_eq!(msg(ok), None, "{ok}");
        }
    }

    #[test]
    fn the_original_docs_example_is_explained() {
        let m =
            msg("RUN yum install -y epel-release RUN yum install -y libjpeg-turbo-devel").unwrap();
        assert!(m.contains("2 instructions"), "{m}");
        assert!(m.contains("\"RUN yum install -y epel-release\""), "{m}");
        assert!(
            m.contains("\"RUN yum install -y libjpeg-turbo-devel\""),
            "{m}"
        );
    }

    #[test]
    fn dangerous_forms_are_refused() {
        for bad in [
            "FROM python:3.11",
            "CMD [\"python\"]",
            "ENTRYPOINT /bin/sh",
            "RUN echo a\nRUN echo b",
            "RUN echo a \\",
            "RUN --mount=type=bind,source=/,target=/h cat /h/etc/shadow",
            "COPY /etc/passwd /x",
            "COPY ../secret /x",
            "ADD https://example.org/x.tgz /x",
            "COPY --from=other /x /y",
            "USER nobody",
            "yum install x",
            "",
            "RUN",
        ] {
            assert!(msg(bad).is_some(), "{bad:?} should be refused");
        }
    }
}
