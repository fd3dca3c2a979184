// The first three updates of every algorithm, with every momentum mode, in float
// and double, fused and reference, against an independent scalar model of
// docs/guide.md's mathematics written here per element in double arithmetic; then the same with
// several parameters in one optimizer, with and without norm clipping.
#include <downhill/downhill.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <string>
#include <tuple>
#include <vector>

namespace {

constexpr int kElements = 4;
constexpr int kSteps = 3;
using Vector = std::array<double, kElements>;

enum class Momentum { kNone, kRegular, kNesterov };

// Non-default settings throughout, so that every one of them matters.
struct Settings {
  double learning_rate = 0.1;
  double rms_regularizer = 1e-3;
  double rms_halflife = 3;
  double beta1_halflife = 2;
  double beta2_halflife = 5;
  double rprop_increase = 1.5;
  double rprop_decrease = 0.4;
  double rprop_min_step = 0.05;
  double rprop_max_step = 0.2;
  double momentum = 0;
  bool nesterov = false;
};

const Vector kInitial = {0.5, -1.25, 2.0, 0.75};

// Chosen for RProp: element 0 keeps its sign (the step grows 0.1 → 0.15 → 0.225, clamped to
// max 0.2); element 1 flips (0.1·0.4 = 0.04, clamped to min 0.05; the flipped gradient is zeroed,
// so the next step sees s = 0); element 2 has a zero gradient in the middle; element 3 grows,
// then flips without hitting the clamp (0.15·0.4 = 0.06).
const std::array<Vector, kSteps> kGradients = {{
    {1.0, 1.0, -0.5, 1.0},
    {2.0, -1.0, 0.0, 0.7},
    {3.0, 1.0, 0.3, -1.0},
}};

// ESGD's Hessian-vector products for the same three updates.
const std::array<Vector, kSteps> kHessianVectorProducts = {{
    {0.5, -2.0, 1.5, 0.25},
    {1.0, 3.0, -0.5, 2.0},
    {-0.75, 0.4, 1.0, -1.5},
}};

double ewma_weight(double halflife) { return std::exp(-std::log(2.0) / halflife); }

double sign(double x) { return static_cast<double>((x > 0) - (x < 0)); }

// One element of one parameter, following the table of docs/guide.md's mathematics line by line.
class ScalarModel {
 public:
  ScalarModel(std::string algo, Settings settings, double initial)
      : algo_(std::move(algo)), s_(settings), p_(initial), rprop_step_(settings.learning_rate) {}

  double param() const { return p_; }
  double velocity() const { return w_; }

