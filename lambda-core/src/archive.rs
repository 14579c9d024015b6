//! Archive validation: the platform's verdict on an uploaded zip.
//!
//! [`validate`] reads a zip from any `Read + Seek` and returns a [`ValidatedArchive`] or a
//! [`ValidationReport`] holding every problem found. It never panics on hostile input and its
//! memory use does not grow with the uncompressed size: entries are streamed through a fixed
//! buffer, and only the few small files it must parse (`lambda_main.py`, `requirements.txt`,
//! `docs/lambda.yml`) are held, each capped by [`Limits::max_source_bytes`].
//!
//! Every limit is checked twice: once from the headers (cheap, before any decompression) and
//! again while reading (so a header that lies about sizes cannot get past them).

use crate::names::LambdaType;
use crate::problem::{Problem, ValidationReport};
use crate::{python, requirements};
use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use zip::CompressionMethod;

/// The entry every lambda archive must have at its root.
pub const MAIN_FILE: &str = "lambda_main.py";
/// Optional pip requirements at the archive root.
pub const REQUIREMENTS_FILE: &str = "requirements.txt";
/// Optional docs: both or neither.
pub const DOCS_HTML: &str = "docs/lambda.html";
/// Optional docs: both or neither.
pub const DOCS_YAML: &str = "docs/lambda.yml";
/// Root entries that the platform's runtime replaces.
pub const RUNTIME_FILE: &str = "run.py";
/// Root folder that the platform's runtime replaces.
pub const RUNTIME_PACKAGE: &str = "luna_lambda_tools/";

/// Size and shape limits for an archive. Every field is a documented setting
/// (`[limits]` in the server configuration); the defaults are those below.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted archive, compressed (default 100 MiB).
    pub max_archive_bytes: u64,
    /// Largest total uncompressed size of all entries (default 500 MiB).
    pub max_uncompressed_bytes: u64,
    /// Most entries, directories included (default 10,000).
    pub max_entries: usize,
    /// Largest uncompressed/compressed ratio of one entry (default 200)...
    pub max_ratio: u64,
    /// ...checked for entries whose uncompressed size exceeds this (default 1 MiB), so that small,
    /// highly repetitive text files are not refused.
    pub ratio_min_bytes: u64,
    /// Largest file the validator parses (`lambda_main.py`, `requirements.txt`, the docs),
    /// default 8 MiB.
    pub max_source_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_archive_bytes: 100 * 1024 * 1024,
            max_uncompressed_bytes: 500 * 1024 * 1024,
            max_entries: 10_000,
            max_ratio: 200,
            ratio_min_bytes: 1024 * 1024,
            max_source_bytes: 8 * 1024 * 1024,
        }
    }
}

/// One file or directory of a validated archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveEntry {
    /// Safe relative name (`/`-separated, no `..`, no leading `/`); directories end with `/`.
    pub name: String,
    /// Uncompressed size in bytes (as really read, equal to the header's).
    pub size: u64,
    /// Compressed size in bytes.
    pub compressed_size: u64,
    /// Whether this is a directory entry.
    pub is_dir: bool,
}

/// An archive that passed validation. Downstream crates accept only this type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidatedArchive {
    /// Compressed size of the whole archive.
    pub size: u64,
    /// Total uncompressed size of all entries.
    pub uncompressed_size: u64,
    /// All entries, in archive order.
    pub entries: Vec<ArchiveEntry>,
    /// 1-based line of `async def main` in `lambda_main.py` (of the `BaseLambdaTask` subclass
    /// for a `tasks` lambda).
    pub main_line: u32,
    /// The archive has `requirements.txt`.
    pub has_requirements: bool,
    /// Requirement lines (comments and blanks removed, continuations joined).
    pub requirements: Vec<String>,
    /// The archive has both `docs/lambda.html` and `docs/lambda.yml`.
    pub has_docs: bool,
    /// Warnings (never errors) found during validation.
    pub warnings: Vec<Problem>,
}

impl ValidatedArchive {
    /// Entries that are copied into a build: files only, without those the runtime replaces.
    pub fn user_files(&self) -> impl Iterator<Item = &ArchiveEntry> {
        self.entries
            .iter()
            .filter(|e| !e.is_dir && !is_replaced_by_runtime(&e.name))
    }
}

