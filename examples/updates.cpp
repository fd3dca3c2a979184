// The seed's third interface: compute the gradients yourself and let downhill
// apply the updates (clipping, the algorithm and momentum happen in apply()).
// The optimizer is built without a loss; it only holds the parameters and the
// algorithm's state.
#include <downhill/downhill.h>
#include <torch/torch.h>

#include <cstdio>

int main() {
  const int64_t A = 20, B = 5, K = 3;
  torch::manual_seed(0);

  auto u = torch::randn({A, K}, torch::requires_grad());
  auto v = torch::randn({K, B}, torch::requires_grad());
  auto y = torch::randn({A, K}).mm(torch::randn({K, B})) + torch::randn({A, B});

  auto loss = [&](const torch::Tensor& data) {
    auto err = (data - u.mm(v)).square();
    return err.mean() + u.abs().mean() + (v * v).mean();
  };

  auto raw = downhill::build("rmsprop", {{"u", u}, {"v", v}},
                             downhill::Options().max_gradient_norm(1).learning_rate(0.1));
  const double initial_loss = loss(y).item<double>();
  for (int i = 0; i < 100; ++i) {
    auto l = loss(y);
    std::printf("%3d %f\n", i + 1, l.item<double>());  // the loss before this update
    raw->apply(torch::autograd::grad({l}, raw->tensors()));
  }
  const double final_loss = loss(y).item<double>();
  std::printf("final %f after %lld updates\n", final_loss,
              static_cast<long long>(raw->update_count()));

  // The 100 updates should at least halve the loss (it falls from about 6.6 to 1.7).
  if (!(final_loss < initial_loss / 2)) {  // written so that a NaN fails too
    std::fprintf(stderr, "updates: the loss fell only from %f to %f, not 2-fold\n", initial_loss,
                 final_loss);
    return 1;
  }
  return 0;
}
