// Saving and loading everything a run needs to continue bit-identically.
#include <ATen/CPUGeneratorImpl.h>
#include <downhill/dataset.h>
#include <downhill/optimizer.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>

#include <cstdint>
#include <fstream>
#include <iterator>
#include <mutex>
#include <sstream>
#include <stdexcept>

#include "atomic_file.h"
#include "text.h"

namespace downhill {

using detail::shape_of;

namespace {

constexpr const char* kFormat = "downhill-checkpoint-1";

std::string key(const char* kind, size_t a) { return std::string(kind) + "_" + std::to_string(a); }
std::string key(const char* kind, size_t a, size_t b) {
  return key(kind, a) + "_" + std::to_string(b);
}

torch::Tensor read_tensor(torch::serialize::InputArchive& archive, const std::string& name) {
  torch::Tensor t;
  archive.read(name, t);
  return t;
}

c10::IValue read_value(torch::serialize::InputArchive& archive, const std::string& name) {
  c10::IValue value;
  archive.read(name, value);
  return value;
}

torch::Tensor to_tensor(const std::vector<int64_t>& values) {
  return torch::tensor(values.empty() ? std::vector<int64_t>{} : values, torch::kLong);
}

std::vector<int64_t> to_vector(const torch::Tensor& t) {
  auto contiguous = t.to(torch::kLong).contiguous();
  const auto* data = contiguous.data_ptr<int64_t>();
  return std::vector<int64_t>(data, data + contiguous.numel());
}

void write_dataset(torch::serialize::OutputArchive& archive, size_t index, const Dataset& data) {
  archive.write(key("data_order", index), to_tensor(data.order()));
  archive.write(key("data_position", index), c10::IValue(data.position()));
  if (data.options().generator()) {
    archive.write(key("data_generator", index), data.options().generator()->get_state());
  }
}

// A checkpoint file is the archive followed by a trailer: kTrailerMagic, then the
// archive's 64-bit FNV-1a hash (little-endian), so that a flipped bit or a cut file is
// refused instead of loading as other numbers.
constexpr char kTrailerMagic[] = "DHCKSUM1";
constexpr size_t kMagicSize = sizeof kTrailerMagic - 1;
constexpr size_t kTrailerSize = kMagicSize + 8;

uint64_t fnv1a(const char* data, size_t size) {
  uint64_t hash = 14695981039346656037ull;
  for (size_t i = 0; i < size; ++i) {
    hash ^= static_cast<unsigned char>(data[i]);
    hash *= 1099511628211ull;
  }
  return hash;
}

std::string with_checksum(std::string archive) {
  const uint64_t hash = fnv1a(archive.data(), archive.size());
  archive.append(kTrailerMagic, kMagicSize);
  for (int byte = 0; byte < 8; ++byte) archive.push_back(static_cast<char>(hash >> (8 * byte)));
  return archive;
}

// The file's archive, once its checksum matches; std::runtime_error naming the path otherwise.
std::string verified_payload(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    throw std::runtime_error("downhill: cannot read checkpoint '" + path + "': no such file");
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (bytes.size() < kTrailerSize ||
      bytes.compare(bytes.size() - kTrailerSize, kMagicSize, kTrailerMagic) != 0) {
    throw std::runtime_error("downhill: cannot read checkpoint '" + path +
                             "': it is cut short or not a downhill checkpoint (no checksum "
                             "trailer at its end)");
  }
  uint64_t saved = 0;
  for (int byte = 0; byte < 8; ++byte) {
    saved |= static_cast<uint64_t>(
                 static_cast<unsigned char>(bytes[bytes.size() - 8 + static_cast<size_t>(byte)]))
             << (8 * byte);
  }
  bytes.resize(bytes.size() - kTrailerSize);
  if (fnv1a(bytes.data(), bytes.size()) != saved) {
    throw std::runtime_error("downhill: cannot read checkpoint '" + path +
                             "': it is damaged (its content does not match its checksum)");
  }
  return bytes;
}

// The pass in progress: {steps, skipped}, {weight, then sum and weight of each monitor},
// and the monitors' names.
void write_pass(torch::serialize::OutputArchive& archive, const detail::PassProgress& pass) {
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
void read_pass(torch::serialize::InputArchive& archive, detail::PassProgress& pass) {
  torch::Tensor counts, sums;
  c10::IValue names;
  if (!archive.try_read("pass_counts", counts)) return;
  archive.read("pass_sums", sums);
  archive.read("pass_names", names);
  const auto steps_and_skipped = to_vector(counts);
  sums = sums.to(torch::kDouble).contiguous();
  const auto* values = sums.data_ptr<double>();
  std::istringstream lines(names.toStringRef());
  std::vector<detail::PassProgress::Sum> named;
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

}  // namespace

void Optimizer::save_checkpoint(const std::string& path, const Dataset* train,
                                const Dataset* valid) const {
  // ensure_state() is not const; an optimizer that has not updated yet saves zeros.
  const_cast<Optimizer*>(this)->ensure_state();
  torch::NoGradGuard no_grad;
  torch::serialize::OutputArchive archive;
  archive.write("format", c10::IValue(std::string(kFormat)));
  archive.write("algorithm", c10::IValue(name_));
  archive.write("param_count", c10::IValue(static_cast<int64_t>(params_.size())));
  for (size_t i = 0; i < params_.size(); ++i) {
    archive.write(key("param_name", i), c10::IValue(params_.name(i)));
    archive.write(key("param", i), params_.tensor(i).detach());
    archive.write(key("slot_count", i), c10::IValue(static_cast<int64_t>(state_[i].size())));
    for (size_t s = 0; s < state_[i].size(); ++s) archive.write(key("state", i, s), state_[i][s]);
    if (velocity_[i].defined()) archive.write(key("velocity", i), velocity_[i]);
    if (!best_.empty()) archive.write(key("best", i), best_[i]);
  }
  archive.write("update_count", c10::IValue(update_count_));
  archive.write("passes", c10::IValue(loop_.passes));
  archive.write("validations", c10::IValue(loop_.validations));
  archive.write("best_validation", c10::IValue(loop_.best_validation));
  archive.write("best_loss", c10::IValue(loop_.best_loss));
  archive.write("consecutive_skipped", c10::IValue(loop_.consecutive_skipped));
  std::string monitor_names;
  std::vector<double> monitor_values;
  for (const auto& [name, value] : loop_.last_validation) {
    monitor_names += name + '\n';
    monitor_values.push_back(value);
  }
  archive.write("validation_names", c10::IValue(monitor_names));
  write_pass(archive, loop_.pass);
  archive.write("validation_values",
                torch::tensor(monitor_values.empty() ? std::vector<double>{} : monitor_values,
                              torch::kDouble));
  at::Generator global = at::detail::getDefaultCPUGenerator();
  {
    std::lock_guard<std::mutex> lock(global.mutex());
    archive.write("rng_cpu", global.get_state());
  }
  int64_t datasets = 0;
  if (train) write_dataset(archive, datasets++, *train);
  if (train && valid) write_dataset(archive, datasets++, *valid);
  archive.write("dataset_count", c10::IValue(datasets));

  std::ostringstream bytes;
  archive.save_to(bytes);
  detail::write_file_atomically(path, with_checksum(bytes.str()));
}

void Optimizer::load_checkpoint(const std::string& path) {
  load_checkpoint(path, nullptr, nullptr);
}

void Optimizer::load_checkpoint(const std::string& path, const Dataset* train,
                                const Dataset* valid) {
  const std::string payload = verified_payload(path);
  torch::serialize::InputArchive archive;
  try {
    archive.load_from(payload.data(), payload.size());
  } catch (const c10::Error& e) {
    throw std::runtime_error("downhill: cannot read checkpoint '" + path +
                             "': " + e.what_without_backtrace());
  }
  auto mismatch = [&](const std::string& what) {
    throw std::invalid_argument("downhill: checkpoint '" + path +
                                "' is of another problem: " + what);
  };
  if (read_value(archive, "format").toStringRef() != kFormat) {
    mismatch("unknown format");
  }
  const auto algorithm = read_value(archive, "algorithm").toStringRef();
  if (algorithm != name_) mismatch("it was written by " + algorithm + ", this is " + name_);
  const auto count = read_value(archive, "param_count").toInt();
  if (count != static_cast<int64_t>(params_.size())) {
    mismatch("it has " + std::to_string(count) + " parameters, this optimizer has " +
             std::to_string(params_.size()));
  }
  ensure_state();

  // Read and check everything before changing anything.
  std::vector<torch::Tensor> values(params_.size()), velocity(params_.size()), best;
  std::vector<std::vector<torch::Tensor>> state(params_.size());
  for (size_t i = 0; i < params_.size(); ++i) {
    const auto saved_name = read_value(archive, key("param_name", i)).toStringRef();
    if (saved_name != params_.name(i)) {
      mismatch("parameter " + std::to_string(i) + " is named '" + saved_name + "' there, '" +
               params_.name(i) + "' here");
    }
    values[i] = read_tensor(archive, key("param", i));
    const auto& live = params_.tensor(i);
    if (values[i].sizes() != live.sizes() || values[i].scalar_type() != live.scalar_type()) {
      mismatch("parameter '" + params_.name(i) + "' is " + shape_of(values[i]) + " " +
               std::string(c10::toString(values[i].scalar_type())) + " there, " + shape_of(live) +
               " " + std::string(c10::toString(live.scalar_type())) + " here");
    }
    const auto slots = read_value(archive, key("slot_count", i)).toInt();
    if (slots != static_cast<int64_t>(state_[i].size())) {
      mismatch("parameter '" + params_.name(i) + "' has " + std::to_string(slots) +
               " state tensors there, " + std::to_string(state_[i].size()) + " here");
    }
    // Every saved tensor must have the shape and dtype of its live twin: copy_() would
    // broadcast a wrong shape silently.
    auto expect_like = [&](const torch::Tensor& saved, const torch::Tensor& live,
                           const std::string& what) {
      if (saved.sizes() != live.sizes() || saved.scalar_type() != live.scalar_type()) {
        mismatch(what + " is " + shape_of(saved) + " " +
                 std::string(c10::toString(saved.scalar_type())) + " there; expected " +
                 shape_of(live) + " " + std::string(c10::toString(live.scalar_type())));
      }
    };
    for (int64_t s = 0; s < slots; ++s) {
      state[i].push_back(read_tensor(archive, key("state", i, s)));
      expect_like(state[i].back(), state_[i][s],
                  "state tensor " + std::to_string(s) + " of parameter '" + params_.name(i) + "'");
    }
    torch::Tensor saved_velocity;
    archive.try_read(key("velocity", i), saved_velocity);
    if (saved_velocity.defined() != velocity_[i].defined()) {
      mismatch(std::string("momentum is ") + (saved_velocity.defined() ? "on" : "off") +
               " there and " + (velocity_[i].defined() ? "on" : "off") + " here");
    }
    if (saved_velocity.defined()) {
      expect_like(saved_velocity, velocity_[i],
                  "the velocity of parameter '" + params_.name(i) + "'");
    }
    velocity[i] = saved_velocity;
    torch::Tensor saved_best;
    if (archive.try_read(key("best", i), saved_best)) {
      expect_like(saved_best, live, "the best value of parameter '" + params_.name(i) + "'");
      best.push_back(saved_best);
    }
  }
  LoopState loop;
  loop.passes = read_value(archive, "passes").toInt();
  loop.validations = read_value(archive, "validations").toInt();
  loop.best_validation = read_value(archive, "best_validation").toInt();
  loop.best_loss = read_value(archive, "best_loss").toDouble();
  loop.consecutive_skipped = read_value(archive, "consecutive_skipped").toInt();
  const auto names = read_value(archive, "validation_names").toStringRef();
  const auto monitor_values = read_tensor(archive, "validation_values");
  std::istringstream name_lines(names);
  std::string name;
  for (int64_t k = 0; std::getline(name_lines, name) && k < monitor_values.numel(); ++k) {
    loop.last_validation.set(name, monitor_values[k].item<double>());
  }
  read_pass(archive, loop.pass);
  const auto update_count = read_value(archive, "update_count").toInt();
  const auto rng_state = read_tensor(archive, "rng_cpu");
  PendingResume resume;
  const auto datasets = read_value(archive, "dataset_count").toInt();
  for (int64_t d = 0; d < datasets; ++d) {
    DatasetPosition position;
    position.order = to_vector(read_tensor(archive, key("data_order", d)));
    position.position = read_value(archive, key("data_position", d)).toInt();
    archive.try_read(key("data_generator", d), position.generator_state);
    resume.datasets.push_back(std::move(position));
  }
  // The datasets of the run to continue, when known: they must fit the saved positions.
  const Dataset* given[] = {train, valid};
  for (size_t d = 0; d < resume.datasets.size() && d < 2; ++d) {
    if (!given[d]) continue;
    try {
      given[d]->check_position(resume.datasets[d].order, resume.datasets[d].position);
    } catch (const std::invalid_argument& e) {
      const std::string message = e.what();
      mismatch(message.rfind("downhill: ", 0) == 0 ? message.substr(10) : message);
    }
  }

  // Everything read and checked: commit.
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) {
    params_.tensor(i).copy_(values[i]);
    for (size_t s = 0; s < state[i].size(); ++s) state_[i][s].copy_(state[i][s]);
    if (velocity_[i].defined()) velocity_[i].copy_(velocity[i]);
  }
  best_ = std::move(best);
  update_count_ = update_count;
  loop_ = std::move(loop);
  at::Generator global = at::detail::getDefaultCPUGenerator();  // a handle to the same one
  {
    std::lock_guard<std::mutex> lock(global.mutex());
    global.set_state(rng_state);
  }
  pending_resume_ = std::move(resume);
}

void Optimizer::resume_datasets(Dataset& train, Dataset* valid) {
  if (!pending_resume_) return;
  auto restore = [](Dataset& data, const DatasetPosition& saved) {
    data.restore_position(saved.order, saved.position);
    if (saved.generator_state.defined() && data.options().generator()) {
      auto generator = *data.options().generator();  // a handle to the same generator
      generator.set_state(saved.generator_state);
    }
  };
  const auto& saved = pending_resume_->datasets;
  if (!saved.empty()) restore(train, saved[0]);
  if (saved.size() > 1 && valid) restore(*valid, saved[1]);
  pending_resume_.reset();
}

}  // namespace downhill
