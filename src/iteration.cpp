#include <downhill/dataset.h>
#include <downhill/errors.h>
#include <downhill/iteration.h>
#include <downhill/logging.h>
#include <downhill/optimizer.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <stdexcept>

#include "checkpoint.h"
#include "data_parallel.h"
#include "history.h"
#include "interrupt.h"
#include "loop_state.h"
#include "update_engine.h"
#include "weighted_mean.h"

namespace downhill {

namespace {

using Clock = std::chrono::steady_clock;

bool stderr_is_terminal() {
  static const bool terminal = isatty(STDERR_FILENO) == 1;  // asked once, not every pass
  return terminal;
}

// One progress line on a terminal for passes longer than about a second,
// cleared before the pass's log line. Never when stderr is not a terminal.
class ProgressLine {
 public:
  ProgressLine(const std::string& label, int64_t total)
      : label_(label),
        total_(total),
        start_(Clock::now()),
        last_(start_),
        enabled_(stderr_is_terminal()) {}

  void update(int64_t done, double running_loss) {
    if (!enabled_) return;
    const auto now = Clock::now();
    if (now - start_ < std::chrono::seconds(1) || now - last_ < std::chrono::milliseconds(200)) {
      return;
    }
    last_ = now;
    shown_ = true;
    const double elapsed = std::chrono::duration<double>(now - start_).count();
    std::fprintf(stderr, "\r\033[K%s %lld/%lld batches %.1fs loss=%f", label_.c_str(),
                 static_cast<long long>(done), static_cast<long long>(total_), elapsed,
                 running_loss);
    std::fflush(stderr);
  }

  void clear() {
    if (!shown_) return;
    std::fprintf(stderr, "\r\033[K");
    std::fflush(stderr);
    shown_ = false;
  }

  ~ProgressLine() { clear(); }

 private:
  std::string label_;
  int64_t total_;
  Clock::time_point start_, last_;
  bool enabled_;
  bool shown_ = false;
};

// Rethrows the exception in flight with `context` added, keeping its standard type.
[[noreturn]] void rethrow_with_context(const std::string& context) {
  try {
    throw;
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(context + e.what());
  } catch (const std::out_of_range& e) {
    throw std::out_of_range(context + e.what());
  } catch (const std::logic_error& e) {
    throw std::logic_error(context + e.what());
  } catch (const std::exception& e) {
    throw std::runtime_error(context + e.what());
  }
}

// Every setting at debug level; at info, one line with those that differ from the defaults.
void log_settings(spdlog::logger& log, const std::string& algorithm, const Options& options) {
  const auto defaults = Options().settings();
  std::string changed;
  for (const auto& [name, value] : options.settings()) {
    log.debug("setting {} = {}", name, value);
    const auto same = std::find(defaults.begin(), defaults.end(), std::pair(name, value));
    if (same == defaults.end()) changed += (changed.empty() ? "" : ", ") + name + " = " + value;
  }
  log.info("{} settings: {}", algorithm,
           changed.empty() ? "the defaults" : changed + ", the others default");
}

}  // namespace

struct Iteration::Impl {
  Impl(detail::RunParts parts, Dataset& train, Dataset* valid)
      : optimizer(parts.optimizer),
        engine(parts.engine),
        loop(parts.loop),
        parallel(parts.parallel),
        train(train),
        valid(valid) {}

