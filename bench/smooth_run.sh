#!/usr/bin/env bash
# Smooth problems to 1e-6 of their minimum: downhill's L-BFGS, LBFGS++ and torch.optim.LBFGS,
# in paired rounds (each round runs every side once, smooth_bench's sides alternating within
# it, torch.optim.LBFGS after them), one thread. Prints a markdown table of the medians and of
# the per-round ratios: `bash bench/smooth_run.sh BUILD_DIR [ROUNDS]`.
set -euo pipefail
build="${1:-build}"
rounds="${2:-7}"
here="$(cd "$(dirname "$0")" && pwd)"
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
raw="$(mktemp)"
trap 'rm -f "$raw"' EXIT
for ((round = 0; round < rounds; ++round)); do
  "$build/bench/smooth_bench" 1 | sed "s/^/$round /" >> "$raw"
  targets=$(awk -v r="$round" '$1 == r && $2 == "minimum" { printf "%s=%.17g ", $3, $4 + 1e-6 }' "$raw")
  # shellcheck disable=SC2086
  /usr/bin/python3 "$here/smooth_peer.py" 1 $targets | sed "s/^/$round torch /" >> "$raw"
done
/usr/bin/python3 "$here/smooth_report.py" "$raw"
