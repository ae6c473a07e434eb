//! Real clients under `agent-vault vault run`: boto3 and the AWS CLI calling STS through the
//! SigV4 plugin, pip installing from a private index, and git cloning over smart HTTP, each
//! against local HTTPS services (`tests/clients/local_services.py`) reached through the
//! transparent proxy. Each client trusts the proxy only through the variable it reads
//! (`AWS_CA_BUNDLE`, `PIP_CERT`, `GIT_SSL_CAINFO`), and a bundle the user had already set
//! keeps working for hosts the proxy only tunnels. Also: the variables `vault run` sets, and
//! the errors for a user's bundle it cannot merge or a data directory others can write to.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use serde_json::json;

use crate::proxy::Proxy;
use crate::transparent::Transparent;

/// The names the local services answer for, all on one port of 127.0.0.1.
const NAMES: [&str; 5] = [
    "sts.test.example",
    "pypi.test.example",
    "files.test.example",
    "git.test.example",
    "mirror.test.example",
];

/// The AWS key the vault holds (the upstream accepts only signatures made with it) and the
/// dummy one the clients sign with, which the SigV4 plugin replaces.
const AWS_ACCESS_KEY_ID: &str = "AKIAAGENTVAULTPROBE1";
const AWS_SECRET: &str = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYAGENTVAULT";
const DUMMY_KEY_ID: &str = "AKIADUMMYDUMMYDUMMY0";
const DUMMY_SECRET: &str = "dummy-secret-the-plugin-replaces";

/// The basic credential the index and the git server want.
const USER: &str = "ci-bot";
const PASSWORD: &str = "pw-local-services-0042";

/// The local services, a server whose transparent proxy reaches them by name, and the
/// services that attach their credentials.
struct Clients {
    t: Transparent,
    port: u16,
    /// The CA of the local services' certificate: the user's "corporate" bundle.
    services_ca: PathBuf,
    /// An agent's token for the default vault.
    agent: String,
    dir: tempfile::TempDir,
    services: Child,
}

impl Drop for Clients {
    fn drop(&mut self) {
        let _ = self.services.kill();
        let _ = self.services.wait();
    }
}

impl Clients {
    fn start() -> Clients {
        let dir = tempfile::tempdir().unwrap();
        let (services_ca, cert, key) = certificates(dir.path());
        let git_root = dir.path().join("git");
        make_repository(&git_root.join("project.git"), dir.path());
        let script = crate::support::workspace_root().join("tests/clients/local_services.py");
        let basic = format!("{USER}:{PASSWORD}");
        let mut services = Command::new("python3")
            .arg(&script)
            .args(["--cert", cert.to_str().unwrap()])
            .args(["--key", key.to_str().unwrap()])
            .args(["--aws-access-key-id", AWS_ACCESS_KEY_ID])
            .args(["--aws-secret", AWS_SECRET])
            .args(["--basic", &basic])
            .args(["--git-root", git_root.to_str().unwrap()])
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let mut line = String::new();
        BufReader::new(services.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port: u16 = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("local_services.py printed its port: {line:?}"));

        let pins: Vec<String> = NAMES
            .iter()
            .map(|name| format!("{name}:{port}:127.0.0.1"))
            .collect();
        let mut args = vec![
            "--mitm-port",
            "auto",
            "--upstream-ca",
            services_ca.to_str().unwrap(),
        ];
        for pin in &pins {
            args.extend(["--resolve", pin.as_str()]);
        }
        let t = Transparent::around(Proxy::start_with(
            &args,
            &[("AGENT_VAULT_NETWORK_ALLOWLIST", "127.0.0.1/32")],
        ));
        t.proxy.credentials(json!({
            "AWS_ID": AWS_ACCESS_KEY_ID, "AWS_SECRET": AWS_SECRET,
            "INDEX_USER": USER, "INDEX_PASSWORD": PASSWORD,
        }));
        let basic = |name: &str, host: &str| {
            json!({ "name": name, "host": host,
                    "auth": { "type": "basic", "username": "INDEX_USER", "password": "INDEX_PASSWORD" } })
        };
        // files.test.example and mirror.test.example have no service: blind tunnels.
        t.proxy.services(json!([
            { "name": "aws-sts", "host": "sts.test.example",
              "auth": { "type": "plugin", "plugin": "aws-sigv4",
                        "config": { "region": "us-east-1", "service": "sts" },
                        "credentials": { "access_key_id": "AWS_ID", "secret_access_key": "AWS_SECRET" } } },
            basic("index", "pypi.test.example"),
            basic("git", "git.test.example"),
        ]));
        let agent = crate::transparent::agent_token(&t, "client-bot");
        Clients {
            t,
            port,
            services_ca,
            agent,
            dir,
            services,
        }
    }