  // Runs to the next item; false when the loop has ended.
  bool advance();
  // A write that fails mid-run is logged, and the run goes on: losing the checkpoint is
  // better than losing the training and the best parameters with it.
  void checkpoint() {
    const auto& path = optimizer.options().checkpoint();
    if (path.empty() || !writes_files()) return;  // data-parallel: rank 0 writes
    try {
      optimizer.save_checkpoint(path, &train, valid);
    } catch (const std::exception& e) {
      log->error("could not write the checkpoint: {}; the run goes on without it", e.what());
    }
  }
  // The checkpoint's folder must exist before the run, not at its first write.
  static void check_checkpoint_path(const std::string& path) {
    if (path.empty()) return;
    const std::filesystem::path file(path);
    const auto folder = file.has_parent_path() ? file.parent_path() : std::filesystem::path(".");
    std::error_code error;
    if (!std::filesystem::is_directory(folder, error)) {
      throw std::invalid_argument("downhill: checkpoint '" + path + "': the folder '" +
                                  folder.string() +
                                  "' does not exist; create it, or choose another path");
    }
    if (::access(folder.c_str(), W_OK) != 0) {
      throw std::invalid_argument("downhill: checkpoint '" + path + "': the folder '" +
                                  folder.string() + "' is not writable");
    }
  }
  void finish(StopReason reason) {
    checkpoint();  // the run as it stands, before the best parameters come back
    restore_best();
    stopped(reason);
  }
  // Records why the run stopped and says so, with the best validation.
  void stopped(StopReason reason) {
    auto& counters = loop.counters;
    counters.stop = reason;
    interrupt.reset();
    done = true;
    if (!log->should_log(spdlog::level::info)) return;
    log->info("stopped ({}) after {} passes and {} updates", to_string(reason), counters.passes,
              optimizer.update_count());
    if (counters.best_validation == 0) {
      log->info("no validation was finite");
    } else {
      log->info(
          "best: validation {}, after pass {}: {}{}", counters.best_validation, counters.best_pass,
          counters.best_monitors.to_string(),
          reason == StopReason::kLeft ? " (not restored: the parameters are the last step's)" : "");
    }
  }
  void restore_best() {
    if (loop.counters.best_validation == 0) {
      log->warn("no validation of this run was finite; the parameters are left as they are");
      return;
    }
    optimizer.restore_best();
  }
  // A run starts at its first step: it continues a checkpoint (loaded by hand, or found
  // with resume(true)), or starts the loop's counters afresh. The algorithm's state
  // (moments, update count) belongs to the optimizer and carries on.
  void start_run() {
    // The settings given for this run decide whether and from where it resumes; they are
    // applied after the load, so that they change the checkpoint's settings.
    const Options planned = engine.planned_options();
    if (writes_files()) check_checkpoint_path(planned.checkpoint());
    bool resumed = loop.resume_pending();
    if (parallel) resumed = parallel->any(resumed, "a checkpoint loaded by hand");
    if (!resumed) {
      bool found = planned.resume() && std::filesystem::exists(planned.checkpoint());
      if (parallel && planned.resume()) {
        found = parallel->any(found, "the checkpoint '" + planned.checkpoint() + "' exists");
      }
      if (found) {
        detail::load_checkpoint(planned.checkpoint(), engine, loop, &train, valid);
        resumed = true;
      } else {
        loop.start_afresh();
      }
    }
    loop.resume_datasets(train, valid);
    if (parallel) {
      log->info("data-parallel over {}: each rank takes 1 batch in {}", parallel->describe(),
                parallel->place().world_size);
      parallel->start_run(train, valid);
    }
    engine.apply_run_settings();
    const auto& options = optimizer.options();
    auto& counters = loop.counters;
    counters.stop = StopReason::kNotStopped;
    loop.interrupt_requested = false;
    if (writes_files()) history.start(options.history(), resumed, counters.passes);
    run_start = std::chrono::steady_clock::now() -
                std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                    std::chrono::duration<double>(counters.seconds));
    // A run resumed inside a pass validated before that pass, in the run that checkpointed.
    validated_this_pass = counters.pass.steps > 0 && counters.validations > 0 &&
                          counters.passes % options.validate_every() == 0;
  }
  // Appends the history record of the pass just trained (`train`), or the closing one.
  void record(const Monitors* training) {
    const auto& options = optimizer.options();
    if (options.history().empty() || !writes_files()) return;
    const auto& counters = loop.counters;
    detail::HistoryRecord record;
    record.pass = counters.passes;
    record.closing = training == nullptr;
    record.updates = optimizer.update_count();
    record.seconds = counters.seconds;
    const auto& schedule = options.learning_rate_schedule();
    record.learning_rate = options.learning_rate() *
                           (schedule ? schedule(std::max<int64_t>(record.updates - 1, 0)) : 1.0);
    record.train = training;
    if (validated_this_pass || record.closing) {
      record.validation = counters.validations;
      record.valid = &counters.last_validation;
      record.valid_pass = record.closing ? counters.passes : counters.passes - 1;
    }
    history.append(record);
  }
  void update_seconds() {
    loop.counters.seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - run_start).count();
  }
  // Evaluates the validation data and keeps the parameters when they are the best so far.
  // Returns whether they were.
  bool validate();
  // Reduce on plateau, after a validation that `improved` or not.
  void reduce_on_plateau(bool improved);
  Monitors train_pass();
  // Data-parallel, rank 0 alone writes checkpoints and the history.
  bool writes_files() const { return !parallel || parallel->writes_files(); }

  detail::HistoryFile history;
  std::chrono::steady_clock::time_point run_start;
  bool validated_this_pass = false;  // a validation ran before the pass in progress
  Optimizer& optimizer;
  detail::UpdateEngine& engine;
  detail::LoopState& loop;
  detail::DataParallel* parallel;
  Dataset& train;
  Dataset* valid;
  std::optional<detail::InterruptGuard> interrupt;
  value_type current;
  bool started = false;
  bool running = false;  // started, and start_run() succeeded
  bool done = false;
  bool interrupted = false;
  std::shared_ptr<spdlog::logger> log = logger();  // looked up once per run, not per pass
};

