#include "loop_state.h"

#include <downhill/dataset.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>

#include <sstream>
#include <stdexcept>

namespace downhill::detail {

namespace {

// The pass in progress: {steps, skipped}, {weight, then sum and weight of each monitor},
// and the monitors' names.
void write_pass(torch::serialize::OutputArchive& archive, const PassProgress& pass) {
  std::string names;
  std::vector<double> sums = {pass.weight};
  for (const auto& s : pass.sums) {
    names += s.name + '\n';
    sums.push_back(s.sum);
    sums.push_back(s.weight);
  }
  archive.write("pass_counts", to_tensor({pass.steps, pass.skipped}));
  archive.write("pass_sums", torch::tensor(sums, torch::kDouble));
  archive.write("pass_names", c10::IValue(names));
}

// Reads what write_pass() wrote; a checkpoint without it was written between passes.
void read_pass(torch::serialize::InputArchive& archive, PassProgress& pass) {
  torch::Tensor counts, sums;
  c10::IValue names;
  if (!archive.try_read("pass_counts", counts)) return;
  archive.read("pass_sums", sums);
  archive.read("pass_names", names);
  const auto steps_and_skipped = to_vector(counts);
  sums = sums.to(torch::kDouble).contiguous();
  const auto* values = sums.data_ptr<double>();
  std::istringstream lines(names.toStringRef());
  std::vector<PassProgress::Sum> named;
  std::string name;
  for (int64_t k = 1; k + 1 < sums.numel() && std::getline(lines, name); k += 2) {
    named.push_back({name, values[k], values[k + 1]});
  }
  if (steps_and_skipped.size() != 2 || sums.numel() < 1 ||
      static_cast<int64_t>(2 * named.size()) != sums.numel() - 1 || steps_and_skipped[0] < 0) {
    throw std::runtime_error("the pass in progress is malformed");
  }
  pass.steps = steps_and_skipped[0];
  pass.skipped = steps_and_skipped[1];
  pass.weight = values[0];
  pass.sums = std::move(named);
}

void write_monitors(torch::serialize::OutputArchive& archive, const Monitors& monitors,
                    const std::string& prefix = "validation") {
  std::string names;
  std::vector<double> values;
  for (const auto& [name, value] : monitors) {
    names += name + '\n';
    values.push_back(value);
  }
  archive.write(prefix + "_names", c10::IValue(names));
  archive.write(prefix + "_values",
                torch::tensor(values.empty() ? std::vector<double>{} : values, torch::kDouble));
}

Monitors read_monitors(torch::serialize::InputArchive& archive,
                       const std::string& prefix = "validation") {
  Monitors monitors;
  const auto values = read_tensor(archive, prefix + "_values");
  std::istringstream lines(read_value(archive, prefix + "_names").toStringRef());
  std::string name;
  for (int64_t k = 0; std::getline(lines, name) && k < values.numel(); ++k) {
    monitors.set(name, values[k].item<double>());
  }
  return monitors;
}

void write_dataset(torch::serialize::OutputArchive& archive, size_t index, const Dataset& data) {
  archive.write(archive_key("data_order", index), to_tensor(data.order()));
  archive.write(archive_key("data_position", index), c10::IValue(data.position()));
  if (data.options().generator()) {
    archive.write(archive_key("data_generator", index), data.options().generator()->get_state());
  }
}

}  // namespace

void LoopState::keep_best(const Params& params) {
  torch::NoGradGuard no_grad;
  best_.clear();
  for (const auto& tensor : params.tensors()) best_.push_back(tensor.detach().clone());
}

void LoopState::resume_datasets(Dataset& train, Dataset* valid) {
  if (!pending_) return;
  auto restore = [](Dataset& data, const DatasetPosition& saved) {
    data.restore_position(saved.order, saved.position);
    if (saved.generator_state.defined() && data.options().generator()) {
      auto generator = *data.options().generator();  // a handle to the same generator
      generator.set_state(saved.generator_state);
    }
  };
  const auto& saved = *pending_;
  if (!saved.empty()) restore(train, saved[0]);
  if (saved.size() > 1 && valid) restore(*valid, saved[1]);
  pending_.reset();
}

void LoopState::save(torch::serialize::OutputArchive& archive, const Dataset* train,
                     const Dataset* valid) const {
  for (size_t i = 0; i < best_.size(); ++i) archive.write(archive_key("best", i), best_[i]);
  archive.write("passes", c10::IValue(counters.passes));
  archive.write("validations", c10::IValue(counters.validations));
  archive.write("best_validation", c10::IValue(counters.best_validation));
  archive.write("best_loss", c10::IValue(counters.best_loss));
  archive.write("consecutive_skipped", c10::IValue(counters.consecutive_skipped));
  archive.write("plateau_waiting", c10::IValue(counters.plateau_waiting));
  archive.write("plateau_cooldown", c10::IValue(counters.plateau_cooldown));
  write_monitors(archive, counters.last_validation);
  write_monitors(archive, counters.best_monitors, "best_validation");
  archive.write("best_pass", c10::IValue(counters.best_pass));
  archive.write("seconds", c10::IValue(counters.seconds));
  write_pass(archive, counters.pass);
  int64_t datasets = 0;
  if (train) write_dataset(archive, datasets++, *train);
  if (train && valid) write_dataset(archive, datasets++, *valid);
  archive.write("dataset_count", c10::IValue(datasets));
}

LoopSnapshot LoopState::read(torch::serialize::InputArchive& archive, const Mismatch& mismatch,
                             const Params& params, const Dataset* train,
                             const Dataset* valid) const {
  LoopSnapshot snapshot;
  for (size_t i = 0; i < params.size(); ++i) {
    torch::Tensor best;
    if (!archive.try_read(archive_key("best", i), best)) break;
    expect_like(best, params.tensor(i), "the best value of parameter '" + params.name(i) + "'",
                mismatch);
    snapshot.best.push_back(best);
  }
  auto& c = snapshot.counters;
  c.passes = read_value(archive, "passes").toInt();
  c.validations = read_value(archive, "validations").toInt();
  c.best_validation = read_value(archive, "best_validation").toInt();
  c.best_loss = read_value(archive, "best_loss").toDouble();
  c.consecutive_skipped = read_value(archive, "consecutive_skipped").toInt();
  c10::IValue plateau;  // absent in older checkpoints
  if (archive.try_read("plateau_waiting", plateau)) c.plateau_waiting = plateau.toInt();
  if (archive.try_read("plateau_cooldown", plateau)) c.plateau_cooldown = plateau.toInt();
  c.last_validation = read_monitors(archive);
  c10::IValue best_pass;  // absent in older checkpoints
  if (archive.try_read("best_pass", best_pass)) {
    c.best_pass = best_pass.toInt();
    c.best_monitors = read_monitors(archive, "best_validation");
  }
  c10::IValue seconds;
  if (archive.try_read("seconds", seconds)) c.seconds = seconds.toDouble();
  read_pass(archive, c.pass);
  const auto datasets = read_value(archive, "dataset_count").toInt();
  for (int64_t d = 0; d < datasets; ++d) {
    DatasetPosition position;
    position.order = to_vector(read_tensor(archive, archive_key("data_order", d)));
    position.position = read_value(archive, archive_key("data_position", d)).toInt();
    archive.try_read(archive_key("data_generator", d), position.generator_state);
    snapshot.datasets.push_back(std::move(position));
  }
  // The datasets of the run to continue, when known: they must fit the saved positions.
  const Dataset* given[] = {train, valid};
  for (size_t d = 0; d < snapshot.datasets.size() && d < 2; ++d) {
    if (!given[d]) continue;
    try {
      given[d]->check_position(snapshot.datasets[d].order, snapshot.datasets[d].position);
    } catch (const std::invalid_argument& e) {
      const std::string message = e.what();
      mismatch(message.rfind("downhill: ", 0) == 0 ? message.substr(10) : message);
    }
  }
  return snapshot;
}

void LoopState::commit(LoopSnapshot&& snapshot) {
  counters = std::move(snapshot.counters);
  best_ = std::move(snapshot.best);
  pending_ = std::move(snapshot.datasets);
}

}  // namespace downhill::detail
