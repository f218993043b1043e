#!/usr/bin/env bash
# Every GPU check of the project in one run, for a CUDA machine without network (the `device` machines):
# the CUDA tests, then benchmarks/gpu.py. Usage: bash benchmarks/gpu_check.sh OUT_DIR
# The machine's own python3 with its torch is used; otalign is installed from this checkout without dependencies.
# POT and geomloss (the peers in gpu.py) are installed from ./.wheels when that folder exists, e.g. made beforehand
# on a machine with network by:
#   pip download pot geomloss --no-deps --only-binary=:all: --python-version 3.12 \
#       --platform manylinux_2_28_x86_64 -d .wheels
# (.wheels is git-ignored: a tool that copies only tracked files must be told to take it along.)
set -uo pipefail
out=${1:?usage: bash benchmarks/gpu_check.sh OUT_DIR}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name())"
  python3 -m pip install --no-deps --no-build-isolation --no-index -q -e .
  if [ -d .wheels ]; then python3 -m pip install --no-deps --no-index -q .wheels/*.whl; fi
} 2>&1 | tee "$out/gpu-setup.log"
python3 -m pytest -q -p no:cacheprovider tests/test_gpu.py 2>&1 | tee "$out/gpu-tests.log"
python3 benchmarks/gpu.py --out "$out" 2>&1 | tee "$out/gpu-bench.log"
