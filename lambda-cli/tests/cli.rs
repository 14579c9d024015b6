//! Drives the real `luna-lambda` binary.

use std::path::Path;
use std::process::{Command, Output};

fn cli(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_luna-lambda"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run luna-lambda")
}

fn write(dir: &Path, name: &str, text: &str) {
    let p = dir.join(name);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

const MAIN: &str = "async def main(request):\n    return {}\n";

#[test]
fn validate_a_good_folder_exits_0() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "l/lambda_main.py", MAIN);
    write(d.path(), "l/run.py", "");
    let out = cli(&["validate", "l"], d.path());
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("valid (1 warning(s))"), "{stdout}");
    assert!(stdout.contains("runtime.replaced"), "{stdout}");
}

#[test]
fn validate_a_bad_folder_exits_1_with_every_problem_as_json() {
    let d = tempfile::tempdir().unwrap();
    write(
        d.path(),
        "l/lambda_main.py",
        "def main(r):\n    return {}\n",
    );
    write(d.path(), "l/requirements.txt", "-e .\n");
    write(d.path(), "l/docs/lambda.yml", "a: 1\n");
    let out = cli(&["validate", "l", "--json"], d.path());
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], false);
    let problems = v["problems"].as_array().unwrap();
    let codes: Vec<&str> = problems
        .iter()
        .map(|p| p["code"].as_str().unwrap())
        .collect();
    assert_eq!(
        codes,
        vec![
            "main.not_async",
            "requirements.forbidden_option",
            "docs.incomplete"
        ]
    );
    for p in problems {
        for field in ["code", "path", "message", "severity"] {
            assert!(p.get(field).is_some(), "{field} missing in {p}");
        }
    }
    assert_eq!(problems[0]["line"], 1);
    assert_eq!(problems[0]["severity"], "error");
}

#[test]
fn pack_is_deterministic_and_its_zip_validates() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "l/lambda_main.py", MAIN);
    write(d.path(), "l/__pycache__/x.pyc", "junk");
    let out = cli(&["pack", "l", "-o", "a.zip"], d.path());
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let out = cli(&["pack", "l"], d.path());
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let a = std::fs::read(d.path().join("a.zip")).unwrap();
    let b = std::fs::read(d.path().join("l.zip")).unwrap();
    assert_eq!(a, b);
    assert_eq!(cli(&["validate", "a.zip"], d.path()).status.code(), Some(0));
}

#[test]
fn usage_errors_exit_2_and_missing_input_exits_1() {
    let d = tempfile::tempdir().unwrap();
    assert_eq!(cli(&["validate"], d.path()).status.code(), Some(2));
    assert_eq!(cli(&["no-such-command"], d.path()).status.code(), Some(2));
    let out = cli(&["validate", "missing.zip"], d.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.zip"));
    assert_eq!(cli(&["pack", "missing"], d.path()).status.code(), Some(1));
}

#[test]
fn a_zip_that_is_not_a_zip_is_invalid() {
    let d = tempfile::tempdir().unwrap();
    write(d.path(), "x.zip", "not a zip");
    let out = cli(&["validate", "x.zip"], d.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("archive.not_zip"));
}

#[test]
fn every_example_lambda_validates() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut n = 0;
    for entry in std::fs::read_dir(&examples).unwrap() {
        let dir = entry.unwrap().path();
        if dir.join("lambda_main.py").is_file() {
            // Example folders named tasks-* are tasks lambdas.
            let is_tasks = dir
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("tasks-"));
            let ty = if is_tasks { "tasks" } else { "standalone" };
            let out = cli(
                &["validate", dir.to_str().unwrap(), "--type", ty],
                &examples,
            );
            assert_eq!(out.status.code(), Some(0), "{}: {out:?}", dir.display());
            n += 1;
        }
    }
    assert!(n >= 6, "expected the six example lambdas, found {n}");
}

#[test]
fn init_writes_the_originals_run_py_and_validates_without_warnings() {
    let d = tempfile::tempdir().unwrap();
    for (dir, ty) in [("s", "standalone"), ("h", "handlers")] {
        let out = cli(&["init", dir, "--type", ty], d.path());
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        let run_py = std::fs::read_to_string(d.path().join(dir).join("run.py")).unwrap();
        assert!(
            run_py.contains(&format!(
                "from luna_lambda_tools.public.run import run\n\nrun(lambdaType=\"{ty}\")\n"
            )),
            "{run_py}"
        );
        let out = cli(&["validate", dir, "--json"], d.path());
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["valid"], true);
        assert_eq!(v["problems"], serde_json::json!([]), "{v}");
    }
}