Monitors Iteration::Impl::train_pass() {
  auto& counters = loop.counters;
  auto& pass = counters.pass;  // not empty when a resumed run finishes a pass it stopped inside
  ProgressLine progress(optimizer.name(), train.iteration_size());
  for (int64_t b = pass.steps; b < train.iteration_size(); ++b) {
    const Batch batch = train.next();
    Monitors monitors;
    try {
      monitors = optimizer.step(batch);
    } catch (...) {
      progress.clear();
      rethrow_with_context("downhill: " + optimizer.name() + " pass " +
                           std::to_string(counters.passes + 1) + ", batch " +
                           std::to_string(b + 1) + ": ");
    }
    detail::add_weighted(pass, monitors, static_cast<double>(train.samples(batch)));
    ++pass.steps;
    progress.update(b + 1, detail::running_loss(pass));
    if (engine.last_update_applied()) {
      counters.consecutive_skipped = 0;
    } else {
      ++pass.skipped;
      if (++counters.consecutive_skipped >= optimizer.options().max_nonfinite()) {
        progress.clear();
        const std::string message = "downhill: " + optimizer.name() +
                                    " diverged: " + std::to_string(counters.consecutive_skipped) +
                                    " consecutive updates skipped, the last at pass " +
                                    std::to_string(counters.passes + 1) + ", batch " +
                                    std::to_string(b + 1) + " (" + engine.last_skip_reason() +
                                    "); the best parameters were restored";
        logger()->error("{}", message);
        finish(StopReason::kDiverged);
        throw DivergenceError(message, counters.consecutive_skipped);
      }
    }
    if (loop.interrupt_requested) {
      interrupted = true;
      break;
    }
  }
  Monitors out;
  if (parallel) {
    // Each rank's pass so far stays its own (a resumed pass goes on adding to it).
    detail::PassProgress group = pass;
    parallel->agree(group);
    out = detail::weighted_mean(group);
  } else {
    out = detail::weighted_mean(pass);
  }
  if (pass.skipped > 0) out.set("skipped", static_cast<double>(pass.skipped));
  if (!interrupted) pass = {};
  return out;
}

bool Iteration::Impl::validate() {
  auto& counters = loop.counters;
  const Monitors validation = optimizer.evaluate(valid ? *valid : train);
  ++counters.validations;
  const double value = validation.at("loss");
  // A non-finite loss never improves nor stands as the best; until a finite one is seen
  // (best_validation 0), any finite loss improves.
  const bool improved = std::isfinite(value) &&
                        (counters.best_validation == 0 ||
                         counters.best_loss - value >
                             std::abs(counters.best_loss) * optimizer.options().min_improvement());
  if (improved) {
    counters.best_loss = value;
    counters.best_validation = counters.validations;
    counters.best_monitors = validation;
    counters.best_pass = counters.passes;
    loop.keep_best(optimizer.params());
  }
  counters.last_validation = validation;
  reduce_on_plateau(improved);
  if (!std::isfinite(value)) {
    log->warn("validation {} loss is {}; it does not count as an improvement", counters.validations,
              value);
  }
  if (log->should_log(spdlog::level::info)) {  // formatting monitors costs more than a tiny step
    log->info("validation {} {}{}", counters.validations, validation.to_string(),
              improved ? " *" : "");
  }
  return improved;
}

