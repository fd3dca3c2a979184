// Which BLAS LibTorch's matrix products run on, and how fast: `make blas-check`.
//
// Debian's LibTorch links libblas.so.3, which Debian's alternatives point at the
// reference (netlib) BLAS unless an optimized one is installed; that BLAS makes every
// matrix product 13-30x slower. scripts/install-deps.sh installs OpenBLAS. This prints
// the library the process actually loaded and the speed of a product of the size of a
// small network's layer, so a user can see which one they have.
#include <dlfcn.h>
#include <link.h>
#include <torch/torch.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

namespace {

// Paths of the loaded shared objects whose file name mentions BLAS.
std::vector<std::string> loaded_blas_libraries() {
  std::vector<std::string> paths;
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void* out) {
        const std::string name = info->dlpi_name ? info->dlpi_name : "";
        const auto file = std::filesystem::path(name).filename().string();
        if (file.find("blas") != std::string::npos || file.find("mkl") != std::string::npos) {
          std::error_code error;
          const auto real = std::filesystem::canonical(name, error);
          static_cast<std::vector<std::string>*>(out)->push_back(error ? name : real.string());
        }
        return 0;
      },
      &paths);
  return paths;
}

std::string kind_of(const std::vector<std::string>& paths) {
  for (const auto& path : paths) {
    if (path.find("openblas") != std::string::npos) return "OpenBLAS";
    if (path.find("mkl") != std::string::npos) return "Intel MKL";
    if (path.find("blis") != std::string::npos) return "BLIS";
    if (path.find("atlas") != std::string::npos) return "ATLAS";
  }
  for (const auto& path : paths) {
    if (path.find("/blas/") != std::string::npos) return "reference BLAS (netlib), slow";
  }
  return "unknown";
}

// Median seconds of one (m x k)·(k x n) float32 product over `calls` calls.
double product_seconds(int64_t m, int64_t k, int64_t n, int calls) {
  const auto a = torch::randn({m, k});
  const auto b = torch::randn({k, n});
  auto c = torch::empty({m, n});
  torch::mm_out(c, a, b);  // warm up
  std::vector<double> samples;
  for (int i = 0; i < calls; ++i) {
    const auto start = std::chrono::steady_clock::now();
    torch::mm_out(c, a, b);
    samples.push_back(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  }
  std::nth_element(samples.begin(), samples.begin() + calls / 2, samples.end());
  return samples[calls / 2];
}

}  // namespace

int main() {
  torch::set_num_threads(1);
  const auto paths = loaded_blas_libraries();
  std::printf("BLAS in use: %s\n", kind_of(paths).c_str());
  for (const auto& path : paths) std::printf("  loaded: %s\n", path.c_str());
  // OpenBLAS names its build (version, target processor) through openblas_get_config.
  using ConfigFunction = const char* (*)();
  if (auto config = reinterpret_cast<ConfigFunction>(dlsym(RTLD_DEFAULT, "openblas_get_config"))) {
    std::printf("  OpenBLAS build: %s\n", config());
  }
  const char* threads = std::getenv("OPENBLAS_NUM_THREADS");
  using ThreadsFunction = int (*)();
  auto openblas_threads =
      reinterpret_cast<ThreadsFunction>(dlsym(RTLD_DEFAULT, "openblas_get_num_threads"));
  std::printf("  LibTorch threads: 1; OPENBLAS_NUM_THREADS=%s", threads ? threads : "unset");
  if (openblas_threads) std::printf(" (OpenBLAS threads: %d)", openblas_threads());
  std::printf("\n");
  if (openblas_threads && openblas_threads() > 1) {
    // OpenBLAS's threads are its own: LibTorch's set_num_threads does not bound them, and
    // on cores busy with other work they wait for each other (seen: 12 ms for a 50 us product).
    std::printf(
        "  note: on a busy machine, or beside other processes, set OPENBLAS_NUM_THREADS=1\n");
  }

  for (const auto& [m, k, n] : {std::array<int64_t, 3>{32, 256, 256}, {256, 256, 256}}) {
    const double seconds = product_seconds(m, k, n, 200);
    std::printf("float32 product %lldx%lld by %lldx%lld: %.1f us (%.1f GFLOP/s)\n",
                static_cast<long long>(m), static_cast<long long>(k), static_cast<long long>(k),
                static_cast<long long>(n), seconds * 1e6, 2.0 * m * k * n / seconds / 1e9);
  }
  return 0;
}
