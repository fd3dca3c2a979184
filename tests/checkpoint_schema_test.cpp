// The checkpoint's format versions, its identity (which group each parameter is in) and the
// checks a load makes of the values it reads: each refusal names what is wrong and changes
// nothing. Files are edited here entry by entry, with the checksum trailer recomputed as
// docs/architecture.md ("Checkpoints") describes it, so that only the edited value is wrong.
#include <downhill/downhill.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <spdlog/spdlog.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>
#include <torch/torch.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <limits>
#include <map>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "test_support.h"

namespace {

using downhill::testing::TemporaryFolder;
using ::testing::AllOf;
using ::testing::HasSubstr;

class Quiet : public ::testing::Test {
  downhill::testing::ScopedLogLevel quiet_{spdlog::level::off};
};

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// The archive followed by "DHCKSUM1" and its 64-bit FNV-1a hash, little-endian.
std::string with_trailer(std::string archive) {
  uint64_t hash = 14695981039346656037ull;
  for (const char c : archive) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 1099511628211ull;
  }
  archive += "DHCKSUM1";
  for (int byte = 0; byte < 8; ++byte) archive.push_back(static_cast<char>(hash >> (8 * byte)));
  return archive;
}

// Copies checkpoint `from` to `to` entry by entry, passing each through `edit` (which may
// change it, or make it None to leave it out), with a valid trailer.
void rewrite(const std::string& from, const std::string& to,
             const std::function<void(const std::string&, c10::IValue&)>& edit) {
  auto bytes = read_bytes(from);
  ASSERT_GT(bytes.size(), 16u);
  bytes.resize(bytes.size() - 16);
  torch::serialize::InputArchive in;
  in.load_from(bytes.data(), bytes.size());
  torch::serialize::OutputArchive out;
  for (const auto& key : in.keys()) {
    c10::IValue value;
    in.read(key, value);
    edit(key, value);
    if (value.isNone()) continue;
    if (value.isTensor()) {
      out.write(key, value.toTensor());
    } else {
      out.write(key, value);
    }
  }
  std::ostringstream archive;
  out.save_to(archive);
  std::ofstream(to, std::ios::binary) << with_trailer(archive.str());
}

// Sets entry `key` to `value`.
std::function<void(const std::string&, c10::IValue&)> set_entry(const std::string& key,
                                                                c10::IValue value) {
  return [key, value](const std::string& k, c10::IValue& v) {
    if (k == key) v = value;
  };
}

std::vector<torch::Tensor> copies(const std::vector<torch::Tensor>& tensors) {
  std::vector<torch::Tensor> out;
  for (const auto& t : tensors) out.push_back(t.clone());
  return out;
}

void expect_unchanged(const std::vector<torch::Tensor>& now,
                      const std::vector<torch::Tensor>& before) {
  ASSERT_EQ(now.size(), before.size());
  for (size_t i = 0; i < now.size(); ++i) {
    EXPECT_TRUE(torch::equal(now[i], before[i])) << "tensor " << i << " changed";
  }
}

std::vector<torch::Tensor> state_tensors(downhill::Optimizer& opt) {
  std::vector<torch::Tensor> out;
  for (const auto& [name, tensor] : opt.state()) out.push_back(tensor.detach().clone());
  return out;
}

// Loading `path` into `opt` throws E whose message has every one of `parts`, and changes
// none of `tensors`, the state or the update count.
template <class E>
void expect_refused(downhill::Optimizer& opt, const std::vector<torch::Tensor>& tensors,
                    const std::string& path, const std::vector<std::string>& parts) {
  const auto before = copies(tensors);
  const auto state_before = state_tensors(opt);
  const auto count_before = opt.update_count();
  try {
    opt.load_checkpoint(path);
    ADD_FAILURE() << "accepted " << path;
  } catch (const E& e) {
    for (const auto& part : parts) EXPECT_THAT(std::string(e.what()), HasSubstr(part));
  }
  expect_unchanged(tensors, before);
  expect_unchanged(state_tensors(opt), state_before);
  EXPECT_EQ(opt.update_count(), count_before);
}

