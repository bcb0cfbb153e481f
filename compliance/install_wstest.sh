#!/usr/bin/env bash
# Install the Autobahn|Testsuite client (`wstest`) into <repo>/.tools/wstest-venv.
#
# autobahntestsuite is Python-2-only code, so it runs on pyenv's CPython 2.7.18
# inside a virtualenv made by virtualenv 20.21.x (newer virtualenv refuses 2.7);
# that virtualenv itself lives in a small Python 3 venv. Versions are pinned by
# compliance/constraints-py27.txt so later PyPI releases cannot drift in.
#
# Idempotent: exits at once when wstest is installed, works, and was installed
# from the current constraints file. Anything half-installed is rebuilt.
#
# Environment overrides:
#   WSTEST_PYTHON27  path to a CPython 2.7 interpreter (default: pyenv's 2.7.18)
#   WSTEST_PYTHON3   Python 3 used for the virtualenv bootstrap (default: python3.11, python3)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(git -C "$here" rev-parse --show-toplevel 2>/dev/null || dirname "$here")"
tools="$root/.tools"
venv="$tools/wstest-venv"
bootstrap="$tools/virtualenv-bootstrap"
constraints="$here/constraints-py27.txt"
stamp="$venv/.wirehub-constraints.sha256"
want_stamp="$(sha256sum "$constraints" | cut -d' ' -f1)"

log() { printf 'install_wstest: %s\n' "$*" >&2; }

wstest_works() {
    [ -x "$venv/bin/wstest" ] \
        && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want_stamp" ] \
        && "$venv/bin/python" -c 'import autobahntestsuite, autobahn, twisted, wsaccel' 2>/dev/null \
        && "$venv/bin/wstest" --help >/dev/null 2>&1
}

if wstest_works; then
    log "wstest already installed: $venv/bin/wstest"
    exit 0
fi

find_python27() {
    if [ -n "${WSTEST_PYTHON27:-}" ]; then
        printf '%s\n' "$WSTEST_PYTHON27"
        return
    fi
    local prefix=""
    if command -v pyenv >/dev/null 2>&1; then
        prefix="$(pyenv prefix 2.7.18 2>/dev/null || true)"
    fi
    if [ -z "$prefix" ]; then
        prefix="${PYENV_ROOT:-$HOME/.pyenv}/versions/2.7.18"
    fi
    printf '%s\n' "$prefix/bin/python2.7"
}

py27="$(find_python27)"
if ! [ -x "$py27" ] || ! "$py27" -c 'import sys; assert sys.version_info[:2] == (2, 7)' 2>/dev/null; then
    cat >&2 <<EOF
install_wstest: CPython 2.7 not found (looked for: $py27).
  The Autobahn|Testsuite (wstest) only runs on Python 2.7. Install it with
      pyenv install 2.7.18
  or point WSTEST_PYTHON27 at a CPython 2.7 interpreter, then rerun this script.
EOF
    exit 2
fi

py3="${WSTEST_PYTHON3:-}"
if [ -z "$py3" ]; then
    for candidate in python3.11 python3; do
        if command -v "$candidate" >/dev/null 2>&1; then py3="$candidate"; break; fi
    done
fi
if [ -z "$py3" ]; then
    log "no python3 found (set WSTEST_PYTHON3)"
    exit 2
fi

mkdir -p "$tools"

# Two installs at once (e.g. parallel test runs) would delete each other's venv.
if command -v flock >/dev/null 2>&1; then
    exec 9>"$tools/.install-wstest.lock"
    flock 9
    if wstest_works; then
        log "wstest installed meanwhile by another run: $venv/bin/wstest"
        exit 0
    fi
fi

if ! [ -x "$bootstrap/bin/virtualenv" ]; then
    log "creating virtualenv bootstrap venv with $py3"
    rm -rf "$bootstrap"
    "$py3" -m venv "$bootstrap"
    "$bootstrap/bin/python" -m pip install --quiet 'virtualenv>=20.21,<20.22'
fi

log "creating $venv with $py27"
rm -rf "$venv"
# --no-download: use the pip/setuptools wheels bundled in virtualenv 20.21
# (pip 20.3.4 is the last pip for 2.7); --no-periodic-update keeps it offline.
"$bootstrap/bin/virtualenv" --quiet --no-download --no-periodic-update -p "$py27" "$venv"

log "installing autobahntestsuite (builds wsaccel/autobahn from sdist, ~20-60 s)"
# PYTHONWARNINGS silences pip 20.3.4's Python 2 deprecation banner.
PYTHONWARNINGS=ignore "$venv/bin/pip" install --quiet --no-python-version-warning \
    -c "$constraints" autobahntestsuite==25.10.1

printf '%s\n' "$want_stamp" >"$stamp"
if ! wstest_works; then
    log "installed, but '$venv/bin/wstest --help' fails; see the output above"
    exit 1
fi
log "wstest ready: $venv/bin/wstest"
