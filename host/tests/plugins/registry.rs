//! The plugin directory: loading, hot reload, the compile cache, pins and options files.

use std::path::{Path, PathBuf};
use std::time::Duration;

use agent_vault::plugin::registry::{
    DEFAULT_TIMEOUT_CEILING, FileLoadError, LookupError, Registry, RegistrySettings, ReloadEvent,
    Status,
};
use agent_vault::plugin::{Isolation, LoadError, Source};

use crate::support::{Attempt, built_wasm, engine, request};

struct PluginDir {
    dir: tempfile::TempDir,
    cache: tempfile::TempDir,
}

impl PluginDir {
    fn new() -> Self {
        PluginDir {
            dir: tempfile::tempdir().unwrap(),
            cache: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, file: &str) -> PathBuf {
        self.dir.path().join(file)
    }

    /// Copy a built plugin in under `file`, as a user drops a file into the directory.
    fn drop_in(&self, crate_name: &str, file: &str) {
        std::fs::copy(built_wasm(crate_name), self.path(file)).unwrap();
        bump_mtime(&self.path(file));
    }

    fn write(&self, file: &str, bytes: &[u8]) {
        std::fs::write(self.path(file), bytes).unwrap();
        bump_mtime(&self.path(file));
    }

    fn registry(&self) -> Registry {
        self.registry_with(RegistrySettings::default())
    }

    fn registry_with(&self, settings: RegistrySettings) -> Registry {
        Registry::new(
            engine(),
            RegistrySettings {
                plugin_dir: Some(self.dir.path().to_owned()),
                cache_dir: Some(self.cache.path().to_owned()),
                ..settings
            },
        )
        .unwrap()
    }
}

/// Make each write visible to a rescan even on file systems with coarse timestamps.
fn bump_mtime(path: &Path) {
    let file = std::fs::File::options().write(true).open(path).unwrap();
    let later = std::time::SystemTime::now() + Duration::from_secs(rand_secs());
    file.set_modified(later).unwrap();
}

fn rand_secs() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

fn bearer_header(registry: &Registry, name: &str) -> Vec<String> {
    let plugin = registry
        .get(name)
        .unwrap_or_else(|| panic!("{name} is loaded"));
    let sent = Attempt::new(&plugin, request("GET", "https://api.example.com/", &[]))
        .credentials(&[("token", "t")])
        .run();
    sent.forwarded().header("authorization")
}

#[test]
fn a_plugin_dropped_into_the_directory_serves_after_a_rescan() {
    let dir = PluginDir::new();
    let registry = dir.registry();
    assert!(registry.get("acme").is_none());
    // A file named like its describe: copy the fixture that calls itself fixture-counter.
    dir.drop_in("fixture_counter", "fixture-counter.wasm");
    let events = registry.rescan();
    assert!(
        matches!(&events[..], [ReloadEvent::Loaded { name, .. }] if name == "fixture-counter"),
        "{events:?}"
    );
    assert!(registry.get("fixture-counter").is_some());
    assert_eq!(
        registry.rescan(),
        [],
        "an unchanged directory changes nothing"
    );
}

#[test]
fn a_file_named_like_a_standard_plugin_replaces_it_and_removing_it_restores_it() {
    let dir = PluginDir::new();
    let registry = dir.registry();
    let builtin_sha = registry.get("bearer").unwrap().sha256().to_owned();
    // The same bearer bytes, from the directory: the source changes, the behaviour not.
    dir.drop_in("bearer", "bearer.wasm");
    registry.rescan();
    let replaced = registry.get("bearer").unwrap();
    assert_eq!(replaced.source(), &Source::File(dir.path("bearer.wasm")));
    assert_eq!(replaced.sha256(), builtin_sha);
    let listing = registry.list();
    let standard = listing
        .iter()
        .find(|l| l.name == "bearer" && l.source == Source::Builtin)
        .unwrap();
    assert_eq!(standard.status, Status::Overridden);

    std::fs::remove_file(dir.path("bearer.wasm")).unwrap();
    assert_eq!(
        registry.rescan(),
        [ReloadEvent::Removed {
            name: "bearer".into()
        }]
    );
    assert_eq!(registry.get("bearer").unwrap().source(), &Source::Builtin);
    assert_eq!(bearer_header(&registry, "bearer"), ["Bearer t"]);
}

#[test]
fn a_broken_update_keeps_the_previous_version_serving() {
    let dir = PluginDir::new();
    dir.drop_in("bearer", "bearer.wasm");
    let registry = dir.registry();
    let good_sha = registry.get("bearer").unwrap().sha256().to_owned();

    let bytes = std::fs::read(built_wasm("bearer")).unwrap();
    dir.write("bearer.wasm", &bytes[..bytes.len() / 3]);
    let events = registry.rescan();
    assert!(
        matches!(
            &events[..],
            [ReloadEvent::Failed {
                serving_previous: true,
                error: FileLoadError::Load {
                    error: LoadError::Invalid(_),
                    ..
                },
                ..
            }]
        ),
        "{events:?}"
    );
    assert_eq!(registry.get("bearer").unwrap().sha256(), good_sha);
    assert_eq!(bearer_header(&registry, "bearer"), ["Bearer t"]);
    let listing = registry.list();
    let file = listing
        .iter()
        .find(|l| l.source == Source::File(dir.path("bearer.wasm")))
        .unwrap();
    assert!(
        matches!(&file.status, Status::ServingPrevious(error) if error.contains("not a valid WebAssembly component")),
        "{:?}",
        file.status
    );

    // The fixed file takes over again.
    dir.drop_in("bearer", "bearer.wasm");
    registry.rescan();
    assert!(matches!(
        registry
            .list()
            .iter()
            .find(|l| l.source == Source::File(dir.path("bearer.wasm")))
            .unwrap()
            .status,
        Status::Active
    ));
}

#[test]
fn a_file_that_never_loaded_is_listed_with_its_error() {
    let dir = PluginDir::new();
    dir.drop_in("fixture_wasi_import", "fixture-wasi-import.wasm");
    dir.drop_in("bearer", "Not A Name.wasm");
    dir.drop_in("bearer", "acme.wasm");
    let registry = dir.registry();
    let status = |file: &str| {
        registry
            .list()
            .into_iter()
            .find(|l| l.source == Source::File(dir.path(file)))
            .map(|l| l.status)
            .unwrap()
    };
    assert!(
        matches!(status("fixture-wasi-import.wasm"), Status::Failed(e) if e.contains("imports `wasi:"))
    );
    assert!(
        matches!(status("Not A Name.wasm"), Status::Failed(e) if e.contains("the file name must be a plugin name"))
    );
    assert!(
        matches!(status("acme.wasm"), Status::Failed(e) if e.contains("the plugin calls itself \"bearer\", but the file is named \"acme\""))
    );
    assert!(registry.get("acme").is_none());
}

#[test]
fn an_options_file_sets_the_plugins_limits() {
    let dir = PluginDir::new();
    dir.drop_in("fixture_counter", "fixture-counter.wasm");
    dir.write(
        "fixture-counter.toml",
        b"isolation = \"per-request\"\nmemory-limit-mib = 4\ntimeout-ms = 20\n",
    );
    let registry = dir.registry();
    let counter = registry.get("fixture-counter").unwrap();
    assert_eq!(counter.limits().isolation, Isolation::PerRequest);
    assert_eq!(counter.limits().memory_bytes, 4 * 1024 * 1024);
    assert_eq!(counter.limits().timeout, Duration::from_millis(20));

    dir.write("fixture-counter.toml", b"isolation = \"sometimes\"\n");
    let events = registry.rescan();
    assert!(
        matches!(
            &events[..],
            [ReloadEvent::Failed {
                error: FileLoadError::Options { .. },
                serving_previous: true,
                ..
            }]
        ),
        "{events:?}"
    );
}

#[test]
fn a_deadline_above_the_ceiling_loads_with_the_ceiling() {
    let dir = PluginDir::new();
    dir.drop_in("fixture_counter", "fixture-counter.wasm");
    dir.write(
        "fixture-counter.toml",
        b"timeout-ms = 10000\nmax-slow-calls = 2\n",
    );
    let counter = dir.registry().get("fixture-counter").unwrap();
    assert_eq!(counter.limits().timeout, DEFAULT_TIMEOUT_CEILING);
    assert_eq!(counter.limits().max_slow_calls, 2);

    // An operator can raise the ceiling; the file then gets what it asks for.
    let raised = dir.registry_with(RegistrySettings {
        timeout_ceiling: Duration::from_secs(10),
        ..Default::default()
    });
    let counter = raised.get("fixture-counter").unwrap();
    assert_eq!(counter.limits().timeout, Duration::from_secs(10));

    dir.write("fixture-counter.toml", b"max-slow-calls = 0\n");
    assert!(
        matches!(
            &raised.rescan()[..],
            [ReloadEvent::Failed {
                error: FileLoadError::Options { reason, .. },
                ..
            }] if reason == "max-slow-calls must be 1 to 64"
        ),
        "a share of no calls is refused"
    );
}

#[test]
fn a_service_can_pin_a_plugins_sha256() {
    let dir = PluginDir::new();
    let registry = dir.registry();
    let sha = registry.get("bearer").unwrap().sha256().to_owned();
    assert!(
        registry
            .get_pinned("bearer", Some(&sha.to_uppercase()))
            .is_ok()
    );
    assert_eq!(
        registry.get_pinned("bearer", Some("00ff")).unwrap_err(),
        LookupError::PinMismatch {
            name: "bearer".into(),
            actual: sha,
            pinned: "00ff".into()
        }
    );
    assert_eq!(
        registry.get_pinned("nope", None).unwrap_err(),
        LookupError::NotFound("nope".into())
    );
}

#[test]
fn compiled_artifacts_are_cached_and_a_corrupt_cache_entry_is_recompiled() {
    let dir = PluginDir::new();
    dir.drop_in("fixture_counter", "fixture-counter.wasm");
    drop(dir.registry());
    let artifacts: Vec<PathBuf> = std::fs::read_dir(dir.cache.path())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "cwasm"))
        .collect();
    assert_eq!(
        artifacts.len(),
        9,
        "eight standard plugins and the counter: {artifacts:?}"
    );
    #[cfg(unix)]
    for artifact in &artifacts {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            std::fs::metadata(artifact).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    for artifact in &artifacts {
        std::fs::write(artifact, b"not an artifact").unwrap();
    }
    let registry = dir.registry();
    assert_eq!(bearer_header(&registry, "bearer"), ["Bearer t"]);
    assert!(registry.get("fixture-counter").is_some());
}

#[test]
fn the_watcher_picks_up_a_new_plugin_without_a_restart() {
    let dir = PluginDir::new();
    let registry = std::sync::Arc::new(dir.registry());
    let _watcher = registry.watch(Duration::from_millis(200));
    dir.drop_in("fixture_counter", "fixture-counter.wasm");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while registry.get("fixture-counter").is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the watcher never loaded the plugin"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
