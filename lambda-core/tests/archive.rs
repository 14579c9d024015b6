//! Archive validation: one test per rule, and an adversarial corpus generated here.

mod support;

use lambda_core::archive::{Limits, ValidatedArchive, validate, validate_bytes};
use lambda_core::pack::pack_files;
use lambda_core::problem::ValidationReport;
use support::{MAIN_OK, RawEntry, raw_zip, zip_of};

/// Validates through both paths (in-memory and streaming) and checks they agree.
fn both(bytes: &[u8], limits: &Limits) -> Result<ValidatedArchive, ValidationReport> {
    let fast = validate_bytes(bytes, limits);
    let stream = validate(std::io::Cursor::new(bytes), limits);
    let key = |r: &Result<ValidatedArchive, ValidationReport>| match r {
        Ok(a) => Ok(a.clone()),
        Err(rep) => Err(rep
            .problems
            .iter()
            .map(|p| (p.code.clone(), p.path.clone()))
            .collect::<Vec<_>>()),
    };
    assert_eq!(
        key(&fast),
        key(&stream),
        "in-memory and streaming validation disagree"
    );
    fast
}

fn codes(bytes: &[u8]) -> Vec<String> {
    match both(bytes, &Limits::default()) {
        Ok(a) => a
            .warnings
            .into_iter()
            .map(|p| format!("warning:{}", p.code))
            .collect(),
        Err(r) => r.problems.into_iter().map(|p| p.code).collect(),
    }
}

fn has(bytes: &[u8], code: &str) {
    let got = codes(bytes);
    assert!(
        got.iter().any(|c| c == code),
        "expected {code}, got {got:?}"
    );
}

#[test]
fn a_minimal_archive_is_valid() {
    let a = both(&zip_of(&[("lambda_main.py", MAIN_OK)]), &Limits::default()).unwrap();
    assert_eq!(a.main_line, 3);
    assert!(!a.has_requirements && !a.has_docs && a.warnings.is_empty());
    assert_eq!(a.entries.len(), 1);
}

#[test]
fn a_full_archive_is_valid_and_described() {
    let bytes = zip_of(&[
        ("lambda_main.py", MAIN_OK),
        ("requirements.txt", "six==1.16.0\n# comment\n"),
        ("docs/lambda.html", "<h1>doc</h1>"),
        (
            "docs/lambda.yml",
            "openapi: 3.0.0\ninfo: {title: t, version: '1'}\n",
        ),
        ("pkg/util.py", "X = 1\n"),
        ("run.py", "print('mine')\n"),
        ("luna_lambda_tools/__init__.py", ""),
    ]);
    let a = both(&bytes, &Limits::default()).unwrap();
    assert!(a.has_requirements && a.has_docs);
    assert_eq!(a.requirements, vec!["six==1.16.0"]);
    assert_eq!(a.warnings.len(), 2, "{:?}", a.warnings);
    assert!(a.warnings.iter().all(|w| w.code == "runtime.replaced"));
    let user: Vec<&str> = a.user_files().map(|e| e.name.as_str()).collect();
    assert!(!user.contains(&"run.py") && !user.contains(&"luna_lambda_tools/__init__.py"));
    assert!(user.contains(&"pkg/util.py"));
}

#[test]
fn every_problem_is_reported_at_once() {
    let bytes = zip_of(&[
        ("lambda_main.py", "def main(request):\n    return {}\n"),
        ("requirements.txt", "-e ./local\nnumpy==\n"),
        ("docs/lambda.html", "<p>only html</p>"),
        ("../escape.py", ""),
    ]);
    let r = both(&bytes, &Limits::default()).unwrap_err();
    let got: Vec<&str> = r.problems.iter().map(|p| p.code.as_str()).collect();
    for want in [
        "main.not_async",
        "requirements.forbidden_option",
        "requirements.invalid_line",
        "docs.incomplete",
        "entry.parent_dir",
    ] {
        assert!(got.contains(&want), "missing {want} in {got:?}");
    }
    let not_async = r
        .problems
        .iter()
        .find(|p| p.code == "main.not_async")
        .unwrap();
    assert_eq!(
        (not_async.path.as_str(), not_async.line),
        ("lambda_main.py", Some(1))
    );
}