/// Calls `f` with the name and content of every user file of a validated archive (see
/// [`ValidatedArchive::user_files`]), reading each entry through the same caps as validation
/// (never more than its validated size). Builders use it to lay out a lambda's files.
pub fn for_each_user_file<R, E>(
    reader: R,
    archive: &ValidatedArchive,
    mut f: impl FnMut(&str, &[u8]) -> Result<(), E>,
) -> Result<(), E>
where
    R: Read + Seek,
    E: From<std::io::Error>,
{
    let invalid = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidData, m);
    let mut zip = zip::ZipArchive::new(reader)
        .map_err(|e| invalid(format!("cannot reopen the archive: {e}")))?;
    let mut buf = Vec::new();
    for entry in archive.user_files() {
        let file = zip
            .by_name(&entry.name)
            .map_err(|e| invalid(format!("{}: {e}", entry.name)))?;
        buf.clear();
        let n = file.take(entry.size + 1).read_to_end(&mut buf)?;
        if n as u64 != entry.size {
            return Err(invalid(format!("{} changed since it was validated", entry.name)).into());
        }
        f(&entry.name, &buf)?;
    }
    Ok(())
}

/// Whether an archive entry is replaced by the platform's runtime at build time.
pub fn is_replaced_by_runtime(name: &str) -> bool {
    name == RUNTIME_FILE || name.starts_with(RUNTIME_PACKAGE)
}

/// Validates an archive held in memory.
///
/// Faster than [`validate`] on a reader: entries up to [`ONE_SHOT_MAX`] bytes are inflated in one
/// call straight from the input slice, spread over the available cores.
pub fn validate_bytes(bytes: &[u8], limits: &Limits) -> Result<ValidatedArchive, ValidationReport> {
    validate_bytes_for(bytes, limits, LambdaType::Standalone)
}

/// [`validate_bytes`] for a lambda of type `lambda_type` (a `tasks` lambda defines a
/// `BaseLambdaTask` subclass instead of `main`).
pub fn validate_bytes_for(
    bytes: &[u8],
    limits: &Limits,
    lambda_type: LambdaType,
) -> Result<ValidatedArchive, ValidationReport> {
    validate_impl(
        std::io::Cursor::new(bytes),
        Some(bytes),
        limits,
        lambda_type,
    )
}

/// Validates an archive from any seekable reader. See the module docs.
pub fn validate<R: Read + Seek>(
    reader: R,
    limits: &Limits,
) -> Result<ValidatedArchive, ValidationReport> {
    validate_for(reader, limits, LambdaType::Standalone)
}

/// [`validate`] for a lambda of type `lambda_type`.
pub fn validate_for<R: Read + Seek>(
    reader: R,
    limits: &Limits,
    lambda_type: LambdaType,
) -> Result<ValidatedArchive, ValidationReport> {
    validate_impl(reader, None, limits, lambda_type)
}

fn validate_impl<R: Read + Seek>(
    reader: R,
    bytes: Option<&[u8]>,
    limits: &Limits,
    lambda_type: LambdaType,
) -> Result<ValidatedArchive, ValidationReport> {
    let mut report = ValidationReport::default();
    // Archive structure: a readable zip within the limits, unique names, no shared data.
    let (size, mut zip) = match open_archive(reader, limits) {
        Ok(opened) => opened,
        Err(problem) => {
            report.push(problem);
            return Err(report);
        }
    };
    if zip.has_duplicate_names() {
        zip = match report_duplicates(zip, &mut report) {
            Ok(z) => z,
            Err(problem) => {
                report.push(problem);
                return Err(report);
            }
        };
    }
    if matches!(zip.has_overlapping_entries(), Ok(true)) {
        report.push(Problem::error(
            "archive.overlapping_entries",
            "",
            "entries of this archive share their compressed data (a known zip-bomb construction)",
        ));
    }
    // Entry safety: headers first, then every readable entry's real size and CRC.
    let (metas, declared_total) = check_headers(&mut zip, limits, &mut report);
    let mut read = ReadEntries::default();
    if declared_total <= limits.max_uncompressed_bytes {
        read = read_entries(&mut zip, bytes, &metas, limits, &mut report);
    }
    // Content rules.
    let names: Vec<&str> = metas.iter().map(|(_, m, _)| m.name.as_str()).collect();
    let main_line = check_main_module(&names, &read.kept, lambda_type, &mut report);
    let (has_requirements, requirements) = check_requirements(&names, &read.kept, &mut report);
    let has_docs = check_docs(&names, &read.kept, &mut report);
    warn_replaced_by_runtime(&names, &read.kept, &mut report);

    if !report.is_ok() {
        return Err(report);
    }
    let entries = metas
        .into_iter()
        .map(|(_, m, _)| ArchiveEntry {
            name: m.name,
            size: m.size,
            compressed_size: m.compressed_size,
            is_dir: m.is_dir,
        })
        .collect();
    Ok(ValidatedArchive {
        size,
        uncompressed_size: read.actual_total,
        entries,
        main_line,
        has_requirements,
        requirements,
        has_docs,
        warnings: report.problems,
    })
}

