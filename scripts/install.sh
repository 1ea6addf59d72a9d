#!/usr/bin/env bash
# Creates .venv (Python 3.11) if needed and installs the pinned requirements and the package into it.
#   bash scripts/install.sh          runtime only
#   bash scripts/install.sh --dev    runtime + test/lint tools
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), f"Python 3.11 required, found {sys.version.split()[0]}"'
  "$PYTHON" -m venv .venv
fi
req=requirements.txt
[ "${1:-}" = "--dev" ] && req=requirements-dev.txt
.venv/bin/python -m pip install -q --disable-pip-version-check -r "$req"
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps -e .
