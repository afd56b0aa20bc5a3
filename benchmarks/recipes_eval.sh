#!/bin/bash
# Evaluate the issue-3 runs that have finished (runs/recipes/<name>/model); skips JSONs already written.
# usage: bash benchmarks/recipes_eval.sh   (from the repository root; nice 10, 1 thread)
set -u
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
PY=${PY:-/work/main/.venv/bin/python}
DATA=${DATA:-../shared/data}
OUT=benchmarks/results/recipes
mkdir -p "$OUT"
ev() {  # ev NAME DATASET [extra eval args...]
  local name=$1 ds=$2 tag=$3; shift 3
  local model=runs/recipes/$name/model json=$OUT/${name}__${ds}${tag}.json
  [ -f "$model/model.safetensors" ] || return 0
  [ -f "$json" ] && return 0
  nice -n 10 $PY -m omniseg eval "$DATA/$ds" --model "$model" --split val --quiet --json "$json" "$@" | tail -1
}
for held in camvid msrc_v2 coco128_seg; do
  for arch in openseg lseg; do
    ev zs_${held}_$arch $held ""
  done
done
for abl in abl_no_grounding abl_kp1.0 abl_kp0.5 abl_ess abl_pseudo; do
  ev $abl msrc_v2 ""
done
ev abl_ess msrc_v2 "_pixels" --pixel-weight 1
ev abl_ess msrc_v2 "_fused" --pixel-weight 0.5
for ds in coco128_seg coco_mini; do
  for name in rec_panoptic zs_msrc_v2_openseg rec_panoptic_ft; do
    ev $name $ds "_recall" --metric recall --proposals 100
  done
done
# the fine-tuned proposal model on the foundation issue's val metrics (vs the default model it started from)
for ds in camvid msrc_v2; do
  ev rec_panoptic_ft $ds ""
done