/// Opens the zip after the whole-archive checks (readable, not empty, within the size and entry
/// limits); the problem that stops validation otherwise.
fn open_archive<R: Read + Seek>(
    mut reader: R,
    limits: &Limits,
) -> Result<(u64, zip::ZipArchive<R>), Problem> {
    let size = reader
        .seek(SeekFrom::End(0))
        .and_then(|n| {
            reader.seek(SeekFrom::Start(0))?;
            Ok(n)
        })
        .map_err(|e| {
            Problem::error(
                "archive.unreadable",
                "",
                format!("the archive could not be read: {e}"),
            )
        })?;
    if size == 0 {
        return Err(Problem::error(
            "archive.empty",
            "",
            "the archive is empty (0 bytes); upload a zip that contains lambda_main.py",
        ));
    }
    if size > limits.max_archive_bytes {
        return Err(Problem::error(
            "archive.too_large",
            "",
            format!(
                "the archive is {size} bytes, more than the limit of {} bytes (setting limits.max_archive_bytes)",
                limits.max_archive_bytes
            ),
        ));
    }
    let mut magic = [0u8; 4];
    let starts_like_zip = reader.read_exact(&mut magic).is_ok()
        && (magic == *b"PK\x03\x04" || magic == *b"PK\x05\x06");
    let _ = reader.seek(SeekFrom::Start(0));
    let zip = zip::ZipArchive::new(reader).map_err(|e| {
        if starts_like_zip {
            Problem::error(
                "archive.truncated",
                "",
                format!(
                    "the file starts like a zip but is truncated or corrupt ({e}); upload it again"
                ),
            )
        } else {
            Problem::error(
                "archive.not_zip",
                "",
                format!("the file is not a zip archive ({e}); lambdas are uploaded as .zip files"),
            )
        }
    })?;
    if zip.is_empty() {
        return Err(Problem::error(
            "archive.empty",
            "",
            "the zip has no entries; it must contain lambda_main.py at its root",
        ));
    }
    if zip.len() > limits.max_entries {
        return Err(Problem::error(
            "archive.too_many_entries",
            "",
            format!(
                "the archive has {} entries, more than the limit of {} (setting limits.max_entries); its entries were not inspected",
                zip.len(),
                limits.max_entries
            ),
        ));
    }
    Ok((size, zip))
}

/// Reports each name that appears more than once; returns the zip, re-opened.
fn report_duplicates<R: Read + Seek>(
    zip: zip::ZipArchive<R>,
    report: &mut ValidationReport,
) -> Result<zip::ZipArchive<R>, Problem> {
    let (start, offset) = (zip.central_directory_start(), zip.offset());
    let mut inner = zip.into_inner();
    let dups = duplicate_names(&mut inner, start, offset);
    let zip = zip::ZipArchive::new(inner).map_err(|e| {
        Problem::error(
            "archive.truncated",
            "",
            format!("the archive could not be re-read: {e}"),
        )
    })?;
    if dups.is_empty() {
        report.push(Problem::error(
            "archive.duplicate_name",
            "",
            "the archive has several entries with the same name",
        ));
    }
    for name in dups {
        report.push(Problem::error(
            "archive.duplicate_name",
            name.clone(),
            format!("'{name}' appears more than once in the archive; each name must be unique"),
        ));
    }
    Ok(zip)
}

/// Pass 1, headers only: each entry's metadata and whether its content may be read, and the
/// declared uncompressed total (reported when over the limit).
fn check_headers<R: Read + Seek>(
    zip: &mut zip::ZipArchive<R>,
    limits: &Limits,
    report: &mut ValidationReport,
) -> (Vec<(usize, EntryMeta, bool)>, u64) {
    let mut metas = Vec::with_capacity(zip.len());
    let mut declared_total: u64 = 0;
    for i in 0..zip.len() {
        let meta = match zip.by_index_raw(i) {
            Ok(f) => EntryMeta::from_file(&f),
            Err(e) => {
                report.push(Problem::error(
                    "archive.truncated",
                    "",
                    format!(
                        "entry #{} could not be located: {e}; the archive is truncated or corrupt",
                        i + 1
                    ),
                ));
                continue;
            }
        };
        declared_total = declared_total.saturating_add(meta.size);
        let ok = check_entry_header(&meta, limits, report);
        metas.push((i, meta, ok));
    }
    if declared_total > limits.max_uncompressed_bytes {
        report.push(Problem::error(
            "archive.uncompressed_too_large",
            "",
            format!(
                "the entries add up to {declared_total} bytes uncompressed, more than the limit of {} bytes (setting limits.max_uncompressed_bytes)",
                limits.max_uncompressed_bytes
            ),
        ));
    }
    (metas, declared_total)
}

