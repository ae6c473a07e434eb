# Shared by the scripts in this folder: find the repository and make sure the toolchain
# can build the WebAssembly plugins. Sourced, not run.

set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

if ! command -v cargo >/dev/null 2>&1; then
  echo "error: cargo is not installed; install the stable Rust toolchain from https://rustup.rs" >&2
  exit 1
fi

# The plugins are WebAssembly components for wasm32-wasip2; the host embeds them.
sysroot="$(rustc --print sysroot)"
if [ ! -d "$sysroot/lib/rustlib/wasm32-wasip2" ]; then
  echo "Installing the wasm32-wasip2 target (needed to build the auth plugins)..." >&2
  if ! rustup target add wasm32-wasip2 >&2; then
    echo "error: could not install the wasm32-wasip2 target; run \`rustup target add wasm32-wasip2\` and try again" >&2
    exit 1
  fi
fi
