// Promises an adversarial user tested: no crash when an iterator outlives its range,
// Ctrl-C given back when the loop is left, each walk a new run that starts at its first
// step, monitors matched by name, parameters refused at build when they could not be
// updated whole (dtype, layout, overlap), and a checkpoint path checked before the run.
#include <downhill/downhill.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cmath>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>
#include <string>
#include <vector>

#include "test_support.h"

namespace {

using downhill::testing::LogCapture;
using downhill::testing::message_of;
using downhill::testing::ScopedLogLevel;
using ::testing::HasSubstr;

// SGD at rate 1 on the loss x (one scalar, from 0): each step lowers x by exactly 1, so
// x = −(steps so far); validation reports x too.
struct Counter {
  torch::Tensor x = torch::zeros({1}, torch::dtype(torch::kDouble).requires_grad(true));
  int steps = 0;
  downhill::Loss loss() {
    return [this](const downhill::Batch&) -> downhill::Evaluation {
      if (torch::GradMode::is_enabled()) ++steps;
      return x.sum();
    };
  }
  std::unique_ptr<downhill::Optimizer> build(downhill::Options options = {}) {
    return downhill::build("sgd", loss(), {{"x", x}},
                           options.learning_rate(1.0).patience(100).validate_every(100));
  }
};

// --- 1. Iterators that outlive or lose their range ---

TEST(IteratorLifetime, AnIteratorOfATemporaryRangeWalksOn) {
  const ScopedLogLevel quiet(spdlog::level::off);
  Counter counter;
  auto opt = counter.build(downhill::Options().max_updates(3));
  downhill::Dataset none{downhill::Batch{}};
  auto it = opt->iterate(none).begin();         // the range is gone after this line
  EXPECT_DOUBLE_EQ(it->first.at("loss"), 0.0);  // pass 1 saw x = 0
  ++it;
  EXPECT_DOUBLE_EQ(it->first.at("loss"), -1.0);
  ++it;
  EXPECT_DOUBLE_EQ((*it).first.at("loss"), -2.0);
  ++it;
  EXPECT_TRUE(it == downhill::Iteration::iterator());  // max_updates 3: the end
  EXPECT_EQ(counter.steps, 3);
}

TEST(IteratorLifetime, RangesMovedWhileTheirIteratorsWalk) {
  const ScopedLogLevel quiet(spdlog::level::off);
  Counter a, b;
  auto opt_a = a.build(downhill::Options().max_updates(2));
  auto opt_b = b.build(downhill::Options().max_updates(2));
  downhill::Dataset none_a{downhill::Batch{}}, none_b{downhill::Batch{}};
  std::vector<downhill::Iteration> ranges;
  ranges.push_back(opt_a->iterate(none_a));
  auto it = ranges[0].begin();
  for (int k = 0; k < 8; ++k) ranges.push_back(opt_b->iterate(none_b));  // reallocates
  ++it;
  EXPECT_DOUBLE_EQ(it->first.at("loss"), -1.0);
  ranges.clear();  // every range destroyed; the iterator still holds the run
  ++it;
  EXPECT_TRUE(it == downhill::Iteration::iterator());
  EXPECT_EQ(a.steps, 2);
}

TEST(IteratorLifetime, TheEndIteratorRefusesToBeRead) {
  downhill::Iteration::iterator end;
  EXPECT_THROW(*end, std::logic_error);
  EXPECT_THROW(++end, std::logic_error);
}

// --- 9. Ctrl-C goes back to the previous handler once the loop is left ---

volatile std::sig_atomic_t own_handler_calls = 0;
extern "C" void count_own_handler(int) { own_handler_calls = own_handler_calls + 1; }

class OwnSigintHandler : public ::testing::Test {
 protected:
  void SetUp() override {
    own_handler_calls = 0;
    struct sigaction action {};
    action.sa_handler = count_own_handler;
    sigemptyset(&action.sa_mask);
    sigaction(SIGINT, &action, &saved_);
  }
  void TearDown() override { sigaction(SIGINT, &saved_, nullptr); }
  struct sigaction saved_ {};
  ScopedLogLevel quiet_{spdlog::level::off};
};

TEST_F(OwnSigintHandler, ANamedRangeLeftByBreak) {
  Counter counter;
  auto opt = counter.build();
  downhill::Dataset none{downhill::Batch{}};
  auto range = opt->iterate(none);
  int items = 0;
  for (const auto& item : range) {
    (void)item;
    if (++items == 2) break;
  }
  std::raise(SIGINT);  // the range still exists, but nothing walks it
  EXPECT_EQ(own_handler_calls, 1);
  EXPECT_EQ(items, 2);
}

TEST_F(OwnSigintHandler, ANamedRangeLeftByAnException) {
  Counter counter;
  auto opt = counter.build();
  downhill::Dataset none{downhill::Batch{}};
  auto range = opt->iterate(none);
  try {
    for (const auto& item : range) {
      (void)item;
      throw std::runtime_error("leaving");
    }
  } catch (const std::runtime_error&) {
  }
  std::raise(SIGINT);
  EXPECT_EQ(own_handler_calls, 1);
}

TEST_F(OwnSigintHandler, ALoopThatEndedAndAKeptIterator) {
  Counter counter;
  auto opt = counter.build(downhill::Options().max_updates(1));
  downhill::Dataset none{downhill::Batch{}};
  auto range = opt->iterate(none);
  auto it = range.begin();
  ++it;  // max_updates 1: the loop ends here
  std::raise(SIGINT);
  EXPECT_EQ(own_handler_calls, 1);
}

TEST_F(OwnSigintHandler, WhileTheLoopRunsDownhillHandlesIt) {
  Counter counter;
  auto opt = counter.build();
  downhill::Dataset none{downhill::Batch{}};
  int items = 0;
  for (const auto& item : opt->iterate(none)) {
    (void)item;
    if (++items == 3) std::raise(SIGINT);  // between items, the walk still going
  }
  EXPECT_EQ(own_handler_calls, 0);
  EXPECT_EQ(items, 3);  // the next pass took its one step, then the loop stopped
  EXPECT_EQ(counter.steps, 4);
}

// --- 10. Each walk is a new run, starting at its first step ---

TEST(Runs, TwoRangesMadeBeforeEitherIsWalkedEachRunInFull) {
  const ScopedLogLevel quiet(spdlog::level::off);
  Counter counter;
  auto opt = counter.build(downhill::Options().max_updates(3));
  downhill::Dataset none{downhill::Batch{}};
  auto first = opt->iterate(none);
  auto second = opt->iterate(none);
  int first_items = 0, second_items = 0;
  for (const auto& item : first) {
    (void)item;
    ++first_items;
  }
  for (const auto& item : second) {
    (void)item;
    ++second_items;
  }
  EXPECT_EQ(first_items, 3);
  EXPECT_EQ(second_items, 3);
  // The loop's counters start afresh; the algorithm's state carries on (6 updates).
  EXPECT_EQ(opt->update_count(), 6);
  EXPECT_DOUBLE_EQ(counter.x.item<double>(), -6.0);
}

TEST(Runs, ARunThatStartsLaterSeesTheBestOfItsOwnValidationsOnly) {
  const ScopedLogLevel quiet(spdlog::level::off);
  Counter counter;
  auto opt = counter.build(downhill::Options().max_updates(2).validate_every(1));
  downhill::Dataset none{downhill::Batch{}};
  auto later = opt->iterate(none);
  opt->minimize(none);  // a whole run in between: x = −2, its best
  ASSERT_DOUBLE_EQ(counter.x.item<double>(), -2.0);
  for (const auto& item : later) (void)item;
  // Validations of x = −2, −3, −4: the last is the best, not a leftover of the other run.
  EXPECT_DOUBLE_EQ(counter.x.item<double>(), -4.0);
}

// --- 11. Monitors ---

TEST(MonitorNames, AMonitorNamedLossIsRefused) {
  auto x = torch::zeros({1}, torch::dtype(torch::kDouble).requires_grad(true));
  auto opt = downhill::build("sgd",
                             [&](const downhill::Batch&) -> downhill::Evaluation {
                               return {x.sum(), {{"loss", x.sum() * 0}}};
                             },
                             {{"x", x}});
  const auto message = message_of<std::invalid_argument>([&] { opt->step({}); });
  EXPECT_THAT(message, HasSubstr("a monitor is named 'loss', the name of the loss itself"));
  downhill::Dataset none{downhill::Batch{}};
  EXPECT_THROW(opt->evaluate(none), std::invalid_argument);
  EXPECT_DOUBLE_EQ(x.item<double>(), 0.0);
}

TEST(MonitorNames, TwoMonitorsOfOneNameAreRefused) {
  auto x = torch::zeros({1}, torch::dtype(torch::kDouble).requires_grad(true));
  auto opt = downhill::build("sgd",
                             [&](const downhill::Batch&) -> downhill::Evaluation {
                               return {x.sum(), {{"a", x.sum()}, {"a", x.sum()}}};
                             },
                             {{"x", x}});
  const auto message = message_of<std::invalid_argument>([&] { opt->step({}); });
  EXPECT_THAT(message, HasSubstr("two monitors are named 'a'"));
}

// Batches alternate the order of their monitors, and one monitor appears only in some:
// each is averaged by name over the batches that report it.
TEST(MonitorNames, EvaluateMatchesMonitorsByName) {
  auto x = torch::zeros({1}, torch::dtype(torch::kDouble).requires_grad(true));
  int batch = 0;
  auto loss = [&](const downhill::Batch&) -> downhill::Evaluation {
    const auto zero = x.sum() * 0;
    switch (batch++ % 3) {
      case 0:
        return {zero + 1, {{"a", zero + 1}, {"b", zero + 2}}};
      case 1:
        return {zero + 2, {{"b", zero + 4}, {"a", zero + 3}}};
      default:
        return {zero + 3, {{"c", zero + 10}, {"a", zero + 5}, {"b", zero + 6}}};
    }
  };
  auto opt = downhill::build("sgd", loss, {{"x", x}});
  downhill::Dataset three{downhill::Batch{}, downhill::DatasetOptions().iteration_size(3)};
  const auto means = opt->evaluate(three);
  // Each empty batch weighs 1: loss (1+2+3)/3, a (1+3+5)/3, b (2+4+6)/3, c 10 (one batch).
  ASSERT_EQ(means.size(), 4u);
  EXPECT_DOUBLE_EQ(means.at("loss"), 2.0);
  EXPECT_DOUBLE_EQ(means.at("a"), 3.0);
  EXPECT_DOUBLE_EQ(means.at("b"), 4.0);
  EXPECT_DOUBLE_EQ(means.at("c"), 10.0);
  EXPECT_EQ(means.begin()->first, "loss");
}

TEST(MonitorNames, TrainingPassesMatchByNameToo) {
  const ScopedLogLevel quiet(spdlog::level::off);
  auto x = torch::zeros({1}, torch::dtype(torch::kDouble).requires_grad(true));
  int step = 0;
  auto loss = [&](const downhill::Batch&) -> downhill::Evaluation {
    if (!torch::GradMode::is_enabled()) return x.sum();
    const auto zero = x.sum() * 0;
    return ++step % 2 ? downhill::Evaluation{x.sum(), {{"a", zero + 1}, {"b", zero + 2}}}
                      : downhill::Evaluation{x.sum(), {{"b", zero + 4}}};
  };
  auto opt = downhill::build("sgd", loss, {{"x", x}}, downhill::Options().max_updates(1));
  downhill::Dataset two{downhill::Batch{}, downhill::DatasetOptions().iteration_size(2)};
  int items = 0;
  for (const auto& [training, validation] : opt->iterate(two)) {
    ++items;
    EXPECT_DOUBLE_EQ(training.at("a"), 1.0);  // only the first batch reported it
    EXPECT_DOUBLE_EQ(training.at("b"), 3.0);
  }
  EXPECT_EQ(items, 1);
}

TEST(MonitorText, ExtremeMagnitudesStayShort) {
  downhill::Monitors monitors;
  monitors.set("loss", 1e100);
  monitors.set("tiny", 2.5e-7);
  monitors.set("usual", 0.123456789);
  monitors.set("zero", 0.0);
  monitors.set("negative", -3e12);
  EXPECT_EQ(monitors.to_string(),
            "loss=1.000000e+100 tiny=2.500000e-07 usual=0.123457 zero=0.000000 "
            "negative=-3.000000e+12");
}

// --- 5 and 6. Parameters the update could not handle whole are refused at build ---

TEST(ParamsRefusedAtBuild, DtypesOtherThanFloatAndDouble) {
  for (const auto dtype : {torch::kHalf, torch::kBFloat16}) {
    auto good = torch::zeros({2});
    auto half = torch::zeros({3}, dtype);
    const auto message = message_of<std::invalid_argument>([&] {
      downhill::build("adam", {{"w", good}, {"h", half}});
    });
    EXPECT_THAT(message, HasSubstr("parameter 'h' has dtype"));
    EXPECT_THAT(message, HasSubstr("allowed: Float (float32) or Double (float64)"));
  }
}

TEST(ParamsRefusedAtBuild, SparseAndMetaTensors) {
  const auto sparse = torch::eye(3).to_sparse();
  EXPECT_THAT(message_of<std::invalid_argument>([&] {
                downhill::build("sgd", {{"s", sparse}});
              }),
              HasSubstr("parameter 's' is a sparse tensor"));
  const auto meta = torch::empty({3}, torch::TensorOptions().device(torch::kMeta));
  EXPECT_THAT(message_of<std::invalid_argument>([&] {
                downhill::build("sgd", {{"m", meta}});
              }),
              HasSubstr("parameter 'm' is on the meta device"));
}

TEST(ParamsRefusedAtBuild, OverlappingViews) {
  auto base = torch::zeros({10});
  auto matrix = torch::zeros({4, 4});
  const std::vector<std::pair<std::string, downhill::Params>> overlapping = {
      {"slices 0-6 and 4-10", {{"a", base.slice(0, 0, 6)}, {"b", base.slice(0, 4, 10)}}},
      {"a view inside another", {{"a", base}, {"b", base.slice(0, 3, 5)}}},
      {"a row and a column", {{"row", matrix[1]}, {"column", matrix.select(1, 2)}}},
      {"a tensor and its reshape", {{"a", base}, {"b", base.view({2, 5})}}},
  };
  for (const auto& [what, params] : overlapping) {
    const auto message = message_of<std::invalid_argument>([&] { downhill::build("sgd", params); });
    EXPECT_THAT(message, HasSubstr("' overlap in memory")) << what;
    EXPECT_THAT(message, HasSubstr("'" + params.name(0) + "' and '" + params.name(1) + "'"))
        << what;
  }
  // Views that share a tensor but no element are fine: disjoint slices, interleaved
  // columns, and a row beside a column that misses it.
  const std::vector<downhill::Params> disjoint = {
      {{"a", base.slice(0, 0, 5)}, {"b", base.slice(0, 5, 10)}},
      {{"even", base.slice(0, 0, 10, 2)}, {"odd", base.slice(0, 1, 10, 2)}},
      {{"row0", matrix[0].slice(0, 0, 2)}, {"column3", matrix.select(1, 3).slice(0, 1, 4)}},
  };
  int built = 0;
  for (const auto& params : disjoint) {
    EXPECT_NO_THROW(downhill::build("sgd", params));
    ++built;
  }
  EXPECT_EQ(built, 3);
}

// --- 8. The checkpoint path is checked when the run starts ---

TEST(CheckpointPath, AMissingFolderIsRefusedBeforeAnyStep) {
  const ScopedLogLevel quiet(spdlog::level::off);
  for (const std::string path :
       {"/nonexistent-downhill-folder/run.ckpt", "/proc/self/definitely/missing.ckpt"}) {
    Counter counter;
    auto opt = counter.build(downhill::Options().max_updates(20).checkpoint(path));
    downhill::Dataset none{downhill::Batch{}};
    const auto message = message_of<std::invalid_argument>([&] { opt->minimize(none); });
    EXPECT_THAT(message, HasSubstr("checkpoint '" + path + "'"));
    EXPECT_THAT(message, HasSubstr("does not exist"));
    EXPECT_EQ(counter.steps, 0) << path;
  }
}

// The folder vanishes mid-run: the failed writes are logged, and the run still ends with
// its training and its best parameters.
TEST(CheckpointPath, AWriteThatFailsMidRunLosesNothing) {
  const auto folder =
      std::filesystem::temp_directory_path() / ("downhill_vanishing_" + std::to_string(::getpid()));
  std::filesystem::create_directories(folder);
  Counter counter;
  auto loss = counter.loss();
  auto vanishing = [&](const downhill::Batch& batch) -> downhill::Evaluation {
    if (counter.steps == 3) std::filesystem::remove_all(folder);
    return loss(batch);
  };
  auto opt = downhill::build(
      "sgd", vanishing, {{"x", counter.x}},
      downhill::Options().learning_rate(1.0).max_updates(6).validate_every(100).checkpoint(
          (folder / "run.ckpt").string()));
  downhill::Dataset none{downhill::Batch{}};
  LogCapture capture;
  opt->minimize(none);
  EXPECT_EQ(counter.steps, 6);
  EXPECT_DOUBLE_EQ(counter.x.item<double>(), -6.0);  // the closing validation's, the best
  EXPECT_THAT(capture.text(), HasSubstr("could not write the checkpoint"));
  std::filesystem::remove_all(folder);
}

// --- 7. Checkpoint loads are all or nothing ---

// A resumed run whose dataset no longer fits the saved order is refused before anything
// of the checkpoint is applied: parameters, counters and the global generator stay.
TEST(CheckpointLoads, ADatasetThatNoLongerFitsIsRefusedBeforeAnythingChanges) {
  const ScopedLogLevel quiet(spdlog::level::off);
  const auto folder =
      std::filesystem::temp_directory_path() / ("downhill_refit_" + std::to_string(::getpid()));
  std::filesystem::create_directories(folder);
  const auto path = (folder / "run.ckpt").string();
  auto run = [&](int64_t samples, int64_t passes, bool resume) {
    auto w = torch::zeros({1}, torch::dtype(torch::kDouble).requires_grad(true));
    downhill::Dataset data({torch::ones({samples, 1}, torch::kDouble)},
                           downhill::DatasetOptions().batch_size(2).name("train"));
    auto loss = [&](const downhill::Batch& batch) -> downhill::Evaluation {
      return (batch[0].squeeze(1) * w).sum();
    };
    auto options = downhill::Options().learning_rate(0.5).max_updates(passes).checkpoint(path);
    auto opt = downhill::build("adam", loss, {{"w", w}}, options.resume(resume));
    const auto rng_before = at::detail::getDefaultCPUGenerator().get_state();
    std::string message;
    try {
      opt->minimize(data);
    } catch (const std::invalid_argument& e) {
      message = e.what();
      EXPECT_DOUBLE_EQ(w.item<double>(), 0.0);
      EXPECT_EQ(opt->update_count(), 0);
      EXPECT_TRUE(torch::equal(at::detail::getDefaultCPUGenerator().get_state(), rng_before));
    }
    return message;
  };
  ASSERT_EQ(run(10, 2, false), "");  // 5 slices, checkpointed
  const auto message = run(12, 4, true);
  EXPECT_THAT(message, HasSubstr("checkpoint '" + path + "' is of another problem"));
  EXPECT_THAT(message, HasSubstr("dataset 'train' has 6 slices; the saved order (5 entries)"));
  std::filesystem::remove_all(folder);
}

// Two algorithms of one display name whose state differs in shape: the saved state
// tensor is refused by shape, not broadcast into the live one.
class ShapedState : public downhill::Optimizer {
 public:
  ShapedState(downhill::Params params, int64_t extra)
      : Optimizer("ShapedState", {}, std::move(params), downhill::Options()), extra_(extra) {}

