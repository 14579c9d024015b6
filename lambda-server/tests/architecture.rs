//! The rooms of lambda-server keep their dependency direction (ARCHITECTURE.md): read from the
//! sources, as rust-analyzer's tidy tests do. `config` → `server` → {`proxy`, `http`} →
//! `service`; `client` is a leaf on lambda-core alone.

use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// The `.rs` files of a room: `src/<room>.rs` and everything under `src/<room>/`.
fn room(name: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut files = vec![src().join(format!("{name}.rs"))];
    walk(&src().join(name), &mut files);
    files.retain(|f| f.exists());
    assert!(files.len() > 1, "the {name} room has no files: {files:?}");
    files
}

/// Every line of `files` that contains one of `needles` (comments included: a path named in
/// a doc link is a dependency too), as `file:line: text`.
fn lines_with(files: &[PathBuf], needles: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(f).unwrap();
        for (i, line) in text.lines().enumerate() {
            if needles.iter().any(|n| line.contains(n)) {
                let short = f.strip_prefix(src()).unwrap_or(f);
                found.push(format!("{}:{}: {}", short.display(), i + 1, line.trim()));
            }
        }
    }
    found
}

#[test]
fn the_service_does_not_reach_up_into_the_edge_or_the_process() {
    let found = lines_with(
        &room("service"),
        &[
            "crate::http",
            "crate::proxy",
            "crate::server",
            "crate::config",
            "crate::Config",
            "crate::serve",
            // A grouped import or a climb out of the room could name them without these words.
            "crate::{",
            "super::super::super",
            "axum",
            "hyper",
            "http_body",
            "tower",
        ],
    );
    assert!(
        found.is_empty(),
        "service/ may use storage, build, deploy and core, not the rooms above it nor an HTTP stack (axum, hyper, tower):\n{}",
        found.join("\n")
    );
}

#[test]
fn the_http_api_and_the_proxy_do_not_reach_into_the_process_or_its_config() {
    let mut files = room("http");
    files.extend(room("proxy"));
    let found = lines_with(
        &files,
        &[
            "crate::server",
            "crate::config",
            "crate::Config",
            "crate::serve",
            "crate::{",
        ],
    );
    assert!(
        found.is_empty(),
        "http/ and proxy/ are served by server/ and configured by config/, not the other way:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_server_does_not_reach_into_its_config() {
    let found = lines_with(
        &room("server"),
        &["crate::config", "crate::Config", "crate::{"],
    );
    assert!(
        found.is_empty(),
        "server/ is what config/ builds on (Config::setup makes its Setup), not the other way:\n{}",
        found.join("\n")
    );
}

#[test]
fn the_client_is_a_leaf() {
    let found = lines_with(&room("client"), &["crate::"]);
    assert!(
        found.is_empty(),
        "client/ is built without the server (feature `client` alone) and uses lambda-core only:\n{}",
        found.join("\n")
    );
}

#[test]
fn no_source_file_is_over_700_lines() {
    let rooms = ["service", "http", "proxy", "server", "config", "client"];
    let files: Vec<PathBuf> = rooms.iter().flat_map(|r| room(r)).collect();
    let long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let n = std::fs::read_to_string(f).unwrap().lines().count();
            (n > 700).then(|| format!("{} has {n} lines", f.display()))
        })
        .collect();
    assert!(
        long.is_empty(),
        "split these by responsibility:\n{}",
        long.join("\n")
    );
}

#[test]
fn route_paths_are_written_only_in_the_route_table() {
    let table = std::fs::read_to_string(src().join("http/paths.rs")).unwrap();
    let paths: Vec<&str> = table
        .lines()
        .filter_map(|l| l.split_once("&str = \"").map(|(_, rest)| rest))
        .map(|rest| rest.trim_end_matches("\";"))
        .collect();
    assert!(
        paths.len() > 30,
        "no route table in http/paths.rs: {paths:?}"
    );
    // The console's `/` is too short to tell from other uses of the string.
    let paths: Vec<&str> = paths.into_iter().filter(|p| p.len() > 1).collect();
    // The same name for another server's route: a replica's own `/metrics` (runtime contract).
    let other_servers = [("http/routes/lambdas.rs", "/metrics")];
    // Not `client/`: it is built without the server, so it spells the paths it calls (its tests
    // drive it against the router).
    let rooms = ["service", "http", "proxy", "server", "config"];
    let mut found = Vec::new();
    for f in rooms.iter().flat_map(|r| room(r)) {
        let short = f.strip_prefix(src()).unwrap().display().to_string();
        if short == "http/paths.rs" || short.ends_with("tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        // Test code may spell the paths it requests: the file's own test module, at its end.
        let code = text.split("\n#[cfg(test)]\nmod tests").next().unwrap_or("");
        for (i, line) in code.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            // A route registered with a literal path, in the table or not.
            if line.contains(".route(\"") {
                found.push(format!("{short}:{}: {}", i + 1, line.trim()));
            }
            for p in &paths {
                let allowed = other_servers.contains(&(short.as_str(), *p));
                if line.contains(&format!("\"{p}\"")) && !allowed {
                    found.push(format!("{short}:{}: {}", i + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "a route's path is written once, in http/paths.rs (the route table uses its names):\n{}",
        found.join("\n")
    );
}
