//! One control plane per data folder: `serve` holds an exclusive lock on `<data_dir>/serve.lock`
//! for its whole life. The data folder holds the local builder's apps and environments and the
//! local orchestrator's run folder (its replicas' PIDs and ports); two servers on one folder
//! would each restart the other's replicas. The lock is an OS file lock (`flock`), so it goes
//! with the process however it ends: a lock file left by a dead process is simply taken over.
//! The file also names the holder's PID, for the refusal message.
//!
//! The Docker orchestrator's containers live outside the data folder, in the engine, under their
//! `[orchestrator] instance` label: `serve` also locks `<runtime dir>/luna-lambda/docker-<engine>-
//! <instance>.lock` (see `Config::instance_lock_path`), so two servers of one host
//! cannot run one instance with different data folders. (Servers on different hosts sharing one
//! remote engine are not detected: give each its own instance.)

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The lock file's name inside the data folder.
pub const LOCK_FILE: &str = "serve.lock";

/// Why the data folder could not be locked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LockError {
    /// Another live process holds it.
    #[error(
        "another luna-lambda server{} is using the data folder {}; stop it, or give this one its own folder with --data-dir",
        .pid.map(|p| format!(" (PID {p})")).unwrap_or_default(),
        .dir.display()
    )]
    Held {
        /// The data folder.
        dir: PathBuf,
        /// The holder's PID, when its lock file says.
        pid: Option<u32>,
    },
    /// Another live process runs the same Docker orchestrator instance.
    #[error(
        "another luna-lambda server{} runs the Docker orchestrator's instance {instance:?} on this engine (lock {}); stop it, or give this one its own [orchestrator] instance",
        .pid.map(|p| format!(" (PID {p})")).unwrap_or_default(),
        .path.display()
    )]
    InstanceHeld {
        /// The instance.
        instance: String,
        /// The lock file.
        path: PathBuf,
        /// The holder's PID, when its lock file says.
        pid: Option<u32>,
    },
    /// The lock file could not be made, opened, locked or written.
    #[error("cannot take the lock {}: {source}", .path.display())]
    Io {
        /// The lock file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
}

/// The held lock; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
}

/// What a server holds for its whole life: its data folder's lock, and its Docker instance's
/// when it runs Docker (see `Config::lock`).
#[derive(Debug)]
pub struct ServerLock {
    _data_dir: DataDirLock,
    _instance: Option<DataDirLock>,
}

/// Takes the data folder's lock, then the instance's when there is one (`path`, `instance`).
pub fn lock_server(
    data_dir: &Path,
    instance: Option<(&Path, &str)>,
) -> Result<ServerLock, LockError> {
    let data = lock_data_dir(data_dir)?;
    let instance = instance
        .map(|(path, name)| lock_instance(path, name))
        .transpose()?;
    Ok(ServerLock {
        _data_dir: data,
        _instance: instance,
    })
}

/// Takes the data folder's lock for this process, or says who holds it.
pub fn lock_data_dir(dir: &Path) -> Result<DataDirLock, LockError> {
    let path = dir.join(LOCK_FILE);
    let io = |source| LockError::Io {
        path: path.clone(),
        source,
    };
    match flock(&path).map_err(io)? {
        Ok(file) => Ok(DataDirLock { _file: file }),
        Err(pid) => Err(LockError::Held {
            dir: dir.to_path_buf(),
            pid,
        }),
    }
}

/// Takes the lock of a Docker orchestrator instance (`path`, its folder made when missing).
pub fn lock_instance(path: &Path, instance: &str) -> Result<DataDirLock, LockError> {
    let io = |source| LockError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    match flock(path).map_err(io)? {
        Ok(file) => Ok(DataDirLock { _file: file }),
        Err(pid) => Err(LockError::InstanceHeld {
            instance: instance.to_owned(),
            path: path.to_path_buf(),
            pid,
        }),
    }
}

/// The locked file with this process's PID in it, or the PID its live holder wrote.
fn flock(path: &Path) -> std::io::Result<Result<File, Option<u32>>> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            return Ok(Err(text.trim().parse().ok()));
        }
        Err(TryLockError::Error(e)) => return Err(e),
    }
    file.set_len(0)?;
    file.seek(SeekFrom::Start(0))?;
    writeln!(file, "{}", std::process::id())?;
    Ok(Ok(file))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_with_the_holders_pid_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let held = lock_data_dir(dir.path()).unwrap();
        match lock_data_dir(dir.path()) {
            Err(LockError::Held { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
            other => panic!("expected Held, got {other:?}"),
        }
        drop(held);
        lock_data_dir(dir.path()).expect("free again once the holder is gone");
    }

    #[test]
    fn one_holder_per_docker_instance() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("luna-lambda/docker-x-default.lock");
        let held = lock_instance(&path, "default").unwrap();
        let e = lock_instance(&path, "default").unwrap_err();
        assert!(
            e.to_string().contains("instance \"default\"")
                && e.to_string().contains(&std::process::id().to_string()),
            "{e}"
        );
        drop(held);
        lock_instance(&path, "default").expect("free again once the holder is gone");
    }

    #[test]
    fn a_stale_lock_file_of_a_dead_process_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(LOCK_FILE), "4194304999\n").unwrap();
        let _held = lock_data_dir(dir.path()).unwrap();
        let text = std::fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap();
        assert_eq!(text.trim(), std::process::id().to_string());
    }
}
