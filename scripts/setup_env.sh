#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment at .venv/ and install robustlabel
# into it with the pinned dependency set.  Re-running it is quick: if nothing that decides
# the environment changed since the last successful run, it only checks and returns.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
VENV=.venv
STAMP="$VENV/.robustlabel-setup.sha256"
want=$(cat requirements.txt constraints.txt setup.cfg pyproject.toml | sha256sum | cut -d' ' -f1)

if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] \
   && "$VENV/bin/python" -c "import robustlabel, monai, monailabel" 2>/dev/null; then
  echo "setup: .venv is up to date"
  exit 0
fi

"$PYTHON" -c 'import sys; assert sys.version_info[:2] >= (3, 10), "robustlabel needs Python >= 3.10"'
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
export PIP_DISABLE_PIP_VERSION_CHECK=1
"$VENV/bin/python" -m pip install -q -r requirements.txt -c constraints.txt
"$VENV/bin/python" -m pip install -q --no-deps --no-build-isolation -e .
"$VENV/bin/python" -c "import robustlabel.losses, monai, monailabel; print('setup: robustlabel', robustlabel.__version__, '| monai', monai.__version__, '| monailabel', monailabel.__version__)"
echo "$want" > "$STAMP"
