# Thin wrapper over CMake. `make demo` and `make test` work on a fresh Debian 12
# machine: they install the Debian packages first (skipping those present).
BUILD ?= build
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=
# Lets ccache share compiled objects between clones in different folders.
export CCACHE_BASEDIR := $(CURDIR)

.PHONY: all deps configure build demo python test bench blas-check format clean

all: build

deps:
	@bash scripts/install-deps.sh

configure: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)

build: configure
	cmake --build $(BUILD) -j $(JOBS)

# Only the library and the demo: a first run need not wait for the tests and benchmarks.
demo: configure
	cmake --build $(BUILD) --target quickstart -j $(JOBS)
	./$(BUILD)/examples/quickstart

# The Python package, importable with PYTHONPATH=$(BUILD)/python (docs/guide.md, "From Python").
python: configure
	cmake --build $(BUILD) --target python -j $(JOBS)

# ctest runs JOBS tests at once: one OpenBLAS thread each (unless the environment says
# otherwise), or their threads wait for each other's cores.
test: build
	cd $(BUILD) && OPENBLAS_NUM_THREADS=$${OPENBLAS_NUM_THREADS:-1} ctest --output-on-failure -j $(JOBS)

bench: build
	bash bench/run.sh $(BUILD)

# Which BLAS LibTorch's matrix products run on, and how fast (see docs/guide.md).
blas-check: configure
	cmake --build $(BUILD) --target blas_check -j $(JOBS)
	./$(BUILD)/bench/blas_check

format:
	clang-format -i $$(git ls-files '*.h' '*.cpp')

clean:
	rm -rf $(BUILD)
