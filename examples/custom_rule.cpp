// Writing your own algorithm: Lion (Chen et al. 2023) as a rule, registered by name and then
// used like a built-in algorithm, here to fit least squares to noisy linear data.
//
// A rule is a class template over the value its body computes on: one float or double in the
// fused CPU kernel, a whole at::Tensor in the reference that runs on any device. downhill runs
// gradient clipping before the body and momentum after it, and keeps the rule's state.
#include <downhill/downhill.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <array>
#include <iostream>

// Lion's own settings, given to register_rule. Declared outside the rule template because the
// float, double and tensor versions of the rule must share one Settings type.
struct LionSettings {
  double beta1 = 0.9;   // weight of m in the update's direction
  double beta2 = 0.99;  // weight of m in its own running average
};

// Lion: u = lr·sign(β₁m + (1−β₁)g); m ← β₂m + (1−β₂)g.
template <typename V>
struct Lion {
  using Settings = LionSettings;
  static constexpr const char* name = "Lion";                 // what name() reports
  static constexpr std::array<const char*, 1> state = {"m"};  // state() lists "w.m"

  // Made once per update: every constant rounded once to V, so the fused kernel and the
  // tensor reference compute exactly the same numbers.
  V lr, beta1, rest1, beta2, rest2;
  Lion(const downhill::RuleContext& c, const Settings& s)
      : lr(c.constant<V>(c.learning_rate())),
        beta1(c.constant<V>(s.beta1)),
        rest1(c.constant<V>(1 - s.beta1)),
        beta2(c.constant<V>(s.beta2)),
        rest2(c.constant<V>(1 - s.beta2)) {}

  // g is the clipped gradient; the result u is the update (p ← p − u without momentum).
  V operator()(const V& g, std::array<V, 1>& s) const {
    auto& [m] = s;
    const V u = lr * downhill::lanes::sign(beta1 * m + rest1 * g);
    m = beta2 * m + rest2 * g;
    return u;
  }
};

int main() {
  // From here on, build("lion", ...) and Options().algo("lion") find it.
  downhill::register_rule<Lion>();

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
                         .algo("lion")
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
