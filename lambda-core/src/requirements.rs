//! `requirements.txt` rules: each logical line is a requirement, a comment, a blank line or a
//! pip option from an allowed set. Editable installs, local paths, nested requirement files and
//! indexes on the local filesystem are refused: a build must not depend on files it cannot see.

use crate::problem::Problem;

/// Options allowed as their own line (with a value).
const OPTIONS_WITH_VALUE: &[&str] = &[
    "-i",
    "--index-url",
    "--extra-index-url",
    "--trusted-host",
    "-f",
    "--find-links",
    "--no-binary",
    "--only-binary",
];
/// Options allowed as their own line (flags).
const FLAGS: &[&str] = &["--pre", "--prefer-binary", "--require-hashes", "--no-index"];
/// Options refused, with the reason.
const REFUSED: &[(&str, &str)] = &[
    ("-e", "editable installs need a local checkout"),
    ("--editable", "editable installs need a local checkout"),
    (
        "-r",
        "nested requirement files are not supported; put every requirement in requirements.txt",
    ),
    (
        "--requirement",
        "nested requirement files are not supported; put every requirement in requirements.txt",
    ),
    (
        "-c",
        "constraint files are not supported; pin versions in requirements.txt",
    ),
    (
        "--constraint",
        "constraint files are not supported; pin versions in requirements.txt",
    ),
];

/// Checks `requirements.txt`. Returns the requirement lines (comments removed, continuations
/// joined) and the problems found, each with its 1-based line.
pub fn check(text: &str, path: &str) -> (Vec<String>, Vec<Problem>) {
    let mut reqs = Vec::new();
    let mut problems = Vec::new();
    let mut logical = String::new();
    let mut start_line = 0u32;
    for (i, raw) in text.lines().enumerate() {
        let lineno = i as u32 + 1;
        if logical.is_empty() {
            start_line = lineno;
        }
        if let Some(stripped) = raw.strip_suffix('\\') {
            logical.push_str(stripped);
            logical.push(' ');
            continue;
        }
        logical.push_str(raw);
        let line = std::mem::take(&mut logical);
        check_line(&line, start_line, path, &mut reqs, &mut problems);
    }
    if !logical.is_empty() {
        let line = std::mem::take(&mut logical);
        check_line(&line, start_line, path, &mut reqs, &mut problems);
    }
    (reqs, problems)
}

fn strip_comment(line: &str) -> &str {
    // A comment starts at `#` at the line start or after whitespace (pip's rule); a `#` inside a
    // URL fragment (`#egg=`) is not a comment.
    let bytes = line.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'#' && (i == 0 || bytes[i - 1].is_ascii_whitespace()) {
            return &line[..i];
        }
    }
    line
}

fn check_line(
    raw: &str,
    line: u32,
    path: &str,
    reqs: &mut Vec<String>,
    problems: &mut Vec<Problem>,
) {
    let text = strip_comment(raw).trim();
    if text.is_empty() {
        return;
    }
    let err = |code: &str, msg: String| Problem::error(code, path, msg).at(line, 1);
    if text.starts_with('-') {
        let (opt, value) = match text.split_once(['=', ' ', '\t']) {
            Some((o, v)) => (o, v.trim()),
            None => (text, ""),
        };
        if let Some((_, why)) = REFUSED.iter().find(|(o, _)| *o == opt) {
            problems.push(err(
                "requirements.forbidden_option",
                format!("line {line}: `{opt}` is not allowed: {why}"),
            ));
        } else if OPTIONS_WITH_VALUE.contains(&opt) {
            if value.is_empty() {
                problems.push(err(
                    "requirements.invalid_line",
                    format!("line {line}: `{opt}` needs a value"),
                ));
            } else if matches!(
                opt,
                "-i" | "--index-url" | "--extra-index-url" | "-f" | "--find-links"
            ) && !is_remote_url(value)
            {
                problems.push(err(
                    "requirements.forbidden_option",
                    format!("line {line}: `{opt} {value}` must point at an http(s) URL, not at local files"),
                ));
            }
        } else if !FLAGS.contains(&opt) {
            problems.push(err(
                "requirements.forbidden_option",
                format!(
                    "line {line}: pip option `{opt}` is not allowed here; allowed: {}, {}",
                    OPTIONS_WITH_VALUE.join(", "),
                    FLAGS.join(", ")
                ),
            ));
        }
        return;
    }
    match check_requirement(text) {
        Ok(()) => reqs.push(text.to_owned()),
        Err(why) => problems.push(err(
            "requirements.invalid_line",
            format!("line {line}: `{text}` {why}"),
        )),
    }
}

fn is_remote_url(v: &str) -> bool {
    let l = v.to_ascii_lowercase();
    l.starts_with("https://") || l.starts_with("http://")
}

/// A PEP 508 requirement: `name[extras] specifiers ; marker`, or `name[extras] @ url ; marker`,
/// optionally followed by `--hash=...` options.
fn check_requirement(text: &str) -> Result<(), String> {
    check_not_local(text)?;
    let body = without_hash_options(text)?;
    let rest = after_name(body)?;
    let rest = after_extras(rest)?;
    let (spec, marker) = match rest.split_once(';') {
        Some((s, m)) => (s.trim(), Some(m.trim())),
        None => (rest.trim(), None),
    };
    if marker.is_some_and(str::is_empty) {
        return Err("has an empty environment marker after `;`".into());
    }
    match spec.strip_prefix('@') {
        Some(url) => check_direct_reference(url.trim()),
        None => check_specifiers(spec.trim_start_matches('(').trim_end_matches(')')),
    }
}

