// The update chain of an algorithm written as an Optimizer subclass (optimizer.h's protected
// hooks): clipping, the schedule, weight decay and momentum around compute_update. A subclass
// computing plain SGD (u = lr·g) must move its parameters and velocity exactly as the built-in
// "sgd" does with the same options and gradients, and as the formulas worked out here in plain
// double arithmetic.
#include <downhill/downhill.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <ostream>
#include <string>
#include <utility>
#include <vector>

namespace {

// Plain SGD as a subclass: u = lr·g; the chain around it is the library's.
class SubclassSgd : public downhill::Optimizer {
 public:
  SubclassSgd(downhill::Params params, downhill::Options options)
      : Optimizer("SubclassSGD", {}, std::move(params), std::move(options)) {}

 protected:
  torch::Tensor compute_update(size_t /*index*/, const torch::Tensor& grad,
                               const torch::Tensor& /*hv*/,
                               std::vector<torch::Tensor>& /*state*/) override {
    return options().learning_rate() * grad;
  }
};

torch::Tensor doubles(const std::vector<double>& values, std::vector<int64_t> shape) {
  return torch::tensor(values, torch::TensorOptions().dtype(torch::kDouble))
      .reshape(shape)
      .contiguous();
}

std::vector<double> values_of(const torch::Tensor& tensor) {
  const auto flat = tensor.detach().to(torch::kDouble).flatten().contiguous();
  return std::vector<double>(flat.data_ptr<double>(), flat.data_ptr<double>() + flat.numel());
}

// Two parameters, so that the global norm spans more than one tensor.
const std::vector<double> kStartA = {0.5, -1.0, 2.0};
const std::vector<double> kStartB = {1.0, -0.25, 0.75, -2.0};
const std::vector<int64_t> kShapeA = {3};
const std::vector<int64_t> kShapeB = {2, 2};

// Three updates' gradients: some elements beyond the element clip (1.5) below, and a global
// norm above the global-norm clip (1.0) below at every update.
const std::vector<std::vector<double>> kGradsA = {
    {0.3, -2.0, 1.2}, {-0.7, 0.4, 3.0}, {1.6, -0.1, -0.5}};
const std::vector<std::vector<double>> kGradsB = {
    {0.9, -0.6, 2.5, 0.1}, {-1.9, 0.2, -0.3, 0.8}, {0.05, 1.1, -2.2, 0.6}};

std::vector<torch::Tensor> gradients(size_t update) {
  return {doubles(kGradsA[update], kShapeA), doubles(kGradsB[update], kShapeB)};
}

double schedule(int64_t update) { return 1.0 / (1.0 + 0.5 * static_cast<double>(update)); }

struct Case {
  std::string name;
  downhill::Options options;
  // Whether the subclass must match the built-in SGD bit for bit: compute_update runs in the
  // same update chain as the built-in rule's tensor form. With a schedule, within 1e-15: the
  // built-in SGD takes f(t) in its learning rate (lr·f(t) rounded once, then times g), the
  // subclass's update lr·g is multiplied by f(t) after it.
  bool bit_identical = true;
};

std::ostream& operator<<(std::ostream& out, const Case& c) { return out << c.name; }

downhill::Options base() { return downhill::Options().learning_rate(0.1).fused(false); }

std::vector<Case> cases() {
  return {
      {"Momentum", base().momentum(0.9)},
      {"Nesterov", base().momentum(0.9).nesterov(true)},
      {"WeightDecay", base().weight_decay(0.3)},
      {"Schedule", base().learning_rate_schedule(schedule), false},
      {"GlobalNormAfterElementClip", base().max_gradient_elem(1.5).max_gradient_global_norm(1.0)},
      {"AllWithMomentum",
       base()
           .momentum(0.8)
           .weight_decay(0.3)
           .learning_rate_schedule(schedule)
           .max_gradient_elem(1.5)
           .max_gradient_global_norm(1.0),
       false},
      {"AllWithNesterov",
       base()
           .momentum(0.8)
           .nesterov(true)
           .weight_decay(0.3)
           .learning_rate_schedule(schedule)
           .max_gradient_elem(1.5)
           .max_gradient_global_norm(1.0),
       false},
  };
}

// One optimizer and the tensors it updates.
struct Trajectory {
  torch::Tensor a = doubles(kStartA, kShapeA);
  torch::Tensor b = doubles(kStartB, kShapeB);
  std::unique_ptr<downhill::Optimizer> opt;

  downhill::Params params() const { return {{"a", a}, {"b", b}}; }

  torch::Tensor state(const std::string& name) const {
    for (const auto& [key, tensor] : opt->state()) {
      if (key == name) return tensor;
    }
    ADD_FAILURE() << opt->name() << "'s state() has no " << name;
    return doubles({}, {0});
  }
};

// Bit for bit, or within 1e-15 (a few units in the last place of values below 2; a mistake in
// any stage moves them by far more).
void expect_same(const torch::Tensor& actual, const torch::Tensor& expected, bool bit_identical,
                 const std::string& what) {
  if (bit_identical) {
    EXPECT_TRUE(torch::equal(actual, expected)) << what << "\n" << actual << "\n" << expected;
    return;
  }
  const auto a = values_of(actual);
  const auto e = values_of(expected);
  ASSERT_EQ(a.size(), e.size()) << what;
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], e[i], 1e-15) << what << "[" << i << "]";
}

