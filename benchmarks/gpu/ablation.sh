#!/usr/bin/env bash
# The paper's encoder ablation on one H100/H200-class GPU (ViT-B/16 as the paper, 224 px, bf16, in about
# 8 minutes): benchmarks/ablation.sh --profile gpu; writes benchmarks/results/ablation_gpu.md (+ _curves.png).
#   benchmarks/gpu/ablation.sh [--steps N] [--out DIR]
#   benchmarks/gpu/ablation.sh --dry-run       # the same path for a handful of CPU steps (CI)
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
case " $* " in
  *" --dry-run "*) exec "$HERE/../ablation.sh" "$@" ;;
  *) exec "$HERE/../ablation.sh" --profile gpu "$@" ;;
esac
