//! `pack` is deterministic, skips junk, and round-trips through the validator.

mod support;

use lambda_core::archive::{Limits, validate_bytes};
use lambda_core::pack::{pack_dir, pack_files};
use proptest::prelude::*;
use support::MAIN_OK;

#[test]
fn same_folder_same_bytes_and_junk_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    std::fs::write(p.join("lambda_main.py"), MAIN_OK).unwrap();
    std::fs::create_dir_all(p.join("pkg/__pycache__")).unwrap();
    std::fs::write(p.join("pkg/__pycache__/x.cpython-311.pyc"), b"junk").unwrap();
    std::fs::write(p.join("pkg/mod.py"), b"X = 1\n").unwrap();
    std::fs::write(p.join("pkg/mod.pyc"), b"junk").unwrap();
    std::fs::create_dir_all(p.join(".git")).unwrap();
    std::fs::write(p.join(".git/HEAD"), b"ref").unwrap();
    std::fs::create_dir_all(p.join("env/lib")).unwrap();
    std::fs::write(p.join("env/pyvenv.cfg"), b"home = /usr").unwrap();
    std::fs::write(p.join("env/lib/site.py"), b"").unwrap();
    let a = pack_dir(p).unwrap();
    // Touch a file's mtime: the bytes must not change.
    std::fs::write(p.join("pkg/mod.py"), b"X = 1\n").unwrap();
    let b = pack_dir(p).unwrap();
    assert_eq!(a, b);
    let v = validate_bytes(&a, &Limits::default()).unwrap();
    let names: Vec<&str> = v.entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, vec!["lambda_main.py", "pkg/mod.py"]);
}

#[cfg(unix)]
#[test]
fn symlinks_are_refused_with_their_path() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("lambda_main.py"), MAIN_OK).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", dir.path().join("link")).unwrap();
    let e = pack_dir(dir.path()).unwrap_err().to_string();
    assert!(e.contains("link") && e.contains("symbolic"), "{e}");
}

fn file_name() -> impl Strategy<Value = String> {
    prop::collection::vec("[a-z][a-z0-9_]{0,7}", 1..4).prop_map(|parts| parts.join("/") + ".txt")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn pack_then_validate_round_trips(
        files in prop::collection::btree_map(file_name(), prop::collection::vec(any::<u8>(), 0..2048), 0..20)
    ) {
        let mut input: Vec<(String, Vec<u8>)> = files.clone().into_iter().collect();
        input.push(("lambda_main.py".into(), MAIN_OK.as_bytes().to_vec()));
        let bytes = pack_files(input.clone());
        input.reverse();
        prop_assert_eq!(&bytes, &pack_files(input), "order of input must not matter");
        let v = validate_bytes(&bytes, &Limits::default()).map_err(|r| TestCaseError::fail(r.to_string()))?;
        let mut want: Vec<String> = files.keys().cloned().collect();
        want.push("lambda_main.py".into());
        want.sort();
        let got: Vec<String> = v.entries.iter().map(|e| e.name.clone()).collect();
        prop_assert_eq!(got, want);
        let total: u64 = files.values().map(|v| v.len() as u64).sum::<u64>() + MAIN_OK.len() as u64;
        prop_assert_eq!(v.uncompressed_size, total);
    }
}
