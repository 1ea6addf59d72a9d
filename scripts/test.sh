#!/usr/bin/env bash
# README command 2 (and what CI runs): install with the test tools, lint, then the test suite.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m slow` for the slow tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh --dev
step() { printf '\n==> [test] %s\n' "$*"; }
step "ruff check"
.venv/bin/ruff check .
step "ruff format --check"
.venv/bin/ruff format --check .
step "mypy hmvnet"
.venv/bin/mypy hmvnet
step "pytest $*"
.venv/bin/python -m pytest "$@"
