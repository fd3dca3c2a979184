#pragma once
// The checkpoint's schema. Each part of a checkpoint (the update engine's, the loop's) lists
// its fields once, as a Schema: per field, its entry name, the format version from which every
// file has it, how it is written from the part's record and how it is read and checked back
// into one. Saving, reading, the checks with their messages, and the all-or-nothing load (a
// part's record is read and checked whole before the part applies it) derive from that list.
// docs/architecture.md ("Checkpoints") lists the fields. Internal.

#include <ATen/ATen.h>

#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <utility>
#include <vector>

// Declared only: the archive headers are heavy, and only the files that read or write
// entries include them.
namespace torch::serialize {
class InputArchive;
class OutputArchive;
}  // namespace torch::serialize

namespace downhill::detail {

/// The format this downhill writes: "downhill-checkpoint-<version>" in the file. Version 1 is
/// every file written before the version was counted (they all say 1); version 2 adds which
/// group each parameter is in and every group's frozen flag, and its values are checked;
/// version 3 adds why the run stopped and a max_passes or max_steps stop's closing validation.
inline constexpr int64_t kCheckpointVersion = 3;
/// The oldest format this downhill reads.
inline constexpr int64_t kOldestCheckpointVersion = 1;

/// The format tag of `version`, e.g. "downhill-checkpoint-2".
std::string checkpoint_format(int64_t version);

/// Writes one part's entries.
class EntryWriter {
 public:
  explicit EntryWriter(torch::serialize::OutputArchive& archive) : archive_(archive) {}
  void integer(const std::string& key, int64_t value);
  void number(const std::string& key, double value);
  void text(const std::string& key, const std::string& value);
  /// An undefined tensor is not written.
  void tensor(const std::string& key, const at::Tensor& value);
  void integers(const std::string& key, const std::vector<int64_t>& values);

 private:
  torch::serialize::OutputArchive& archive_;
};

/// Reads one part's entries from a file of format `version`. Every refusal throws, naming the
/// file and the entry: mismatch() (std::invalid_argument) for a file of another problem, and
/// invalid() (std::runtime_error) for a value this optimizer cannot hold.
class EntryReader {
 public:
  EntryReader(torch::serialize::InputArchive& archive, std::string path, int64_t version);

  int64_t version() const noexcept { return version_; }
  bool has(const std::string& key) const;

  /// An integer, at least `minimum`.
  int64_t integer(const std::string& key, int64_t minimum = std::numeric_limits<int64_t>::min());
  /// A finite number, at least `minimum`.
  double number(const std::string& key, double minimum = -std::numeric_limits<double>::infinity());
  std::string text(const std::string& key);
  at::Tensor tensor(const std::string& key);
  std::vector<int64_t> integers(const std::string& key);
  /// A state a CPU random generator accepts (set_state would refuse another).
  at::Tensor generator_state(const std::string& key);
  /// A tensor of the shape and dtype of `live` (mismatch() naming `what` otherwise) holding
  /// finite values of at least `minimum` (invalid() otherwise).
  at::Tensor tensor_like(const std::string& key, const at::Tensor& live, const std::string& what,
                         double minimum = -std::numeric_limits<double>::infinity());

  /// "checkpoint 'PATH' is of another problem: WHAT" (std::invalid_argument).
  [[noreturn]] void mismatch(const std::string& what) const;
  /// "cannot load checkpoint 'PATH': WHAT" (std::runtime_error).
  [[noreturn]] void invalid(const std::string& what) const;

  const std::string& path() const noexcept { return path_; }

 private:
  torch::serialize::InputArchive& archive_;
  std::string path_;
  int64_t version_;
  std::vector<std::string> keys_;
};

/// One field of a part's record: entries written from a `Record` and read back into one;
/// `Context` is what reading checks against (the loading optimizer's part).
template <class Record, class Context>
struct Field {
  std::string key;          // the entry's name, or its prefix ("param" for param_0, ...)
  int64_t always_from = 1;  // older files may lack it: the record then keeps its default
  std::function<void(const Record&, EntryWriter&)> write;
  std::function<void(EntryReader&, const Context&, Record&)> read;
  /// Whether a file holds the field: its entry, or its first entry for numbered fields.
  std::function<bool(const EntryReader&)> present;
};

/// A part's fields, in the order they are written and read, and the checks of the record as a
/// whole (counters consistent with each other) that run after every field is read.
template <class Record, class Context>
class Schema {
 public:
  using FieldType = Field<Record, Context>;
  using Check = std::function<void(EntryReader&, const Context&, const Record&)>;

  Schema(std::vector<FieldType> fields, std::vector<Check> checks = {})
      : fields_(std::move(fields)), checks_(std::move(checks)) {}

  void write(const Record& record, EntryWriter& writer) const {
    for (const auto& field : fields_) field.write(record, writer);
  }

  /// The record the file holds, read and checked; changes nothing. A field that a file older
  /// than its `always_from` lacks keeps `record`'s value.
  Record read(EntryReader& reader, const Context& context, Record record = {}) const {
    for (const auto& field : fields_) {
      if (reader.version() < field.always_from && !field.present(reader)) continue;
      field.read(reader, context, record);
    }
    for (const auto& check : checks_) check(reader, context, record);
    return record;
  }

  const std::vector<FieldType>& fields() const noexcept { return fields_; }

 private:
  std::vector<FieldType> fields_;
  std::vector<Check> checks_;
};

/// A field held in an int64_t of the record (reached by `member(record)`), at least `minimum`.
template <class Record, class Context, class Member>
Field<Record, Context> integer_field(std::string key, int64_t always_from, Member member,
                                     int64_t minimum = 0) {
  return {key, always_from,
          [key, member](const Record& record, EntryWriter& writer) {
            writer.integer(key, member(record));
          },
          [key, member, minimum](EntryReader& reader, const Context&, Record& record) {
            member(record) = reader.integer(key, minimum);
          },
          [key](const EntryReader& reader) { return reader.has(key); }};
}

/// A field held in a double of the record, finite and at least `minimum`.
template <class Record, class Context, class Member>
Field<Record, Context> number_field(std::string key, int64_t always_from, Member member,
                                    double minimum = -std::numeric_limits<double>::infinity()) {
  return {key, always_from,
          [key, member](const Record& record, EntryWriter& writer) {
            writer.number(key, member(record));
          },
          [key, member, minimum](EntryReader& reader, const Context&, Record& record) {
            member(record) = reader.number(key, minimum);
          },
          [key](const EntryReader& reader) { return reader.has(key); }};
}

/// "param_3", "state_3_1": the entry of parameter (and slot) number a (b) of a numbered field.
std::string archive_key(const std::string& kind, size_t a);
std::string archive_key(const std::string& kind, size_t a, size_t b);

}  // namespace downhill::detail
