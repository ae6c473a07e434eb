//! Running `agent-vault` like a user: a scratch data directory, a command line, its output.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The workspace root (this crate is `<root>/tests`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// The `agent-vault` binary of the same build as this test (`cargo test --workspace` builds
/// it, because the host package has integration tests of its own).
pub fn binary() -> PathBuf {
    let test_exe = std::env::current_exe().unwrap();
    let profile_dir = test_exe.parent().and_then(Path::parent).unwrap();
    let binary = profile_dir.join(format!("agent-vault{}", std::env::consts::EXE_SUFFIX));
    assert!(
        binary.exists(),
        "{} is missing: run the tests with `cargo test --workspace` (or build it with `cargo build -p agent-vault`)",
        binary.display()
    );
    binary
}

/// Where built plugins and fixtures are (host/build.rs builds them there).
pub fn built_wasm(crate_name: &str) -> PathBuf {
    workspace_root()
        .join("target/plugins/wasm32-wasip2/release")
        .join(format!("{crate_name}.wasm"))
}

/// A scratch `--data-dir` for one test.
pub struct DataDir {
    dir: tempfile::TempDir,
}

impl DataDir {
    pub fn new() -> Self {
        DataDir {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn plugin_dir(&self) -> PathBuf {
        let dir = self.dir.path().join("plugins");
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// `agent-vault ARGS... --data-dir DIR`.
    pub fn run(&self, args: &[&str]) -> Run {
        let data_dir = self.path().to_str().unwrap();
        let mut with_dir = args.to_vec();
        with_dir.extend(["--data-dir", data_dir]);
        agent_vault(&with_dir)
    }
}

impl DataDir {
    /// `agent-vault plugin test PLUGIN --url URL MORE... --data-dir DIR`.
    pub fn plugin_test(&self, plugin: &str, url: &str, more: &[&str]) -> Run {
        let mut args = vec!["plugin", "test", plugin, "--url", url];
        args.extend_from_slice(more);
        self.run(&args)
    }
}

/// `agent-vault ARGS...` with none of our environment variables set.
pub fn agent_vault(args: &[&str]) -> Run {
    let mut command = Command::new(binary());
    command
        .args(args)
        .env_remove("AGENT_VAULT_HOME")
        .env_remove("AGENT_VAULT_LOG");
    Run(command.output().unwrap())
}

/// What a finished command printed.
pub struct Run(pub Output);

impl Run {
    pub fn stdout(&self) -> String {
        String::from_utf8(self.0.stdout.clone()).unwrap()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8(self.0.stderr.clone()).unwrap()
    }

    /// Assert success and return stdout.
    pub fn ok(&self) -> String {
        assert!(
            self.0.status.success(),
            "command failed ({}):\nstdout:\n{}\nstderr:\n{}",
            self.0.status,
            self.stdout(),
            self.stderr()
        );
        self.stdout()
    }

    /// Assert failure and return stderr.
    pub fn fails(&self) -> String {
        assert!(
            !self.0.status.success(),
            "command succeeded:\n{}",
            self.stdout()
        );
        self.stderr()
    }
}
