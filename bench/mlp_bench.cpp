// The end-to-end network benchmark's C++ sides: `mlp_bench DIR SIDE`, one JSON line.
//
// The problem (written into DIR by `bench/mlp_peer.py prepare DIR`): an MLP 64-256-256-10
// on the digits data, Adam (lr 1e-3, betas 0.9/0.999, eps 1e-8), batches of 32, 30 epochs,
// every side from the same weights through the same batches. SIDE is one of
//   downhill     downhill::minimize with a Dataset that shuffles samples (its generator
//                seeded as the peers' orders were drawn), validating before and after;
//   apply        a hand-written loop over the same Dataset calling opt->apply(grads): the
//                same work as `downhill` without downhill's loop;
//   torch_optim  a hand-written LibTorch loop with torch::optim::Adam, gathering each batch
//                with index_select from the shared orders, validating before and after.
// Times: CPU seconds of the whole run (one LibTorch thread), and the wall-clock split of a
// step into data, forward, gradients, update and the rest of the loop.
#include <downhill/downhill.h>
#include <spdlog/spdlog.h>
#include <torch/torch.h>

#include <array>
#include <chrono>
#include <cmath>
#include <ctime>
#include <fstream>
#include <iostream>
#include <map>
#include <stdexcept>
#include <string>

namespace {

constexpr int64_t kEpochs = 30, kBatch = 32;
constexpr double kLearningRate = 1e-3, kBeta1 = 0.9, kBeta2 = 0.999, kEpsilon = 1e-8;
constexpr uint64_t kOrderSeed = 1;  // bench/mlp_peer.py's ORDER_SEED

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

double cpu_seconds() {
  timespec now{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &now);
  return static_cast<double>(now.tv_sec) + 1e-9 * static_cast<double>(now.tv_nsec);
}

// A raw little-endian array written by mlp_peer.py.
torch::Tensor read_array(const std::string& folder, const std::string& name,
                         std::vector<int64_t> shape, torch::ScalarType dtype) {
  auto out = torch::empty(shape, dtype);
  std::ifstream in(folder + "/" + name + ".bin", std::ios::binary);
  in.read(static_cast<char*>(out.data_ptr()), static_cast<std::streamsize>(out.nbytes()));
  if (!in || in.peek() != std::char_traits<char>::eof()) {
    throw std::runtime_error("cannot read " + folder + "/" + name +
                             ".bin; run mlp_peer.py prepare");
  }
  return out;
}

struct Problem {
  torch::Tensor x_train, y_train, x_valid, y_valid, orders;
  std::map<std::string, torch::Tensor> weights;
  explicit Problem(const std::string& folder) {
    x_train = read_array(folder, "x_train", {1437, 64}, torch::kFloat);
    y_train = read_array(folder, "y_train", {1437}, torch::kLong);
    x_valid = read_array(folder, "x_valid", {360, 64}, torch::kFloat);
    y_valid = read_array(folder, "y_valid", {360}, torch::kLong);
    orders = read_array(folder, "orders", {kEpochs, 1437}, torch::kLong);
    const std::map<std::string, std::vector<int64_t>> shapes = {
        {"l1.weight", {256, 64}}, {"l1.bias", {256}},       {"l2.weight", {256, 256}},
        {"l2.bias", {256}},       {"l3.weight", {10, 256}}, {"l3.bias", {10}}};
    for (const auto& [name, shape] : shapes) {
      weights[name] = read_array(folder, name, shape, torch::kFloat);
    }
  }
};

// The network, built one layer per statement so that construction order is fixed; the
// weights are then overwritten with the shared ones anyway.
struct Network {
  torch::nn::Linear l1{64, 256};
  torch::nn::Linear l2{256, 256};
  torch::nn::Linear l3{256, 10};

