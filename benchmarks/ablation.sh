#!/usr/bin/env bash
# The paper's encoder ablation (Table 2, figure 4) at a fixed budget, one script for every machine.
#
# Rows: ResNet50, ViT, ViT + DropKey 0.01, ViT + DropKey 0.05 (configs/ablation: identical data, schedule,
# steps, image size, seed), ViT-S/14 from the DINOv2 start when `dinov2-small` is installed
# (configs/ablation_pretrained), and the mean face; ViT and ViT + DropKey 0.05 with a second seed.
# Coarse stage only: the NoW score reads the neutral coarse shape, which the detail stage does not change.
# Data: synthetic faces with exact ground truth (`vitdeca synth`): a training set, a held-out evaluation
# set and a validation set, each of its own seed (other identities). Losses: DECA's self-supervised terms
# plus the supervised synthetic terms (sup_shape, sup_expression, sup_pose; docs/training.md), the same
# for every row; identity and ID-MRF off (dlib's net costs ~30 % of a CPU step; VGG19 needs a download).
#
#   benchmarks/ablation.sh --profile cpu       # 2-core CPU: ViT-Ti/16 rows, 112 px, 1200 steps
#                                              #   -> benchmarks/results/ablation_cpu.md (+ _curves.png)
#   benchmarks/ablation.sh --profile gpu       # one H100/H200: ViT-B/16 as the paper, 224 px, bf16
#                                              #   -> benchmarks/results/ablation_gpu.md (+ _curves.png)
#   benchmarks/ablation.sh --profile dry       # a handful of steps on the CPU, tiny sizes (CI); writes
#                                              #   only under --out (default: a temporary folder)
#   --steps N (a larger budget; finished runs are extended, not retrained), --out DIR (work folder)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PROFILE=""
OUT=""
STEPS=""
while [ $# -gt 0 ]; do
  case "$1" in
    --profile) PROFILE="$2"; shift ;;
    --dry-run) PROFILE=dry ;;
    --out) OUT="$2"; shift ;;
    --steps) STEPS="$2"; shift ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "ablation.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
PY="${PYTHON:-python}"
START=$(date +%s)
LOSSES=(--set losses.mrf=0 --set losses.identity=0 --set losses.sup_shape=1.0 --set losses.sup_expression=0.5
        --set losses.sup_pose=1.0)
SCHEDULE=(--set optim.lr=3.0e-4 --set optim.schedule=cosine --set optim.warmup_steps=20
          --set optim.min_lr_ratio=0.05 --set optim.grad_clip=5.0)
case "$PROFILE" in
  dry)
    OUT="${OUT:-$(mktemp -d)}"
    STEPS="${STEPS:-2}"
    SYNTH=(--size 48 --supersample 1 --uv-size 64)
    N_TRAIN=4; N_EVAL=2; N_VAL=0; PER_SUBJECT=2  # the dry run validates on the evaluation set
    VIT=vit_tiny_patch16_224; SIZE=32; DEVICE=cpu; AMP=none; JOBS=2; SEEDS=0,1; EXTRA=vit; WORKERS=1
    MORE=(--set model.uv_size=32 --set model.n_albedo=4 --set data.identities_per_batch=2
          --set data.images_per_identity=2 --set run.progress=false --set run.log_every=1 --bootstrap 50)
    RESULT="$OUT/ablation_dry.md"
    ;;
  cpu)
    OUT="${OUT:-$ROOT/runs/ablation_cpu}"
    STEPS="${STEPS:-1200}"
    SYNTH=(--size 112 --supersample 2 --uv-size 256)
    N_TRAIN=960; N_EVAL=64; N_VAL=64; PER_SUBJECT=4
    VIT=vit_tiny_patch16_224; SIZE=112; DEVICE=cpu; AMP=none; JOBS=2; SEEDS=0,1; EXTRA=vit,vit_dropkey005
    WORKERS=2
    MORE=(--set model.uv_size=128 --set model.n_albedo=20 --set run.progress=false --set data.num_workers=0
          --set run.log_every=10)
    export OMP_NUM_THREADS=1  # two trainings at once, one core each
    RESULT="$ROOT/benchmarks/results/ablation_cpu.md"
    ;;
  gpu)
    OUT="${OUT:-$ROOT/runs/ablation_gpu}"
    STEPS="${STEPS:-400}"
    SYNTH=(--size 224 --supersample 2 --uv-size 512)
    N_TRAIN=320; N_EVAL=40; N_VAL=40; PER_SUBJECT=4
    VIT=vit_base_patch16_224; SIZE=224; DEVICE=cuda; AMP=bf16; JOBS=7; SEEDS=0,1; EXTRA=vit,vit_dropkey005
    WORKERS=8
    MORE=(--set run.progress=false --set data.num_workers=2 --set run.log_every=10)
    RESULT="$ROOT/benchmarks/results/ablation_gpu.md"
    ;;
  *) echo "ablation.sh: --profile cpu|gpu|dry is required (see --help)" >&2; exit 2 ;;
