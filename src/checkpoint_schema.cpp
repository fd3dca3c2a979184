// Reading and writing checkpoint entries (checkpoint_schema.h): the refusals every part's
// fields share, each naming the file and the entry.
#include "checkpoint_schema.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "text.h"

namespace downhill::detail {

std::string checkpoint_format(int64_t version) {
  return "downhill-checkpoint-" + std::to_string(version);
}

std::string archive_key(const std::string& kind, size_t a) {
  return kind + "_" + std::to_string(a);
}

std::string archive_key(const std::string& kind, size_t a, size_t b) {
  return archive_key(kind, a) + "_" + std::to_string(b);
}

void EntryWriter::integer(const std::string& key, int64_t value) {
  archive_.write(key, c10::IValue(value));
}

void EntryWriter::number(const std::string& key, double value) {
  archive_.write(key, c10::IValue(value));
}

void EntryWriter::text(const std::string& key, const std::string& value) {
  archive_.write(key, c10::IValue(value));
}

void EntryWriter::tensor(const std::string& key, const at::Tensor& value) {
  if (value.defined()) archive_.write(key, value.detach());
}

void EntryWriter::integers(const std::string& key, const std::vector<int64_t>& values) {
  archive_.write(key, at::tensor(values.empty() ? std::vector<int64_t>{} : values, at::kLong));
}

EntryReader::EntryReader(torch::serialize::InputArchive& archive, std::string path, int64_t version)
    : archive_(archive), path_(std::move(path)), version_(version), keys_(archive.keys()) {
  std::sort(keys_.begin(), keys_.end());
}

bool EntryReader::has(const std::string& key) const {
  return std::binary_search(keys_.begin(), keys_.end(), key);
}

void EntryReader::mismatch(const std::string& what) const {
  throw std::invalid_argument("downhill: checkpoint '" + path_ +
                              "' is of another problem: " + what);
}

void EntryReader::invalid(const std::string& what) const {
  throw std::runtime_error("downhill: cannot load checkpoint '" + path_ + "': " + what);
}

namespace {

// The entry `key` as an IValue; invalid() naming it when the file lacks it.
c10::IValue entry(torch::serialize::InputArchive& archive, const EntryReader& reader,
                  const std::string& key) {
  if (!reader.has(key)) {
    reader.invalid("it lacks the entry '" + key + "', which every file of format " +
                   std::to_string(reader.version()) + " holds");
  }
  c10::IValue value;
  archive.read(key, value);
  return value;
}

}  // namespace

int64_t EntryReader::integer(const std::string& key, int64_t minimum) {
  const auto value = entry(archive_, *this, key);
  if (!value.isInt()) invalid("its entry '" + key + "' is not an integer");
  const int64_t number = value.toInt();
  if (number < minimum) {
    invalid("its entry '" + key + "' is " + std::to_string(number) + "; it must be at least " +
            std::to_string(minimum));
  }
  return number;
}

double EntryReader::number(const std::string& key, double minimum) {
  const auto value = entry(archive_, *this, key);
  if (!value.isDouble()) invalid("its entry '" + key + "' is not a number");
  const double number = value.toDouble();
  if (!std::isfinite(number)) {
    invalid("its entry '" + key + "' is " + format_number(number) + "; it must be finite");
  }
  if (number < minimum) {
    invalid("its entry '" + key + "' is " + format_number(number) + "; it must be at least " +
            format_number(minimum));
  }
  return number;
}

std::string EntryReader::text(const std::string& key) {
  const auto value = entry(archive_, *this, key);
  if (!value.isString()) invalid("its entry '" + key + "' is not text");
  return value.toStringRef();
}

at::Tensor EntryReader::tensor(const std::string& key) {
  const auto value = entry(archive_, *this, key);
  if (!value.isTensor()) invalid("its entry '" + key + "' is not a tensor");
  return value.toTensor();
}

at::Tensor EntryReader::generator_state(const std::string& key) {
  auto state = tensor(key);
  // A generator of our own tries it: the live ones change only once everything is read.
  try {
    at::detail::createCPUGenerator().set_state(state);
  } catch (const c10::Error&) {
    invalid("its entry '" + key + "' is not the state of a CPU random generator");
  }
  return state;
}

std::vector<int64_t> EntryReader::integers(const std::string& key) {
  const auto value = tensor(key);
  if (value.dim() != 1 || !at::isIntegralType(value.scalar_type(), /*includeBool=*/false)) {
    invalid("its entry '" + key + "' is not a list of integers");
  }
  const auto contiguous = value.to(at::kLong).contiguous();
  const auto* data = contiguous.data_ptr<int64_t>();
  return std::vector<int64_t>(data, data + contiguous.numel());
}

at::Tensor EntryReader::tensor_like(const std::string& key, const at::Tensor& live,
                                    const std::string& what, double minimum) {
  auto value = tensor(key);
  if (value.sizes() != live.sizes() || value.scalar_type() != live.scalar_type()) {
    mismatch(what + " is " + shape_of(value) + " " +
             std::string(c10::toString(value.scalar_type())) + " there, " + shape_of(live) + " " +
             std::string(c10::toString(live.scalar_type())) + " here");
  }
  if (value.numel() == 0 || !at::isFloatingType(value.scalar_type())) return value;
  if (!at::isfinite(value).all().item<bool>()) {
    invalid(what + " (entry '" + key + "') holds values that are not finite");
  }
  if (std::isfinite(minimum)) {
    const double least = value.min().item<double>();
    if (least < minimum) {
      invalid(what + " (entry '" + key + "') holds " + format_number(least) +
              "; its values must be at least " + format_number(minimum));
    }
  }
  return value;
}

}  // namespace downhill::detail