  void update(double g, double hv) {
    const double lr = s_.learning_rate, eps = s_.rms_regularizer;
    double u = 0;
    if (algo_ == "sgd" || algo_ == "nag") {
      u = lr * g;
    } else if (algo_ == "rprop") {
      const double agreement = g * g_prev_;
      const double factor =
          agreement > 0 ? s_.rprop_increase : (agreement < 0 ? s_.rprop_decrease : 1.0);
      rprop_step_ = std::min(s_.rprop_max_step, std::max(s_.rprop_min_step, rprop_step_ * factor));
      if (agreement < 0) g = 0;
      u = sign(g) * rprop_step_;
      g_prev_ = g;
    } else if (algo_ == "adagrad") {
      G_ += g * g;
      u = lr * g / std::sqrt(G_ + eps);
    } else if (algo_ == "rmsprop") {
      const double gamma = ewma_weight(s_.rms_halflife);
      f_ = gamma * f_ + (1 - gamma) * g;
      G_ = gamma * G_ + (1 - gamma) * g * g;
      u = lr * g / std::sqrt(G_ - f_ * f_ + eps);
    } else if (algo_ == "adadelta") {
      const double gamma = ewma_weight(s_.rms_halflife);
      G_ = gamma * G_ + (1 - gamma) * g * g;
      u = g * std::sqrt(X_ + eps) / std::sqrt(G_ + eps);
      X_ = gamma * X_ + (1 - gamma) * u * u;
    } else if (algo_ == "esgd") {
      const double gamma = ewma_weight(s_.rms_halflife);
      D_ = gamma * D_ + (1 - gamma) * hv * hv;
      u = lr * g / (std::sqrt(D_) + eps);
    } else if (algo_ == "adam" || algo_ == "adamw") {
      const double beta1 = ewma_weight(s_.beta1_halflife);
      const double beta2 = ewma_weight(s_.beta2_halflife);
      t_ += 1;
      m_ = beta1 * m_ + (1 - beta1) * g;
      v_ = beta2 * v_ + (1 - beta2) * g * g;
      u = lr * (m_ / (1 - std::pow(beta1, t_))) / (std::sqrt(v_ / (1 - std::pow(beta2, t_))) + eps);
      // AdamW's own default weight decay, 1e-2 (these settings leave it unset): lr·λ·p.
      if (algo_ == "adamw") u += lr * 1e-2 * p_;
    } else if (algo_ == "lion") {
      // Lion (Chen et al. 2023), with Adam's β settings: u = lr·sign(β₁m + (1−β₁)g);
      // m ← β₂m + (1−β₂)g.
      const double beta1 = ewma_weight(s_.beta1_halflife);
      const double beta2 = ewma_weight(s_.beta2_halflife);
      u = lr * sign(beta1 * m_ + (1 - beta1) * g);
      m_ = beta2 * m_ + (1 - beta2) * g;
    } else {
      ADD_FAILURE() << "no scalar model for " << algo_;
    }

    const bool nesterov = s_.nesterov || algo_ == "nag";
    const double mu = s_.momentum;
    if (mu == 0) {
      p_ -= u;
      return;
    }
    w_ = nesterov ? mu * mu * w_ - (1 + mu) * u : mu * w_ - u;
    p_ += w_;
  }

