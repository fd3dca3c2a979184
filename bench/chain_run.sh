#!/usr/bin/env bash
# The update chain benchmark: `bash bench/chain_run.sh BUILD_DIR [ROUNDS]` prints a markdown
# table (bench/run.sh calls it after the update benchmark). What the chain (weight decay,
# global-norm clipping and a cosine schedule) adds to a fused Adam and SGD + momentum update,
# and fused AdamW against torch::optim::AdamW, at n = 1.6e7 and 1e5 float32 parameters.
# Sides are interleaved in ROUNDS rounds (default 9) in one process; the table gives the
# median and the range of per-round ratios (bench/chain_bench.cpp says how).
#
# It runs twice: with glibc's malloc as it is (how a program runs torch::optim), and with
# freed memory kept in the heap (--malloc=keep), where torch::optim's parameter-sized
# temporaries reuse mapped pages instead of faulting in fresh ones at every step: its best
# case. downhill's fused updates allocate nothing, so only the torch::optim side can differ.
# One thread everywhere (LibTorch, OpenMP, OpenBLAS); BENCH_THREADS=N for more (then the
# times are wall time, not CPU time). Per-round times land in BUILD_DIR/bench/results.
set -euo pipefail

build="${1:-build}"
rounds="${2:-9}"
results="$build/bench/results"
mkdir -p "$results"
threads="${BENCH_THREADS:-1}"

# Before OMP_NUM_THREADS is set: nproc reports that instead of the cores when it is.
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
export OMP_NUM_THREADS="$threads" OPENBLAS_NUM_THREADS="$threads"
echo "LibTorch: $(dpkg-query -W -f='${Version}' libtorch-dev 2>/dev/null || echo unknown) (Debian libtorch-dev); $(g++ --version | head -1)"
echo "OMP_NUM_THREADS=$OMP_NUM_THREADS; OPENBLAS_NUM_THREADS=$OPENBLAS_NUM_THREADS; load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
parity=100000  # the AdamW parity check, once
for malloc in default keep; do
  echo "bench: update chain, malloc=$malloc (about a minute)" >&2
  "$build/bench/chain_bench" --threads="$threads" --rounds="$rounds" --malloc="$malloc" \
    --parity-size="$parity" --raw="$results/chain_$malloc.jsonl"
  parity=0
done
