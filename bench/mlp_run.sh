#!/usr/bin/env bash
# The end-to-end network benchmark: `bash bench/mlp_run.sh BUILD_DIR [ROUNDS]`.
# Prepares the shared problem once, then runs every side once per round, in a rotated
# order each round (the machine's speed drifts between a fast and a slow state lasting
# seconds, so sides are interleaved and compared round by round), and prints the table of
# median per-round ratios. One thread everywhere: LibTorch, OpenMP and OpenBLAS.
set -euo pipefail

build="${1:-build}"
rounds="${2:-7}"
here="$(cd "$(dirname "$0")" && pwd)"
results="$build/bench/results"
problem="$results/mlp_problem"
mkdir -p "$problem"
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1

/usr/bin/python3 "$here/mlp_peer.py" prepare "$problem"
"$build/bench/blas_check" > "$results/mlp_blas.txt"
sides=(downhill apply torch_optim pytorch pytorch_foreach)
out="$results/mlp.jsonl"
: > "$out"
for ((round = 0; round < rounds; ++round)); do
  echo "bench: network, round $((round + 1)) of $rounds" >&2
  for ((k = 0; k < ${#sides[@]}; ++k)); do
    side="${sides[$(((k + round) % ${#sides[@]}))]}"
    case "$side" in
      pytorch*) line=$(/usr/bin/python3 "$here/mlp_peer.py" run "$problem" "$side") ;;
      *) line=$("$build/bench/mlp_bench" "$problem" "$side") ;;
    esac
    echo "{\"round\": $round, ${line#\{}" >> "$out"
  done
done
/usr/bin/python3 "$here/mlp_report.py" "$out" "$results/mlp_blas.txt"