/// What pass 2 keeps: the files the content rules parse, and the real uncompressed total.
#[derive(Default)]
struct ReadEntries {
    kept: BTreeMap<&'static str, Vec<u8>>,
    actual_total: u64,
}

/// Pass 2: reads every readable entry (in memory and spread over the cores when the bytes are
/// given), checking real sizes and CRCs, and keeps the files the content rules parse.
fn read_entries<R: Read + Seek>(
    zip: &mut zip::ZipArchive<R>,
    bytes: Option<&[u8]>,
    metas: &[(usize, EntryMeta, bool)],
    limits: &Limits,
    report: &mut ValidationReport,
) -> ReadEntries {
    let mut jobs = Vec::new();
    for (i, meta, ok) in metas {
        if !*ok || meta.is_dir {
            continue;
        }
        let keep_as = KEPT_FILES.iter().copied().find(|k| *k == meta.name);
        let keep = keep_as.is_some() && meta.size <= limits.max_source_bytes;
        if keep_as.is_some() && !keep {
            report.push(Problem::error(
                "entry.too_large",
                meta.name.clone(),
                format!(
                    "'{}' is {} bytes, more than the {} bytes the validator reads (setting limits.max_source_bytes)",
                    meta.name, meta.size, limits.max_source_bytes
                ),
            ));
        }
        jobs.push(Job {
            index: *i,
            meta,
            keep_as: keep_as.filter(|_| keep),
            outcome: None,
        });
    }
    if let Some(bytes) = bytes {
        inflate_in_memory(zip, bytes, &mut jobs);
    }
    let mut read = ReadEntries::default();
    let mut buf = vec![0u8; 64 * 1024];
    for job in &mut jobs {
        let outcome = match job.outcome.take() {
            Some(outcome) => outcome,
            None => stream_entry(zip, job, &mut buf),
        };
        let meta = job.meta;
        match outcome {
            Outcome::Ok(content) => {
                read.actual_total += meta.size;
                if let (Some(name), Some(c)) = (job.keep_as, content) {
                    read.kept.insert(name, c);
                }
            }
            Outcome::Bigger => report.push(Problem::error(
                "entry.size_mismatch",
                meta.name.clone(),
                format!(
                    "'{}' declares {} bytes but holds more; reading stopped (a lying size header is a zip-bomb sign)",
                    meta.name, meta.size
                ),
            )),
            Outcome::Short(n) => report.push(Problem::error(
                "entry.size_mismatch",
                meta.name.clone(),
                format!("'{}' declares {} bytes but holds only {n}; the archive is corrupt", meta.name, meta.size),
            )),
            Outcome::Corrupt(e) => report.push(Problem::error(
                "entry.corrupt",
                meta.name.clone(),
                format!("'{}' could not be decompressed: {e}; the archive is corrupt", meta.name),
            )),
        }
    }
    read
}

/// Reads one entry through the shared buffer, keeping its content when the job asks for it.
fn stream_entry<R: Read + Seek>(
    zip: &mut zip::ZipArchive<R>,
    job: &Job<'_>,
    buf: &mut [u8],
) -> Outcome {
    let mut content = job
        .keep_as
        .map(|_| Vec::with_capacity(job.meta.size as usize));
    match read_entry(zip, job.index, job.meta.size, buf, content.as_mut()) {
        Ok(n) if n == job.meta.size => Outcome::Ok(content),
        Ok(n) if n > job.meta.size => Outcome::Bigger,
        Ok(n) => Outcome::Short(n),
        Err(e) => Outcome::Corrupt(e),
    }
}

/// `lambda_main.py`: present at the root, UTF-8, valid Python with `async def main(request)`,
/// importing only what the runtime provides, with valid handler routes. Returns main's line.
fn check_main_module(
    names: &[&str],
    kept: &BTreeMap<&'static str, Vec<u8>>,
    lambda_type: LambdaType,
    report: &mut ValidationReport,
) -> u32 {
    if !names.contains(&MAIN_FILE) {
        report.push(missing_main(names));
        return 0;
    }
    let Some(src) = kept.get(MAIN_FILE) else {
        return 0;
    };
    match std::str::from_utf8(src) {
        Ok(text) => match python::check_module(text, MAIN_FILE, lambda_type) {
            Ok(line) => line,
            Err(problems) => {
                report.problems.extend(problems);
                0
            }
        },
        Err(e) => {
            report.push(not_utf8(MAIN_FILE, src, &e));
            0
        }
    }
}

