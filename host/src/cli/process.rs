//! What `agent-vault server` does to its own process before it serves, so that what it holds
//! (the master password, the data key, credentials in flight) cannot be read from outside by
//! other processes of the same user, an agent among them:
//!
//! - The master password never stays in the environment. `/proc/PID/environ` shows the
//!   environment a process was started with, and removing a variable afterwards does not
//!   change it. So when `AGENT_VAULT_MASTER_PASSWORD` is set, the server starts itself again
//!   at once (`exec`: the same executable, arguments and process id) without it, handing the
//!   password over on a pipe as its standard input ([`restart_without_password_env`]).
//!   `--master-password-file` (`AGENT_VAULT_MASTER_PASSWORD_FILE`) names a file to read it
//!   from instead: a systemd credential, a Kubernetes Secret mounted as a file.
//! - The process is not dumpable (`PR_SET_DUMPABLE` 0) and writes no core dumps
//!   (`RLIMIT_CORE` 0): the kernel then lets no other process of the user read its memory,
//!   environment or file descriptors through `/proc`, or attach a debugger (root still can).
//! - The file-descriptor soft limit is raised to the hard limit; the connection caps are
//!   fitted to it (`accept/`).

use std::io::{Read as _, Write as _};
use std::path::Path;

use anyhow::{Context as _, bail};
use zeroize::Zeroizing;

/// The environment variable that may carry the master password.
pub const MASTER_PASSWORD_ENV: &str = "AGENT_VAULT_MASTER_PASSWORD";

/// The environment variable that may name a file holding the master password.
pub const MASTER_PASSWORD_FILE_ENV: &str = "AGENT_VAULT_MASTER_PASSWORD_FILE";

/// Set in the environment of the server started again without the password: its standard
/// input is a pipe holding exactly the password.
pub const RESTARTED_ENV: &str = "_AGENT_VAULT_MASTER_PASSWORD_ON_STDIN";

/// The longest password handed over on the pipe: what a pipe takes without a reader, so
/// that writing it cannot block.
const PIPE_CAPACITY: usize = 4096;

/// If `AGENT_VAULT_MASTER_PASSWORD` is set, start this server again without it, the
/// password on a pipe as standard input; returns only if it is not set (or is empty, which
/// is the same as not set), or with the error that stopped the restart. Call it first, on
/// the main thread, before anything else reads the environment or starts a thread.
pub fn restart_without_password_env() -> anyhow::Result<()> {
    let Some(value) = std::env::var_os(MASTER_PASSWORD_ENV) else {
        return Ok(());
    };
    let password = Zeroizing::new(
        value
            .into_string()
            .map_err(|_| anyhow::anyhow!("{MASTER_PASSWORD_ENV} is not valid UTF-8"))?,
    );
    if password.is_empty() {
        return Ok(());
    }
    if password.len() >= PIPE_CAPACITY {
        bail!(
            "the master password in {MASTER_PASSWORD_ENV} is longer than {} bytes: give it with \
             {MASTER_PASSWORD_FILE_ENV} or --password-stdin instead",
            PIPE_CAPACITY - 1
        );
    }
    restart_with_password_on_stdin(&password)
        .context("restarting the server without the master password in its environment")
}

#[cfg(unix)]
fn restart_with_password_on_stdin(password: &str) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt as _;
    let (reader, mut writer) = std::io::pipe().context("opening a pipe")?;
    writer
        .write_all(password.as_bytes())
        .context("writing to the pipe")?;
    drop(writer);
    let mut arguments = std::env::args_os();
    let mut command = std::process::Command::new(this_executable()?);
    if let Some(name) = arguments.next() {
        command.arg0(name);
    }
    // `exec` only returns if it failed.
    let error = command
        .args(arguments)
        .env_remove(MASTER_PASSWORD_ENV)
        .env(RESTARTED_ENV, "1")
        .stdin(reader)
        .exec();
    Err(error).context("exec")
}

#[cfg(not(unix))]
fn restart_with_password_on_stdin(_password: &str) -> anyhow::Result<()> {
    bail!("give the master password with {MASTER_PASSWORD_FILE_ENV} or --password-stdin instead")
}

/// The running executable, even if its file has been replaced since it started.
fn this_executable() -> anyhow::Result<std::path::PathBuf> {
    if Path::new("/proc/self/exe").exists() {
        return Ok("/proc/self/exe".into());
    }
    std::env::current_exe().context("finding the agent-vault executable")
}

/// The master password given without a prompt or `--password-stdin`: handed over by
/// [`restart_without_password_env`], or read from `file` (`--master-password-file` or
/// `AGENT_VAULT_MASTER_PASSWORD_FILE`; one trailing line break removed).
pub fn given_password(file: Option<&Path>) -> anyhow::Result<Option<Zeroizing<String>>> {
    if std::env::var_os(RESTARTED_ENV).is_some() {
        let mut password = Zeroizing::new(String::new());
        std::io::stdin()
            .read_to_string(&mut password)
            .context("reading the master password handed over on standard input")?;
        return Ok(Some(password));
    }
    let Some(path) = file.filter(|path| !path.as_os_str().is_empty()) else {
        return Ok(None);
    };
    let mut password = Zeroizing::new(
        std::fs::read_to_string(path)
            .with_context(|| format!("reading the master password file {}", path.display()))?,
    );
    for line_break in ["\n", "\r"] {
        if password.ends_with(line_break) {
            password.pop();
        }
    }
    if password.is_empty() {
        bail!("the master password file {} is empty", path.display());
    }
    Ok(Some(password))
}

/// No core dumps, and not dumpable: other processes of the user cannot read this one's
/// memory or `/proc` files. Warns if the system refuses.
pub fn forbid_dumps() {
    use rustix::process::{Resource, Rlimit, setrlimit};
    let none = Rlimit {
        current: Some(0),
        maximum: Some(0),
    };
    if let Err(error) = setrlimit(Resource::Core, none) {
        tracing::warn!("cannot turn core dumps off: {error}");
    }
    #[cfg(target_os = "linux")]
    if let Err(error) =
        rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
    {
        tracing::warn!(
            "cannot make the process undumpable ({error}): other processes of this user may \
             read its memory"
        );
    }
}

/// Raise the file-descriptor soft limit to the hard limit (every connection needs one or
/// two); warns if the system refuses.
pub fn raise_fd_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    // An unlimited hard limit cannot be the soft one (Linux caps it at fs.nr_open): keep it.
    let (Some(current), Some(maximum)) = (limit.current, limit.maximum) else {
        return;
    };
    if current >= maximum {
        return;
    }
    let raised = Rlimit {
        current: Some(maximum),
        maximum: Some(maximum),
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => tracing::debug!("raised the file-descriptor limit from {current} to {maximum}"),
        Err(error) => tracing::warn!(
            "cannot raise the file-descriptor limit from {current} to {maximum}: {error}"
        ),
    }
}
