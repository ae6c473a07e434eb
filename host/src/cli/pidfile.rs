//! The server's pid file, `<data-dir>/agent-vault.pid`: one server per data directory, and
//! the way `agent-vault server stop` finds it.
//!
//! A running server holds an exclusive lock on the file for as long as it lives, and has
//! written its pid into it. Whether a server runs is asked of the lock, not of the pid: the
//! operating system releases the lock when the process ends, however it ends, so a file left
//! behind by a crash (or a pid reused since) never blocks a start or misleads `stop`. For the
//! same reason the file is never deleted: deleting it while another process has it open would
//! let two servers each lock a file of their own.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

const FILE_NAME: &str = "agent-vault.pid";

/// The running server's hold on its data directory; released when dropped (or the process
/// ends).
#[derive(Debug)]
pub struct PidFile {
    _file: File,
}

impl PidFile {
    /// Lock the data directory for this process, or say which server already has it.
    pub fn acquire(data_dir: &Path) -> anyhow::Result<PidFile> {
        // The first thing a server creates: the data directory is private from the start.
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder
            .create(data_dir)
            .with_context(|| format!("creating {}", data_dir.display()))?;
        let path = path(data_dir);
        let mut file = open(&path, true)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                bail!(
                    "an agent-vault server is already running with {} (pid {}); stop it \
                     first (agent-vault server stop)",
                    data_dir.display(),
                    read_pid(&mut file).map_or_else(|| "unknown".to_owned(), |pid| pid.to_string())
                )
            }
            Err(TryLockError::Error(error)) => {
                return Err(error).with_context(|| format!("locking {}", path.display()));
            }
        }
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "{}", std::process::id()))
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(PidFile { _file: file })
    }
}

/// The pid of the server running with `data_dir`, if one is.
pub fn running(data_dir: &Path) -> anyhow::Result<Option<u32>> {
    let path = path(data_dir);
    if !path.exists() {
        return Ok(None);
    }
    let mut file = open(&path, false)?;
    match file.try_lock() {
        // Nobody holds it: no server. (Our lock goes with `file`.)
        Ok(()) => Ok(None),
        Err(TryLockError::WouldBlock) => match read_pid(&mut file) {
            Some(pid) => Ok(Some(pid)),
            None => bail!(
                "{} is locked by a running server but holds no pid",
                path.display()
            ),
        },
        Err(TryLockError::Error(error)) => {
            Err(error).with_context(|| format!("checking {}", path.display()))
        }
    }
}

fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE_NAME)
}

fn open(path: &Path, create: bool) -> anyhow::Result<File> {
    let mut options = OpenOptions::new();
    options
        .read(true)
        .write(true)
        .create(create)
        .truncate(false);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    options
        .open(path)
        .with_context(|| format!("opening {}", path.display()))
}

fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_holder_at_a_time_and_a_stale_file_blocks_nothing() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(running(dir.path()).unwrap(), None, "no file yet");

        let held = PidFile::acquire(dir.path()).unwrap();
        assert_eq!(running(dir.path()).unwrap(), Some(std::process::id()));
        let refused = PidFile::acquire(dir.path()).unwrap_err().to_string();
        assert!(
            refused.contains(&format!("already running with {}", dir.path().display()))
                && refused.contains(&format!("(pid {})", std::process::id())),
            "{refused}"
        );

        // Released: the file stays, with its old pid, and means nothing.
        drop(held);
        assert!(dir.path().join(FILE_NAME).exists());
        assert_eq!(running(dir.path()).unwrap(), None);
        let again = PidFile::acquire(dir.path()).unwrap();
        assert_eq!(running(dir.path()).unwrap(), Some(std::process::id()));
        drop(again);
    }
}