/// `requirements.txt`: whether it is there, and its requirement lines.
fn check_requirements(
    names: &[&str],
    kept: &BTreeMap<&'static str, Vec<u8>>,
    report: &mut ValidationReport,
) -> (bool, Vec<String>) {
    let mut reqs = Vec::new();
    if let Some(src) = kept.get(REQUIREMENTS_FILE) {
        match std::str::from_utf8(src) {
            Ok(text) => {
                let (lines, problems) = requirements::check(text, REQUIREMENTS_FILE);
                reqs = lines;
                report.problems.extend(problems);
            }
            Err(e) => report.push(not_utf8(REQUIREMENTS_FILE, src, &e)),
        }
    }
    (names.contains(&REQUIREMENTS_FILE), reqs)
}

/// `docs/`: both files or neither, UTF-8, the YAML parsing. Returns whether docs are complete.
fn check_docs(
    names: &[&str],
    kept: &BTreeMap<&'static str, Vec<u8>>,
    report: &mut ValidationReport,
) -> bool {
    let has_html = names.contains(&DOCS_HTML);
    let has_yaml = names.contains(&DOCS_YAML);
    if has_html != has_yaml {
        let (present, missing) = if has_html {
            (DOCS_HTML, DOCS_YAML)
        } else {
            (DOCS_YAML, DOCS_HTML)
        };
        report.push(Problem::error(
            "docs.incomplete",
            present,
            format!(
                "'{present}' is present but '{missing}' is not; docs need both files, or neither"
            ),
        ));
    }
    for doc in [DOCS_HTML, DOCS_YAML] {
        let Some(src) = kept.get(doc) else {
            continue;
        };
        match std::str::from_utf8(src) {
            Ok(text) if doc == DOCS_YAML => {
                if let Err(e) = yaml_rust2::YamlLoader::load_from_str(text) {
                    let m = e.marker();
                    report.push(
                        Problem::error(
                            "docs.yaml_invalid",
                            doc,
                            format!("'{doc}' is not valid YAML: {}", e.info()),
                        )
                        .at(m.line() as u32, m.col() as u32 + 1),
                    );
                }
            }
            Ok(_) => {}
            Err(e) => report.push(not_utf8(doc, src, &e)),
        }
    }
    has_html && has_yaml
}

/// Warns about entries the platform's runtime replaces (not about the original's local
/// `run.py`, which every lambda folder may have).
fn warn_replaced_by_runtime(
    names: &[&str],
    kept: &BTreeMap<&'static str, Vec<u8>>,
    report: &mut ValidationReport,
) {
    let local_runner = kept
        .get(RUNTIME_FILE)
        .and_then(|src| std::str::from_utf8(src).ok())
        .is_some_and(|text| text.contains(LOCAL_RUNNER_IMPORT));
    for name in names {
        if *name == RUNTIME_FILE {
            if local_runner {
                continue;
            }
            report.push(Problem::warning(
                "runtime.replaced",
                *name,
                "'run.py' at the archive root is replaced by the platform's runtime and has no effect",
            ));
        } else if name.starts_with(RUNTIME_PACKAGE) {
            report.push(Problem::warning(
                "runtime.replaced",
                *name,
                format!("'{name}' is inside 'luna_lambda_tools/', which is replaced by the platform's runtime"),
            ));
        }
    }
}

const KEPT_FILES: [&str; 5] = [
    MAIN_FILE,
    REQUIREMENTS_FILE,
    DOCS_HTML,
    DOCS_YAML,
    RUNTIME_FILE,
];

/// What the original documents as `run.py` for local runs
/// (`from luna_lambda_tools.public.run import run`): expected in a lambda folder, no warning.
const LOCAL_RUNNER_IMPORT: &str = "luna_lambda_tools.public.run";

#[derive(Debug)]
struct EntryMeta {
    name: String,
    name_is_utf8: bool,
    size: u64,
    compressed_size: u64,
    encrypted: bool,
    method: CompressionMethod,
    mode: Option<u32>,
    is_dir: bool,
}

impl EntryMeta {
    fn from_file<R: Read>(f: &zip::read::ZipFile<'_, R>) -> Self {
        let raw = f.name_raw();
        let (name, name_is_utf8) = match std::str::from_utf8(raw) {
            Ok(s) => (s.to_owned(), true),
            Err(_) => (String::from_utf8_lossy(raw).into_owned(), false),
        };
        Self {
            is_dir: name.ends_with('/'),
            name,
            name_is_utf8,
            size: f.size(),
            compressed_size: f.compressed_size(),
            encrypted: f.encrypted(),
            method: f.compression(),
            mode: f.unix_mode(),
        }
    }
}

