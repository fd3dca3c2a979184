// The C++ side of the Python package's checkpoint test (python/tests/test_checkpoint.py):
// loads a checkpoint the Python package wrote, takes `steps` Adam steps on the same problem and
// writes a checkpoint for Python to continue. The problem is the test's, written alike there.
//
//   python_checkpoint_peer IN STEPS OUT

#include <downhill/downhill.h>
#include <torch/torch.h>

#include <cstdlib>
#include <iostream>
#include <string>

int main(int argc, char** argv) {
  if (argc != 4) {
    std::cerr << "usage: python_checkpoint_peer IN STEPS OUT\n";
    return 2;
  }
  torch::set_num_threads(1);  // as the Python test: reductions split alike, so rounding agrees
  auto options = torch::TensorOptions().dtype(torch::kFloat64);
  auto u = torch::zeros({20, 3}, options.requires_grad(true));
  auto v = torch::zeros({3, 5}, options.requires_grad(true));
  const auto y = torch::sin(torch::arange(100, options)).reshape({20, 5});
  auto loss = [&](const downhill::Batch& batch) -> downhill::Evaluation {
    return (batch[0] - u.mm(v)).square().mean() + v.square().mean() / 10;
  };
  auto opt =
      downhill::build("adam", loss, {{"u", u}, {"v", v}}, downhill::Options().learning_rate(0.01));
  opt->load_checkpoint(argv[1]);
  for (int step = 0, steps = std::atoi(argv[2]); step < steps; ++step) opt->step({y});
  opt->save_checkpoint(argv[3]);
  return 0;
}
