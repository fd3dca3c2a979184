#!/usr/bin/env bash
# Installs every Debian package that downhill's build, tests, examples and
# benchmarks need. Idempotent: packages already present are skipped.
set -euo pipefail

packages=(
  build-essential cmake make ccache pkg-config clang-format
  libtorch-dev            # LibTorch (CPU) with its CMake package
  # LibTorch links libblas.so.3; without an optimized BLAS Debian points it at the
  # reference BLAS, 13-30x slower on every matrix product. Installing OpenBLAS switches
  # libblas.so.3 to it through Debian's alternatives; nothing is rebuilt.
  libopenblas0-pthread
  libspdlog-dev libfmt-dev nlohmann-json3-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  python3-torch           # PyTorch peer for the benchmarks
  python3-sklearn         # ships the digits data set used by an example
  zlib1g-dev              # reads that gzip-compressed data set
  python3-matplotlib      # the plot scripts (scripts/plot_history.py, plot_rosenbrock.py)
  libgloo-dev             # c10d's Gloo backend headers, for data-parallel training
  liblbfgspp-dev          # LBFGS++ (with Eigen), the L-BFGS peer of bench/smooth_bench
  # The Python package (python/): its module, built against python3-torch, and its tests.
  pybind11-dev python3-dev python3-pytest python3-numpy python3-scipy
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all packages present"
  exit 0
fi

sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
echo "install-deps: installing ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