const S_IFMT: u32 = 0o170000;
const S_IFLNK: u32 = 0o120000;
const S_IFREG: u32 = 0o100000;
const S_IFDIR: u32 = 0o040000;

/// Header checks of one entry; returns whether its content may be read.
fn check_entry_header(m: &EntryMeta, limits: &Limits, report: &mut ValidationReport) -> bool {
    let before = report.problems.len();
    check_entry_name(m, report);
    check_entry_kind(m, report);
    check_entry_size(m, limits, report);
    report.problems.len() == before
}

/// The entry's name: UTF-8, no control characters or backslashes, relative, and staying inside
/// the lambda folder.
fn check_entry_name(m: &EntryMeta, report: &mut ValidationReport) {
    let name = &m.name;
    if !m.name_is_utf8 {
        report.push(Problem::error(
            "entry.name_not_utf8",
            name.clone(),
            format!("entry name {name:?} is not valid UTF-8; rename the file with a UTF-8 name"),
        ));
    }
    if name.is_empty() || name.chars().any(|c| c.is_control()) {
        report.push(Problem::error(
            "entry.invalid_name",
            name.clone(),
            format!("entry name {name:?} is empty or contains control characters"),
        ));
    }
    if name.contains('\\') {
        report.push(Problem::error(
            "entry.backslash",
            name.clone(),
            format!("entry name {name:?} contains a backslash; zip paths use '/' only"),
        ));
    }
    let bytes = name.as_bytes();
    if name.starts_with('/')
        || (bytes.len() >= 2 && bytes[1] == b':' && bytes[0].is_ascii_alphabetic())
    {
        report.push(Problem::error(
            "entry.absolute_path",
            name.clone(),
            format!("entry name {name:?} is an absolute path; paths must be relative to the archive root"),
        ));
    }
    let trimmed = name.trim_start_matches('/').trim_end_matches('/');
    let comps: Vec<&str> = trimmed.split(['/', '\\']).collect();
    if comps.contains(&"..") {
        report.push(Problem::error(
            "entry.parent_dir",
            name.clone(),
            format!("entry name {name:?} contains '..' and would escape the lambda folder"),
        ));
    } else if !trimmed.is_empty() && comps.iter().any(|c| c.is_empty() || *c == ".") {
        report.push(Problem::error(
            "entry.invalid_name",
            name.clone(),
            format!("entry name {name:?} has an empty or '.' path component"),
        ));
    }
}

/// What the entry is: a regular file or a folder, not encrypted, stored or deflated.
fn check_entry_kind(m: &EntryMeta, report: &mut ValidationReport) {
    let name = &m.name;
    if let Some(mode) = m.mode {
        match mode & S_IFMT {
            0 | S_IFREG | S_IFDIR => {}
            S_IFLNK => report.push(Problem::error(
                "entry.symlink",
                name.clone(),
                format!("'{name}' is a symbolic link; archives may hold regular files and folders only"),
            )),
            other => report.push(Problem::error(
                "entry.special_file",
                name.clone(),
                format!("'{name}' is a device, pipe or socket (mode {other:o}); only regular files are allowed"),
            )),
        }
    }
    if m.encrypted {
        report.push(Problem::error(
            "entry.encrypted",
            name.clone(),
            format!("'{name}' is password-protected; upload an archive without a password"),
        ));
    }
    if !matches!(
        m.method,
        CompressionMethod::Stored | CompressionMethod::Deflated
    ) {
        report.push(Problem::error(
            "entry.unsupported_compression",
            name.clone(),
            format!(
                "'{name}' uses compression method {:?}; use deflate or store (any standard zip tool does)",
                m.method
            ),
        ));
    }
    if m.is_dir && m.size > 0 {
        report.push(Problem::error(
            "entry.invalid_name",
            name.clone(),
            format!("'{name}' is named like a folder but holds {} bytes", m.size),
        ));
    }
}

/// The entry's size against the limits: uncompressed size and compression ratio.
fn check_entry_size(m: &EntryMeta, limits: &Limits, report: &mut ValidationReport) {
    let name = &m.name;
    if m.size > limits.max_uncompressed_bytes {
        report.push(Problem::error(
            "entry.too_large",
            name.clone(),
            format!(
                "'{name}' is {} bytes uncompressed, more than the limit of {} bytes (setting limits.max_uncompressed_bytes)",
                m.size, limits.max_uncompressed_bytes
            ),
        ));
    } else if m.size > limits.ratio_min_bytes
        && m.size / m.compressed_size.max(1) > limits.max_ratio
    {
        report.push(Problem::error(
            "entry.ratio_exceeded",
            name.clone(),
            format!(
                "'{name}' expands {} times ({} → {} bytes), more than the limit of {} (setting limits.max_ratio)",
                m.size / m.compressed_size.max(1),
                m.compressed_size,
                m.size,
                limits.max_ratio
            ),
        ));
    }
}