esac
mkdir -p "$OUT"
DATA="$OUT/data"
for spec in "train:$N_TRAIN:101" "eval:$N_EVAL:202" "val:$N_VAL:303"; do
  IFS=: read -r name n seed <<< "$spec"
  if [ "$n" -gt 0 ] && [ ! -f "$DATA/$name/dataset.json" ]; then
    "$PY" -m vitdeca -q synth --n "$n" --images-per-subject "$PER_SUBJECT" --seed "$seed" --out "$DATA/$name" \
      "${SYNTH[@]}"
  fi
done
VAL="$DATA/val"
[ "$N_VAL" -gt 0 ] || VAL="$DATA/eval"

PRETRAINED=()
if [ "$PROFILE" != dry ] && "$PY" - <<'PYEOF'
import sys
from vitdeca.storage import vitdeca_home
sys.exit(0 if (vitdeca_home() / "pretrained" / "dinov2-small.safetensors").is_file() else 1)
PYEOF
then
  PRETRAINED=(--pretrained-config "$ROOT/configs/ablation_pretrained/vit_dinov2_small.yaml")
fi
COMMAND=(vitdeca experiment ablation
  --data "$DATA/train" --eval "$DATA/eval" --val "$VAL" --val-every "$(( STEPS / 8 > 0 ? STEPS / 8 : 1 ))"
  --steps "$STEPS" --out "$OUT/ablation" --configs "$ROOT/configs/ablation" "${PRETRAINED[@]}"
  --vit "$VIT" --seeds "$SEEDS" --extra-seed-rows "$EXTRA" --launcher subprocess --jobs "$JOBS"
  --device "$DEVICE" --workers "$WORKERS"
  --set stages=[coarse] --set model.detail=false --set "data.image_size=$SIZE" --set "model.image_size=$SIZE"
  "${LOSSES[@]}" "${SCHEDULE[@]}" --set "run.device=$DEVICE" --set "run.amp=$AMP" --set run.image_every=0
  --set "run.checkpoint_every=$(( STEPS / 4 > 0 ? STEPS / 4 : 1 ))" "${MORE[@]}")
"$PY" -m "${COMMAND[@]}"

ELAPSED=$(( $(date +%s) - START ))
DEVICE_NAME=$("$PY" -c "import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'CPU only')")
CPU_NAME=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)
mkdir -p "$(dirname "$RESULT")"
{
  echo "# Encoder ablation, profile $PROFILE (benchmarks/ablation.sh --profile $PROFILE)"
  echo
  echo "Device: $DEVICE_NAME ($(nproc --all) CPU cores${CPU_NAME:+, $CPU_NAME}); torch $("$PY" -c 'import torch; print(torch.__version__)');"
  echo "wall time ${ELAPSED} s for everything (data, $JOBS trainings at once, evaluation)."
  echo "Data: \`vitdeca synth\` ${SYNTH[*]}: $N_TRAIN training, $N_EVAL evaluation and $N_VAL validation images"
  echo "(seeds 101, 202, 303: disjoint identities; $PER_SUBJECT images per subject)."
  echo "Budget: $STEPS coarse steps per run (batch 8 identities x 2 images), ${SIZE} px, ViT rows $VIT, amp $AMP."
  echo "Losses: ${LOSSES[*]//--set /}; schedule: ${SCHEDULE[*]//--set /}."
  echo "Pretrained row: $([ ${#PRETRAINED[@]} -gt 0 ] && echo 'DINOv2 ViT-S/14 (dinov2-small)' || echo 'not run (dinov2-small not installed)')."
  echo
  echo "Command: \`benchmarks/ablation.sh --profile $PROFILE${STEPS:+ --steps $STEPS}\`, which runs"
  echo "\`${COMMAND[*]//$ROOT\//}\`"
  echo
  sed '1,2d' "$OUT/ablation/table.md"
} > "$RESULT.tmp"
mv "$RESULT.tmp" "$RESULT"
cp "$OUT/ablation/curves.png" "${RESULT%.md}_curves.png"
echo "ablation.sh: $RESULT (${ELAPSED} s)"
