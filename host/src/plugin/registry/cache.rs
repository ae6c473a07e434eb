//! The compile cache: compiled components kept as `<cache-dir>/<sha256>-<engine key>.cwasm`,
//! written atomically and readable by this user only. Only the host writes there; an artifact
//! that does not load is discarded and compiled again.

use std::path::Path;

use super::Registry;
use crate::plugin::wasm::{CompiledPlugin, LoadError};

impl Registry {
    pub(super) fn compile_cached(
        &self,
        wasm: &[u8],
        sha256: &str,
    ) -> Result<CompiledPlugin, LoadError> {
        let Some(cache_dir) = &self.settings.cache_dir else {
            return self.engine.compile(wasm).map(|(compiled, _)| compiled);
        };
        let artifact_path =
            cache_dir.join(format!("{sha256}-{}.cwasm", self.engine.artifact_key()));
        if artifact_path.exists() {
            match self.engine.load_artifact(&artifact_path) {
                Ok(compiled) => return Ok(compiled),
                Err(error) => {
                    tracing::warn!(path = %artifact_path.display(), "discarding cached plugin artifact: {error}");
                    let _ = std::fs::remove_file(&artifact_path);
                }
            }
        }
        let (compiled, artifact) = self.engine.compile(wasm)?;
        if let Err(error) = write_private(cache_dir, &artifact_path, &artifact) {
            tracing::warn!(path = %artifact_path.display(), "cannot cache the compiled plugin: {error}");
        }
        Ok(compiled)
    }
}

/// Write `bytes` to `path` atomically, readable by this user only.
fn write_private(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    create_private_dir(dir)?;
    let temporary = path.with_extension(format!("tmp{}", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}
