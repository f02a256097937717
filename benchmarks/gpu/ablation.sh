#!/usr/bin/env bash
# The paper's encoder ablation (Table 2, figure 4) at a GPU budget: ViT-B/16 as the paper, 224 px, bf16,
# on one H100/H200-class GPU in about 8 minutes (a budget set from estimates; the script states the wall
# time it took in the results file, so check it there).
#
# Rows: ResNet50, ViT-B/16, ViT-B/16 + DropKey 0.01, + DropKey 0.05 (configs/ablation: identical data,
# schedule, steps, image size, seed), ViT-S/14 from the DINOv2 start when `dinov2-small` is installed
# (configs/ablation_pretrained), and the mean face; ViT and ViT + DropKey 0.05 with a second seed.
# All trainings run at once on the one GPU (--jobs), coarse stage only: the NoW score reads the neutral
# coarse shape, which the detail stage does not change. Data: synthetic faces with exact ground truth
# (`vitdeca synth`), a training set, a held-out evaluation set and a validation set of other seeds.
#
#   benchmarks/gpu/ablation.sh                 # writes benchmarks/results/ablation_gpu.md (+ _curves.png)
#   benchmarks/gpu/ablation.sh --steps 600     # a larger budget
#   benchmarks/gpu/ablation.sh --dry-run       # a handful of steps on the CPU, tiny sizes (CI); writes
#                                              # only under --out (default: a temporary folder)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
DRY=0
OUT=""
STEPS=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY=1 ;;
    --out) OUT="$2"; shift ;;
    --steps) STEPS="$2"; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "ablation.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
PY="${PYTHON:-python}"
START=$(date +%s)

if [ "$DRY" = 1 ]; then
  OUT="${OUT:-$(mktemp -d)}"
  STEPS="${STEPS:-2}"
  SYNTH=(--size 48 --supersample 1 --uv-size 64)
  N_TRAIN=4; N_EVAL=2; N_VAL=0; PER_SUBJECT=2  # the dry run validates on the evaluation set
  VIT=vit_tiny_patch16_224; SIZE=32; DEVICE=cpu; AMP=none; JOBS=2; SEEDS=0,1; EXTRA=vit
  MORE=(--set model.uv_size=32 --set model.n_albedo=4 --set data.identities_per_batch=2
        --set data.images_per_identity=2 --set run.progress=false --set run.log_every=1 --bootstrap 50)
  RESULT="$OUT/ablation_gpu.md"
else
  OUT="${OUT:-$ROOT/runs/ablation_gpu}"
  STEPS="${STEPS:-400}"
  SYNTH=(--size 224 --supersample 2 --uv-size 512)
  N_TRAIN=320; N_EVAL=40; N_VAL=40; PER_SUBJECT=4
  VIT=vit_base_patch16_224; SIZE=224; DEVICE=cuda; AMP=bf16; JOBS=7; SEEDS=0,1; EXTRA=vit,vit_dropkey005
  MORE=(--set run.progress=false --set data.num_workers=2 --set run.log_every=10)
  RESULT="$ROOT/benchmarks/results/ablation_gpu.md"
fi
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
if [ "$DRY" = 0 ] && "$PY" - <<'EOF'
import sys
from vitdeca.storage import vitdeca_home
sys.exit(0 if (vitdeca_home() / "pretrained" / "dinov2-small.safetensors").is_file() else 1)
EOF
then
  PRETRAINED=(--pretrained-config "$ROOT/configs/ablation_pretrained/vit_dinov2_small.yaml")
fi

"$PY" -m vitdeca experiment ablation \
  --data "$DATA/train" --eval "$DATA/eval" --val "$VAL" --val-every "$(( STEPS / 8 > 0 ? STEPS / 8 : 1 ))" \
  --steps "$STEPS" --out "$OUT/ablation" --configs "$ROOT/configs/ablation" "${PRETRAINED[@]}" \
  --vit "$VIT" --seeds "$SEEDS" --extra-seed-rows "$EXTRA" --launcher subprocess --jobs "$JOBS" \
  --device "$DEVICE" --workers 8 \
  --set stages=[coarse] --set model.detail=false --set "data.image_size=$SIZE" --set "model.image_size=$SIZE" \
  --set losses.mrf=0 --set "run.device=$DEVICE" --set "run.amp=$AMP" --set run.image_every=0 \
  --set "run.checkpoint_every=$STEPS" "${MORE[@]}"

ELAPSED=$(( $(date +%s) - START ))
DEVICE_NAME=$("$PY" -c "import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'CPU only')")
mkdir -p "$(dirname "$RESULT")"
{
  echo "# Encoder ablation on one GPU (benchmarks/gpu/ablation.sh$([ "$DRY" = 1 ] && echo ' --dry-run'))"
  echo
  echo "Device: $DEVICE_NAME; torch $("$PY" -c 'import torch; print(torch.__version__)'); wall time ${ELAPSED} s"
  echo "(synthetic data, $JOBS trainings at once, evaluation). Data: \`vitdeca synth\` $N_TRAIN training,"
  echo "$N_EVAL evaluation and $N_VAL validation images (seeds 101, 202, 303; $PER_SUBJECT images per subject)."
  echo "Budget: $STEPS coarse steps per run, ${SIZE} px, ViT rows $VIT, amp $AMP, ID-MRF off (no VGG19"
  echo "download on the GPU machine). Pretrained row: $([ ${#PRETRAINED[@]} -gt 0 ] && echo 'DINOv2 ViT-S/14 (dinov2-small)' || echo 'not run (dinov2-small not installed)')."
  echo
  sed '1,2d' "$OUT/ablation/table.md"
} > "$RESULT.tmp"
mv "$RESULT.tmp" "$RESULT"
cp "$OUT/ablation/curves.png" "${RESULT%.md}_curves.png"
echo "ablation.sh: $RESULT (${ELAPSED} s)"
