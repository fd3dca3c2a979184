// Writing your own algorithm: Lion (Chen et al. 2023) as a rule, registered by name and then
// used like a built-in algorithm, here to fit least squares to noisy linear data. (Lion is
// also built in, as "lion": this is how such a rule is written.)
//
// The rule is in lion_rule.h: about 30 lines. downhill runs gradient clipping before its body
// and momentum after it, and keeps its state.
#include <downhill/downhill.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <iostream>

#include "lion_rule.h"

int main() {
  // From here on, build("my_lion", ...) and Options().algo("my_lion") find it. ("lion", the
  // rule's own name, is the built-in one's.)
  downhill::register_rule<Lion>("my_lion");

  // y = X·w_true + noise, 1000 samples of 10 features; the noise alone leaves a loss of 0.01.
  torch::manual_seed(0);
  const auto X = torch::randn({1000, 10});
  const auto y = X.mm(torch::randn({10, 1})) + 0.1 * torch::randn({1000, 1});
  auto w = torch::zeros({10, 1}, torch::requires_grad());
  auto loss = [&](const downhill::Batch& batch) -> downhill::Evaluation {
    return (batch[0].mm(w) - batch[1]).square().mean();
  };

  const double initial_loss = loss({X, y}).loss.item<double>();
  downhill::logger()->set_level(spdlog::level::warn);  // only the result line below
  downhill::minimize(loss, {{"w", w}}, downhill::Batch{X, y},
                     downhill::Options()
                         .algo("my_lion")
                         .learning_rate(0.01)  // Lion moves every weight by ±lr per update
                         .batch_size(100)
                         .min_improvement(0.01)  // stop once a validation gains < 1%
                         .max_updates(500));
  const double final_loss = loss({X, y}).loss.item<double>();
  std::cout << "Lion on least squares: loss " << initial_loss << " -> " << final_loss << "\n";

  // The loss starts near 22 and the noise alone leaves 0.01: below 0.05, Lion found the weights.
  if (!(final_loss < 0.05)) {  // written so that a NaN fails too
    std::cerr << "custom_rule: the loss fell only to " << final_loss << ", not below 0.05\n";
    return 1;
  }
  return 0;
}
