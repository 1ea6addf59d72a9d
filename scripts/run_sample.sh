#!/usr/bin/env bash
# README command 1: install, then run process.py on the committed sample case test/input -> output/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
rm -rf output && mkdir -p output
printf '\n==> [run_sample] process.py on the sample case test/input -> output/\n'
.venv/bin/python process.py --input test/input --output output "$@"
echo "outputs written under $(pwd)/output:"
find output -type f | sort