/// Largest entry inflated in one call (in memory) by [`validate_bytes`]; larger ones stream.
pub const ONE_SHOT_MAX: u64 = 4 * 1024 * 1024;

struct Job<'a> {
    index: usize,
    meta: &'a EntryMeta,
    keep_as: Option<&'static str>,
    outcome: Option<Outcome>,
}

enum Outcome {
    Ok(Option<Vec<u8>>),
    Bigger,
    Short(u64),
    Corrupt(String),
}

/// Inflates the small entries of an in-memory archive straight from the input slice, on all
/// cores. Entries it does not handle keep `outcome == None` and are streamed by the caller.
fn inflate_in_memory<R: Read + Seek>(
    zip: &mut zip::ZipArchive<R>,
    bytes: &[u8],
    jobs: &mut [Job<'_>],
) {
    let tasks = in_memory_tasks(zip, bytes, jobs);
    let run = |chunk: &[(usize, InMemory<'_>)]| -> Vec<(usize, Outcome)> {
        let mut inflater = libdeflater::Decompressor::new();
        let mut out: Vec<u8> = Vec::new();
        chunk
            .iter()
            .map(|(j, t)| (*j, t.inflate(&mut inflater, &mut out)))
            .collect()
    };
    let total: usize = tasks.iter().map(|(_, t)| t.data.len()).sum();
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(4);
    let results: Vec<(usize, Outcome)> = if threads > 1 && total > 1024 * 1024 {
        let per = tasks.len().div_ceil(threads).max(1);
        std::thread::scope(|s| {
            let handles: Vec<_> = tasks.chunks(per).map(|c| s.spawn(move || run(c))).collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_default())
                .collect()
        })
    } else {
        run(&tasks)
    };
    for (j, outcome) in results {
        jobs[j].outcome = Some(outcome);
    }
}

/// A small entry whose compressed bytes are a slice of the in-memory archive.
struct InMemory<'b> {
    data: &'b [u8],
    stored: bool,
    size: u64,
    crc: u32,
    keep: bool,
}

/// The jobs (by index) that can be inflated from the input slice: small, with their data
/// inside it.
fn in_memory_tasks<'b, R: Read + Seek>(
    zip: &mut zip::ZipArchive<R>,
    bytes: &'b [u8],
    jobs: &[Job<'_>],
) -> Vec<(usize, InMemory<'b>)> {
    let mut tasks = Vec::new();
    for (j, job) in jobs.iter().enumerate() {
        if job.meta.size > ONE_SHOT_MAX {
            continue;
        }
        let Ok(f) = zip.by_index_raw(job.index) else {
            continue;
        };
        let Some(start) = f.data_start() else {
            continue;
        };
        let end = start.saturating_add(f.compressed_size());
        let Some(data) = usize::try_from(start)
            .ok()
            .zip(usize::try_from(end).ok())
            .and_then(|(a, b)| bytes.get(a..b))
        else {
            continue;
        };
        tasks.push((
            j,
            InMemory {
                data,
                stored: f.compression() == CompressionMethod::Stored,
                size: job.meta.size,
                crc: f.crc32(),
                keep: job.keep_as.is_some(),
            },
        ));
    }
    tasks
}

impl InMemory<'_> {
    /// Checks (and, when kept, copies) the entry; `out` is a scratch buffer that only grows.
    fn inflate(&self, inflater: &mut libdeflater::Decompressor, out: &mut Vec<u8>) -> Outcome {
        if self.stored {
            return if (self.data.len() as u64) != self.size {
                Outcome::Short(self.data.len() as u64)
            } else if crc32fast::hash(self.data) != self.crc {
                Outcome::Corrupt("CRC-32 mismatch".into())
            } else {
                Outcome::Ok(self.keep.then(|| self.data.to_vec()))
            };
        }
        // One byte more than declared: filling it means the header lies.
        let need = self.size as usize + 1;
        if out.len() < need {
            out.resize(need, 0); // grows only: no re-zeroing per entry
        }
        match inflater.deflate_decompress(self.data, &mut out[..need]) {
            Ok(n) if n as u64 == self.size => {
                if crc32fast::hash(&out[..n]) == self.crc {
                    Outcome::Ok(self.keep.then(|| out[..n].to_vec()))
                } else {
                    Outcome::Corrupt("CRC-32 mismatch".into())
                }
            }
            Ok(n) if (n as u64) < self.size => Outcome::Short(n as u64),
            Ok(_) | Err(libdeflater::DecompressionError::InsufficientSpace) => Outcome::Bigger,
            Err(e) => Outcome::Corrupt(e.to_string()),
        }
    }
}

