//! Validating a lambda with lambda-core alone (no async runtime, no server): a folder is packed
//! as the CLI packs it, or a `.zip` is read, then checked as the platform checks an upload.
//! Every problem is printed with where it is; the exit status is 1 when there is one.
//!
//! `cargo run --example validate -p lambda-core -- [FOLDER_OR_ZIP]` (default: `examples/hello`).

use lambda_core::archive::{Limits, validate_bytes};
use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let path = std::env::args_os().nth(1).map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/hello"),
        PathBuf::from,
    );
    let bytes = if path.is_dir() {
        lambda_core::pack::pack_dir(&path).map_err(|e| e.to_string())
    } else {
        std::fs::read(&path).map_err(|e| e.to_string())
    };
    let bytes = match bytes {
        Ok(b) => b,
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    };
    match validate_bytes(&bytes, &Limits::default()) {
        Ok(archive) => {
            println!(
                "{}: valid, {} entries, {} bytes uncompressed, `async def main` on line {}",
                path.display(),
                archive.entries.len(),
                archive.uncompressed_size,
                archive.main_line
            );
            ExitCode::SUCCESS
        }
        Err(report) => {
            for problem in &report.problems {
                println!("{}: {problem}", path.display());
            }
            ExitCode::FAILURE
        }
    }
}
