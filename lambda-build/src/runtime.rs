//! The embedded Python runtime (`lambda-build/runtime/`).
//!
//! [`files`] lists what a build must add next to the lambda's own files: `run.py` and the
//! `luna_lambda_tools/` package. [`REQUIREMENTS`] is the runtime's pinned dependency list, which
//! the local builder installs into every environment and the base images preinstall.

use include_dir::{Dir, DirEntry, include_dir};

static RUNTIME: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/runtime");

/// The runtime's pinned Python requirements (`runtime/requirements.txt`).
pub const REQUIREMENTS: &str = include_str!("../runtime/requirements.txt");

/// One file of the runtime.
#[derive(Debug, Clone, Copy)]
pub struct RuntimeFile {
    /// Path relative to the lambda folder, `/`-separated (e.g. `luna_lambda_tools/server.py`).
    pub path: &'static str,
    /// Contents.
    pub contents: &'static [u8],
}

/// The files a build adds to a lambda, sorted by path: `run.py` and `luna_lambda_tools/**`
/// (byte-code caches and the requirements file excluded).
pub fn files() -> Vec<RuntimeFile> {
    let mut out = Vec::new();
    collect(&RUNTIME, &mut out);
    out.sort_by_key(|f| f.path);
    out
}

fn collect(dir: &'static Dir<'static>, out: &mut Vec<RuntimeFile>) {
    for entry in dir.entries() {
        match entry {
            DirEntry::Dir(d) => {
                if d.path().file_name().is_some_and(|n| n != "__pycache__") {
                    collect(d, out);
                }
            }
            DirEntry::File(f) => {
                let Some(path) = f.path().to_str() else {
                    continue;
                };
                let wanted = path == "run.py"
                    || (path.starts_with("luna_lambda_tools/") && path.ends_with(".py"));
                if wanted {
                    out.push(RuntimeFile {
                        path,
                        contents: f.contents(),
                    });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embeds_run_py_and_the_package_and_nothing_else() {
        let files = files();
        let paths: Vec<&str> = files.iter().map(|f| f.path).collect();
        assert!(paths.contains(&"run.py"));
        assert!(paths.contains(&"luna_lambda_tools/__init__.py"));
        assert!(paths.contains(&"luna_lambda_tools/server.py"));
        assert!(
            paths
                .iter()
                .all(|p| !p.contains("__pycache__") && !p.ends_with(".txt"))
        );
        // Every embedded file equals the file on disk (the embedding is not stale).
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("runtime");
        for f in &files {
            assert_eq!(
                std::fs::read(root.join(f.path)).unwrap(),
                f.contents,
                "{}",
                f.path
            );
        }
        fn count_py(dir: &std::path::Path) -> usize {
            std::fs::read_dir(dir)
                .unwrap()
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.file_name().is_some_and(|n| n != "__pycache__"))
                .map(|p| {
                    if p.is_dir() {
                        count_py(&p)
                    } else {
                        usize::from(p.extension().is_some_and(|x| x == "py"))
                    }
                })
                .sum()
        }
        // Every module of the package, the public/ tree's included.
        let on_disk = count_py(&root.join("luna_lambda_tools"));
        assert!(paths.contains(&"luna_lambda_tools/public/metrics/user_metrics.py"));
        assert_eq!(
            paths
                .iter()
                .filter(|p| p.starts_with("luna_lambda_tools/"))
                .count(),
            on_disk
        );
        assert!(REQUIREMENTS.contains("uvicorn=="));
    }
}