#[test]
fn main_rules() {
    has(&zip_of(&[("other.py", "")]), "main.missing");
    has(
        &zip_of(&[("lambda_main.py", "async def main(:\n")]),
        "main.syntax_error",
    );
    has(&zip_of(&[("lambda_main.py", "x = 1\n")]), "main.no_main");
    has(
        &zip_of(&[("lambda_main.py", "async def main():\n  pass\n")]),
        "main.bad_signature",
    );
    let nested = zip_of(&[
        ("my-lambda/lambda_main.py", MAIN_OK),
        ("my-lambda/util.py", ""),
    ]);
    let r = both(&nested, &Limits::default()).unwrap_err();
    assert_eq!(r.problems[0].code, "main.nested");
    assert!(
        r.problems[0].message.contains("'my-lambda/'"),
        "{}",
        r.problems[0].message
    );
    let bad_utf8 = raw_zip(&[RawEntry::stored(
        "lambda_main.py",
        b"# \xff\xfe\nasync def main(r): pass\n",
    )]);
    has(&bad_utf8, "file.not_utf8");
}

/// The original documentation's user-metrics example with one wrong import: refused at upload
/// with the position and the names that exist, instead of crash-looping after the build.
#[test]
fn imports_of_the_runtime_and_handler_routes_are_checked() {
    let main = "\
from luna_lambda_tools.public.metrics.user_metrics import Counter, Meter
from luna_lambda_tools.public.agent import AgentLambdaRequest
from luna_lambda_tools import LambdaUserHandler

class Metrics(LambdaUserHandler):
    route = '/metrics'

async def main(request):
    return {}
";
    let r = both(&zip_of(&[("lambda_main.py", main)]), &Limits::default()).unwrap_err();
    let got: Vec<(&str, Option<u32>, Option<u32>)> = r
        .problems
        .iter()
        .map(|p| (p.code.as_str(), p.line, p.column))
        .collect();
    assert_eq!(
        got,
        [
            ("import.unknown_name", Some(1), Some(68)),
            ("import.unknown_module", Some(2), Some(1)),
            ("routes.reserved", Some(6), Some(13)),
        ]
    );
    assert!(
        r.problems[0].message.contains("it provides Counter"),
        "{}",
        r.problems[0].message
    );
    // Every documented example imports only what the runtime provides.
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    for dir in std::fs::read_dir(&examples).unwrap() {
        let dir = dir.unwrap().path();
        let bytes = lambda_core::pack::pack_dir(&dir).unwrap();
        let ty = if dir.ends_with("tasks-sum") {
            lambda_core::LambdaType::Tasks
        } else {
            lambda_core::LambdaType::Standalone
        };
        if let Err(r) = lambda_core::archive::validate_bytes_for(&bytes, &Limits::default(), ty) {
            panic!("{}: {r:?}", dir.display());
        }
    }
}

#[test]
fn the_originals_local_run_py_is_expected_other_run_py_is_a_warning() {
    let local = "from luna_lambda_tools.public.run import run\n\nrun(lambdaType=\"standalone\")\n";
    assert_eq!(
        codes(&zip_of(&[("lambda_main.py", MAIN_OK), ("run.py", local)])),
        Vec::<String>::new()
    );
    assert_eq!(
        codes(&zip_of(&[
            ("lambda_main.py", MAIN_OK),
            ("run.py", "import uvicorn\n")
        ])),
        ["warning:runtime.replaced"]
    );
}

#[test]
fn a_tasks_lambda_defines_exactly_one_task_class_instead_of_main() {
    use lambda_core::LambdaType;
    use lambda_core::archive::validate_bytes_for;
    let check = |src: &str| -> Vec<(String, Option<u32>)> {
        let bytes = zip_of(&[("lambda_main.py", src)]);
        let fast = validate_bytes_for(&bytes, &Limits::default(), LambdaType::Tasks);
        let stream = lambda_core::archive::validate_for(
            std::io::Cursor::new(&bytes),
            &Limits::default(),
            LambdaType::Tasks,
        );
        assert_eq!(fast.is_ok(), stream.is_ok());
        match fast {
            Ok(a) => vec![("ok".to_owned(), Some(a.main_line))],
            Err(r) => r.problems.into_iter().map(|p| (p.code, p.line)).collect(),
        }
    };
    let good = "from luna_lambda_tools.public.tasks import BaseLambdaTask\n\nclass T(BaseLambdaTask):\n    async def splitTasksContent(self, c):\n        return []\n    async def executeSubtask(self, c):\n        return {}\n";
    assert_eq!(check(good), [("ok".to_owned(), Some(3))]);
    assert_eq!(check(MAIN_OK), [("tasks.no_task_class".to_owned(), None)]);
    let two = format!("{good}\nclass U(BaseLambdaTask):\n    pass\n");
    assert_eq!(
        check(&two),
        [("tasks.several_task_classes".to_owned(), Some(9))]
    );
    let missing = "import luna_lambda_tools\nclass T(luna_lambda_tools.BaseLambdaTask):\n    async def splitTasksContent(self, c):\n        return []\n";
    assert_eq!(
        check(missing),
        [("tasks.missing_method".to_owned(), Some(2))]
    );
    let not_async = good.replace("async def executeSubtask", "def executeSubtask");
    assert_eq!(check(&not_async), [("tasks.not_async".to_owned(), Some(6))]);
    // A standalone lambda still needs main.
    has(&zip_of(&[("lambda_main.py", good)]), "main.no_main");
}