// As torch.optim.lr_scheduler.ReduceLROnPlateau: validations without improvement are counted
// (not during a cooldown); at plateau_patience of them, every group's learning rate is
// multiplied by plateau_factor, not below plateau_min_learning_rate.
void Iteration::Impl::reduce_on_plateau(bool improved) {
  const auto& options = optimizer.options();
  if (options.plateau_patience() == 0) return;
  auto& counters = loop.counters;
  counters.plateau_waiting = improved ? 0 : counters.plateau_waiting + 1;
  if (counters.plateau_cooldown > 0) {
    --counters.plateau_cooldown;
    counters.plateau_waiting = 0;
  }
  if (counters.plateau_waiting < options.plateau_patience()) return;
  counters.plateau_waiting = 0;
  counters.plateau_cooldown = options.plateau_cooldown();
  if (engine.reduce_learning_rate(options.plateau_factor(), options.plateau_min_learning_rate())) {
    log->info("validation {}: no improvement in {} validations; learning rate reduced to {}",
              counters.validations, options.plateau_patience(), options.learning_rate());
  }
}

bool Iteration::Impl::advance() {
  if (done) return false;
  auto& counters = loop.counters;
  const auto& options = optimizer.options();
  if (!started) {
    started = true;
    interrupt.emplace();
    start_run();
    running = true;
    log_settings(*log, optimizer.name(), options);
  }
  if (options.max_updates() && counters.passes >= *options.max_updates()) {
    // Validations run before a pass, so the final parameters were never validated:
    // validate once more, so that the best can be them. The checkpoint is written first,
    // so that a resumed run continues the run as it stood.
    checkpoint();
    validate();
    update_seconds();
    record(nullptr);
    restore_best();
    stopped(StopReason::kMaxUpdates);
    return false;
  }
  // A run resumed inside a pass validated before that pass already.
  if (counters.passes % options.validate_every() == 0 && counters.pass.steps == 0) {
    validate();
    validated_this_pass = true;
    if (counters.validations - counters.best_validation > options.patience()) {
      log->info("patience elapsed!");
      record(nullptr);  // the validation that ended the run
      finish(StopReason::kPatience);
      return false;
    }
  }
  Monitors training = train_pass();
  if (interrupted) {
    log->info("interrupted!");
    finish(StopReason::kInterrupted);
    return false;
  }
  ++counters.passes;
  update_seconds();
  record(&training);
  validated_this_pass = false;
  if (log->should_log(spdlog::level::info)) {
    log->info("{} {} {}", optimizer.name(), counters.passes, training.to_string());
  }
  if (counters.passes % options.checkpoint_every() == 0) checkpoint();
  current = {std::move(training), counters.last_validation};
  return true;
}

// Shared by the copies of a walking iterator: keeps the loop alive, and gives Ctrl-C
// back to the previous handler once no iterator of the walk is left (the range-for was
// left by break or by an exception, or the loop ended).
struct Iteration::iterator::Walk {
  explicit Walk(std::shared_ptr<Iteration::Impl> impl) : impl(std::move(impl)) {}
  ~Walk() {
    impl->interrupt.reset();
    if (impl->running && !impl->done) impl->stopped(StopReason::kLeft);
  }
  Walk(const Walk&) = delete;
  Walk& operator=(const Walk&) = delete;
  std::shared_ptr<Iteration::Impl> impl;
};

Iteration::Iteration(detail::RunParts parts, Dataset& train, Dataset* valid)
    : impl_(std::make_shared<Impl>(parts, train, valid)) {}
Iteration::~Iteration() = default;
Iteration::Iteration(Iteration&&) noexcept = default;
Iteration& Iteration::operator=(Iteration&&) noexcept = default;

Iteration::iterator Iteration::begin() {
  if (!impl_ || impl_->started) {
    throw std::logic_error("downhill: an Iteration can be walked only once");
  }
  auto walk = std::make_shared<iterator::Walk>(impl_);
  return impl_->advance() ? iterator(std::move(walk)) : iterator();
}

const Iteration::value_type& Iteration::iterator::operator*() const {
  if (!walk_) throw std::logic_error("downhill: an Iteration's end iterator has no item");
  return walk_->impl->current;
}

Iteration::iterator& Iteration::iterator::operator++() {
  if (!walk_) throw std::logic_error("downhill: an Iteration's end iterator cannot advance");
  if (!walk_->impl->advance()) walk_.reset();
  return *this;
}

}  // namespace downhill
