#!/bin/bash
# Training throughput (images/s) of the default recipe (configs/default.yaml: crop 256, batch 8 global),
# 1 process with 2 threads vs `torchrun --nproc_per_node 2` (1 thread each). Writes
# benchmarks/results/train_throughput.json. usage: bash benchmarks/bench_train_throughput.sh [STEPS]
set -eu
cd "$(dirname "$0")/.."
STEPS=${1:-20}
PY=${PY:-/work/main/.venv/bin/python}
TORCHRUN=${TORCHRUN:-$(dirname $PY)/torchrun}
TMP=$(mktemp -d)
sed "s#^out_dir:.*#out_dir: $TMP/RUN#; s#^checkpoint_every:.*#checkpoint_every: 100000#" configs/default.yaml \
  | sed "s#\.\./\.\./shared#$(cd ../shared && pwd)#" > $TMP/base.yaml
echo "log_every: 5" >> $TMP/base.yaml
sed "s#RUN#one#" $TMP/base.yaml > $TMP/one.yaml
sed "s#RUN#ddp#" $TMP/base.yaml > $TMP/ddp.yaml
export PYTHONPATH=${PYTHONPATH:-src}
OMP_NUM_THREADS=2 nice -n 10 $PY -m omniseg train $TMP/one.yaml --steps $STEPS --no-resume > $TMP/one.out 2>&1
OMP_NUM_THREADS=1 nice -n 10 $TORCHRUN --standalone --nproc_per_node 2 -m omniseg.train $TMP/ddp.yaml --steps $STEPS --no-resume > $TMP/ddp.out 2>&1
$PY - "$TMP" "$STEPS" <<'PY'
import json, sys
from pathlib import Path
tmp, steps = Path(sys.argv[1]), int(sys.argv[2])
def rate(name):
    recs = [json.loads(l) for l in (tmp / name / "log.jsonl").read_text().splitlines()]
    a, b = recs[0], recs[-1]  # skip the first logged block (warm-up of the allocator / caches)
    return round((b["step"] - a["step"]) * 8 / (b["elapsed"] - a["elapsed"]), 3), recs[-1]["total"]
one, ddp = rate("one"), rate("ddp")
out = {"recipe": "configs/default.yaml (crop 256, global batch 8)", "steps": steps,
       "one_process_2_threads_images_per_s": one[0], "two_ddp_processes_1_thread_each_images_per_s": ddp[0],
       "final_total_loss": {"one": one[1], "ddp": ddp[1]},
       "load_average_1min_at_end": round(__import__("os").getloadavg()[0], 2)}
Path("benchmarks/results/train_throughput.json").write_text(json.dumps(out, indent=2))
print(json.dumps(out, indent=2))
PY
rm -rf $TMP
