#include "loop_state.h"

#include <ATen/ATen.h>
#include <downhill/dataset.h>

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace downhill::detail {

namespace {

using Record = LoopSnapshot;
using LoopField = Field<LoopSnapshot, LoopContext>;

auto has(std::string key) {
  return [key = std::move(key)](const EntryReader& reader) { return reader.has(key); };
}

// Monitors as "<prefix>_names" (one per line) and "<prefix>_values".
LoopField monitors_field(std::string prefix, int64_t always_from, Monitors LoopCounters::*member) {
  return {prefix + "_names", always_from,
          [prefix, member](const Record& r, EntryWriter& out) {
            std::string names;
            std::vector<double> values;
            for (const auto& [name, value] : r.counters.*member) {
              names += name + '\n';
              values.push_back(value);
            }
            out.text(prefix + "_names", names);
            out.tensor(prefix + "_values",
                       at::tensor(values.empty() ? std::vector<double>{} : values, at::kDouble));
          },
          [prefix, member](EntryReader& in, const LoopContext&, Record& r) {
            std::istringstream lines(in.text(prefix + "_names"));
            const auto values = in.tensor(prefix + "_values").to(at::kDouble).contiguous();
            std::vector<std::string> names;
            for (std::string name; std::getline(lines, name);) names.push_back(name);
            if (values.dim() != 1 || values.numel() != static_cast<int64_t>(names.size())) {
              in.invalid("its entries '" + prefix + "_names' and '" + prefix +
                         "_values' do not hold one value per name");
            }
            Monitors monitors;
            for (size_t k = 0; k < names.size(); ++k) {
              monitors.set(names[k], values[static_cast<int64_t>(k)].item<double>());
            }
            r.counters.*member = std::move(monitors);
          },
          has(prefix + "_names")};
}

// The best parameters, once a validation has kept them.
void write_best(const Record& r, EntryWriter& out) {
  for (size_t i = 0; i < r.best.size(); ++i) out.tensor(archive_key("best", i), r.best[i]);
}

void read_best(EntryReader& in, const LoopContext& c, Record& r) {
  for (size_t i = 0; i < c.params.size(); ++i) {
    const auto key = archive_key("best", i);
    if (!in.has(key)) break;
    r.best.push_back(in.tensor_like(key, c.params.tensor(i),
                                    "the best value of parameter '" + c.params.name(i) + "'"));
  }
}

// The pass in progress: {steps, skipped}, {weight, then sum and weight of each monitor},
// and the monitors' names.
void write_pass(const Record& r, EntryWriter& out) {
  const auto& pass = r.counters.pass;
  std::string names;
  std::vector<double> sums = {pass.weight};
  for (const auto& s : pass.sums) {
    names += s.name + '\n';
    sums.push_back(s.sum);
    sums.push_back(s.weight);
  }
  out.integers("pass_counts", {pass.steps, pass.skipped});
  out.tensor("pass_sums", at::tensor(sums, at::kDouble));
  out.text("pass_names", names);
}

void read_pass(EntryReader& in, const LoopContext&, Record& r) {
  const auto counts = in.integers("pass_counts");
  const auto sums = in.tensor("pass_sums").to(at::kDouble).contiguous();
  std::istringstream lines(in.text("pass_names"));
  std::vector<std::string> names;
  for (std::string name; std::getline(lines, name);) names.push_back(name);
  if (counts.size() != 2 || counts[0] < 0 || counts[1] < 0 || counts[1] > counts[0] ||
      sums.dim() != 1 || sums.numel() != 1 + 2 * static_cast<int64_t>(names.size())) {
    in.invalid(
        "the pass in progress is malformed: 'pass_counts' must be {steps, skipped} with 0 <= "
        "skipped <= steps, and 'pass_sums' hold the weight, then a sum and a weight per name in "
        "'pass_names'");
  }
  const auto* values = sums.data_ptr<double>();
  auto& pass = r.counters.pass;
  pass.steps = counts[0];
  pass.skipped = counts[1];
  pass.weight = values[0];
  pass.sums.clear();
  for (size_t k = 0; k < names.size(); ++k) {
    pass.sums.push_back({names[k], values[1 + 2 * k], values[2 + 2 * k]});
  }
}

// The datasets' places in their walks: train, then valid.
void write_datasets(const Record& r, EntryWriter& out) {
  for (size_t d = 0; d < r.datasets.size(); ++d) {
    out.integers(archive_key("data_order", d), r.datasets[d].order);
    out.integer(archive_key("data_position", d), r.datasets[d].position);
    out.tensor(archive_key("data_generator", d), r.datasets[d].generator_state);
  }
  out.integer("dataset_count", static_cast<int64_t>(r.datasets.size()));
}

void read_datasets(EntryReader& in, const LoopContext& c, Record& r) {
  const auto datasets = in.integer("dataset_count", 0);
  if (datasets > 2) {
    in.invalid("its entry 'dataset_count' is " + std::to_string(datasets) +
               "; a checkpoint holds at most 2 datasets (train, valid)");
  }
  for (int64_t d = 0; d < datasets; ++d) {
    DatasetPosition position;
    position.order = in.integers(archive_key("data_order", d));
    position.position = in.integer(archive_key("data_position", d), 0);
    const auto generator = archive_key("data_generator", d);
    if (in.has(generator)) position.generator_state = in.generator_state(generator);
    r.datasets.push_back(std::move(position));
  }
  // The datasets of the run to continue, when known: they must fit the positions.
  const Dataset* given[] = {c.train, c.valid};
  for (size_t d = 0; d < r.datasets.size(); ++d) {
    if (!given[d]) continue;
    try {
      given[d]->check_position(r.datasets[d].order, r.datasets[d].position);
    } catch (const std::invalid_argument& e) {
      const std::string message = e.what();
      in.mismatch(message.rfind("downhill: ", 0) == 0 ? message.substr(10) : message);
    }
  }
}

// Counters that must agree with each other.
void check_counters(EntryReader& in, const LoopContext&, const Record& r) {
  const auto& c = r.counters;
  if (c.best_validation > c.validations) {
    in.invalid("its best validation (" + std::to_string(c.best_validation) +
               ") comes after its last (" + std::to_string(c.validations) + ")");
  }
  if (c.best_pass > c.passes) {
    in.invalid("its best pass (" + std::to_string(c.best_pass) +
               ") comes after the passes trained (" + std::to_string(c.passes) + ")");
  }
}

// Why the run stopped, by name (to_string(StopReason)).
void write_stop(const Record& r, EntryWriter& out) {
  out.text("stop", std::string(to_string(r.counters.stop)));
}

void read_stop(EntryReader& in, const LoopContext&, Record& r) {
  const std::string name = in.text("stop");
  // The reasons are numbered from kNotStopped (0) to kStepTolerance, the last.
  for (int code = 0; code <= static_cast<int>(StopReason::kStepTolerance); ++code) {
    const auto reason = static_cast<StopReason>(code);
    if (to_string(reason) == name) {
      r.counters.stop = reason;
      return;
    }
  }
  in.invalid("its entry 'stop' is '" + name + "', which names no way a run stops");
}

// A counter of LoopCounters, at least 0.
LoopField counter(const char* key, int64_t always_from, int64_t LoopCounters::*member) {
  return integer_field<Record, LoopContext>(
      key, always_from, [member](auto& r) -> auto& { return r.counters.*member; });
}

// The loop's checkpoint fields, in the order they are written.
const Schema<LoopSnapshot, LoopContext>& loop_schema() {
  static const Schema<LoopSnapshot, LoopContext> schema(
      {
          {"best", 1, write_best, read_best, has("best_0")},
          counter("passes", 1, &LoopCounters::passes),
          counter("validations", 1, &LoopCounters::validations),
          counter("best_validation", 1, &LoopCounters::best_validation),
          number_field<Record, LoopContext>(
              "best_loss", 1, [](auto& r) -> auto& { return r.counters.best_loss; }),
          counter("consecutive_skipped", 1, &LoopCounters::consecutive_skipped),
          counter("plateau_waiting", 2, &LoopCounters::plateau_waiting),
          counter("plateau_cooldown", 2, &LoopCounters::plateau_cooldown),
          monitors_field("validation", 1, &LoopCounters::last_validation),
          counter("best_pass", 2, &LoopCounters::best_pass),
          monitors_field("best_validation", 2, &LoopCounters::best_monitors),
          number_field<Record, LoopContext>(
              "seconds", 2, [](auto& r) -> auto& { return r.counters.seconds; }, 0.0),
          {"pass", 2, write_pass, read_pass, has("pass_counts")},
          {"datasets", 1, write_datasets, read_datasets, has("dataset_count")},
          {"stop", 3, write_stop, read_stop, has("stop")},
          monitors_field("closing", 3, &LoopCounters::closing_validation),
      },
      {check_counters});
  return schema;
}

}  // namespace

void LoopState::keep_best(const Params& params) {
  at::NoGradGuard no_grad;
  best_.clear();
  for (const auto& tensor : params.tensors()) best_.push_back(tensor.detach().clone());
}

DatasetPosition position_of(const Dataset& data) {
  DatasetPosition position;
  position.order = data.order();
  position.position = data.position();
  if (data.options().generator())
    position.generator_state = data.options().generator()->get_state();
  return position;
}

void put_back(Dataset& data, const DatasetPosition& saved) {
  data.restore_position(saved.order, saved.position);
  if (saved.generator_state.defined() && data.options().generator()) {
    auto generator = *data.options().generator();  // a handle to the same generator
    generator.set_state(saved.generator_state);
  }
}

void LoopState::resume_datasets(Dataset& train, Dataset* valid) {
  if (!pending_) return;
  const auto& saved = *pending_;
  if (!saved.empty()) put_back(train, saved[0]);
  if (saved.size() > 1 && valid) put_back(*valid, saved[1]);
  pending_.reset();
}

void LoopState::save(EntryWriter& writer, const Dataset* train, const Dataset* valid) const {
  LoopSnapshot record;
  record.counters = counters;
  record.best = best_;
  for (const Dataset* data : {train, train ? valid : nullptr}) {
    if (data) record.datasets.push_back(position_of(*data));
  }
  loop_schema().write(record, writer);
}

LoopSnapshot LoopState::read(EntryReader& reader, const Params& params, const Dataset* train,
                             const Dataset* valid) const {
  return loop_schema().read(reader, LoopContext{params, train, valid});
}

void LoopState::commit(LoopSnapshot&& snapshot) {
  counters = std::move(snapshot.counters);
  best_ = std::move(snapshot.best);
  pending_ = std::move(snapshot.datasets);
}

}  // namespace downhill::detail
