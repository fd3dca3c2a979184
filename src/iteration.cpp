#include <downhill/dataset.h>
#include <downhill/errors.h>
#include <downhill/iteration.h>
#include <downhill/logging.h>
#include <downhill/optimizer.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <stdexcept>

#include "interrupt.h"

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

// Sums monitors weighted by samples into `pass`, keeping the order of first appearance.
void add_weighted(detail::PassProgress& pass, const Monitors& monitors, double weight) {
  for (const auto& [name, value] : monitors) {
    size_t k = 0;
    while (k < pass.sums.size() && pass.sums[k].first != name) ++k;
    if (k == pass.sums.size()) pass.sums.emplace_back(name, 0.0);
    pass.sums[k].second += weight * value;
  }
  pass.weight += weight;
}

Monitors weighted_mean(const detail::PassProgress& pass) {
  Monitors out;
  for (const auto& [name, sum] : pass.sums)
    out.set(name, pass.weight > 0 ? sum / pass.weight : 0.0);
  return out;
}

double running_loss(const detail::PassProgress& pass) {
  return !pass.sums.empty() && pass.weight > 0 ? pass.sums[0].second / pass.weight : 0;
}

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

}  // namespace

struct Iteration::Impl {
  Impl(Optimizer& optimizer, Dataset& train, Dataset* valid)
      : optimizer(optimizer), train(train), valid(valid) {}

  // Runs to the next item; false when the loop has ended.
  bool advance();
  void checkpoint() {
    const auto& path = optimizer.options().checkpoint();
    if (!path.empty()) optimizer.save_checkpoint(path, &train, valid);
  }
  void finish(bool restore) {
    checkpoint();  // the run as it stands, before the best parameters come back
    if (restore) restore_best();
    interrupt.reset();
    done = true;
  }
  void restore_best() {
    if (optimizer.loop_.best_validation == 0) {
      log->warn("no validation of this run was finite; the parameters are left as they are");
      return;
    }
    optimizer.restore_best();
  }
  // Evaluates the validation data and keeps the parameters when they are the best so far.
  // Returns whether they were.
  bool validate();
  Monitors train_pass();

  Optimizer& optimizer;
  Dataset& train;
  Dataset* valid;
  std::optional<detail::InterruptGuard> interrupt;
  value_type current;
  bool started = false;
  bool done = false;
  bool interrupted = false;
  std::shared_ptr<spdlog::logger> log = logger();  // looked up once per run, not per pass
};

Monitors Iteration::Impl::train_pass() {
  auto& loop = optimizer.loop_;
  auto& pass = loop.pass;  // not empty when a resumed run finishes a pass it stopped inside
  ProgressLine progress(optimizer.name(), train.iteration_size());
  for (int64_t b = pass.steps; b < train.iteration_size(); ++b) {
    const Batch batch = train.next();
    Monitors monitors;
    try {
      monitors = optimizer.step(batch);
    } catch (...) {
      progress.clear();
      rethrow_with_context("downhill: " + optimizer.name() + " pass " +
                           std::to_string(loop.passes + 1) + ", batch " + std::to_string(b + 1) +
                           ": ");
    }
    add_weighted(pass, monitors, static_cast<double>(train.samples(batch)));
    ++pass.steps;
    progress.update(b + 1, running_loss(pass));
    if (optimizer.last_update_applied_) {
      loop.consecutive_skipped = 0;
    } else {
      ++pass.skipped;
      if (++loop.consecutive_skipped >= optimizer.options().max_nonfinite()) {
        progress.clear();
        const std::string message = "downhill: " + optimizer.name() +
                                    " diverged: " + std::to_string(loop.consecutive_skipped) +
                                    " consecutive updates skipped, the last at pass " +
                                    std::to_string(loop.passes + 1) + ", batch " +
                                    std::to_string(b + 1) + " (" + optimizer.last_skip_reason_ +
                                    "); the best parameters were restored";
        logger()->error("{}", message);
        finish(true);
        throw DivergenceError(message, loop.consecutive_skipped);
      }
    }
    if (detail::InterruptGuard::requested()) {
      interrupted = true;
      break;
    }
  }
  Monitors out = weighted_mean(pass);
  if (pass.skipped > 0) out.set("skipped", static_cast<double>(pass.skipped));
  if (!interrupted) pass = {};
  return out;
}

