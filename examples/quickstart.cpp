// The seed's quick start: a sparse, low-rank factorization y ≈ u·v of a small
// data matrix, minimized with one call to downhill::minimize.
//
// The loss is the mean squared reconstruction error plus an L1 penalty that
// makes the coefficients u sparse and an L2 penalty that keeps the basis v small.
// The monitors err, |u|<0.1 and |v|<0.1 (and the gradient norms) are logged once
// per pass; with patience 0 the loop stops at the first validation that does not
// improve on the best one, and the best parameters are restored.
#include <downhill/downhill.h>
#include <torch/torch.h>

#include <iostream>

int main() {
  const int64_t A = 20, B = 5, K = 3;
  torch::manual_seed(0);

  // The parameters: coefficients u and basis v, updated in place by downhill.
  auto u = torch::randn({A, K}, torch::requires_grad());
  auto v = torch::randn({K, B}, torch::requires_grad());
  // The data: a rank-K matrix plus noise.
  auto y = torch::randn({A, K}).mm(torch::randn({K, B})) + torch::randn({A, B});

  auto loss = [&](const downhill::Batch& batch) -> downhill::Evaluation {
    auto err = (batch[0] - u.mm(v)).square();
    return {err.mean() + u.abs().mean() + (v * v).mean(),
            {{"err", err.mean()},
             {"|u|<0.1", (u.abs() < 0.1).to(torch::kFloat).mean()},
             {"|v|<0.1", (v.abs() < 0.1).to(torch::kFloat).mean()}}};
  };

  const double initial_loss = loss({y}).loss.item<double>();
  auto [train, valid] = downhill::minimize(loss, {{"u", u}, {"v", v}}, y,
                                           downhill::Options()
                                               .algo("rmsprop")
                                               .patience(0)
                                               .batch_size(A)         // y as a single batch
                                               .max_gradient_norm(1)  // no gradient explosion
                                               .learning_rate(0.1)
                                               .monitor_gradients(true));

  std::cout << "final training:   " << train.to_string() << "\n"
            << "final validation: " << valid.to_string() << "\n\n";
  torch::NoGradGuard no_grad;
  std::cout << "u =\n" << u << "\n\nv =\n" << v << "\n";

  // Training should at least halve the loss (it falls from about 6.6 to 1.7).
  const double final_loss = loss({y}).loss.item<double>();
  if (!(final_loss < initial_loss / 2)) {  // written so that a NaN fails too
    std::cerr << "quickstart: the loss fell only from " << initial_loss << " to " << final_loss
              << ", not 2-fold\n";
    return 1;
  }
  return 0;
}
