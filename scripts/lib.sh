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

# The end-to-end test of the approval page drives a real headless browser with JavaScript
# off (tests/browser/approve.mjs), to prove the page works as plain HTML forms. It uses
# Debian's Chromium rather than a browser build that Playwright would download, and
# playwright-core from tests/browser/package-lock.json. Called by scripts/test only: the
# server itself needs neither.
install_browser_test_deps() {
  if [ ! -x /usr/bin/chromium ]; then
    echo "Installing Debian's chromium (needed by the approval page browser test)..." >&2
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
      command -v sudo >/dev/null 2>&1 && sudo=(sudo)
    fi
    if [ "$(id -u)" -ne 0 ] && [ "${#sudo[@]}" -eq 0 ] \
      || ! command -v apt-get >/dev/null 2>&1 \
      || ! { "${sudo[@]}" apt-get update >&2 \
        && "${sudo[@]}" apt-get install -y --no-install-recommends chromium >&2; }; then
      echo "error: could not install chromium; install Debian's \`chromium\` package (/usr/bin/chromium) and try again" >&2
      exit 1
    fi
  fi
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "error: node and npm are not installed; install Node.js 20 or newer (Debian: \`apt-get install nodejs npm\`) and try again" >&2
    exit 1
  fi
  # `npm ci` installs exactly the locked playwright-core; skip it when already there.
  if [ ! -d "$repo/tests/browser/node_modules/playwright-core" ]; then
    echo "Installing the browser test's Node packages (npm ci in tests/browser)..." >&2
    if ! (cd "$repo/tests/browser" && npm ci --no-audit --no-fund >&2); then
      echo "error: npm ci failed in tests/browser; run \`npm ci\` there and try again" >&2
      exit 1
    fi
  fi
}
