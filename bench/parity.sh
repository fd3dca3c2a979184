#!/usr/bin/env bash
# Two builds of downhill side by side (for example the previous main, built in another folder,
# and this one): the fused updates, their torch::optim peers and the copy baseline, in ROUNDS
# interleaved rounds (the sides alternate who goes first), then the median of per-round ratios.
#   bash bench/parity.sh BEFORE_BUILD AFTER_BUILD [ROUNDS]
set -euo pipefail
before="$1"
after="$2"
rounds="${3:-5}"
here="$(cd "$(dirname "$0")" && pwd)"
out="$(mktemp -d)"
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
filter='update/.*/(fused|torch_optim)/.*|copy/.*'
for round in $(seq "$rounds"); do
  if [ $((round % 2)) -eq 1 ]; then order="before after"; else order="after before"; fi
  for side in $order; do
    build="$before"
    if [ "$side" = after ]; then build="$after"; fi
    "$build/bench/update_bench" --benchmark_filter="$filter" --benchmark_min_time=0.1 \
      --benchmark_format=json --benchmark_out="$out/${side}_$round.json" \
      --benchmark_out_format=json >/dev/null 2>&1
  done
done
/usr/bin/python3 "$here/parity_report.py" "$out" "$rounds"