#[test]
fn docs_rules() {
    has(
        &zip_of(&[("lambda_main.py", MAIN_OK), ("docs/lambda.yml", "a: 1\n")]),
        "docs.incomplete",
    );
    let bad_yaml = zip_of(&[
        ("lambda_main.py", MAIN_OK),
        ("docs/lambda.html", "<p/>"),
        ("docs/lambda.yml", "a: [1, 2\nb: }\n"),
    ]);
    let r = both(&bad_yaml, &Limits::default()).unwrap_err();
    assert_eq!(r.problems[0].code, "docs.yaml_invalid");
    assert!(r.problems[0].line.is_some());
}

// ---- adversarial corpus ----

#[test]
fn not_a_zip_empty_and_truncated() {
    has(b"", "archive.empty");
    has(b"hello, this is not a zip at all", "archive.not_zip");
    has(&raw_zip(&[]), "archive.empty");
    let full = pack_files(vec![
        ("lambda_main.py".into(), MAIN_OK.as_bytes().to_vec()),
        ("big.txt".into(), vec![b'x'; 10_000]),
    ]);
    for cut in [full.len() / 2, full.len() - 10, 40] {
        has(&full[..cut], "archive.truncated");
    }
}

#[test]
fn zip_slip_absolute_and_backslash_names() {
    let main = RawEntry::stored("lambda_main.py", MAIN_OK.as_bytes());
    for (name, code) in [
        ("../../etc/cron.d/x", "entry.parent_dir"),
        ("a/../../x.py", "entry.parent_dir"),
        ("/etc/passwd", "entry.absolute_path"),
        ("C:/windows/x.py", "entry.absolute_path"),
        ("..\\..\\evil.py", "entry.backslash"),
        ("a/./b.py", "entry.invalid_name"),
        ("a\u{0}b.py", "entry.invalid_name"),
    ] {
        has(
            &raw_zip(&[main.clone(), RawEntry::stored(name, b"x")]),
            code,
        );
    }
}

#[test]
fn encrypted_entry() {
    let mut e = RawEntry::stored("lambda_main.py", MAIN_OK.as_bytes());
    e.flags |= 1;
    has(&raw_zip(&[e]), "entry.encrypted");
}

#[test]
fn symlink_and_device_entries() {
    let main = RawEntry::stored("lambda_main.py", MAIN_OK.as_bytes());
    let mut link = RawEntry::stored("link.py", b"/etc/passwd");
    link.external_attr = 0o120777 << 16;
    has(&raw_zip(&[main.clone(), link]), "entry.symlink");
    let mut dev = RawEntry::stored("dev", b"");
    dev.external_attr = 0o020644 << 16;
    has(&raw_zip(&[main, dev]), "entry.special_file");
}

#[test]
fn duplicate_names() {
    let r = validate_bytes(
        &raw_zip(&[
            RawEntry::stored("lambda_main.py", MAIN_OK.as_bytes()),
            RawEntry::stored("lambda_main.py", b"print('shadow')\n"),
        ]),
        &Limits::default(),
    )
    .unwrap_err();
    let dup = r
        .problems
        .iter()
        .find(|p| p.code == "archive.duplicate_name")
        .unwrap();
    assert_eq!(dup.path, "lambda_main.py");
}

#[test]
fn non_utf8_names() {
    let mut e = RawEntry::stored("x.py", b"");
    e.name = b"caf\xe9.py".to_vec();
    e.flags = 0; // not flagged UTF-8: the zip crate would decode it as CP437
    has(
        &raw_zip(&[RawEntry::stored("lambda_main.py", MAIN_OK.as_bytes()), e]),
        "entry.name_not_utf8",
    );
}

#[test]
fn bomb_with_a_lying_size_header_is_stopped_while_reading() {
    let zeros = vec![0u8; 20 * 1024 * 1024];
    let mut bomb = RawEntry::deflated("data.bin", &zeros);
    bomb.size = 1000; // the header claims 1000 bytes; the stream inflates to 20 MiB
    let r = validate_bytes(
        &raw_zip(&[RawEntry::stored("lambda_main.py", MAIN_OK.as_bytes()), bomb]),
        &Limits::default(),
    )
    .unwrap_err();
    let codes: Vec<&str> = r.problems.iter().map(|p| p.code.as_str()).collect();
    assert_eq!(codes, vec!["entry.size_mismatch"], "{r}");
}

