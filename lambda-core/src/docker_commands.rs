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

/// The OS family of the base images (a server setting: `[builder] base_os`). Our own base images
/// are Debian; copies of VisionLabs' original images are CentOS.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum BaseOs {
    /// Debian (apt-get).
    #[default]
    Debian,
    /// CentOS (yum).
    Centos,
}

impl std::str::FromStr for BaseOs {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "debian" => Ok(Self::Debian),
            "centos" => Ok(Self::Centos),
            other => Err(format!(
                "base OS {other:?} is not supported; use debian or centos"
            )),
        }
    }
}

/// yum package → Debian package, for the common build dependencies of Python wheels. `""`: not
/// needed on Debian.
const YUM_TO_APT: &[(&str, &str)] = &[
    ("epel-release", ""),
    ("libjpeg-turbo-devel", "libjpeg62-turbo-dev"),
    ("openssl-devel", "libssl-dev"),
    ("zlib-devel", "zlib1g-dev"),
    ("libpng-devel", "libpng-dev"),
    ("libffi-devel", "libffi-dev"),
    ("libxml2-devel", "libxml2-dev"),
    ("libxslt-devel", "libxslt1-dev"),
    ("postgresql-devel", "libpq-dev"),
    ("python3-devel", "python3-dev"),
    ("gcc-c++", "g++"),
    ("mesa-libGL", "libgl1"),
    ("glib2", "libglib2.0-0"),
];

fn yum_to_apt(pkg: &str) -> String {
    if let Some((_, apt)) = YUM_TO_APT.iter().find(|(y, _)| *y == pkg) {
        return (*apt).to_owned();
    }
    match pkg.strip_suffix("-devel") {
        Some(base) => format!("{base}-dev"),
        None => pkg.to_owned(),
    }
}

fn apt_to_yum(pkg: &str) -> String {
    if let Some((yum, _)) = YUM_TO_APT.iter().find(|(_, a)| *a == pkg && !a.is_empty()) {
        return (*yum).to_owned();
    }
    match pkg.strip_suffix("-dev") {
        Some(base) => format!("{base}-devel"),
        None => pkg.to_owned(),
    }
}

/// The package-manager call of one shell segment: (tool, subcommand, packages).
fn package_call(segment: &str) -> Option<(&str, &str, Vec<&str>)> {
    let mut words = segment
        .split_whitespace()
        .skip_while(|w| *w == "sudo" || (w.contains('=') && !w.starts_with('-')));
    let tool = words.next()?;
    if !matches!(
        tool,
        "yum" | "dnf" | "microdnf" | "rpm" | "apt-get" | "apt" | "dpkg" | "apk"
    ) {
        return None;
    }
    let rest: Vec<&str> = words.collect();
    let sub = rest
        .iter()
        .find(|w| !w.starts_with('-'))
        .copied()
        .unwrap_or("");
    let pkgs = rest
        .iter()
        .filter(|w| !w.starts_with('-'))
        .skip(1)
        .copied()
        .collect();
    Some((tool, sub, pkgs))
}