class SubclassPath : public testing::TestWithParam<Case> {};

// The subclass against the built-in SGD's tensor reference (fused(false)): the same options and
// gradients give the same parameters and velocities after every update, bit for bit
// (Case::bit_identical).
TEST_P(SubclassPath, MatchesBuiltinSgd) {
  const auto& options = GetParam().options;
  const bool exact = GetParam().bit_identical;
  Trajectory subclass, builtin;
  subclass.opt = std::make_unique<SubclassSgd>(subclass.params(), options);
  builtin.opt = downhill::build("sgd", builtin.params(), options);
  const bool momentum = options.momentum() > 0;
  for (size_t update = 0; update < kGradsA.size(); ++update) {
    SCOPED_TRACE("update " + std::to_string(update + 1));
    ASSERT_TRUE(subclass.opt->apply(gradients(update)));
    ASSERT_TRUE(builtin.opt->apply(gradients(update)));
    // Not a vacuous comparison: the parameters moved.
    EXPECT_FALSE(torch::equal(subclass.a, doubles(kStartA, kShapeA)));
    expect_same(subclass.a, builtin.a, exact, "a");
    expect_same(subclass.b, builtin.b, exact, "b");
    if (momentum) {
      expect_same(subclass.state("a.velocity"), builtin.state("a.velocity"), exact, "a.velocity");
      expect_same(subclass.state("b.velocity"), builtin.state("b.velocity"), exact, "b.velocity");
    }
  }
  EXPECT_EQ(subclass.opt->update_count(), builtin.opt->update_count());
}

INSTANTIATE_TEST_SUITE_P(EachChainStage, SubclassPath, testing::ValuesIn(cases()),
                         [](const auto& info) { return info.param.name; });

// The docs' formulas in plain double arithmetic, for every element of both parameters:
// element clip clamp(g, −e, e), then the global-norm factor min(1, c/‖g‖) over all parameters;
// u = lr·g; u ← u·f(t) + lr·f(t)·λ·p (p before the step); then regular momentum
// w ← μw − u, p ← p + w, or Nesterov w ← μ²w − (1+μ)u, p ← p + w.
struct Model {
  double lr = 0.1, mu = 0.8, decay = 0.3, clip_elem = 1.5, clip_global = 1.0;
  bool nesterov = false;
  std::vector<double> p, w;

  Model(bool nesterov_momentum) : nesterov(nesterov_momentum) {
    p = kStartA;
    p.insert(p.end(), kStartB.begin(), kStartB.end());
    w.assign(p.size(), 0.0);
  }

  void update(size_t t) {
    std::vector<double> g = kGradsA[t];
    g.insert(g.end(), kGradsB[t].begin(), kGradsB[t].end());
    double sum_squares = 0;
    for (auto& x : g) {
      x = std::clamp(x, -clip_elem, clip_elem);
      sum_squares += x * x;
    }
    const double global_factor = std::min(1.0, clip_global / std::sqrt(sum_squares));
    const double f = schedule(static_cast<int64_t>(t));
    for (size_t i = 0; i < p.size(); ++i) {
      const double u = lr * global_factor * g[i] * f + lr * f * decay * p[i];
      w[i] = nesterov ? mu * mu * w[i] - (1 + mu) * u : mu * w[i] - u;
      p[i] += w[i];
    }
  }
};

void expect_near_model(const Trajectory& run, const Model& model) {
  auto actual = values_of(run.a);
  const auto b = values_of(run.b);
  actual.insert(actual.end(), b.begin(), b.end());
  auto velocity = values_of(run.state("a.velocity"));
  const auto vb = values_of(run.state("b.velocity"));
  velocity.insert(velocity.end(), vb.begin(), vb.end());
  ASSERT_EQ(actual.size(), model.p.size());
  ASSERT_EQ(velocity.size(), model.w.size());
  // The model multiplies in another order: a few units in the last place.
  for (size_t i = 0; i < actual.size(); ++i) {
    EXPECT_NEAR(actual[i], model.p[i], 1e-14) << "parameter element " << i;
    EXPECT_NEAR(velocity[i], model.w[i], 1e-14) << "velocity element " << i;
  }
}

class SubclassFormulas : public testing::TestWithParam<bool> {};

TEST_P(SubclassFormulas, AllStagesTogetherFollowTheFormulas) {
  const bool nesterov = GetParam();
  Model model(nesterov);
  auto options = base()
                     .learning_rate(model.lr)
                     .momentum(model.mu)
                     .nesterov(nesterov)
                     .weight_decay(model.decay)
                     .learning_rate_schedule(schedule)
                     .max_gradient_elem(model.clip_elem)
                     .max_gradient_global_norm(model.clip_global);
  Trajectory run;
  run.opt = std::make_unique<SubclassSgd>(run.params(), options);
  for (size_t update = 0; update < kGradsA.size(); ++update) {
    SCOPED_TRACE("update " + std::to_string(update + 1));
    ASSERT_TRUE(run.opt->apply(gradients(update)));
    model.update(update);
    expect_near_model(run, model);
  }
}

INSTANTIATE_TEST_SUITE_P(RegularAndNesterov, SubclassFormulas, testing::Bool(),
                         [](const auto& info) { return info.param ? "Nesterov" : "Regular"; });

}  // namespace