  explicit Network(const Problem& problem) {
    torch::NoGradGuard no_grad;
    for (const auto& [name, tensor] : params()) tensor.copy_(problem.weights.at(name));
  }
  downhill::Params params() const {
    return {{"l1.weight", l1->weight}, {"l1.bias", l1->bias},     {"l2.weight", l2->weight},
            {"l2.bias", l2->bias},     {"l3.weight", l3->weight}, {"l3.bias", l3->bias}};
  }
  torch::Tensor logits(const torch::Tensor& x) { return l3(torch::relu(l2(torch::relu(l1(x))))); }
  torch::Tensor loss(const torch::Tensor& x, const torch::Tensor& y) {
    return torch::nn::functional::cross_entropy(logits(x), y);
  }
  double accuracy(const Problem& problem) {
    torch::NoGradGuard no_grad;
    return logits(problem.x_valid)
        .argmax(1)
        .eq(problem.y_valid)
        .to(torch::kDouble)
        .mean()
        .item<double>();
  }
};

struct Split {
  double data = 0, forward = 0, gradients = 0, update = 0;
  // One step's clock readings: before the batch, the forward pass, the gradients and
  // the update, and after it.
  void add(const std::array<Clock::time_point, 5>& t) {
    auto seconds = [&](int k) { return std::chrono::duration<double>(t[k + 1] - t[k]).count(); };
    data += seconds(0);
    forward += seconds(1);
    gradients += seconds(2);
    update += seconds(3);
  }
};

struct Result {
  double cpu = 0, wall = 0, validation_loss = 0, accuracy = 0, last_epoch_loss = 0;
  int64_t steps = 0;
  Split split;
};

downhill::Dataset training_dataset(const Problem& problem) {
  return downhill::Dataset(
      {problem.x_train, problem.y_train},
      downhill::DatasetOptions().name("train").batch_size(kBatch).shuffle_samples(true).generator(
          at::detail::createCPUGenerator(kOrderSeed)));
}

// The Dataset must walk the very orders the other sides read from the file.
void check_same_order(const downhill::Dataset& data, const Problem& problem) {
  const auto first = torch::tensor(data.order(), torch::kLong);
  if (!torch::equal(first, problem.orders[0])) {
    throw std::runtime_error("the Dataset's sample order differs from the peers' first epoch");
  }
}

downhill::Options adam_options() {
  return downhill::Options()
      .algo("adam")
      .learning_rate(kLearningRate)
      .beta1_halflife(std::log(2.0) / -std::log(kBeta1))
      .beta2_halflife(std::log(2.0) / -std::log(kBeta2))
      .rms_regularizer(kEpsilon);
}

double validation_loss(Network& net, const Problem& problem) {
  torch::NoGradGuard no_grad;
  return net.loss(problem.x_valid, problem.y_valid).item<double>();
}

Result run_downhill(const Problem& problem) {
  Network net(problem);
  auto train = training_dataset(problem);
  check_same_order(train, problem);
  downhill::Dataset valid({problem.x_valid, problem.y_valid},
                          downhill::DatasetOptions().name("valid").batch_size(0));
  Result result;
  auto loss = [&](const downhill::Batch& batch) -> downhill::Evaluation {
    const bool training = torch::GradMode::is_enabled();
    const auto start = Clock::now();
    auto value = net.loss(batch[0], batch[1]);
    if (training) result.split.forward += seconds_since(start);
    return value;
  };
  const auto cpu = cpu_seconds();
  const auto start = Clock::now();
  const auto [training, last_validation] = downhill::minimize(
      loss, net.params(), train, valid,
      adam_options().max_updates(kEpochs).validate_every(kEpochs).patience(1000));
  result.wall = seconds_since(start);
  result.cpu = cpu_seconds() - cpu;
  result.steps = kEpochs * train.slice_count();
  // minimize() reports the last pass's pair; the final parameters' loss is evaluated here,
  // outside the timing, as the other sides report theirs.
  result.validation_loss = validation_loss(net, problem);
  result.last_epoch_loss = training.at("loss");
  result.accuracy = net.accuracy(problem);
  // Not measured apart here: gradients, update and the loop are the rest of the step.
  result.split.gradients = result.split.update = std::nan("");
  return result;
}

Result run_apply(const Problem& problem) {
  Network net(problem);
  auto train = training_dataset(problem);
  check_same_order(train, problem);
  const auto params = net.params();
  auto opt = downhill::build("adam", params, adam_options());
  const auto tensors = params.tensors();
  Result result;
  const auto cpu = cpu_seconds();
  const auto start = Clock::now();
  validation_loss(net, problem);
  double total = 0;
  for (int64_t epoch = 0; epoch < kEpochs; ++epoch) {
    total = 0;
    for (int64_t b = 0; b < train.slice_count(); ++b) {
      auto t0 = Clock::now();
      const auto batch = train.next();
      auto t1 = Clock::now();
      const auto loss = net.loss(batch[0], batch[1]);
      auto t2 = Clock::now();
      const auto grads = torch::autograd::grad({loss}, tensors);
      auto t3 = Clock::now();
      opt->apply(grads);
      auto t4 = Clock::now();
      total += loss.item<double>() * static_cast<double>(batch[0].size(0));
      result.split.add({t0, t1, t2, t3, t4});
      ++result.steps;
    }
  }
  result.validation_loss = validation_loss(net, problem);
  result.wall = seconds_since(start);
  result.cpu = cpu_seconds() - cpu;
  result.last_epoch_loss = total / static_cast<double>(problem.x_train.size(0));
  result.accuracy = net.accuracy(problem);
  return result;
}

Result run_torch_optim(const Problem& problem) {
  Network net(problem);
  const auto tensors = net.params().tensors();
  torch::optim::Adam opt(
      tensors, torch::optim::AdamOptions(kLearningRate).betas({kBeta1, kBeta2}).eps(kEpsilon));
  Result result;
  const auto cpu = cpu_seconds();
  const auto start = Clock::now();
  validation_loss(net, problem);
  double total = 0;
  const int64_t samples = problem.x_train.size(0);
  for (int64_t epoch = 0; epoch < kEpochs; ++epoch) {
    const auto order = problem.orders[epoch];
    total = 0;
    for (int64_t first = 0; first < samples; first += kBatch) {
      auto t0 = Clock::now();
      const auto index = order.narrow(0, first, std::min(kBatch, samples - first));
      const auto x = problem.x_train.index_select(0, index);
      const auto y = problem.y_train.index_select(0, index);
      auto t1 = Clock::now();
      const auto loss = net.loss(x, y);
      auto t2 = Clock::now();
      opt.zero_grad();
      loss.backward();
      auto t3 = Clock::now();
      opt.step();
      auto t4 = Clock::now();
      total += loss.item<double>() * static_cast<double>(index.size(0));
      result.split.add({t0, t1, t2, t3, t4});
      ++result.steps;
    }
  }
  result.validation_loss = validation_loss(net, problem);
  result.wall = seconds_since(start);
  result.cpu = cpu_seconds() - cpu;
  result.last_epoch_loss = total / static_cast<double>(samples);
  result.accuracy = net.accuracy(problem);
  return result;
}

std::string number(double value) {
  return std::isfinite(value) ? std::to_string(value) : std::string("null");
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::cerr << "usage: mlp_bench DIR downhill|apply|torch_optim (DIR from mlp_peer.py prepare)\n";
    return 2;
  }
  try {
    torch::set_num_threads(1);
    downhill::logger()->set_level(spdlog::level::warn);
    const Problem problem(argv[1]);
    const std::string side = argv[2];
    Result r;
    if (side == "downhill") {
      r = run_downhill(problem);
    } else if (side == "apply") {
      r = run_apply(problem);
    } else if (side == "torch_optim") {
      r = run_torch_optim(problem);
    } else {
      throw std::invalid_argument("unknown side '" + side + "'");
    }
    const double steps = static_cast<double>(r.steps), us = 1e6 / steps;
    const double measured =
        r.split.data + r.split.forward +
        (std::isfinite(r.split.gradients) ? r.split.gradients + r.split.update : 0);
    std::cout << "{\"side\": \"" << side << "\", \"cpu_seconds\": " << r.cpu
              << ", \"wall_seconds\": " << r.wall << ", \"steps\": " << r.steps
              << ", \"validation_loss\": " << number(r.validation_loss)
              << ", \"accuracy\": " << number(r.accuracy)
              << ", \"last_epoch_loss\": " << number(r.last_epoch_loss)
              << ", \"split_us_per_step\": {\"data\": " << number(r.split.data * us)
              << ", \"forward\": " << number(r.split.forward * us)
              << ", \"gradients\": " << number(r.split.gradients * us)
              << ", \"update\": " << number(r.split.update * us)
              << ", \"loop\": " << number((r.wall - measured) * us) << "}}" << std::endl;
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "mlp_bench: " << e.what() << "\n";
    return 1;
  }
}
