// The update chain (downhill/detail/update_chain.h): which stages a group's settings compose,
// in order; that each stage's one body gives the same numbers for an element, a tensor (the
// steps writing the live parameter and velocity in place) and a range; that the rule's
// constants are each group's own; and that an Optimizer subclass's begin_update runs once per
// update however many groups and dtypes the engine prepares.
#include <downhill/detail/update_chain.h>
#include <downhill/downhill.h>
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <array>
#include <memory>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace {

using downhill::detail::ChainSettings;
using downhill::detail::ClipElements;
using downhill::detail::compose_update_chain;
using downhill::detail::Interval;
using downhill::detail::MomentumStep;
using downhill::detail::NesterovStep;
using downhill::detail::PlainStep;
using downhill::detail::RuleStage;

// A stand-in rule: u = 2g; its one state slot s ← s + g.
template <typename V>
struct Doubling {
  static constexpr std::array<const char*, 1> state = {"s"};
  V operator()(const V& g, std::array<V, 1>& s) const {
    s[0] = s[0] + g;
    return g + g;
  }
};

template <typename V>
using DoublingStage = RuleStage<V, Doubling<V>>;

template <typename V>
const char* stage_name(const ClipElements<V>&) {
  return "clip";
}
template <typename V>
const char* stage_name(const downhill::detail::ScaleGradient<V>&) {
  return "scale";
}
template <typename V>
const char* stage_name(const DoublingStage<V>&) {
  return "rule";
}
template <typename V>
const char* stage_name(const downhill::detail::AdjustUpdate<V>&) {
  return "adjust";
}
template <typename V>
const char* stage_name(const PlainStep<V>&) {
  return "plain";
}
template <typename V>
const char* stage_name(const MomentumStep<V>&) {
  return "momentum";
}
template <typename V>
const char* stage_name(const NesterovStep<V>&) {
  return "nesterov";
}

// The stages the chain for `settings` runs, in order, e.g. "scale rule plain".
template <typename V>
std::string composed(const ChainSettings& settings) {
  std::string names;
  compose_update_chain<V>(DoublingStage<V>{}, settings, at::kDouble, [&](const auto& chain) {
    std::apply(
        [&](const auto&... stage) {
          ((names += (names.empty() ? "" : " ") + std::string(stage_name(stage))), ...);
        },
        chain.stages);
  });
  return names;
}

ChainSettings with(void (*change)(ChainSettings&)) {
  ChainSettings settings;
  change(settings);
  return settings;
}

TEST(ComposeUpdateChain, EachSettingChoosesItsStageInItsPlace) {
  const ChainSettings plain;
  // The element and range forms always scale (by 1 here); the tensor form only when it must.
  EXPECT_EQ(composed<float>(plain), "scale rule plain");
  EXPECT_EQ(composed<Interval<double>>(plain), "scale rule plain");
  EXPECT_EQ(composed<at::Tensor>(plain), "rule plain");
  EXPECT_EQ(composed<at::Tensor>(with([](ChainSettings& s) { s.grad_scale = 0.5; })),
            "scale rule plain");
  EXPECT_EQ(composed<double>(with([](ChainSettings& s) { s.clip_elem = 1; })),
            "clip scale rule plain");
  EXPECT_EQ(composed<at::Tensor>(with([](ChainSettings& s) { s.clip_elem = 1; })),
            "clip rule plain");
  EXPECT_EQ(composed<float>(with([](ChainSettings& s) { s.update_scale = 0.5; })),
            "scale rule adjust plain");
  EXPECT_EQ(composed<float>(with([](ChainSettings& s) { s.decay = 0.1; })),
            "scale rule adjust plain");
  EXPECT_EQ(composed<float>(with([](ChainSettings& s) { s.momentum = 0.9; })),
            "scale rule momentum");
  EXPECT_EQ(composed<float>(with([](ChainSettings& s) {
              s.momentum = 0.9;
              s.nesterov = true;
            })),
            "scale rule nesterov");
  // Nesterov without momentum is no momentum at all.
  EXPECT_EQ(composed<float>(with([](ChainSettings& s) { s.nesterov = true; })), "scale rule plain");
  EXPECT_EQ(composed<at::Tensor>(with([](ChainSettings& s) {
              s.clip_elem = 2;
              s.grad_scale = 0.5;
              s.update_scale = 0.5;
              s.decay = 0.25;
              s.momentum = 0.5;
              s.nesterov = true;
            })),
            "clip scale rule adjust nesterov");
}