/// Refuses what points at the builder's own files: local paths and `file:` URLs, and bare URLs.
fn check_not_local(text: &str) -> Result<(), String> {
    if text.starts_with('.')
        || text.starts_with('/')
        || text.starts_with('~')
        || text.contains('\\')
    {
        return Err("is a local path; the build cannot see files outside the archive".into());
    }
    let lower = text.to_ascii_lowercase();
    if lower.starts_with("file:") {
        return Err("is a local file URL; the build cannot see files outside the archive".into());
    }
    if lower.contains("://") && !text.contains('@') {
        return Err("is a bare URL; write it as `name @ https://...`".into());
    }
    Ok(())
}

/// The requirement without its trailing options (only `--hash` is allowed).
fn without_hash_options(text: &str) -> Result<&str, String> {
    let Some(idx) = text.find(" --") else {
        return Ok(text);
    };
    if let Some(opt) = text[idx..]
        .split_whitespace()
        .find(|opt| !opt.starts_with("--hash"))
    {
        return Err(format!(
            "has option `{opt}`; only `--hash=...` may follow a requirement"
        ));
    }
    Ok(text[..idx].trim_end())
}

/// What follows a valid package name at the start of `body`.
fn after_name(body: &str) -> Result<&str, String> {
    let name_end = body
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
        .unwrap_or(body.len());
    let name = &body[..name_end];
    if name.is_empty() {
        return Err("does not start with a package name".into());
    }
    let ok_edge = |c: char| c.is_ascii_alphanumeric();
    if !name.starts_with(ok_edge) || !name.ends_with(ok_edge) {
        return Err(format!("has an invalid package name `{name}`"));
    }
    Ok(body[name_end..].trim_start())
}

/// What follows the valid `[extras]` at the start of `rest`, if it has any.
fn after_extras(rest: &str) -> Result<&str, String> {
    let Some(after) = rest.strip_prefix('[') else {
        return Ok(rest);
    };
    let Some(close) = after.find(']') else {
        return Err("has an unclosed `[` in its extras".into());
    };
    let extras = &after[..close];
    if extras.split(',').map(str::trim).any(|e| {
        e.is_empty()
            || !e
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    }) {
        return Err(format!("has invalid extras `[{extras}]`"));
    }
    Ok(after[close + 1..].trim_start())
}

/// A direct reference (`name @ url`) must be a remote URL.
fn check_direct_reference(url: &str) -> Result<(), String> {
    let l = url.to_ascii_lowercase();
    let remote = [
        "https://",
        "http://",
        "git+https://",
        "git+http://",
        "git+ssh://",
    ];
    if !remote.iter().any(|p| l.starts_with(p)) {
        return Err(format!(
            "points at `{url}`; a direct reference must be a remote URL"
        ));
    }
    Ok(())
}

/// Version specifiers, `op version` separated by commas (none at all is fine).
fn check_specifiers(spec: &str) -> Result<(), String> {
    if spec.is_empty() {
        return Ok(());
    }
    for clause in spec.split(',') {
        let c = clause.trim();
        let op_len = ["===", "~=", "==", "!=", "<=", ">=", "<", ">"]
            .iter()
            .find(|op| c.starts_with(**op))
            .map(|op| op.len());
        let Some(op_len) = op_len else {
            return Err(format!(
                "has `{c}` where a version specifier (`==1.2`, `>=1.0`, ...) was expected"
            ));
        };
        let version = c[op_len..].trim();
        if version.is_empty()
            || !version.chars().all(|ch| {
                ch.is_ascii_alphanumeric() || matches!(ch, '.' | '*' | '+' | '-' | '_' | '!')
            })
        {
            return Err(format!("has an invalid version in `{c}`"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn codes(text: &str) -> Vec<(String, Option<u32>)> {
        check(text, "requirements.txt")
            .1
            .into_iter()
            .map(|p| (p.code, p.line))
            .collect()
    }

    #[test]
    fn accepts_common_requirement_forms() {
        let text = "# pinned\nnumpy==1.24.2\nrequests>=2,<3  # http\n\naiohttp[speedups]~=3.9\n\
                    attrs ; python_version >= '3.11'\nsix\npkg @ https://example.org/pkg-1.0.tar.gz\n\
                    --extra-index-url https://pypi.example.org/simple\n--prefer-binary\n\
                    pillow==10.0.0 \\\n    --hash=sha256:abcd\nzope.interface>=5.0.0\n";
        let (reqs, problems) = check(text, "requirements.txt");
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(reqs.len(), 8, "{reqs:?}");
        assert_eq!(reqs[0], "numpy==1.24.2");
    }

    #[test]
    fn refuses_local_and_editable_and_nested() {
        assert_eq!(
            codes(
                "-e git+https://x/y.git#egg=y\n./local_pkg\n-r other.txt\n--index-url file:///srv/pypi\n/abs/pkg.whl\n"
            ),
            vec![
                ("requirements.forbidden_option".into(), Some(1)),
                ("requirements.invalid_line".into(), Some(2)),
                ("requirements.forbidden_option".into(), Some(3)),
                ("requirements.forbidden_option".into(), Some(4)),
                ("requirements.invalid_line".into(), Some(5)),
            ]
        );
    }

    #[test]
    fn refuses_garbage_with_line_numbers() {
        assert_eq!(
            codes("numpy\nthis is not a requirement\nfoo==\n--user\n"),
            vec![
                ("requirements.invalid_line".into(), Some(2)),
                ("requirements.invalid_line".into(), Some(3)),
                ("requirements.forbidden_option".into(), Some(4)),
            ]
        );
    }
}