 private:
  std::string algo_;
  Settings s_;
  double p_;
  double w_ = 0;
  double g_prev_ = 0, rprop_step_;
  double G_ = 0, f_ = 0, X_ = 0, D_ = 0, m_ = 0, v_ = 0;
  double t_ = 0;
};

using MathCase = std::tuple<std::string, Momentum, torch::ScalarType, bool>;

std::string case_name(const testing::TestParamInfo<MathCase>& info) {
  const auto& [algo, momentum, dtype, fused] = info.param;
  const char* momentum_name = momentum == Momentum::kNone      ? "NoMomentum"
                              : momentum == Momentum::kRegular ? "Momentum"
                                                               : "Nesterov";
  return algo + "_" + momentum_name + "_" + (dtype == torch::kFloat ? "float" : "double") + "_" +
         (fused ? "fused" : "reference");
}

class AlgorithmMath : public testing::TestWithParam<MathCase> {};

// The value a tensor of `dtype` actually holds for `x`, so that the model sees what the
// library sees.
double representable(double x, torch::ScalarType dtype) {
  return dtype == torch::kFloat ? static_cast<double>(static_cast<float>(x)) : x;
}

torch::Tensor make_tensor(const Vector& values, torch::ScalarType dtype) {
  return torch::tensor(std::vector<double>(values.begin(), values.end()),
                       torch::TensorOptions().dtype(torch::kDouble))
      .to(dtype);
}

// The library's options for the model's settings.
downhill::Options options_of(const Settings& settings) {
  return downhill::Options()
      .learning_rate(settings.learning_rate)
      .rms_regularizer(settings.rms_regularizer)
      .rms_halflife(settings.rms_halflife)
      .beta1_halflife(settings.beta1_halflife)
      .beta2_halflife(settings.beta2_halflife)
      .rprop_increase(settings.rprop_increase)
      .rprop_decrease(settings.rprop_decrease)
      .rprop_min_step(settings.rprop_min_step)
      .rprop_max_step(settings.rprop_max_step)
      .momentum(settings.momentum)
      .nesterov(settings.nesterov);
}

TEST_P(AlgorithmMath, FirstThreeUpdatesMatchDesignFormulas) {
  const auto& [algo, momentum, dtype, fused] = GetParam();
  Settings settings;
  settings.momentum = momentum == Momentum::kNone ? 0.0 : 0.9;
  settings.nesterov = momentum == Momentum::kNesterov;

  auto options = options_of(settings).fused(fused);

  auto x = make_tensor(kInitial, dtype);
  auto opt = downhill::build(algo, {{"x", x}}, options);

  std::vector<ScalarModel> model;
  for (int e = 0; e < kElements; ++e) {
    model.emplace_back(algo, settings, representable(kInitial[e], dtype));
  }

  const double tolerance = dtype == torch::kFloat ? 1e-5 : 1e-12;
  for (int step = 0; step < kSteps; ++step) {
    const auto grad = make_tensor(kGradients[step], dtype);
    const auto hv = make_tensor(kHessianVectorProducts[step], dtype);
    ASSERT_TRUE(opt->apply({grad}, {hv}));
    for (int e = 0; e < kElements; ++e) {
      model[e].update(representable(kGradients[step][e], dtype),
                      representable(kHessianVectorProducts[step][e], dtype));
    }

    const auto actual = x.to(torch::kDouble);
    for (int e = 0; e < kElements; ++e) {
      const double expected = model[e].param();
      EXPECT_NEAR(actual[e].item<double>(), expected, tolerance * std::max(1.0, std::abs(expected)))
          << "parameter element " << e << " after update " << step + 1;
    }

    if (settings.momentum > 0) {
      torch::Tensor velocity;
      for (const auto& [name, tensor] : opt->state()) {
        if (name == "x.velocity") velocity = tensor.to(torch::kDouble);
      }
      ASSERT_TRUE(velocity.defined()) << "state() has no x.velocity";
      for (int e = 0; e < kElements; ++e) {
        const double expected = model[e].velocity();
        EXPECT_NEAR(velocity[e].item<double>(), expected,
                    tolerance * std::max(1.0, std::abs(expected)))
            << "velocity element " << e << " after update " << step + 1;
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    AllAlgorithms, AlgorithmMath,
    testing::Combine(testing::ValuesIn(downhill::builtin_algorithm_names()),
                     testing::Values(Momentum::kNone, Momentum::kRegular, Momentum::kNesterov),
                     testing::Values(torch::kFloat, torch::kDouble), testing::Bool()),
    case_name);

// Several parameters of different shapes and dtypes in one optimizer, each with gradients (and
// ESGD products) of its own, so that state, velocity or a clipping norm that leaked from one
// parameter to another would show. "d" has the dtype and element count of "a", so a mix-up
// between those two cannot be stopped by a shape check and must show in the numbers.
struct MultiParam {
  std::string name;
  std::vector<int64_t> shape;
  torch::ScalarType dtype;
  std::vector<double> initial;
  std::array<std::vector<double>, kSteps> gradients;
  std::array<std::vector<double>, kSteps> hvs;
};

// Gradient norms per update: a 1.80, 2.34, 3.33; b 2.64, 1.66, 2.20; c 0.4, 1.2, 0.7;
// d 2.51, 1.51, 2.27. With max_gradient_norm 2, clipping bites for a in updates 2 and 3,
// for b and d in updates 1 and 3, never for c, and no norm is within 0.15 of the threshold.
constexpr double kMultiMaxNorm = 2.0;

const std::vector<MultiParam>& multi_params() {
  static const std::vector<MultiParam> params = {
      {"a",
       {2, 2},
       torch::kFloat,
       {0.5, -1.25, 2.0, 0.75},
       {{{1.0, 1.0, -0.5, 1.0}, {2.0, -1.0, 0.0, 0.7}, {3.0, 1.0, 0.3, -1.0}}},
       {{{0.5, -2.0, 1.5, 0.25}, {1.0, 3.0, -0.5, 2.0}, {-0.75, 0.4, 1.0, -1.5}}}},
      {"b",
       {3},
       torch::kDouble,
       {-0.4, 1.5, 0.25},
       {{{-0.3, 0.8, 2.5}, {-0.6, -0.4, 1.5}, {0.2, 0.9, -2.0}}},
       {{{1.2, -0.3, 0.8}, {-0.5, 2.0, 0.1}, {0.9, 0.6, -1.4}}}},
      {"c", {}, torch::kFloat, {1.75}, {{{0.4}, {-1.2}, {-0.7}}}, {{{0.7}, {-1.1}, {0.3}}}},
      {"d",
       {4},
       torch::kFloat,
       {-0.6, 0.3, 1.1, -2.0},
       {{{0.25, -2.0, 1.5, -0.1}, {0.5, 1.0, -1.0, -0.2}, {-0.75, -0.5, 2.0, 0.6}}},
       {{{-0.2, 1.6, 0.5, -0.9}, {1.3, -0.7, 2.2, 0.4}, {0.05, 1.0, -0.6, 1.8}}}},
  };
  return params;
}

torch::Tensor make_shaped(const std::vector<double>& values, const MultiParam& param) {
  return torch::tensor(values, torch::TensorOptions().dtype(torch::kDouble))
      .to(param.dtype)
      .reshape(param.shape)
      .contiguous();
}

using MultiCase = std::tuple<std::string, Momentum, bool, bool>;

std::string multi_case_name(const testing::TestParamInfo<MultiCase>& info) {
  const auto& [algo, momentum, fused, clip] = info.param;
  const char* momentum_name = momentum == Momentum::kNone      ? "NoMomentum"
                              : momentum == Momentum::kRegular ? "Momentum"
                                                               : "Nesterov";
  return algo + "_" + momentum_name + "_" + (fused ? "fused" : "reference") + "_" +
         (clip ? "NormClip" : "NoClip");
}

class AlgorithmMathMultiParam : public testing::TestWithParam<MultiCase> {};

TEST_P(AlgorithmMathMultiParam, EachParameterFollowsItsOwnModel) {
  const auto& [algo, momentum, fused, clip] = GetParam();
  Settings settings;
  settings.momentum = momentum == Momentum::kNone ? 0.0 : 0.9;
  settings.nesterov = momentum == Momentum::kNesterov;
  auto options = options_of(settings).max_gradient_norm(clip ? kMultiMaxNorm : 0.0).fused(fused);

  const auto& specs = multi_params();
  std::vector<downhill::Params::Entry> entries;
  std::vector<torch::Tensor> tensors;
  std::vector<std::vector<ScalarModel>> models(specs.size());
  for (size_t i = 0; i < specs.size(); ++i) {
    tensors.push_back(make_shaped(specs[i].initial, specs[i]));
    entries.emplace_back(specs[i].name, tensors.back());
    for (double v : specs[i].initial) {
      models[i].emplace_back(algo, settings, representable(v, specs[i].dtype));
    }
  }
  auto opt = downhill::build(algo, entries, options);

  int checked = 0, clipped = 0;
  for (int step = 0; step < kSteps; ++step) {
    std::vector<torch::Tensor> grads, hvs;
    for (const auto& spec : specs) {
      grads.push_back(make_shaped(spec.gradients[step], spec));
      hvs.push_back(make_shaped(spec.hvs[step], spec));
    }
    ASSERT_TRUE(opt->apply(grads, hvs));

    std::vector<torch::Tensor> velocities(specs.size());
    for (const auto& [name, tensor] : opt->state()) {
      for (size_t i = 0; i < specs.size(); ++i) {
        if (name == specs[i].name + ".velocity") velocities[i] = tensor;
      }
    }
    for (size_t i = 0; i < specs.size(); ++i) {
      const auto& spec = specs[i];
      const auto dtype = spec.dtype;
      // Clipping by this parameter's own norm, computed from the values the library sees.
      double sum = 0;
      for (double g : spec.gradients[step]) {
        sum += representable(g, dtype) * representable(g, dtype);
      }
      const double scale =
          clip && std::sqrt(sum) > kMultiMaxNorm ? kMultiMaxNorm / std::sqrt(sum) : 1.0;
      clipped += scale < 1.0;
      const double tolerance = dtype == torch::kFloat ? 1e-5 : 1e-12;
      const auto actual = tensors[i].flatten().to(torch::kDouble);
      ASSERT_EQ(actual.numel(), static_cast<int64_t>(models[i].size())) << spec.name;
      ASSERT_EQ(settings.momentum > 0, velocities[i].defined()) << spec.name << ".velocity";
      for (size_t e = 0; e < models[i].size(); ++e) {
        auto& model = models[i][e];
        model.update(representable(spec.gradients[step][e], dtype) * scale,
                     representable(spec.hvs[step][e], dtype));
        const auto index = static_cast<int64_t>(e);
        EXPECT_NEAR(actual[index].item<double>(), model.param(),
                    tolerance * std::max(1.0, std::abs(model.param())))
            << spec.name << " element " << e << " after update " << step + 1;
        if (settings.momentum > 0) {
          EXPECT_NEAR(velocities[i].flatten()[index].item<double>(), model.velocity(),
                      tolerance * std::max(1.0, std::abs(model.velocity())))
              << spec.name << ".velocity element " << e << " after update " << step + 1;
        }
        ++checked;
      }
    }
  }
  EXPECT_EQ(checked, kSteps * (4 + 3 + 1 + 4));
  // Two updates each of a, b and d, as listed above kMultiMaxNorm.
  EXPECT_EQ(clipped, clip ? 6 : 0);
}

INSTANTIATE_TEST_SUITE_P(AllAlgorithms, AlgorithmMathMultiParam,
                         testing::Combine(testing::ValuesIn(downhill::builtin_algorithm_names()),
                                          testing::Values(Momentum::kNone, Momentum::kRegular,
                                                          Momentum::kNesterov),
                                          testing::Bool(), testing::Bool()),
                         multi_case_name);

// The model itself, checked on hand-worked RProp numbers (learning_rate 0.1, increase 1.5,
// decrease 0.4, steps clamped to [0.05, 0.2]), so that a wrong model cannot agree with a
// wrong library.
TEST(AlgorithmMathModel, RPropByHand) {
  Settings settings;
  std::array<ScalarModel, kElements> model = {
      ScalarModel("rprop", settings, 0.0), ScalarModel("rprop", settings, 0.0),
      ScalarModel("rprop", settings, 0.0), ScalarModel("rprop", settings, 0.0)};
  for (const auto& grads : kGradients) {
    for (int e = 0; e < kElements; ++e) model[e].update(grads[e], 0.0);
  }
  // Element 0: steps 0.1, 0.15, 0.2 (0.225 clamped), all against +g.
  EXPECT_NEAR(model[0].param(), -(0.1 + 0.15 + 0.2), 1e-15);
  // Element 1: 0.1 against +g; flip: step 0.05 (0.04 clamped), update 0; then 0.05 against +g.
  EXPECT_NEAR(model[1].param(), -(0.1 + 0.0 + 0.05), 1e-15);
  // Element 2: 0.1 against −g; zero gradient, no move; then 0.1 against +g.
  EXPECT_NEAR(model[2].param(), 0.1 - 0.1, 1e-15);
  // Element 3: 0.1 and 0.15 against +g; flip: step 0.06, update 0.
  EXPECT_NEAR(model[3].param(), -(0.1 + 0.15), 1e-15);
}

}  // namespace