bool Iteration::Impl::validate() {
  auto& loop = optimizer.loop_;
  const Monitors validation = optimizer.evaluate(valid ? *valid : train);
  ++loop.validations;
  const double value = validation.at("loss");
  // A non-finite loss never improves nor stands as the best; until a finite one is seen
  // (best_validation 0), any finite loss improves.
  const bool improved =
      std::isfinite(value) &&
      (loop.best_validation == 0 ||
       loop.best_loss - value > std::abs(loop.best_loss) * optimizer.options().min_improvement());
  if (improved) {
    loop.best_loss = value;
    loop.best_validation = loop.validations;
    optimizer.keep_best();
  }
  loop.last_validation = validation;
  if (!std::isfinite(value)) {
    log->warn("validation {} loss is {}; it does not count as an improvement", loop.validations,
              value);
  }
  if (log->should_log(spdlog::level::info)) {  // formatting monitors costs more than a tiny step
    log->info("validation {} {}{}", loop.validations, validation.to_string(), improved ? " *" : "");
  }
  return improved;
}

bool Iteration::Impl::advance() {
  if (done) return false;
  auto& loop = optimizer.loop_;
  const auto& options = optimizer.options();
  if (!started) {
    started = true;
    interrupt.emplace();
    optimizer.resume_datasets(train, valid);
    for (const auto& [name, value] : options.settings()) log->info("setting {} = {}", name, value);
  }
  if (options.max_updates() && loop.passes >= *options.max_updates()) {
    // Validations run before a pass, so the final parameters were never validated:
    // validate once more, so that the best can be them. The checkpoint is written first,
    // so that a resumed run continues the run as it stood.
    checkpoint();
    validate();
    restore_best();
    interrupt.reset();
    done = true;
    return false;
  }
  // A run resumed inside a pass validated before that pass already.
  if (loop.passes % options.validate_every() == 0 && loop.pass.steps == 0) {
    validate();
    if (loop.validations - loop.best_validation > options.patience()) {
      log->info("patience elapsed!");
      finish(true);
      return false;
    }
  }
  Monitors training = train_pass();
  if (interrupted) {
    log->info("interrupted!");
    finish(true);
    return false;
  }
  ++loop.passes;
  if (log->should_log(spdlog::level::info)) {
    log->info("{} {} {}", optimizer.name(), loop.passes, training.to_string());
  }
  if (loop.passes % options.checkpoint_every() == 0) checkpoint();
  current = {std::move(training), loop.last_validation};
  return true;
}

Iteration::Iteration(Optimizer& optimizer, Dataset& train, Dataset* valid)
    : impl_(std::make_unique<Impl>(optimizer, train, valid)) {}
Iteration::~Iteration() = default;
Iteration::Iteration(Iteration&&) noexcept = default;

Iteration::iterator Iteration::begin() {
  if (impl_->started) {
    throw std::logic_error("downhill: an Iteration can be walked only once");
  }
  return impl_->advance() ? iterator(this) : iterator();
}

const Iteration::value_type& Iteration::iterator::operator*() const {
  return owner_->impl_->current;
}

Iteration::iterator& Iteration::iterator::operator++() {
  if (!owner_->impl_->advance()) owner_ = nullptr;
  return *this;
}

bool Iteration::iterator::operator==(const iterator& other) const { return owner_ == other.owner_; }

Iteration Optimizer::iterate(Dataset& train, Dataset* valid) {
  if (!loss_) {
    throw std::logic_error("downhill: iterate() needs a loss; this " + name_ +
                           " was built for apply() only");
  }
  if (!pending_resume_) {
    if (options_.resume() && std::filesystem::exists(options_.checkpoint())) {
      load_checkpoint(options_.checkpoint());
    } else {
      loop_ = LoopState();  // each call is a new run
    }
  }
  return Iteration(*this, train, valid);
}

std::pair<Monitors, Monitors> Optimizer::minimize(Dataset& train, Dataset* valid) {
  std::pair<Monitors, Monitors> last;
  for (const auto& item : iterate(train, valid)) last = item;
  // A run that yields no pass (resumed at its end) still reports its last validation.
  if (last.second.empty()) last.second = loop_.last_validation;
  return last;
}

}  // namespace downhill