std::string format_of(const std::string& path) {
  auto bytes = read_bytes(path);
  bytes.resize(bytes.size() - 16);
  torch::serialize::InputArchive in;
  in.load_from(bytes.data(), bytes.size());
  c10::IValue format;
  in.read("format", format);
  return format.toStringRef();
}

// ---- versions ----

TEST_F(Quiet, WritesFormatVersion3) {
  TemporaryFolder folder("format3");
  const auto path = folder.file("a.ckpt");
  auto w = torch::ones({3});
  downhill::build("sgd", {{"w", w}}, downhill::Options())->save_checkpoint(path);
  EXPECT_EQ(format_of(path), "downhill-checkpoint-3");
}

// tests/data/checkpoint_v1.ckpt was written by the last downhill of format 1
// (tests/data/write_checkpoint_v1.cpp): ADAGRAD with lr 0.1, ε 0.01 and momentum 0.5, two
// updates of w (float) and b (double) from known gradients. Its values, derived here from the
// guide's formulas (G ← G + g²; u = lr·g/sqrt(G + ε); w ← μw − u; p ← p + w), must load.
struct Adagrad {
  double p, G = 0, velocity = 0;
  void update(double g) {
    G += g * g;
    const double u = 0.1 * g / std::sqrt(G + 0.01);
    velocity = 0.5 * velocity - u;
    p += velocity;
  }
};

std::vector<Adagrad> fixture_elements() {
  std::vector<Adagrad> e = {{1.0}, {2.0}, {3.0}, {0.5}};  // w then b
  const double g1[] = {1, 1, 1, 2}, g2[] = {2, 0, -2, -1};
  for (size_t k = 0; k < e.size(); ++k) {
    e[k].update(g1[k]);
    e[k].update(g2[k]);
  }
  return e;
}

void expect_near_each(const torch::Tensor& actual, const std::vector<double>& expected,
                      double tolerance) {
  const auto values = actual.to(torch::kDouble).contiguous();
  ASSERT_EQ(values.numel(), static_cast<int64_t>(expected.size()));
  for (size_t k = 0; k < expected.size(); ++k) {
    EXPECT_NEAR(values[static_cast<int64_t>(k)].item<double>(), expected[k],
                tolerance * std::max(1.0, std::abs(expected[k])))
        << "element " << k;
  }
}

const std::string kFixtureV1 = std::string(DOWNHILL_TEST_DATA) + "/checkpoint_v1.ckpt";

TEST_F(Quiet, AFileOfFormat1LoadsExactlyWithOneGroup) {
  ASSERT_EQ(format_of(kFixtureV1), "downhill-checkpoint-1");
  auto w = torch::zeros({3});
  auto b = torch::zeros({1}, torch::kDouble);
  auto opt =
      downhill::build("adagrad", {{"w", w}, {"b", b}},
                      downhill::Options().learning_rate(0.1).momentum(0.5).rms_regularizer(0.01));
  opt->load_checkpoint(kFixtureV1);
  const auto e = fixture_elements();
  EXPECT_EQ(opt->update_count(), 2);
  expect_near_each(w, {e[0].p, e[1].p, e[2].p}, 1e-6);
  expect_near_each(b, {e[3].p}, 1e-12);
  std::map<std::string, torch::Tensor> state;
  for (const auto& [name, tensor] : opt->state()) state[name] = tensor;
  expect_near_each(state.at("w.G"), {e[0].G, e[1].G, e[2].G}, 1e-6);
  expect_near_each(state.at("w.velocity"), {e[0].velocity, e[1].velocity, e[2].velocity}, 1e-6);
  expect_near_each(state.at("b.G"), {e[3].G}, 1e-12);
  expect_near_each(state.at("b.velocity"), {e[3].velocity}, 1e-12);

  // And it carries on from there: a third update from the loaded state.
  auto next = fixture_elements();
  const double g3[] = {-1, 3, 0.5, 4};
  for (size_t k = 0; k < next.size(); ++k) next[k].update(g3[k]);
  ASSERT_TRUE(
      opt->apply({torch::tensor({-1.0f, 3.0f, 0.5f}), torch::tensor({4.0}, torch::kDouble)}));
  expect_near_each(w, {next[0].p, next[1].p, next[2].p}, 1e-6);
  expect_near_each(b, {next[3].p}, 1e-12);
}

