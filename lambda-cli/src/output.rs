//! How results and errors look: human text by default, JSON with `--json`.

use lambda_server::client::ClientError;
use std::io::{IsTerminal, Write};

/// Writes to standard output; a closed pipe (`luna-lambda list | head`) ends the program
/// quietly instead of panicking.
pub(crate) fn out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_all(text.as_bytes())
        .and_then(|_| stdout.flush())
        && e.kind() == std::io::ErrorKind::BrokenPipe
    {
        std::process::exit(0);
    }
}

/// `println!` through [`out`].
macro_rules! outln {
    ($($arg:tt)*) => { $crate::output::out(&format!("{}\n", format_args!($($arg)*))) };
}
pub(crate) use outln;

/// Prints an error: "error 42005: ..." with the detail and every problem, or a JSON object.
pub(crate) fn error(e: &anyhow::Error, json: bool) {
    if let Some(ClientError::Api { status, body }) = e.downcast_ref::<ClientError>() {
        if json {
            eprintln!("{}", serde_json::json!({"status": status, "error": body}));
            return;
        }
        eprintln!("error {}: {}", body.error_code, body.desc);
        if let Some(problems) = &body.problems {
            for p in problems {
                eprintln!("  {p}");
            }
        } else if !body.detail.is_empty() {
            eprintln!("  {}", body.detail);
        }
        return;
    }
    if json {
        eprintln!("{}", serde_json::json!({"error": format!("{e:#}")}));
    } else {
        eprintln!("error: {e:#}");
    }
}

/// A time as RFC 3339.
pub(crate) fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Prints a value as pretty JSON.
pub(crate) fn json(v: &impl serde::Serialize) {
    outln!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// A plain table: columns padded to their widest cell.
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        outln!("{}", s.trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for r in rows {
        line(r.clone());
    }
}

/// Progress of a long wait: a live spinner line on a terminal, plain lines otherwise.
pub(crate) struct Progress {
    bar: Option<indicatif::ProgressBar>,
    quiet: bool,
    last: String,
}

impl Progress {
    pub(crate) fn new(quiet: bool) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let b = indicatif::ProgressBar::new_spinner();
            b.enable_steady_tick(std::time::Duration::from_millis(100));
            b
        });
        Self {
            bar,
            quiet,
            last: String::new(),
        }
    }

    /// The current stage (shown once per change).
    pub(crate) fn stage(&mut self, stage: &str) {
        if stage == self.last {
            return;
        }
        self.last = stage.to_owned();
        match &self.bar {
            Some(b) => b.set_message(stage.to_owned()),
            None if !self.quiet => eprintln!("stage: {stage}"),
            None => {}
        }
    }

    /// A log line, printed above the live line.
    pub(crate) fn line(&self, line: &str) {
        match &self.bar {
            Some(b) => b.println(format!("  {line}")),
            None if !self.quiet => eprintln!("  {line}"),
            None => {}
        }
    }

    pub(crate) fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
