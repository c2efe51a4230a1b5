# Shared by scripts/demo and scripts/test. Sourced, not executed.
# shellcheck shell=bash

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${PREFLAB_VENV:-$ROOT/.venv}"
PYTHON_BIN="${PYTHON:-python3.11}"

log() { printf '\033[1m[preflab]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31m[preflab] error:\033[0m %s\n' "$*" >&2; exit 1; }

# Debian packages the project needs at run time (MuJoCo's software GL) or for tests (Chromium).
ensure_system_packages() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || die "missing Debian packages: ${missing[*]} (install them as root: apt-get install -y ${missing[*]})"
        sudo="sudo"
    fi
    log "installing Debian packages: ${missing[*]}"
    $sudo apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null 2>&1 \
        || { $sudo apt-get update >/dev/null 2>&1 && $sudo apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null; } \
        || die "apt-get could not install: ${missing[*]}"
}

# Create the virtualenv and install the project; skipped when nothing changed since last time.
ensure_venv() {
    local extras="$1"  # "" or "test"
    command -v "$PYTHON_BIN" >/dev/null || PYTHON_BIN=python3
    "$PYTHON_BIN" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
        || die "PrefLab needs Python 3.11 (found $("$PYTHON_BIN" --version 2>&1)); set PYTHON=/path/to/python3.11"
    [ -x "$VENV/bin/python" ] || { log "creating virtualenv $VENV"; "$PYTHON_BIN" -m venv "$VENV"; }
    local stamp="$VENV/.preflab-installed-${extras:-base}"
    local digest
    digest="$(cat "$ROOT/pyproject.toml" "$ROOT/ci/constraints.txt" | sha256sum | cut -c1-16)"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$digest" ]; then
        return 0
    fi
    log "installing PrefLab${extras:+ [$extras]} into $VENV (first run takes a few minutes)"
    local spec="$ROOT"
    [ -n "$extras" ] && spec="$ROOT[$extras]"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
        -c "$ROOT/ci/constraints.txt" -e "$spec" \
        || die "pip install failed (see the output above)"
    echo "$digest" > "$stamp"
}

postgres_reachable() {
    "$VENV/bin/python" - "$1" <<'PY' >/dev/null 2>&1
import sys, psycopg
from urllib.parse import urlsplit
# The maintenance database, whatever the test database is called (it may not exist yet).
psycopg.connect(urlsplit(sys.argv[1])._replace(path="/postgres").geturl(), connect_timeout=3).close()
PY
}
