// Per-parameter norm clipping on tensors of over a million elements, where the library's sum of
// squares is split across threads (at::parallel_reduce above 65 536 elements): the clipped
// update and the grad(NAME) monitor against a sum of squares written here as a plain loop in
// double, with one thread and with two (docs/guide.md, "The mathematics": clipping, SGD,
// momentum, ADAGRAD).
#include <ATen/Parallel.h>
#include <downhill/downhill.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace {

constexpr double kMaxNorm = 400;
constexpr double kLearningRate = 0.05;

// Puts the process-wide thread count back when the test ends.
class ScopedThreads {
 public:
  ScopedThreads() : saved_(at::get_num_threads()) {}
  ~ScopedThreads() { at::set_num_threads(saved_); }
  ScopedThreads(const ScopedThreads&) = delete;
  ScopedThreads& operator=(const ScopedThreads&) = delete;

 private:
  int saved_;
};

// Σ g² in double, one element after another.
template <typename T>
double plain_sum_of_squares(const torch::Tensor& t) {
  const T* data = t.data_ptr<T>();
  double sum = 0;
  for (int64_t i = 0; i < t.numel(); ++i) sum += static_cast<double>(data[i]) * data[i];
  return sum;
}

double plain_norm(const torch::Tensor& t) {
  return std::sqrt(t.scalar_type() == torch::kFloat ? plain_sum_of_squares<float>(t)
                                                    : plain_sum_of_squares<double>(t));
}

struct Param {
  std::string name;
  torch::Tensor value;     // starts at zero
  torch::Tensor gradient;  // constant: the loss is Σ value·gradient
};

// Three parameters, each past the threshold of the parallel reduction: a float matrix and a
// double vector of odd length (a ragged last chunk) whose norms exceed kMaxNorm (≈ 1000 and
// ≈ 819), and a float vector whose norm (≈ 329) does not.
std::vector<Param> make_params() {
  auto generator = at::detail::createCPUGenerator(31337);
  const auto f = torch::TensorOptions().dtype(torch::kFloat);
  const auto d = torch::TensorOptions().dtype(torch::kDouble);
  std::vector<Param> params;
  params.push_back({"a", torch::zeros({1000, 1000}, f), torch::randn({1000, 1000}, generator, f)});
  params.push_back(
      {"b", torch::zeros({(1 << 20) + 7}, d), 0.8 * torch::randn({(1 << 20) + 7}, generator, d)});
  params.push_back(
      {"c", torch::zeros({1200, 1000}, f), 0.3 * torch::randn({1200, 1000}, generator, f)});
  for (auto& p : params) p.value.requires_grad_(true);
  return params;
}

struct Case {
  std::string algo;
  double momentum;
  int steps;
  double regularizer;
  // The parameter after `steps` updates from zero, for a constant clipped gradient c.
  std::function<double(double c)> expected;
};

// Counts the elements of `value` that differ from expected(scale·gradient) by more than the
// relative tolerance; `checked` counts every element looked at.
template <typename T>
int64_t mismatches(const torch::Tensor& value, const torch::Tensor& gradient, double scale,
                   const Case& c, double tolerance, int64_t& checked) {
  const T* p = value.data_ptr<T>();
  const T* g = gradient.data_ptr<T>();
  int64_t bad = 0;
  for (int64_t i = 0; i < value.numel(); ++i, ++checked) {
    const double expected = c.expected(scale * static_cast<double>(g[i]));
    if (std::abs(static_cast<double>(p[i]) - expected) > tolerance * std::abs(expected) + 1e-30) {
      ++bad;
    }
  }
  return bad;
}

TEST(LargeTensors, PerParameterNormClippingMatchesPlainSumOfSquares) {
  ScopedThreads restore;
  const double mu = 0.9;
  const std::vector<Case> cases = {
      {"sgd", 0.0, 1, 1e-8, [](double c) { return -kLearningRate * c; }},
      // Regular momentum, the same gradient twice: w = −u, then w = −(1 + μ)u; p = w₁ + w₂.
      {"sgd", mu, 2, 1e-8, [mu](double c) { return -(2 + mu) * kLearningRate * c; }},
      // ADAGRAD's first update, with an ε that keeps it proportional to the clipping scale.
      {"adagrad", 0.0, 1, 0.25,
       [](double c) { return -kLearningRate * c / std::sqrt(c * c + 0.25); }},
  };
  int runs = 0;
  for (int threads : {1, 2}) {
    at::set_num_threads(threads);
    ASSERT_EQ(at::get_num_threads(), threads);
    for (const auto& c : cases) {
      SCOPED_TRACE(c.algo + " momentum " + std::to_string(c.momentum) + ", " +
                   std::to_string(threads) + " thread(s)");
      auto params = make_params();
      std::vector<downhill::Params::Entry> entries;
      for (const auto& p : params) entries.emplace_back(p.name, p.value);
      auto loss = [&params](const downhill::Batch&) -> downhill::Evaluation {
        auto total = (params[0].value * params[0].gradient).sum().to(torch::kDouble);
        for (size_t i = 1; i < params.size(); ++i) {
          total = total + (params[i].value * params[i].gradient).sum().to(torch::kDouble);
        }
        return total;
      };
      auto opt = downhill::build(c.algo, loss, entries,
                                 downhill::Options()
                                     .learning_rate(kLearningRate)
                                     .momentum(c.momentum)
                                     .rms_regularizer(c.regularizer)
                                     .max_gradient_norm(kMaxNorm)
                                     .monitor_gradients(true));
      std::vector<double> norms;
      for (const auto& p : params) norms.push_back(plain_norm(p.gradient));
      ASSERT_GT(norms[0], kMaxNorm * 2);
      ASSERT_GT(norms[1], kMaxNorm * 1.5);
      ASSERT_LT(norms[2], kMaxNorm * 0.9);

      for (int step = 0; step < c.steps; ++step) {
        const auto monitors = opt->step({});
        for (size_t i = 0; i < params.size(); ++i) {
          EXPECT_NEAR(monitors.at("grad(" + params[i].name + ")"), norms[i], 1e-12 * norms[i])
              << params[i].name << ", step " << step;
        }
      }

      for (size_t i = 0; i < params.size(); ++i) {
        const auto& p = params[i];
        const double scale = std::min(1.0, kMaxNorm / norms[i]);
        int64_t checked = 0;
        const auto value = p.value.detach();
        const int64_t bad = p.value.scalar_type() == torch::kFloat
                                ? mismatches<float>(value, p.gradient, scale, c, 2e-6, checked)
                                : mismatches<double>(value, p.gradient, scale, c, 1e-13, checked);
        EXPECT_EQ(checked, p.value.numel()) << p.name;
        EXPECT_EQ(bad, 0) << p.name << ": " << bad << " of " << checked
                          << " elements differ from the update with clipping scale " << scale;
      }
      ++runs;
    }
  }
  EXPECT_EQ(runs, 6);
}

}  // namespace