TEST(ComposeUpdateChain, TheChainKnowsWhatItReadsAndWrites) {
  auto momentum = with([](ChainSettings& s) { s.momentum = 0.9; });
  compose_update_chain<float>(DoublingStage<float>{}, momentum, at::kFloat, [](const auto& chain) {
    using ChainT = std::decay_t<decltype(chain)>;
    EXPECT_EQ(ChainT::kSlots, 1u);
    EXPECT_TRUE(ChainT::kUsesVelocity);
    EXPECT_FALSE(ChainT::kHessian);
  });
  compose_update_chain<float>(DoublingStage<float>{}, ChainSettings{}, at::kFloat,
                              [](const auto& chain) {
                                using ChainT = std::decay_t<decltype(chain)>;
                                EXPECT_FALSE(ChainT::kUsesVelocity);
                              });
}

// Every stage at once, on values whose arithmetic is exact in float, worked out by hand:
//   g = 3, clipped to ±2 → 2, scaled by 0.5 → 1; the rule: u = 2, s = 1 + 1 = 2;
//   u·f + d·p = 2·0.5 + 0.25·4 = 2; Nesterov with μ = 0.5: w = 0.25·1 − 1.5·2 = −2.75;
//   p = 4 − 2.75 = 1.25.
ChainSettings every_stage() {
  return with([](ChainSettings& s) {
    s.clip_elem = 2;
    s.grad_scale = 0.5;
    s.update_scale = 0.5;
    s.decay = 0.25;
    s.momentum = 0.5;
    s.nesterov = true;
  });
}

TEST(UpdateChain, OneBodyForAnElement) {
  compose_update_chain<float>(DoublingStage<float>{}, every_stage(), at::kFloat,
                              [](const auto& chain) {
                                typename std::decay_t<decltype(chain)>::Values x;
                                x.g = 3;
                                x.p = 4;
                                x.w = 1;
                                x.state[0] = 1;
                                chain(x);
                                EXPECT_EQ(x.p, 1.25f);
                                EXPECT_EQ(x.w, -2.75f);
                                EXPECT_EQ(x.state[0], 2.0f);
                              });
}

TEST(UpdateChain, OneBodyForATensorWritingTheLiveParameterAndVelocityInPlace) {
  auto param = torch::full({5}, 4.0f);
  auto velocity = torch::ones({5});
  std::vector<torch::Tensor> slots = {torch::ones({5})};
  const auto grad = torch::full({5}, 3.0f);
  const auto* param_data = param.data_ptr<float>();
  const auto* velocity_data = velocity.data_ptr<float>();
  downhill::detail::ParamTensors target;
  target.param = param;
  target.grad = grad;
  target.velocity = &velocity;
  target.slots = &slots;
  compose_update_chain<at::Tensor>(
      DoublingStage<at::Tensor>{}, every_stage(), at::kFloat,
      [&](const auto& chain) { downhill::detail::run_reference(chain, target); });
  EXPECT_EQ(param.data_ptr<float>(), param_data);
  EXPECT_EQ(velocity.data_ptr<float>(), velocity_data);
  EXPECT_TRUE(torch::equal(param, torch::full({5}, 1.25f)));
  EXPECT_TRUE(torch::equal(velocity, torch::full({5}, -2.75f)));
  EXPECT_TRUE(torch::equal(slots[0], torch::full({5}, 2.0f)));
  EXPECT_TRUE(torch::equal(grad, torch::full({5}, 3.0f)));  // the caller's gradient stays
}

TEST(UpdateChain, OneBodyForARange) {
  using I = Interval<float>;
  compose_update_chain<I>(DoublingStage<I>{}, every_stage(), at::kFloat, [](const auto& chain) {
    typename std::decay_t<decltype(chain)>::Values x;
    x.g = I::exact(3, 3);
    x.p = I::exact(4, 4);
    x.w = I::exact(1, 1);
    x.state[0] = I::exact(1, 1);
    chain(x);
    ASSERT_TRUE(x.p.ok());
    EXPECT_LE(x.p.lo(), 1.25);
    EXPECT_GE(x.p.hi(), 1.25);
    EXPECT_LT(x.p.hi() - x.p.lo(), 1e-4);  // widened by roundings only
    EXPECT_LE(x.w.lo(), -2.75);
    EXPECT_GE(x.w.hi(), -2.75);
  });
}

