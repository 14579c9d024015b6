//! Deterministic packing of a lambda folder into a zip: the same folder gives the same bytes.
//!
//! Entries are sorted by path, carry a fixed timestamp (1980-01-01) and mode 0644, and are
//! deflated at a fixed level. Caches, version-control folders and virtualenvs are skipped.
//! Only reads the filesystem; never writes.

use crate::Error;
use std::io::{Cursor, Write};
use std::path::Path;
use zip::write::SimpleFileOptions;

/// Folder names never packed.
pub const SKIPPED_DIRS: &[&str] = &[
    "__pycache__",
    ".git",
    ".hg",
    ".svn",
    ".venv",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    ".tox",
    ".idea",
    ".vscode",
];
/// File suffixes never packed.
pub const SKIPPED_SUFFIXES: &[&str] = &[".pyc", ".pyo", ".DS_Store"];

/// Whether a folder is skipped: a listed name, or a virtualenv (it holds `pyvenv.cfg`).
fn skip_dir(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    SKIPPED_DIRS.contains(&name) || path.join("pyvenv.cfg").is_file()
}

/// Packs a folder. Fails on symlinks and non-UTF-8 names (the validator refuses them anyway)
/// and on read errors, naming the path.
pub fn pack_dir(dir: &Path) -> Result<Vec<u8>, Error> {
    let mut files = Vec::new();
    collect(dir, dir, &mut files)?;
    Ok(pack_files(files))
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) -> Result<(), Error> {
    let io = |path: &Path, source: std::io::Error| Error::Pack {
        path: path.display().to_string(),
        source,
    };
    let rd = std::fs::read_dir(dir).map_err(|e| io(dir, e))?;
    for entry in rd {
        let entry = entry.map_err(|e| io(dir, e))?;
        let path = entry.path();
        let ft = entry.file_type().map_err(|e| io(&path, e))?;
        let rel = path.strip_prefix(root).unwrap_or(&path);
        let Some(rel_str) = rel.to_str() else {
            return Err(io(
                &path,
                std::io::Error::new(std::io::ErrorKind::InvalidData, "file name is not UTF-8"),
            ));
        };
        let rel_str = rel_str.replace(std::path::MAIN_SEPARATOR, "/");
        if ft.is_symlink() {
            return Err(io(
                &path,
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "symbolic links cannot be packed; copy the file instead",
                ),
            ));
        } else if ft.is_dir() {
            if !skip_dir(&path) {
                collect(root, &path, out)?;
            }
        } else if ft.is_file() && !SKIPPED_SUFFIXES.iter().any(|s| rel_str.ends_with(s)) {
            let bytes = std::fs::read(&path).map_err(|e| io(&path, e))?;
            out.push((rel_str, bytes));
        }
    }
    Ok(())
}

/// Packs `(relative path, bytes)` pairs deterministically (sorted by path).
pub fn pack_files(mut files: Vec<(String, Vec<u8>)>) -> Vec<u8> {
    files.sort_by(|a, b| a.0.cmp(&b.0));
    files.dedup_by(|a, b| a.0 == b.0);
    let mut w = zip::ZipWriter::new(Cursor::new(Vec::new()));
    let opts = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .compression_level(Some(6))
        .last_modified_time(zip::DateTime::default())
        .unix_permissions(0o644);
    for (name, bytes) in &files {
        // Writing into a Vec cannot fail except on a programming error (e.g. a duplicate name,
        // removed above), so a failure here is a bug worth a panic message.
        w.start_file(name.as_str(), opts)
            .expect("zip entry header into memory");
        w.write_all(bytes).expect("zip entry data into memory");
    }
    w.finish()
        .expect("zip central directory into memory")
        .into_inner()
}