 protected:
  std::vector<std::string> state_names() const override { return {"memory"}; }
  torch::Tensor initial_state(size_t, const torch::Tensor& param) const override {
    return torch::zeros({param.numel() + extra_}, param.options());
  }
  torch::Tensor compute_update(size_t, const torch::Tensor& grad, const torch::Tensor&,
                               std::vector<torch::Tensor>& state) override {
    state[0].narrow(0, 0, grad.numel()).add_(grad.flatten());
    return 0.1 * grad;
  }

 private:
  int64_t extra_;
};

TEST(CheckpointLoads, StateTensorsOfAnotherShapeAreRefused) {
  const auto path = (std::filesystem::temp_directory_path() /
                     ("downhill_state_shape_" + std::to_string(::getpid()) + ".ckpt"))
                        .string();
  auto a = torch::ones({3}, torch::kDouble);
  ShapedState writer({{"w", a}}, 0);
  ASSERT_TRUE(writer.apply({torch::ones({3}, torch::kDouble)}));
  writer.save_checkpoint(path);
  auto b = torch::full({3}, 5.0, torch::kDouble);
  ShapedState reader({{"w", b}}, 2);
  const auto message = message_of<std::invalid_argument>([&] { reader.load_checkpoint(path); });
  EXPECT_THAT(message, HasSubstr("state tensor 0 ('memory') of parameter 'w' is [3] Double "
                                 "there, [5] Double here"));
  EXPECT_DOUBLE_EQ(b[0].item<double>(), 5.0);  // nothing loaded
  EXPECT_EQ(reader.update_count(), 0);
  std::filesystem::remove(path);
}

// --- 12. Clipping at extreme magnitudes ---

// float32 gradients near the largest float: the norm is about 4.2e38·√k, its clipping
// scale below float's normal range. Clipped to norm 1, each of the k equal elements
// becomes 1/√k, and SGD at rate 1 moves the parameter by exactly that.
TEST(ExtremeClipping, Float32GradientsNearTheLargestFloat) {
  for (const bool fused : {true, false}) {
    for (const int64_t k : {2, 9, 100}) {
      auto x = torch::zeros({k});
      auto opt = downhill::build(
          "sgd", {{"x", x}},
          downhill::Options().learning_rate(1.0).max_gradient_norm(1.0).fused(fused));
      ASSERT_TRUE(opt->apply({torch::full({k}, 3e38f)}));
      const double expected = -1.0 / std::sqrt(static_cast<double>(k));
      for (int64_t i = 0; i < k; ++i) {
        EXPECT_NEAR(x[i].item<double>(), expected, 1e-6 * std::abs(expected))
            << (fused ? "fused" : "reference") << ", k = " << k << ", element " << i;
      }
    }
  }
}

// ESGD clips inside the autograd graph: at 1e200 its squared norm overflows double. The
// loss 1e200·(x0 + x1) has gradient (1e200, 1e200), clipped to (1/√2, 1/√2); that clipped
// gradient does not depend on x, so Hv = 0, D = 0, and u = lr·g/(0 + ε) with ε = 1.
TEST(ExtremeClipping, EsgdNormClippingOfHugeDoubleGradients) {
  for (const auto method : {"rop", "lop", "grad"}) {
    auto x = torch::zeros({2}, torch::dtype(torch::kDouble).requires_grad(true));
    auto opt = downhill::build(
        "esgd", [&](const downhill::Batch&) -> downhill::Evaluation { return 1e200 * x.sum(); },
        {{"x", x}},
        downhill::Options()
            .learning_rate(0.5)
            .rms_regularizer(1.0)
            .max_gradient_norm(1.0)
            .hv_method(method));
    opt->step({});
    EXPECT_NEAR(x[0].item<double>(), -0.5 / std::sqrt(2.0), 1e-12) << method;
    EXPECT_NEAR(x[1].item<double>(), -0.5 / std::sqrt(2.0), 1e-12) << method;
  }
}

// A flipped bit anywhere in the file — in a tensor's bytes, in the archive's structure, in
// the checksum itself — or a file cut short is refused, naming the path, before anything
// changes.
TEST(CheckpointLoads, DamagedFilesAreRefused) {
  const auto folder =
      std::filesystem::temp_directory_path() / ("downhill_damaged_" + std::to_string(::getpid()));
  std::filesystem::create_directories(folder);
  const auto good = (folder / "good.ckpt").string();
  auto w = torch::full({64}, 0.25, torch::kDouble);
  auto writer = downhill::build("adam", {{"w", w}});
  ASSERT_TRUE(writer->apply({torch::ones({64}, torch::kDouble)}));
  writer->save_checkpoint(good);
  std::ifstream in(good, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_GT(bytes.size(), 100u);

  auto target = torch::full({64}, 7.0, torch::kDouble);
  auto reader = downhill::build("adam", {{"w", target}});
  // Positions spread over the file, the last ones in the trailer.
  const std::vector<size_t> positions = {bytes.size() / 3, bytes.size() / 2, bytes.size() - 40,
                                         bytes.size() - 12, bytes.size() - 1};
  int refused = 0;
  for (const size_t position : positions) {
    std::string damaged = bytes;
    damaged[position] = static_cast<char>(damaged[position] ^ 0x10);
    const auto path = (folder / ("flipped_" + std::to_string(position) + ".ckpt")).string();
    std::ofstream(path, std::ios::binary) << damaged;
    const auto message = message_of<std::runtime_error>([&] { reader->load_checkpoint(path); });
    EXPECT_THAT(message, HasSubstr("checkpoint '" + path + "'")) << position;
    refused += message.empty() ? 0 : 1;
  }
  EXPECT_EQ(refused, 5);
  const auto cut = (folder / "cut.ckpt").string();
  std::ofstream(cut, std::ios::binary) << bytes.substr(0, bytes.size() - 3);
  EXPECT_THAT(message_of<std::runtime_error>([&] { reader->load_checkpoint(cut); }),
              HasSubstr("cut short or not a downhill checkpoint"));
  EXPECT_TRUE(torch::equal(target, torch::full({64}, 7.0, torch::kDouble)));
  EXPECT_EQ(reader->update_count(), 0);
  reader->load_checkpoint(good);  // the undamaged file loads
  EXPECT_TRUE(torch::equal(target, w));
  std::filesystem::remove_all(folder);
}

}  // namespace
