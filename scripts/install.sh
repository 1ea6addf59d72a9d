#!/usr/bin/env bash
# Creates .venv (Python 3.11) if needed and installs the pinned requirements and the package into it.
#   bash scripts/install.sh          runtime only
#   bash scripts/install.sh --dev    runtime + test/lint tools
# pip prints each package as it is collected, downloaded (with a progress bar) and installed; an already
# complete .venv is checked in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
step() { printf '\n==> [install] %s\n' "$*"; }
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), f"Python 3.11 required, found {sys.version.split()[0]}"'
  step "creating .venv with $("$PYTHON" --version)"
  "$PYTHON" -m venv .venv
fi
req=requirements.txt
[ "${1:-}" = "--dev" ] && req=requirements-dev.txt
step "installing the pinned packages of $req into .venv (pip names each package as it goes)"
.venv/bin/python -m pip install --disable-pip-version-check --progress-bar on -r "$req"
step "installing hmvnet itself (editable, no dependencies)"
.venv/bin/python -m pip install --disable-pip-version-check --no-deps -e . | tail -n 1
step "done: $(.venv/bin/python -m hmvnet --version)"