TEST_F(Quiet, AFileOfFormat1IsRefusedNamingItsVersionWhereGroupsCouldDiffer) {
  auto w = torch::full({3}, 7.0);
  auto b = torch::full({1}, 7.0, torch::kDouble);
  auto opt =
      downhill::build("adagrad",
                      downhill::Params({{"w", w}})
                          .group({{"b", b}}, [](downhill::Options& o) { o.learning_rate(0.5); }),
                      downhill::Options().learning_rate(0.1).momentum(0.5).rms_regularizer(0.01));
  expect_refused<std::runtime_error>(*opt, {w, b}, kFixtureV1,
                                     {kFixtureV1, "format 1", "2 groups", "one group"});
}

TEST_F(Quiet, ANewerOrUnknownFormatIsRefusedNamingIt) {
  TemporaryFolder folder("newer");
  const auto path = folder.file("a.ckpt");
  auto w = torch::ones({3});
  auto opt = downhill::build("sgd", {{"w", w}}, downhill::Options());
  opt->save_checkpoint(path);
  const auto newer = folder.file("newer.ckpt");
  rewrite(path, newer, set_entry("format", c10::IValue(std::string("downhill-checkpoint-4"))));
  expect_refused<std::runtime_error>(*opt, {w}, newer,
                                     {newer, "format version 4", "versions 1 to 3", "newer"});
  for (const auto* tag : {"downhill-checkpoint-0", "downhill-checkpoint-x", "other"}) {
    SCOPED_TRACE(tag);
    const auto odd = folder.file("odd.ckpt");
    rewrite(path, odd, set_entry("format", c10::IValue(std::string(tag))));
    expect_refused<std::runtime_error>(*opt, {w}, odd, {odd, "format"});
  }
}

TEST_F(Quiet, ADirectoryIsRefusedNamingIt) {
  TemporaryFolder folder("directory");
  auto w = torch::ones({2});
  auto opt = downhill::build("sgd", {{"w", w}}, downhill::Options());
  expect_refused<std::runtime_error>(*opt, {w}, folder.path(), {folder.path(), "a directory"});
}

// ---- identity: the grouping ----

TEST_F(Quiet, AnotherGroupingIsRefusedNamingTheParameterAndBothGroupings) {
  TemporaryFolder folder("grouping");
  const auto path = folder.file("a.ckpt");
  auto set_lr = [](double lr) { return [lr](downhill::Options& o) { o.learning_rate(lr); }; };
  {
    auto w = torch::ones({2});
    auto b = torch::ones({2});
    downhill::build("sgd", downhill::Params({{"w", w}}).group({{"b", b}}, set_lr(0.5)),
                    downhill::Options())
        ->save_checkpoint(path);
  }
  // The same names, shapes and group count; b in the other group.
  auto w = torch::full({2}, 3.0);
  auto b = torch::full({2}, 3.0);
  auto opt = downhill::build(
      "sgd", downhill::Params({{"w", w}, {"b", b}}).group(downhill::Params(), set_lr(0.3)),
      downhill::Options());
  expect_refused<std::invalid_argument>(
      *opt, {w, b}, path,
      {"another problem", "'b' is in group 1 there, in group 0 here", "[w] [b]", "[w, b] []"});

  // A group frozen there and trainable here.
  const auto frozen_path = folder.file("frozen.ckpt");
  {
    auto w2 = torch::ones({2});
    auto b2 = torch::ones({2});
    downhill::build("sgd", downhill::Params({{"w", w2}}).frozen({{"b", b2}}), downhill::Options())
        ->save_checkpoint(frozen_path);
  }
  auto trainable = downhill::build(
      "sgd", downhill::Params({{"w", w}}).group({{"b", b}}, set_lr(0.5)), downhill::Options());
  expect_refused<std::invalid_argument>(*trainable, {w, b}, frozen_path,
                                        {"another problem", "[b, frozen]", "[b]"});
}

// ---- sense: values the optimizer cannot hold ----

struct SenseCase {
  std::string label;
  std::string key;
  c10::IValue value;
  std::vector<std::string> message;
};

