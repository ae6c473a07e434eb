//! `agent-vault server -d` and `agent-vault server stop`: the server in the background.
//!
//! `-d` checks everything a start needs while a person can still answer (the flags, the data
//! directory, the master password, asked for at the terminal if need be), then starts the same
//! command again as a server of its own process group, with its output appended to
//! `<data-dir>/server.log`, and returns once that server answers `/health`. The master password
//! reaches it on its standard input, as `--password-stdin` reads it: never in its environment
//! or its arguments, where other processes could read it. `stop` sends the server named in the
//! pid file (`pidfile.rs`) SIGTERM and waits for it to finish its requests and exit.

use std::ffi::OsString;
use std::io::{BufRead as _, BufReader, Read as _, Seek as _, SeekFrom, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use zeroize::Zeroizing;

use super::pidfile;
use super::process;

/// Set in the started server's environment: it is the background one, and does not detach.
pub const DETACHED_ENV: &str = "_AGENT_VAULT_DETACHED";

/// How long a background server may take to answer before `-d` gives up on it: unlocking
/// the key and compiling plugins take a few seconds on a cold cache.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Whether this process is the server a `-d` started.
pub fn is_detached_child() -> bool {
    std::env::var_os(DETACHED_ENV).is_some()
}

/// Start the server again in the background with this command line (minus `-d`), give it
/// `password` on its standard input, and wait until it answers.
pub fn start(data_dir: &Path, password: Option<Zeroizing<String>>) -> anyhow::Result<ExitCode> {
    if password
        .as_ref()
        .is_some_and(|password| password.contains('\n'))
    {
        bail!(
            "the master password contains a line break, which -d cannot pass on; start in the foreground"
        );
    }
    let log_path = data_dir.join("server.log");
    let mut log = open_log(&log_path)?;
    let log_start = log
        .seek(SeekFrom::End(0))
        .with_context(|| format!("reading {}", log_path.display()))?;
    let mut args = server_args();
    if password.is_some() && !args.iter().any(|arg| arg == "--password-stdin") {
        args.push("--password-stdin".into());
    }
    let executable = std::env::current_exe().context("finding the agent-vault executable")?;
    let mut command = Command::new(executable);
    // The password reaches it on standard input only: not through the variables that gave
    // it to this process, nor the pipe a restart handed it over on (`process.rs`).
    command
        .args(&args)
        .env(DETACHED_ENV, "1")
        .env_remove(process::MASTER_PASSWORD_ENV)
        .env_remove(process::MASTER_PASSWORD_FILE_ENV)
        .env_remove(process::RESTARTED_ENV)
        .stdin(Stdio::piped())
        .stdout(log.try_clone().context("opening the server log")?)
        .stderr(log);
    #[cfg(unix)]
    {
        // Its own process group: Ctrl-C at this terminal is not for it.
        use std::os::unix::process::CommandExt as _;
        command.process_group(0);
    }
    let mut child = command.spawn().context("starting the server")?;
    let mut stdin = child.stdin.take().expect("piped");
    if let Some(password) = &password {
        let line = Zeroizing::new(format!("{}\n", password.as_str()));
        stdin
            .write_all(line.as_bytes())
            .context("handing the master password to the server")?;
    }
    drop(stdin);

    let deadline = Instant::now() + START_TIMEOUT;
    let address = loop {
        if let Some(address) = listening_address(&log_path, log_start)? {
            break address;
        }
        if let Some(status) = child.try_wait().context("watching the server")? {
            bail!(
                "the server stopped ({status}) before it listened; from {}:\n{}",
                log_path.display(),
                log_since(&log_path, log_start)
            );
        }
        if Instant::now() > deadline {
            bail!(
                "the server did not listen within {} s (pid {}); see {}",
                START_TIMEOUT.as_secs(),
                child.id(),
                log_path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    while !healthy(&address) {
        if child.try_wait().context("watching the server")?.is_some() || Instant::now() > deadline {
            bail!(
                "the server does not answer /health at http://{address}; see {}",
                log_path.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    println!(
        "agent-vault is running in the background (pid {}), listening on http://{address}",
        child.id()
    );
    println!("Its log: {}", log_path.display());
    println!("Stop it with: agent-vault server stop");
    Ok(ExitCode::SUCCESS)
}

/// SIGTERM to the server running with `data_dir`, then wait (within `timeout`) until it has
/// finished its requests in flight and exited.
pub fn stop(data_dir: &Path, timeout: Duration) -> anyhow::Result<ExitCode> {
    let Some(pid) = pidfile::running(data_dir)? else {
        bail!(
            "no agent-vault server is running with {}",
            data_dir.display()
        );
    };
    let signalled = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .context("the pid file holds an invalid pid")
        .and_then(|target| {
            rustix::process::kill_process(target, rustix::process::Signal::TERM)
                .with_context(|| format!("signalling the server (pid {pid})"))
        });
    signalled?;
    let deadline = Instant::now() + timeout;
    while pidfile::running(data_dir)?.is_some() {
        if Instant::now() > deadline {
            bail!(
                "the server (pid {pid}) is still running {} s after SIGTERM",
                timeout.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("Stopped the agent-vault server (pid {pid}).");
    Ok(ExitCode::SUCCESS)
}

/// This command line without `-d`, and without `--master-password-file`: the password
/// reaches the background server on its standard input.
fn server_args() -> Vec<OsString> {
    let mut args = Vec::new();
    let mut given = std::env::args_os().skip(1);
    while let Some(arg) = given.next() {
        if arg == "-d" || arg == "--detach" {
            continue;
        }
        if arg == "--master-password-file" {
            given.next();
            continue;
        }
        if arg
            .to_str()
            .is_some_and(|arg| arg.starts_with("--master-password-file="))
        {
            continue;
        }
        args.push(arg);
    }
    args
}

fn open_log(path: &Path) -> anyhow::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true).read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    options
        .open(path)
        .with_context(|| format!("opening {}", path.display()))
}

/// What the server has written to its log since `start`.
fn log_since(path: &Path, start: u64) -> String {
    let mut text = String::new();
    if let Ok(mut file) = std::fs::File::open(path)
        && file.seek(SeekFrom::Start(start)).is_ok()
    {
        let _ = file.read_to_string(&mut text);
    }
    text
}

/// The `ADDR` of the server's `agent-vault listening on http://ADDR` line, once written.
fn listening_address(path: &Path, start: u64) -> anyhow::Result<Option<String>> {
    let mut file =
        std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    file.seek(SeekFrom::Start(start))
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(BufReader::new(file)
        .lines()
        .map_while(Result::ok)
        .find_map(|line| {
            line.strip_prefix("agent-vault listening on http://")
                .map(str::to_owned)
        }))
}

/// Whether `GET /health` at `address` answers 200.
fn healthy(address: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect(address) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!("GET /health HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200")
}