/// Reads one entry through `buf`, never more than `declared + 1` bytes. Returns the byte count.
fn read_entry<R: Read + Seek>(
    zip: &mut zip::ZipArchive<R>,
    index: usize,
    declared: u64,
    buf: &mut [u8],
    mut keep: Option<&mut Vec<u8>>,
) -> Result<u64, String> {
    let file = zip.by_index(index).map_err(|e| e.to_string())?;
    let mut capped = file.take(declared + 1);
    let mut total = 0u64;
    loop {
        match capped.read(buf) {
            Ok(0) => return Ok(total),
            Ok(n) => {
                total += n as u64;
                if let Some(k) = keep.as_deref_mut()
                    && total <= declared
                {
                    k.extend_from_slice(&buf[..n]);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                // The zip crate stops an entry that inflates past its declared size itself.
                let msg = e.to_string();
                if msg.contains("larger than its declared") {
                    return Ok(declared + 1);
                }
                if msg.contains("Invalid checksum") {
                    return Err("CRC-32 mismatch".into());
                }
                return Err(e.to_string());
            }
        }
    }
}

/// Names that occur more than once in the central directory (the zip crate keeps only one).
fn duplicate_names<R: Read + Seek>(r: &mut R, start: u64, offset: u64) -> Vec<String> {
    let names = central_directory_names(r, start)
        .filter(|n| !n.is_empty())
        .or_else(|| central_directory_names(r, start + offset))
        .unwrap_or_default();
    let mut seen = std::collections::HashSet::new();
    let mut dups = std::collections::BTreeSet::new();
    for n in names {
        if !seen.insert(n.clone()) {
            dups.insert(String::from_utf8_lossy(&n).into_owned());
        }
    }
    dups.into_iter().collect()
}

/// Reads the raw names from the central directory (record signature `PK\x01\x02`).
fn central_directory_names<R: Read + Seek>(r: &mut R, start: u64) -> Option<Vec<Vec<u8>>> {
    r.seek(SeekFrom::Start(start)).ok()?;
    let mut names = Vec::new();
    let mut header = [0u8; 46];
    // Bounded by the archive size: each record is at least 46 bytes.
    while r.read_exact(&mut header).is_ok() && header[..4] == *b"PK\x01\x02" {
        let name_len = u16::from_le_bytes([header[28], header[29]]) as usize;
        let extra_len = i64::from(u16::from_le_bytes([header[30], header[31]]));
        let comment_len = i64::from(u16::from_le_bytes([header[32], header[33]]));
        let mut name = vec![0u8; name_len];
        r.read_exact(&mut name).ok()?;
        r.seek(SeekFrom::Current(extra_len + comment_len)).ok()?;
        names.push(name);
    }
    Some(names)
}

fn not_utf8(path: &str, src: &[u8], e: &std::str::Utf8Error) -> Problem {
    let upto = &src[..e.valid_up_to()];
    let line = upto.iter().filter(|b| **b == b'\n').count() as u32 + 1;
    let col = upto.iter().rev().take_while(|b| **b != b'\n').count() as u32 + 1;
    Problem::error(
        "file.not_utf8",
        path,
        format!(
            "'{path}' is not UTF-8 text (invalid byte at offset {}); save it as UTF-8",
            e.valid_up_to()
        ),
    )
    .at(line, col)
}

fn missing_main(names: &[&str]) -> Problem {
    let nested: Vec<&&str> = names
        .iter()
        .filter(|n| n.ends_with("/lambda_main.py"))
        .collect();
    if let Some(first) = nested.first() {
        let folder = &first[..first.len() - MAIN_FILE.len()];
        let all_under = names
            .iter()
            .all(|n| n.starts_with(folder) || folder.starts_with(*n));
        if all_under && folder.matches('/').count() == 1 {
            return Problem::error(
                "main.nested",
                (*first).to_string(),
                format!(
                    "lambda_main.py is inside the top folder '{folder}', not at the archive root; zip the contents of '{folder}' instead of the folder itself"
                ),
            );
        }
        return Problem::error(
            "main.missing",
            MAIN_FILE,
            format!("lambda_main.py must be at the archive root; found '{first}' instead"),
        );
    }
    Problem::error(
        "main.missing",
        MAIN_FILE,
        "the archive has no lambda_main.py at its root; it must define `async def main(request)`",
    )
}