    fn url(&self, name: &str, path: &str) -> String {
        format!("https://{name}:{}{path}", self.port)
    }

    /// `agent-vault vault run -- CMD...` as the agent, in a clean environment plus `env`
    /// (what the user had set before running it).
    fn vault_run(&self, env: &[(&str, &str)], command: &[&str]) -> Output {
        let data = self.t.proxy.data.path().join("cli");
        let mut args = vec!["vault", "run", "--data-dir", data.to_str().unwrap(), "--"];
        args.extend_from_slice(command);
        let mut run = Command::new(crate::support::binary());
        run.args(&args)
            .current_dir(self.dir.path())
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("AGENT_VAULT_TOKEN", &self.agent)
            .env("AGENT_VAULT_ADDR", self.t.proxy.server.url())
            // Nothing of this machine's configuration, and never the real AWS.
            .env("AWS_CONFIG_FILE", self.dir.path().join("no-aws-config"))
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                self.dir.path().join("no-aws-credentials"),
            )
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("PIP_CONFIG_FILE", "/dev/null")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_CONFIG_GLOBAL", "/dev/null")
            .env("GIT_TERMINAL_PROMPT", "0");
        for name in ["HOME", "PYENV_ROOT", "PYENV_VERSION", "LANG"] {
            if let Some(value) = std::env::var_os(name) {
                run.env(name, value);
            }
        }
        for (name, value) in env {
            run.env(name, value);
        }
        run.output().expect("agent-vault runs")
    }
}

/// A CA and a certificate it signed for [`NAMES`]: (CA file, certificate file, key file).
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "agent-vault test services CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(NAMES.map(String::from).to_vec())
        .unwrap()
        .signed_by(&leaf_key, &rcgen::Issuer::new(ca_params, ca_key))
        .unwrap();
    let files = (
        dir.join("services-ca.pem"),
        dir.join("services.pem"),
        dir.join("services-key.pem"),
    );
    std::fs::write(&files.0, ca.pem()).unwrap();
    std::fs::write(&files.1, leaf.pem()).unwrap();
    std::fs::write(&files.2, leaf_key.serialize_pem()).unwrap();
    (files.0, files.1, files.2)
}