/// Checks that `RUN` commands use the base image's package manager, and says what to write
/// instead (e.g. `yum install -y libjpeg-turbo-devel` on Debian →
/// `apt-get update && apt-get install -y libjpeg62-turbo-dev`).
pub fn check_package_managers(commands: &[String], os: BaseOs) -> Vec<Problem> {
    let mut problems = Vec::new();
    for (i, cmd) in commands.iter().enumerate() {
        let t = cmd.trim();
        let Some(args) = t
            .get(..4)
            .filter(|k| k.eq_ignore_ascii_case("RUN "))
            .map(|_| &t[4..])
        else {
            continue;
        };
        for segment in args.split(['&', ';', '|']).filter(|s| !s.trim().is_empty()) {
            let Some((tool, sub, pkgs)) = package_call(segment) else {
                continue;
            };
            let message = match (os, tool) {
                (_, "apk") => Some(format!(
                    "`{}` is Alpine's package manager; the base image is {}: use `{}`",
                    segment.trim(),
                    if os == BaseOs::Debian {
                        "Debian"
                    } else {
                        "CentOS"
                    },
                    if os == BaseOs::Debian {
                        "apt-get install -y ..."
                    } else {
                        "yum install -y ..."
                    }
                )),
                (BaseOs::Debian, "yum" | "dnf" | "microdnf" | "rpm") => {
                    let mapped: Vec<String> = pkgs
                        .iter()
                        .map(|p| yum_to_apt(p))
                        .filter(|p| !p.is_empty())
                        .collect();
                    Some(match sub {
                        "install" if mapped.is_empty() => format!(
                            "`{}`: the base image is Debian-based and has no {tool}; {} not needed there: drop this command",
                            segment.trim(),
                            pkgs.join(", ")
                        ),
                        "install" => format!(
                            "`{}`: the base image is Debian-based and has no {tool}; use `apt-get update && apt-get install -y {}`",
                            segment.trim(),
                            mapped.join(" ")
                        ),
                        _ => format!(
                            "`{}`: the base image is Debian-based and has no {tool}; use apt-get (e.g. `apt-get update`)",
                            segment.trim()
                        ),
                    })
                }
                (BaseOs::Centos, "apt-get" | "apt" | "dpkg") => {
                    let mapped: Vec<String> = pkgs.iter().map(|p| apt_to_yum(p)).collect();
                    Some(match sub {
                        "install" => format!(
                            "`{}`: the base image is CentOS-based and has no {tool}; use `yum install -y {}`",
                            segment.trim(),
                            mapped.join(" ")
                        ),
                        _ => format!(
                            "`{}`: the base image is CentOS-based and has no {tool}; use yum (e.g. `yum makecache`)",
                            segment.trim()
                        ),
                    })
                }
                _ => None,
            };
            if let Some(message) = message {
                problems.push(Problem::error(
                    "parameters.package_manager",
                    format!("user_docker_commands[{i}]"),
                    message,
                ));
            }
        }
    }
    problems
}

#[cfg(test)]
mod package_manager_tests {
    use super::*;

    fn msgs(cmds: &[&str], os: BaseOs) -> Vec<String> {
        let cmds: Vec<String> = cmds.iter().map(|c| c.to_string()).collect();
        check_package_managers(&cmds, os)
            .into_iter()
            .map(|p| p.message)
            .collect()
    }

    #[test]
    fn the_original_example_on_a_debian_base_gets_its_apt_equivalent() {
        let m = msgs(
            &[
                "RUN yum install -y epel-release",
                "RUN yum install -y libjpeg-turbo-devel",
            ],
            BaseOs::Debian,
        );
        assert_eq!(m.len(), 2, "{m:?}");
        assert!(
            m[0].contains("not needed") && m[0].contains("drop this command"),
            "{}",
            m[0]
        );
        assert!(
            m[1].contains("apt-get update && apt-get install -y libjpeg62-turbo-dev"),
            "{}",
            m[1]
        );
        // The same commands are right on a CentOS base.
        assert!(
            msgs(
                &[
                    "RUN yum install -y epel-release",
                    "RUN yum install -y libjpeg-turbo-devel"
                ],
                BaseOs::Centos
            )
            .is_empty()
        );
    }

    #[test]
    fn apt_on_centos_and_apk_anywhere_are_refused_with_advice() {
        let m = msgs(
            &["RUN apt-get update && apt-get install -y libssl-dev"],
            BaseOs::Centos,
        );
        assert_eq!(m.len(), 2, "{m:?}");
        assert!(m[1].contains("yum install -y openssl-devel"), "{}", m[1]);
        assert!(msgs(&["RUN apk add curl"], BaseOs::Debian)[0].contains("Alpine"));
        assert!(
            msgs(
                &[
                    "RUN apt-get update && apt-get install -y curl",
                    "USER root",
                    "ENV A=yum"
                ],
                BaseOs::Debian
            )
            .is_empty()
        );
        assert!(
            msgs(
                &["RUN sudo DEBIAN_FRONTEND=noninteractive yum install -y gcc"],
                BaseOs::Debian
            )[0]
            .contains("install -y gcc")
        );
    }
}
