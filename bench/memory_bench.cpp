// Peak resident memory of one Adam step: `memory_bench downhill|torch_optim [n]`.
// Allocates a parameter and its gradient, reads the peak resident set (VmHWM),
// makes one step (which allocates the optimizer's state), reads it again, and
// prints one JSON line. Run each side in its own process so that one side's
// freed memory cannot hide the other's peak.
#include <downhill/downhill.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>

namespace {

/// A field of /proc/self/status in KiB ("VmHWM", "VmRSS"), or -1.
int64_t status_kib(const std::string& field) {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind(field + ":", 0) == 0) return std::stoll(line.substr(field.size() + 1));
  }
  return -1;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string side = argc > 1 ? argv[1] : "";
  const int64_t n = argc > 2 ? std::stoll(argv[2]) : 16'000'000;
  if (side != "downhill" && side != "torch_optim") {
    std::cerr << "usage: memory_bench downhill|torch_optim [parameters]\n";
    return 2;
  }
  downhill::logger()->set_level(spdlog::level::off);
  torch::NoGradGuard no_grad;
  auto param = torch::randn({n});
  auto grad = torch::randn({n});
  grad.mul_(1e-2);  // in place: no temporary in the baseline peak
  const int64_t before = status_kib("VmHWM");

  if (side == "downhill") {
    auto opt = downhill::build("adam", {{"p", param}}, downhill::Options().learning_rate(1e-3));
    opt->apply({grad});
  } else {
    param.requires_grad_();
    param.mutable_grad() = grad;
    torch::optim::Adam opt({param}, torch::optim::AdamOptions(1e-3));
    opt.step();
  }
  const int64_t after = status_kib("VmHWM");

  const double tensor_kib = static_cast<double>(n) * sizeof(float) / 1024.0;
  std::printf(
      "{\"side\": \"%s\", \"parameters\": %lld, \"hwm_before_kib\": %lld, "
      "\"hwm_after_kib\": %lld, \"increase_kib\": %lld, \"increase_tensors\": %.3f}\n",
      side.c_str(), static_cast<long long>(n), static_cast<long long>(before),
      static_cast<long long>(after), static_cast<long long>(after - before),
      static_cast<double>(after - before) / tensor_kib);
  return 0;
}