#[test]
fn honest_bomb_is_refused_from_its_headers() {
    let zeros = vec![0u8; 20 * 1024 * 1024];
    has(
        &raw_zip(&[
            RawEntry::stored("lambda_main.py", MAIN_OK.as_bytes()),
            RawEntry::deflated("z.bin", &zeros),
        ]),
        "entry.ratio_exceeded",
    );
    // Declared sizes that add up past the limit are refused before any byte is inflated.
    let mut huge = RawEntry::stored("huge.bin", b"x");
    huge.size = u32::MAX;
    has(
        &raw_zip(&[RawEntry::stored("lambda_main.py", MAIN_OK.as_bytes()), huge]),
        "archive.uncompressed_too_large",
    );
}

#[test]
fn a_short_entry_is_reported() {
    let mut e = RawEntry::stored("data.bin", b"abc");
    e.size = 10; // claims more than it holds
    has(
        &raw_zip(&[RawEntry::stored("lambda_main.py", MAIN_OK.as_bytes()), e]),
        "entry.size_mismatch",
    );
}

#[test]
fn corrupt_crc() {
    let mut e = RawEntry::stored("data.bin", b"abcdef");
    e.crc ^= 0xdead_beef;
    has(
        &raw_zip(&[RawEntry::stored("lambda_main.py", MAIN_OK.as_bytes()), e]),
        "entry.corrupt",
    );
}

#[test]
fn twenty_thousand_entries() {
    let mut entries = vec![RawEntry::stored("lambda_main.py", MAIN_OK.as_bytes())];
    entries.extend((0..20_000).map(|i| RawEntry::stored(&format!("f/{i}.txt"), b"")));
    let r = both(&raw_zip(&entries), &Limits::default()).unwrap_err();
    assert_eq!(r.problems.len(), 1);
    assert_eq!(r.problems[0].code, "archive.too_many_entries");
    assert!(
        r.problems[0].message.contains("20001"),
        "{}",
        r.problems[0].message
    );
}

#[test]
fn limits_are_settings() {
    let bytes = zip_of(&[("lambda_main.py", MAIN_OK), ("a.txt", "0123456789")]);
    let tight = Limits {
        max_archive_bytes: 50,
        ..Limits::default()
    };
    has_with(&bytes, &tight, "archive.too_large");
    let few = Limits {
        max_entries: 1,
        ..Limits::default()
    };
    has_with(&bytes, &few, "archive.too_many_entries");
    let small = Limits {
        max_uncompressed_bytes: 20,
        ..Limits::default()
    };
    has_with(&bytes, &small, "archive.uncompressed_too_large");
    let src = Limits {
        max_source_bytes: 10,
        ..Limits::default()
    };
    has_with(&bytes, &src, "entry.too_large");
}

fn has_with(bytes: &[u8], limits: &Limits, code: &str) {
    let r = both(bytes, limits).unwrap_err();
    assert!(r.has(code), "expected {code}, got {r}");
}

#[test]
fn unsupported_compression_method() {
    let mut e = RawEntry::stored("x.bin", b"abc");
    e.method = 12; // bzip2, not enabled
    has(
        &raw_zip(&[RawEntry::stored("lambda_main.py", MAIN_OK.as_bytes()), e]),
        "entry.unsupported_compression",
    );
}

#[test]
fn garbage_never_panics() {
    // A cheap, deterministic sweep over mutated valid archives (the fuzz target goes further).
    let base = pack_files(vec![
        ("lambda_main.py".into(), MAIN_OK.as_bytes().to_vec()),
        ("requirements.txt".into(), b"six\n".to_vec()),
        ("docs/lambda.html".into(), b"<p/>".to_vec()),
        ("docs/lambda.yml".into(), b"a: 1\n".to_vec()),
    ]);
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for _ in 0..3000 {
        let mut m = base.clone();
        for _ in 0..4 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let i = (seed as usize) % m.len();
            m[i] = (seed >> 32) as u8;
        }
        // Both paths must agree on the verdict (they may classify a broken stream differently).
        let fast = validate_bytes(&m, &Limits::default());
        let stream = validate(std::io::Cursor::new(&m), &Limits::default());
        assert_eq!(fast.is_ok(), stream.is_ok());
    }
}