/// A bare repository at `bare` with one commit holding `README`.
fn make_repository(bare: &Path, scratch: &Path) {
    let work = scratch.join("work");
    let git = |dir: &Path, args: &[&str]| {
        let output = Command::new("git")
            .args(["-c", "user.name=Test", "-c", "user.email=test@example.com"])
            .args(["-c", "init.defaultBranch=main"])
            .args(args)
            .current_dir(dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .output()
            .expect("git runs");
        assert!(
            output.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "-q"]);
    std::fs::write(work.join("README"), "cloned through agent-vault\n").unwrap();
    git(&work, &["add", "README"]);
    git(&work, &["commit", "-q", "-m", "first"]);
    git(
        scratch,
        &[
            "clone",
            "-q",
            "--bare",
            work.to_str().unwrap(),
            bare.to_str().unwrap(),
        ],
    );
}

fn text(output: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn boto3_calls_sts_through_the_sigv4_plugin() {
    let c = Clients::start();
    let script = crate::support::workspace_root().join("tests/clients/boto3_sts.py");
    let endpoint = c.url("sts.test.example", "/");
    // The user's own AWS_CA_BUNDLE (a corporate one, say), which botocore prefers to
    // REQUESTS_CA_BUNDLE: merged, it trusts the proxy too.
    let call = || {
        c.vault_run(
            &[("AWS_CA_BUNDLE", c.services_ca.to_str().unwrap())],
            &[
                "python3",
                script.to_str().unwrap(),
                &endpoint,
                DUMMY_KEY_ID,
                DUMMY_SECRET,
            ],
        )
    };
    let output = call();
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "arn:aws:iam::123456789012:user/agent-vault-probe\n"
    );

    // The upstream checks the signature against the secret: the vault's secret gone wrong,
    // AWS's answer comes back to boto3.
    c.t.proxy
        .credentials(json!({ "AWS_SECRET": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYWRONGWRONG" }));
    let refused = call();
    assert!(
        !refused.status.success()
            && String::from_utf8_lossy(&refused.stderr).contains(
                "An error occurred (SignatureDoesNotMatch) when calling the GetCallerIdentity \
                 operation: The request signature we calculated does not match the signature \
                 you provided."
            ),
        "{}",
        text(&refused)
    );
}

#[test]
fn the_aws_cli_calls_sts_through_the_sigv4_plugin() {
    let c = Clients::start();
    let endpoint = c.url("sts.test.example", "/");
    // A `ca_bundle` in the user's AWS config, which botocore prefers to REQUESTS_CA_BUNDLE:
    // AWS_CA_BUNDLE, the merged bundle, wins over it.
    let config = c.dir.path().join("aws-config");
    std::fs::write(
        &config,
        format!("[default]\nca_bundle = {}\n", c.services_ca.display()),
    )
    .unwrap();
    let output = c.vault_run(
        &[
            ("AWS_CONFIG_FILE", config.to_str().unwrap()),
            ("AWS_ACCESS_KEY_ID", DUMMY_KEY_ID),
            ("AWS_SECRET_ACCESS_KEY", DUMMY_SECRET),
        ],
        &[
            "python3",
            "-m",
            "awscli",
            "sts",
            "get-caller-identity",
            "--endpoint-url",
            &endpoint,
            "--region",
            "us-east-1",
            "--output",
            "text",
            "--query",
            "Arn",
        ],
    );
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "arn:aws:iam::123456789012:user/agent-vault-probe\n"
    );
}

#[test]
fn pip_installs_from_a_private_index_and_keeps_the_users_pip_cert() {
    let c = Clients::start();
    let target = c.dir.path().join("site");
    let index = c.url("pypi.test.example", "/simple/");
    // The user's own PIP_CERT trusts the host the wheel comes from, which the proxy only
    // tunnels; the index, which gets the credential, is the proxy's.
    let output = c.vault_run(
        &[("PIP_CERT", c.services_ca.to_str().unwrap())],
        &[
            "python3",
            "-m",
            "pip",
            "install",
            "--no-cache-dir",
            "--disable-pip-version-check",
            "--no-deps",
            "--target",
            target.to_str().unwrap(),
            "--index-url",
            &index,
            "agentvault-probe",
        ],
    );
    assert!(output.status.success(), "{}", text(&output));
    assert_eq!(
        std::fs::read_to_string(target.join("agentvault_probe/__init__.py")).unwrap(),
        "MESSAGE = \"installed through agent-vault\"\n"
    );
}

#[test]
fn git_clones_a_private_repository_and_keeps_the_users_git_ssl_cainfo() {
    let c = Clients::start();
    let ca = c.services_ca.to_str().unwrap().to_owned();
    for (name, folder) in [
        // The credential is the proxy's to attach: the URL carries none.
        ("git.test.example", "private"),
        // A host no service covers, trusted through the user's own GIT_SSL_CAINFO.
        ("mirror.test.example", "public"),
    ] {
        let url = c.url(name, "/project.git");
        let into = c.dir.path().join(folder);
        let output = c.vault_run(
            &[("GIT_SSL_CAINFO", &ca)],
            &["git", "clone", "-q", &url, into.to_str().unwrap()],
        );
        assert!(output.status.success(), "{name}: {}", text(&output));
        assert_eq!(
            std::fs::read_to_string(into.join("README")).unwrap(),
            "cloned through agent-vault\n"
        );
    }
    // Without the proxy's credential the server turns git away.
    let resolve = format!("http.curloptResolve=git.test.example:{}:127.0.0.1", c.port);
    let direct = Command::new("git")
        .args(["-c", &resolve, "clone", "-q"])
        .arg(c.url("git.test.example", "/project.git"))
        .arg(c.dir.path().join("refused"))
        .env("GIT_SSL_CAINFO", &ca)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env_remove("HTTPS_PROXY")
        .env_remove("https_proxy")
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&direct.stderr).contains(&format!(
            "could not read Username for 'https://git.test.example:{}'",
            c.port
        )),
        "{}",
        text(&direct)
    );
    assert!(!direct.status.success(), "{}", text(&direct));
}

#[test]
fn vault_run_points_every_client_at_one_private_bundle() {
    let c = Clients::start();
    let names = [
        "SSL_CERT_FILE",
        "NODE_EXTRA_CA_CERTS",
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
        "GIT_SSL_CAINFO",
        "DENO_CERT",
        "AWS_CA_BUNDLE",
        "PIP_CERT",
        "CARGO_HTTP_CAINFO",
        "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH",
        "BUNDLE_SSL_CA_CERT",
        "HEX_CACERTS_PATH",
        "HTTPLIB2_CA_CERTS",
        "CLOUDSDK_CORE_CUSTOM_CA_CERTS_FILE",
        "COMPOSER_CAFILE",
    ];
    let script = names
        .iter()
        .map(|name| format!("\"${name}\""))
        .collect::<Vec<_>>()
        .join(" ");
    let script = format!("printf '%s\\n' \"$NODE_USE_ENV_PROXY\" {script}");
    // The user's own bundle, named by one variable, ends up in the bundle of every one.
    let output = c.vault_run(
        &[("AWS_CA_BUNDLE", c.services_ca.to_str().unwrap())],
        &["sh", "-c", &script],
    );
    assert!(output.status.success(), "{}", text(&output));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "1", "NODE_USE_ENV_PROXY");
    let data = c.t.proxy.data.path().join("cli");
    let bundle = PathBuf::from(lines[1]);
    assert_eq!(bundle.parent(), Some(data.as_path()));
    let file_name = bundle.file_name().unwrap().to_str().unwrap();
    assert!(
        file_name.starts_with("ca-bundle-") && file_name.ends_with(".pem"),
        "{file_name}"
    );
    for (name, value) in names.iter().zip(&lines[1..]) {
        assert_eq!(*value, lines[1], "{name}");
    }
    assert_eq!(lines.len(), names.len() + 1);

    // The system's roots, the user's CA and the proxy's CA, last.
    let contents = std::fs::read_to_string(&bundle).unwrap();
    let ca = std::fs::read_to_string(&c.t.ca_file).unwrap();
    assert!(contents.ends_with(&ca), "the bundle ends with the local CA");
    let der = |pem: &str| {
        use rustls_pki_types::pem::PemObject as _;
        rustls_pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
            .map(|der| der.unwrap().to_vec())
            .collect::<Vec<_>>()
    };
    let inside = der(&contents);
    let services = der(&std::fs::read_to_string(&c.services_ca).unwrap());
    assert!(inside.contains(&services[0]), "the user's CA is merged in");
    assert!(inside.len() > 2, "the system's roots are kept");
    assert_eq!(
        inside.iter().filter(|cert| **cert == der(&ca)[0]).count(),
        1,
        "the local CA once"
    );

    // Only this user can read the bundle or swap it: 0600 in a 0700 directory.
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&bundle), 0o600);
    assert_eq!(mode(&data), 0o700);

    // A run inside the command (the first bundle in SSL_CERT_FILE) keeps what it trusted
    // and repeats nothing: the same bundle.
    let bundle_of = |env: &[(&str, &str)]| {
        let output = c.vault_run(env, &["sh", "-c", "echo \"$SSL_CERT_FILE\""]);
        assert!(output.status.success(), "{}", text(&output));
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    };
    assert_eq!(bundle_of(&[("SSL_CERT_FILE", lines[1])]), lines[1]);
    // A run without the user's CA gets a bundle of its own, and leaves the one the first
    // command reads as it was.
    let other = bundle_of(&[]);
    assert_ne!(other, lines[1]);
    assert_eq!(
        der(&std::fs::read_to_string(&other).unwrap()).len(),
        inside.len() - 1
    );
    assert_eq!(std::fs::read_to_string(&bundle).unwrap(), contents);
}