TEST_F(Quiet, ValuesTheOptimizerCannotHoldAreRefusedNamingTheEntry) {
  TemporaryFolder folder("sense");
  const auto path = folder.file("a.ckpt");
  auto w = torch::tensor({1.0f, -2.0f, 3.0f}, torch::requires_grad());
  auto opt = downhill::build(
      "adam", [&](const downhill::Batch&) -> downhill::Evaluation { return (w * w).sum(); },
      {{"w", w}}, downhill::Options().accumulate(3).momentum(0.5));
  for (int batch = 0; batch < 4; ++batch) opt->step({});  // one update, then 1 batch of 3
  ASSERT_EQ(opt->update_count(), 1);
  opt->save_checkpoint(path);

  const auto nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<SenseCase> cases = {
      {"negative update count",
       "update_count",
       c10::IValue(int64_t{-5}),
       {"'update_count' is -5", "at least 0"}},
      {"a window fuller than accumulate",
       "window_count",
       c10::IValue(int64_t{7}),
       {"7 batches of a window of 3"}},
      {"a full window", "window_count", c10::IValue(int64_t{3}), {"3 batches of a window of 3"}},
      {"a NaN parameter",
       "param_0",
       c10::IValue(torch::tensor({1.0f, nan, 3.0f})),
       {"parameter 'w'", "not finite"}},
      {"an infinite velocity",
       "velocity_0",
       c10::IValue(torch::tensor({0.0f, std::numeric_limits<float>::infinity(), 0.0f})),
       {"velocity of parameter 'w'", "not finite"}},
      {"a negative Adam v",
       "state_0_1",
       c10::IValue(torch::tensor({0.1f, -0.25f, 0.1f})),
       {"'v'", "parameter 'w'", "-0.25", "at least 0"}},
      {"a best validation after the last",
       "best_validation",
       c10::IValue(int64_t{4}),
       {"best validation (4)", "last (0)"}},
      {"negative passes", "passes", c10::IValue(int64_t{-1}), {"'passes' is -1"}},
      {"an infinite run time",
       "seconds",
       c10::IValue(std::numeric_limits<double>::infinity()),
       {"'seconds'", "finite"}},
      {"a setting that is not a number",
       "group_settings_0",
       c10::IValue(torch::tensor({std::nan("")}, torch::kDouble)),
       {"group_settings_0"}},
      {"a missing entry", "update_count", c10::IValue(), {"lacks the entry 'update_count'"}},
      {"a stop of no name",
       "stop",
       c10::IValue(std::string("sideways")),
       {"'stop' is 'sideways'", "names no way a run stops"}},
      {"a format 3 file without why the run stopped",
       "stop",
       c10::IValue(),
       {"lacks the entry 'stop'"}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.label);
    const auto bad = folder.file("bad.ckpt");
    rewrite(path, bad, set_entry(c.key, c.value));
    auto parts = c.message;
    parts.push_back(bad);
    expect_refused<std::runtime_error>(*opt, {w.detach()}, bad, parts);
  }
  // The unedited file loads, and the window still holds its one batch: two more complete it.
  opt->load_checkpoint(path);
  opt->step({});
  EXPECT_EQ(opt->update_count(), 1);
  opt->step({});
  EXPECT_EQ(opt->update_count(), 2);
}

// ---- every entry mutated: refused by name, or loaded whole ----

// Replacements for an entry's value: of another type, out of range, not finite, or gone.
std::vector<std::pair<std::string, c10::IValue>> mutations_of(const c10::IValue& value) {
  std::vector<std::pair<std::string, c10::IValue>> out = {
      {"removed", c10::IValue()},
      {"an int", c10::IValue(int64_t{-3})},
      {"a huge int", c10::IValue(std::numeric_limits<int64_t>::max())},
      {"a double", c10::IValue(std::nan(""))},
      {"a string", c10::IValue(std::string("x,y\n"))},
      {"a float tensor", c10::IValue(torch::full({2, 2}, 7.0f))},
      {"a long tensor", c10::IValue(torch::tensor({int64_t{-1}, int64_t{1} << 40}))},
      {"an empty tensor", c10::IValue(torch::empty({0}))},
  };
  if (value.isTensor() && value.toTensor().numel() > 0) {
    const auto t = value.toTensor();
    if (at::isFloatingType(t.scalar_type())) {
      out.push_back({"NaN inside", c10::IValue(t.clone().fill_(std::nan("")))});
      out.push_back({"negated", c10::IValue(-t - 1)});
    }
    out.push_back({"as double", c10::IValue(t.to(torch::kDouble))});
    out.push_back({"cut", c10::IValue(t.flatten().narrow(0, 0, (t.numel() + 1) / 2).clone())});
  }
  return out;
}

