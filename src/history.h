#pragma once
// The history file (Options::history): one JSON object per line for each pass, appended as
// the run goes, cut back on resume so that it has no duplicate and no gap. Internal.

#include <downhill/monitors.h>

#include <cstdint>
#include <optional>
#include <string>

namespace downhill::detail {

/// One line of the history (docs/guide.md, "History"): a pass's record, or the closing
/// validation's (no training monitors).
struct HistoryRecord {
  int64_t pass = 0;
  bool closing = false;
  int64_t updates = 0;
  double seconds = 0.0;
  double learning_rate = 0.0;
  const Monitors* train = nullptr;  // null for the closing record
  // The validation that ran just before this pass (or the closing one), if any.
  int64_t validation = 0;
  const Monitors* valid = nullptr;
  int64_t valid_pass = 0;
};

/// The record as one line of JSON, without the newline. Non-finite numbers are null.
std::string history_line(const HistoryRecord& record);

class HistoryFile {
 public:
  /// Starts the run's history at `path` (empty: no history). A fresh run empties the file;
  /// a resumed one keeps the records of passes up to `passes` (the checkpoint's), dropping
  /// later ones, closing records and a partly written last line. Throws
  /// std::runtime_error naming the path when it cannot be written.
  void start(const std::string& path, bool resumed, int64_t passes);
  /// Appends a record. A failed write is logged once, and the run goes on.
  void append(const HistoryRecord& record);

 private:
  std::string path_;
  bool failed_ = false;
};

}  // namespace downhill::detail
