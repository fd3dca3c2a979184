#!/usr/bin/env bash
# The data-parallel step benchmark: `bash bench/distributed_run.sh BUILD_DIR [ROUNDS]` prints
# a markdown table (about 3 minutes on 2 cores with the default 9 rounds). Four sides, each
# at n = 1e5 and 1e7 parameters:
#   downhill_1proc  bench/distributed_bench, one process
#   downhill_2rank  bench/distributed_bench, two ranks (Gloo over 127.0.0.1)
#   torch_1proc     bench/distributed_peer.py, one process
#   ddp_2rank       bench/distributed_peer.py, two ranks of DistributedDataParallel (Gloo)
# Every side is a fresh launch, once per round, in an order rotated by one each round (the
# machine switches for seconds between a fast state and one ~1.7x slower): the table gives
# medians over rounds of per-round ratios, and their ranges. One thread per process
# (LibTorch, OpenMP, OpenBLAS): 2 ranks x 1 thread on the 2 cores.
#
# The ranks are started here with the variables torchrun gives them (RANK, WORLD_SIZE,
# LOCAL_RANK, MASTER_ADDR=127.0.0.1, a free MASTER_PORT): the same as
#   torchrun --standalone --nproc_per_node=2 --redirects 1 --tee 1 --no_python PROGRAM
# without torchrun's agent, whose start takes seconds of the shared cores per launch.
# Per-round lines land in BUILD_DIR/bench/results/distributed.jsonl. BENCH_PIN=1 pins each rank
# (and the one process) to a core of its own with taskset: rank r on core r.
set -euo pipefail

build="${1:-build}"
rounds="${2:-9}"
here="$(cd "$(dirname "$0")" && pwd)"
results="$build/bench/results"
mkdir -p "$results"
out="$results/distributed.jsonl"
: > "$out"

# Before OMP_NUM_THREADS is set: nproc reports that instead of the cores when it is.
echo "machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1
# PyTorch's Gloo on the loopback interface, as the C++ side's (127.0.0.1).
export GLOO_SOCKET_IFNAME=lo
# Every side's freed memory stays in the heap (BENCH_MALLOC=default: glibc as it is). With
# glibc's defaults the C++ process gives the autograd's 20 MB gradient blocks back to the
# system after each step and faults them in again at the next (a third more forward/backward
# time at 1e7 than with the heap kept, more than the Python process takes for the same
# products), which would flatter the C++ sides' 2-rank / 1-process ratios: the sides are
# compared on an equal heap (docs/performance.md, "Data-parallel step (2 ranks)").
malloc="${BENCH_MALLOC:-keep}"
if [[ "$malloc" == keep ]]; then
  export MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=4294967295
fi
echo "malloc: $malloc"
echo "LibTorch: $(dpkg-query -W -f='${Version}' libtorch-dev 2>/dev/null || echo unknown) (Debian libtorch-dev); PyTorch: $(/usr/bin/python3 -c 'import torch; print(torch.__version__)') ($(dpkg-query -W -f='${Version}' python3-torch 2>/dev/null || echo unknown)); $(g++ --version | head -1)"
echo "OMP_NUM_THREADS=$OMP_NUM_THREADS; load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"

sizes="1e5,1e7"
steps="400,40"  # timed steps; two ranks split them between their kinds (see the programs)
warmup="40,8"
arguments=(--sizes="$sizes" --steps="$steps" --warmup="$warmup")

free_port() {
  /usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# run ROUND POSITION WORLD COMMAND...: one launch, its JSON lines tagged with the round.
run() {
  local round="$1" position="$2" world="$3"
  shift 3
  local logs=() pids=() port
  port="$(free_port)"
  for ((rank = 0; rank < world; ++rank)); do
    logs+=("$(mktemp)")
    local pin=()
    if [[ -n "${BENCH_PIN:-}" ]]; then pin=(taskset -c "$rank"); fi
    if ((world > 1)); then
      RANK=$rank LOCAL_RANK=$rank WORLD_SIZE=$world LOCAL_WORLD_SIZE=$world \
        MASTER_ADDR=127.0.0.1 MASTER_PORT=$port timeout 120 "${pin[@]}" "$@" > "${logs[$rank]}" &
    else
      timeout 120 "${pin[@]}" "$@" > "${logs[$rank]}" &
    fi
    pids+=($!)
  done
  local failed=0
  for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
  if ((failed)); then
    echo "distributed_run: round $round: '$*' on $world rank(s) failed" >&2
    rm -f "${logs[@]}"
    return 1
  fi
  cat "${logs[@]}" | sed "s/^{/{\"round\": $round, \"position\": $position, /" >> "$out"
  rm -f "${logs[@]}"
}

sides=(downhill_1proc downhill_2rank torch_1proc ddp_2rank)
for ((round = 0; round < rounds; ++round)); do
  echo "bench: data-parallel step, round $((round + 1)) of $rounds" >&2
  for ((k = 0; k < ${#sides[@]}; ++k)); do
    side="${sides[$(((k + round) % ${#sides[@]}))]}"
    case "$side" in
      downhill_1proc) run "$round" "$k" 1 "$build/bench/distributed_bench" "${arguments[@]}" ;;
      downhill_2rank) run "$round" "$k" 2 "$build/bench/distributed_bench" "${arguments[@]}" ;;
      torch_1proc) run "$round" "$k" 1 /usr/bin/python3 "$here/distributed_peer.py" "${arguments[@]}" ;;
      ddp_2rank) run "$round" "$k" 2 /usr/bin/python3 "$here/distributed_peer.py" "${arguments[@]}" ;;
    esac
  done
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
/usr/bin/python3 "$here/distributed_report.py" "$out"
