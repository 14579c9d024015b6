//! Validation benchmark: a 50 MiB archive of 5,000 files, validated by lambda-core and by
//! Python's `zipfile` doing the same structural checks (validate_zipfile.py), side by side.
//! Also reports the validator's peak memory (measured in a child process) next to the archive's
//! uncompressed size, to show memory does not grow with it.
//!
//! Run: `cargo bench -p lambda-core --bench validate`.

use lambda_core::archive::{Limits, validate, validate_bytes};
use std::io::{BufReader, Write};
use std::path::Path;
use std::time::Instant;

const FILES: usize = 5_000;
const RUNS: usize = 5;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--validate-only") {
        // Child mode: validate once and print the peak RSS.
        let path = &args[i + 1];
        let f = BufReader::new(std::fs::File::open(path).unwrap());
        validate(f, &Limits::default()).expect("benchmark archive is valid");
        println!("peak_rss_kib={}", peak_rss_kib());
        return;
    }
    let dir = std::env::temp_dir().join(format!("lambda-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bench.zip");
    let uncompressed = write_archive(&path);
    let size = std::fs::metadata(&path).unwrap().len();
    println!(
        "archive: {} files, {:.1} MiB compressed, {:.1} MiB uncompressed",
        FILES + 1,
        size as f64 / 1048576.0,
        uncompressed as f64 / 1048576.0
    );

    // In memory (what the server does with an upload): read the file, then validate the bytes.
    let rust_ms = median_ms(|| {
        let bytes = std::fs::read(&path).unwrap();
        let v = validate_bytes(&bytes, &Limits::default()).expect("benchmark archive is valid");
        assert_eq!(v.entries.len(), FILES + 1);
    });
    // Streaming from the file through a reader (one core, fixed buffer).
    let stream_ms = median_ms(|| {
        let f = BufReader::new(std::fs::File::open(&path).unwrap());
        let v = validate(f, &Limits::default()).expect("benchmark archive is valid");
        assert_eq!(v.entries.len(), FILES + 1);
    });

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/validate_zipfile.py");
    let py = std::process::Command::new("python3")
        .arg(&script)
        .arg(&path)
        .arg(RUNS.to_string())
        .output()
        .expect("python3 runs");
    let py_out = String::from_utf8_lossy(&py.stdout);
    let py_ms: f64 = py_out
        .trim()
        .strip_prefix("median_ms=")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "python benchmark failed: {py_out} {}",
                String::from_utf8_lossy(&py.stderr)
            )
        });

    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--validate-only", path.to_str().unwrap()])
        .output()
        .unwrap();
    let child_out = String::from_utf8_lossy(&child.stdout);
    let rss: f64 = child_out
        .trim()
        .strip_prefix("peak_rss_kib=")
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN);

    println!("{:<34} {:>10} {:>10}", "", "median ms", "vs python");
    println!(
        "{:<34} {:>10.1} {:>9.1}x",
        "lambda-core validate_bytes",
        rust_ms,
        py_ms / rust_ms
    );
    println!(
        "{:<34} {:>10.1} {:>9.1}x",
        "lambda-core validate (stream)",
        stream_ms,
        py_ms / stream_ms
    );
    println!(
        "{:<34} {:>10.1} {:>9.1}x",
        "python zipfile (same checks)", py_ms, 1.0
    );
    println!(
        "validator peak RSS: {:.1} MiB (archive {:.1} MiB compressed, {:.1} MiB uncompressed)",
        rss / 1024.0,
        size as f64 / 1048576.0,
        uncompressed as f64 / 1048576.0
    );
    println!(
        "target: >= 5x python; result: {}",
        if py_ms / rust_ms >= 5.0 {
            "met"
        } else {
            "NOT met"
        }
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// Writes a zip of lambda_main.py plus 5,000 Python-like source files (lines drawn from code
/// templates with varying names and numbers, as lambda archives hold code), about 50 MiB
/// compressed in all. Returns the uncompressed size.
fn write_archive(path: &Path) -> u64 {
    const TEMPLATES: [&str; 8] = [
        "def handler_{a}(request, value={n}):\n",
        "    result_{a} = compute_{b}(value, factor={n}.{m})\n",
        "    if result_{a} > {n}:\n        logger.info(\"value %s exceeded {n}\", result_{a})\n",
        "    return {{\"id\": {n}, \"name\": \"item_{b}\", \"score\": {m}.{n}}}\n",
        "class Model{a}(BaseModel):\n    field_{b}: int = {n}\n",
        "# {a}{b}: keep the tolerance under {n}e-{m} for stable results\n",
        "import module_{a} as m{b}\n",
        "    for i in range({n}):\n        total_{a} += weights_{b}[i] * {m}\n",
    ];
    let f = std::fs::File::create(path).unwrap();
    let mut w = zip::ZipWriter::new(std::io::BufWriter::new(f));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .compression_level(Some(6));
    w.start_file("lambda_main.py", opts).unwrap();
    w.write_all(b"async def main(request):\n    return {}\n")
        .unwrap();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut total = 0u64;
    let mut text = String::new();
    for i in 0..FILES {
        text.clear();
        while text.len() < 34 * 1024 {
            let r = next();
            let t = TEMPLATES[(r % 8) as usize];
            let line = t
                .replace("{a}", &format!("{:x}", (r >> 8) & 0xfffff))
                .replace("{b}", &format!("{:x}", (r >> 28) & 0xffff))
                .replace("{n}", &format!("{}", (r >> 44) % 100_000))
                .replace("{m}", &format!("{}", (r >> 40) % 1000));
            text.push_str(&line);
        }
        w.start_file(format!("pkg/m{:02}/file{i}.py", i % 50), opts)
            .unwrap();
        w.write_all(text.as_bytes()).unwrap();
        total += text.len() as u64;
    }
    w.finish().unwrap();
    total
}

fn median_ms(mut f: impl FnMut()) -> f64 {
    let mut times: Vec<f64> = (0..RUNS)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[RUNS / 2]
}

fn peak_rss_kib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(f64::NAN)
}
