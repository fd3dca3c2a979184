#!/usr/bin/env bash
# The Python package's benchmark: `bash bench/python_run.sh BUILD_DIR [ROUNDS]`.
# 1. downhill.optim against torch.optim per step (bench/python_optim_bench.py).
# 2. The digits MLP end to end in Python (bench/mlp_peer.py's problem): the same PyTorch loop
#    with torch.optim.Adam (foreach off and on) and with downhill.optim.Adam, and the seed-style
#    downhill.minimize; every side once per round in a rotated order, the median per-round
#    ratio of the best torch.optim side's wall time to each downhill side's.
# One thread everywhere. Needs the package built (make python).
set -euo pipefail

build="${1:-build}"
rounds="${2:-5}"
here="$(cd "$(dirname "$0")" && pwd)"
results="$build/bench/results"
mkdir -p "$results"
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
export PYTHONPATH="$build/python${PYTHONPATH:+:$PYTHONPATH}"

echo "bench: downhill.optim per step" >&2
/usr/bin/python3 "$here/python_optim_bench.py" "$rounds" "$results/python_optim.jsonl" \
  > "$results/python_optim_table.md"
cat "$results/python_optim_table.md"

problem="$results/mlp_problem"
mkdir -p "$problem"
/usr/bin/python3 "$here/mlp_peer.py" prepare "$problem"
sides=(pytorch pytorch_foreach downhill_optim downhill_minimize)
out="$results/python_mlp.jsonl"
: > "$out"
for ((round = 0; round < rounds; ++round)); do
  echo "bench: digits MLP from Python, round $((round + 1)) of $rounds" >&2
  for ((k = 0; k < ${#sides[@]}; ++k)); do
    side="${sides[$(((k + round) % ${#sides[@]}))]}"
    line=$(/usr/bin/python3 "$here/mlp_peer.py" run "$problem" "$side")
    echo "{\"round\": $round, ${line#\{}" >> "$out"
  done
done
/usr/bin/python3 - "$out" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
by = {}
for r in rows:
    by.setdefault(r["round"], {})[r["side"]] = r
print("\nThe digits MLP end to end from Python (30 epochs, batches of 32), median of "
      f"{len(by)} rounds:\n")
print("| side | wall s | best torch.optim loop / side | validation loss | accuracy |")
print("| --- | --- | --- | --- | --- |")
for side in ("pytorch", "pytorch_foreach", "downhill_optim", "downhill_minimize"):
    walls = [r[side]["wall_seconds"] for r in by.values()]
    ratios = [min(r["pytorch"]["wall_seconds"], r["pytorch_foreach"]["wall_seconds"])
              / r[side]["wall_seconds"] for r in by.values()]
    last = list(by.values())[-1][side]
    print(f"| {side} | {statistics.median(walls):.2f} | {statistics.median(ratios):.2f}× | "
          f"{last['validation_loss']:.4f} | {last['accuracy']:.3f} |")
PY
