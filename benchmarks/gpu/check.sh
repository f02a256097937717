#!/usr/bin/env bash
# One command that proves the GPU paths (issue 15): the cuda-marked tests, training-step throughput at the
# ablation configs, reconstruct throughput. Prints a Markdown report and writes benchmarks/results/gpu.md.
#   benchmarks/gpu/check.sh             # on a machine with a CUDA GPU (<= 8 min on one H100/H200)
#   benchmarks/gpu/check.sh --dry-run   # tiny sizes on the CPU (CI runs this so the script cannot rot)
# Needs the package installed (pip install -e ".[dev]"). Offline: set VITDECA_ICT_FACEKIT to use the
# ICT-FaceKit head; without it a FLAME-format head with random content (FLAME's sizes) is used.
set -euo pipefail
cd "$(dirname "$0")/../.."
export PYTHONUNBUFFERED=1 MPLBACKEND="${MPLBACKEND:-Agg}"
exec python benchmarks/gpu/check.py "$@"
