#!/usr/bin/env bash
# The main benchmarks on a CUDA device (see bench/bench_gpu.py): gradient methods, every class
# of a segmentation, ScoreCAM, a whole slide, and the host-read check; writes
# bench/gpu-results.md. Run from the repository root in an environment with camlens installed
# with the slide extra and a CUDA build of torch:
#   bash bench/gpu.sh [--repeats 5] [--skip slide,scorecam]
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
"$python" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device')"
"$python" bench/bench_gpu.py --device cuda "$@"