#[test]
fn a_users_bundle_that_cannot_be_merged_stops_vault_run() {
    let c = Clients::start();
    let missing = c.dir.path().join("missing.pem");
    let output = c.vault_run(
        &[("PIP_CERT", missing.to_str().unwrap())],
        &["sh", "-c", "echo ran"],
    );
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(output.stdout.is_empty(), "the command did not run");
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        format!(
            "error: PIP_CERT={} cannot be read (No such file or directory (os error 2)); \
             vault run merges the bundle PIP_CERT names into the one it gives the command: \
             fix the file or unset PIP_CERT\n",
            missing.display()
        )
    );

    let not_pem = c.dir.path().join("not-a-bundle.pem");
    std::fs::write(&not_pem, "just some text\n").unwrap();
    let output = c.vault_run(
        &[("NODE_EXTRA_CA_CERTS", not_pem.to_str().unwrap())],
        &["sh", "-c", "echo ran"],
    );
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(output.stdout.is_empty(), "the command did not run");
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        format!(
            "error: NODE_EXTRA_CA_CERTS={} is not a PEM certificate bundle (it holds no \
             certificate); vault run merges the bundle NODE_EXTRA_CA_CERTS names into the one \
             it gives the command: fix the file or unset NODE_EXTRA_CA_CERTS\n",
            not_pem.display()
        )
    );
}

#[test]
fn vault_run_will_not_write_the_bundle_where_others_can_swap_it() {
    let c = Clients::start();
    let data = c.t.proxy.data.path().join("cli");
    std::fs::create_dir(&data).unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o777)).unwrap();
    let output = c.vault_run(&[], &["sh", "-c", "echo ran"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(output.stdout.is_empty(), "the command did not run");
    assert_eq!(
        String::from_utf8_lossy(&output.stderr),
        format!(
            "error: the data directory {} is writable by its group or by everyone (mode 777), \
             so another local user could swap a CA into the bundle vault run writes there; \
             make it yours alone (`chmod 700`) or pick another with --data-dir\n",
            data.display()
        )
    );
    assert_eq!(
        std::fs::read_dir(&data).unwrap().count(),
        0,
        "no bundle written"
    );
}