TEST_F(Quiet, EveryEntryMutatedIsRefusedNamingThePathOrLoadsWhole) {
  TemporaryFolder folder("fuzz");
  const auto path = folder.file("run.ckpt");
  auto w = torch::tensor({0.5f, -1.0f}, torch::requires_grad());
  auto b = torch::tensor({2.0f}, torch::requires_grad());
  const auto x = torch::linspace(-1, 1, 8).reshape({8, 1});
  const auto y = 0.3 * x;
  auto loss = [&](const downhill::Batch& batch) -> downhill::Evaluation {
    return ((batch[0] * w.sum() + b - batch[1]).pow(2)).mean();
  };
  auto opt = downhill::build(
      "adam", loss,
      downhill::Params({{"w", w}})
          .group({{"b", b}}, [](downhill::Options& o) { o.learning_rate(0.05); }),
      downhill::Options().momentum(0.5).accumulate(2).max_updates(3).checkpoint(path));
  downhill::Dataset train(downhill::Batch{x, y}, downhill::DatasetOptions().batch_size(3));
  downhill::Dataset valid(downhill::Batch{x, y}, downhill::DatasetOptions().batch_size(4));
  for (const auto& pass : opt->iterate(train, &valid)) (void)pass;
  ASSERT_TRUE(std::filesystem::exists(path));

  std::vector<std::string> keys;
  {
    auto bytes = read_bytes(path);
    bytes.resize(bytes.size() - 16);
    torch::serialize::InputArchive in;
    in.load_from(bytes.data(), bytes.size());
    keys = in.keys();
  }
  ASSERT_GT(keys.size(), 40u);
  int refused = 0, loaded = 0;
  const auto bad = folder.file("mutated.ckpt");
  for (const auto& key : keys) {
    c10::IValue original;
    rewrite(path, folder.file("copy.ckpt"), [&](const std::string& k, c10::IValue& v) {
      if (k == key) original = v;
    });
    for (const auto& [label, replacement] : mutations_of(original)) {
      SCOPED_TRACE(key + " " + label);
      rewrite(path, bad, set_entry(key, replacement));
      auto w2 = torch::full({2}, 9.0f);
      auto b2 = torch::full({1}, 9.0f);
      auto target = downhill::build(
          "adam",
          downhill::Params({{"w", w2}})
              .group({{"b", b2}}, [](downhill::Options& o) { o.learning_rate(0.05); }),
          downhill::Options().momentum(0.5).accumulate(2));
      const auto state_before = state_tensors(*target);
      try {
        target->load_checkpoint(bad);
        ++loaded;
        EXPECT_TRUE(torch::isfinite(w2).all().item<bool>());
        continue;
      } catch (const std::exception& e) {
        const bool named = dynamic_cast<const std::runtime_error*>(&e) != nullptr ||
                           dynamic_cast<const std::invalid_argument*>(&e) != nullptr;
        EXPECT_TRUE(named) << "not runtime_error/invalid_argument: " << e.what();
        EXPECT_THAT(std::string(e.what()), HasSubstr(bad));
        ++refused;
      }
      // Refused: nothing changed.
      EXPECT_TRUE(torch::equal(w2, torch::full({2}, 9.0f)));
      EXPECT_TRUE(torch::equal(b2, torch::full({1}, 9.0f)));
      expect_unchanged(state_tensors(*target), state_before);
      EXPECT_EQ(target->update_count(), 0);
    }
  }
  std::printf("%zu entries: %d mutations refused, %d loaded\n", keys.size(), refused, loaded);
  EXPECT_GT(refused, 0);
  EXPECT_GT(loaded, 0);  // a harmless change (the run's seconds, a monitor's value) loads
}

}  // namespace