// Two groups of one Adam, a float parameter in one and a double in the other, move exactly as
// two optimizers with one parameter each: each group's update uses its own constants.
TEST(RuleConstants, EachGroupUsesItsOwn) {
  const auto a0 = torch::tensor({0.5f, -1.0f, 2.0f});
  const auto b0 = torch::tensor({1.0, -0.25}, torch::kDouble);
  auto a = a0.clone(), b = b0.clone(), lone_a = a0.clone(), lone_b = b0.clone();
  auto group_b = [](downhill::Options& o) { o.learning_rate(0.01).beta1_halflife(3); };
  downhill::Params params{{"a", a}};
  params.group({{"b", b}}, group_b);
  auto both = downhill::build("adam", params, downhill::Options().learning_rate(0.1));
  auto only_a = downhill::build("adam", {{"a", lone_a}}, downhill::Options().learning_rate(0.1));
  downhill::Options b_options = downhill::Options().learning_rate(0.1);
  group_b(b_options);
  auto only_b = downhill::build("adam", {{"b", lone_b}}, b_options);
  for (int update = 0; update < 3; ++update) {
    const auto ga = torch::tensor({0.3f, -2.0f, 1.2f}) * (update + 1);
    const auto gb = torch::tensor({0.9, -0.6}, torch::kDouble) / (update + 1);
    ASSERT_TRUE(both->apply({ga, gb}));
    ASSERT_TRUE(only_a->apply({ga}));
    ASSERT_TRUE(only_b->apply({gb}));
    EXPECT_TRUE(torch::equal(a, lone_a)) << "update " << update + 1;
    EXPECT_TRUE(torch::equal(b, lone_b)) << "update " << update + 1;
  }
  EXPECT_FALSE(torch::equal(a, a0));
  EXPECT_FALSE(torch::equal(b, b0));
}

// u = lr·g, counting begin_update.
class CountingSgd : public downhill::Optimizer {
 public:
  explicit CountingSgd(downhill::Params params)
      : Optimizer("CountingSGD", {}, std::move(params), downhill::Options().learning_rate(0.5)) {}
  int begin_calls = 0;

 protected:
  void begin_update() override { ++begin_calls; }
  torch::Tensor compute_update(size_t, const torch::Tensor& grad, const torch::Tensor&,
                               std::vector<torch::Tensor>&) override {
    return options().learning_rate() * grad;
  }
};

TEST(SubclassChain, BeginUpdateRunsOncePerUpdateAcrossGroupsAndDtypes) {
  auto a = torch::zeros({2});
  auto b = torch::zeros({2}, torch::kDouble);
  auto c = torch::zeros({3});
  auto d = torch::zeros({1}, torch::kDouble);
  downhill::Params params{{"a", a}, {"b", b}};
  params.group({{"c", c}, {"d", d}}, [](downhill::Options& o) { o.momentum(0.5); });
  CountingSgd opt(params);
  const std::vector<torch::Tensor> grads = {torch::ones({2}), torch::ones({2}, torch::kDouble),
                                            torch::ones({3}), torch::ones({1}, torch::kDouble)};
  ASSERT_TRUE(opt.apply(grads));
  EXPECT_EQ(opt.begin_calls, 1);
  ASSERT_TRUE(opt.apply(grads));
  EXPECT_EQ(opt.begin_calls, 2);
  // Plain steps of 0.5 in group 0; in group 1 momentum 0.5: w = −0.5, then −0.75; p = −1.25.
  EXPECT_TRUE(torch::equal(a, torch::full({2}, -1.0f)));
  EXPECT_TRUE(torch::equal(b, torch::full({2}, -1.0, torch::kDouble)));
  EXPECT_TRUE(torch::equal(c, torch::full({3}, -1.25f)));
  EXPECT_TRUE(torch::equal(d, torch::full({1}, -1.25, torch::kDouble)));
}

}  // namespace
