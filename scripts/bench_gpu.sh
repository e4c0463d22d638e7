#!/usr/bin/env bash
# GPU benchmark for a lent H100/H200 (Python 3.12 and its own torch; no MONAI, nibabel or MONAI Label).
#
#   bash scripts/bench_gpu.sh download         # HERE, once: the wheels it carries, into .whl/ (git-ignored)
#   bash scripts/bench_gpu.sh [OUT] [ARGS...]  # THERE: install the wheels to /tmp/site, run scripts/bench_gpu.py
#
# Carried wheels (pure Python, plus numpy): MONAI 1.4.0 and nibabel at this venv's versions, and
# numpy 1.26.4, the version the project is tested with (MONAI 1.4.0 declares numpy < 2; the GPU image
# ships numpy 2.x).  robustlabel itself is not installed: lib/ goes on PYTHONPATH.  MONAI Label is
# not needed.  OUT defaults to $OUT (the device tool's output folder) or results/bench_gpu; ARGS go
# to bench_gpu.py (e.g. --pool-cases 16, or --dry-run for a CPU smoke test).
# Budget: about 2-3 minutes on an H200 (the goal is under 4).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
WHEELS=.whl

if [[ "${1:-}" == "download" ]]; then
    nibabel_version=$("$PYTHON" -c 'import nibabel; print(nibabel.__version__)')
    mkdir -p "$WHEELS"
    "$PYTHON" -m pip download --only-binary=:all: --python-version 3.12 --no-deps \
        monai==1.4.0 "nibabel==${nibabel_version}" -d "$WHEELS"
    "$PYTHON" -m pip download --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --no-deps numpy==1.26.4 -d "$WHEELS"
    ls -l "$WHEELS"
    exit 0
fi

out=${1:-${OUT:-results/bench_gpu}}
[[ $# -gt 0 ]] && shift

if ! "$PYTHON" -c 'import monai, nibabel' 2>/dev/null; then
    if ! compgen -G "$WHEELS/*.whl" >/dev/null; then
        echo "no MONAI/nibabel here and no wheels in $WHEELS/: run 'bash scripts/bench_gpu.sh download' on the dev machine and carry $WHEELS" >&2
        exit 2
    fi
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$WHEELS"/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONPATH=$PWD/lib${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1
"$PYTHON" -c 'import torch; print("torch", torch.__version__, "| CUDA:", torch.cuda.is_available() and torch.cuda.get_device_name(0))'
exec "$PYTHON" scripts/bench_gpu.py --out "$out" "$@"
