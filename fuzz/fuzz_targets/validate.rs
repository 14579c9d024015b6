//! The archive validator must never panic, whatever the bytes, and must either accept or
//! return a non-empty report with at least one error.
#![no_main]

use lambda_core::archive::{Limits, validate_bytes};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        // Small limits keep each run fast and reach the limit paths often.
        max_archive_bytes: 1 << 20,
        max_uncompressed_bytes: 4 << 20,
        max_entries: 200,
        ..Limits::default()
    };
    if let Err(report) = validate_bytes(data, &limits) {
        assert!(!report.is_ok(), "a rejected archive must carry an error");
    }
});
