//! Instructions per request, counted by callgrind: the same for the same binary and requests
//! whatever else the machine is doing, so that a change of a few percent in a proxy's own work
//! shows where the noise of timings on a shared machine hides it.

use super::{BodySize, wait_for, wrk_as};
use std::process::{Command, Stdio};

/// A program to count: `command` (without valgrind), the address that answers once it is up,
/// and the address wrk sends the small body to.
pub(crate) struct Counted<'a> {
    pub(crate) command: Command,
    pub(crate) health: &'a str,
    pub(crate) url: &'a str,
}

/// The user-space instructions per request `counted` executes while wrk sends the small body on
/// one connection for `secs`, after a warm-up that is not counted.
pub(crate) fn per_request(counted: Counted, secs: u32) -> f64 {
    let Counted {
        command,
        health,
        url,
    } = counted;
    let out = tempfile::tempdir().unwrap(); // callgrind's files
    let out = out.path();
    let mut valgrind = Command::new("valgrind");
    valgrind
        .args(["--tool=callgrind", "--instr-atstart=no"])
        .arg(format!(
            "--callgrind-out-file={}",
            out.join("callgrind.%p").display()
        ))
        .arg(command.get_program())
        .args(command.get_args())
        .envs(command.get_envs().filter_map(|(k, v)| v.map(|v| (k, v))))
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = valgrind
        .spawn()
        .expect("valgrind is installed (scripts/bench-proxy installs it)");
    wait_for(health, 120, "a proxy under callgrind");
    let pid = child.id().to_string();
    let control = |what: &str| {
        let done = Command::new("callgrind_control")
            .args([what, &pid])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        assert!(done, "callgrind_control {what} {pid} failed");
    };
    control("--instr=on");
    wrk_as(url, 2, 1, BodySize::Small, None); // connections, pools and caches warm
    control("--zero");
    let w = wrk_as(url, secs, 1, BodySize::Small, None);
    control("--dump");
    let _ = Command::new("kill").arg(&pid).status();
    let _ = child.wait();
    let dump = std::fs::read_dir(out)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "1"))
        .expect("callgrind wrote the dump asked for");
    let total: u64 = std::fs::read_to_string(&dump)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("summary:").or(l.strip_prefix("totals:")))
        .and_then(|v| v.trim().parse().ok())
        .expect("a callgrind dump has its total");
    total as f64 / w.requests.max(1) as f64
}
