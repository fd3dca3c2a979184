#!/usr/bin/env bash
# Runs every benchmark of downhill and prints one table: `bash bench/run.sh BUILD_DIR`
# (what `make bench` calls after building). Results land in BUILD_DIR/bench/results.
# BENCH_THREADS=N sets the LibTorch/OpenMP thread count of every side (default:
# LibTorch's own default; the chain benchmark's: 1). BENCH_QUICK=1 shortens the update benchmark.
set -euo pipefail

build="${1:-build}"
here="$(cd "$(dirname "$0")" && pwd)"
bench="$build/bench"
results="$bench/results"
mkdir -p "$results"
if [ -n "${BENCH_THREADS:-}" ]; then export OMP_NUM_THREADS="$BENCH_THREADS"; fi
# OpenBLAS's own threads follow BENCH_THREADS too (1 by default), so that every side's
# matrix products run on the same number of cores.
export OPENBLAS_NUM_THREADS="${BENCH_THREADS:-1}"

min_time=0.2
repetitions=5
if [ -n "${BENCH_QUICK:-}" ]; then min_time=0.05; repetitions=3; fi

{
  echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
  echo "LibTorch: $(dpkg-query -W -f='${Version}' libtorch-dev 2>/dev/null || echo unknown) (Debian libtorch-dev); PyTorch: $(dpkg-query -W -f='${Version}' python3-torch 2>/dev/null || echo unknown); $(g++ --version | head -1)"
  echo "OMP_NUM_THREADS=${OMP_NUM_THREADS:-unset}; OPENBLAS_NUM_THREADS=$OPENBLAS_NUM_THREADS; load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
} > "$results/context.txt"

echo "bench: update step (about 4 minutes)" >&2
"$bench/update_bench" --benchmark_min_time="$min_time" --benchmark_repetitions="$repetitions" \
  --benchmark_enable_random_interleaving=true --benchmark_report_aggregates_only=true \
  --benchmark_format=json --benchmark_out="$results/update.json" \
  --benchmark_out_format=json >/dev/null

# The update chain (weight decay, global-norm clipping, a schedule; fused AdamW against
# torch::optim::AdamW): its own rounds, one thread unless BENCH_THREADS; printed after the table.
echo "bench: update chain (about 2 minutes)" >&2
bash "$here/chain_run.sh" "$build" > "$results/chain_table.md"

echo "bench: end to end" >&2
"$bench/e2e_bench" --benchmark_enable_random_interleaving=true \
  --benchmark_report_aggregates_only=true --benchmark_out="$results/e2e.json" \
  --benchmark_out_format=json >/dev/null

echo "bench: memory" >&2
"$bench/memory_bench" downhill > "$results/memory_downhill.json"
"$bench/memory_bench" torch_optim > "$results/memory_torch_optim.json"

echo "bench: PyTorch peers (about 1 minute)" >&2
/usr/bin/python3 "$here/peers.py" > "$results/peers.json"

/usr/bin/python3 "$here/report.py" "$results" | tee "$results/table.md"
printf '\n## The update chain: weight decay, global-norm clipping and a schedule\n\n'
cat "$results/chain_table.md"

echo "bench: network end to end (about 2 minutes)" >&2
bash "$here/mlp_run.sh" "$build" | tee "$results/mlp_table.md"

# Smooth problems: L-BFGS against torch.optim.LBFGS and LBFGS++ (when LBFGS++ was found).
if [ -x "$bench/smooth_bench" ]; then
  echo "bench: smooth problems, L-BFGS (about 1 minute)" >&2
  printf '\n## Smooth problems\n\n'
  bash "$here/smooth_run.sh" "$build" 7 | tee "$results/smooth_table.md"
fi
