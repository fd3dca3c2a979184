#include <ATen/CPUGeneratorImpl.h>
#include <downhill/callbacks.h>
#include <downhill/dataset.h>
#include <downhill/errors.h>
#include <downhill/iteration.h>
#include <downhill/logging.h>
#include <downhill/optimizer.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <limits>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

#include "callback_list.h"
#include "callbacks/builtins.h"
#include "callbacks/checkpoint_writer.h"
#include "checkpoint.h"
#include "dataset_defaults.h"
#include "interrupt.h"
#include "loop_state.h"
#include "rank_group.h"
#include "run_parts.h"
#include "text.h"
#include "update_engine.h"
#include "weighted_mean.h"

namespace downhill {

namespace {

const Monitors& no_monitors() {
  static const Monitors none;
  return none;
}

// Rethrows the exception in flight with `context` ("downhill: SGD pass 1, batch 2: ") added,
// keeping its standard type; a message of downhill's own loses its "downhill: ", which the
// context begins with already.
[[noreturn]] void rethrow_with_context(const std::string& context) {
  auto with_context = [&](const char* what) {
    constexpr std::string_view kPrefix = "downhill: ";
    std::string_view message = what;
    if (message.substr(0, kPrefix.size()) == kPrefix) message.remove_prefix(kPrefix.size());
    return context + std::string(message);
  };
  try {
    throw;
  } catch (const std::invalid_argument& e) {
    throw std::invalid_argument(with_context(e.what()));
  } catch (const std::out_of_range& e) {
    throw std::out_of_range(with_context(e.what()));
  } catch (const std::logic_error& e) {
    throw std::logic_error(with_context(e.what()));
  } catch (const std::exception& e) {
    throw std::runtime_error(with_context(e.what()));
  }
}

// "name = value" as the settings log writes it: Adam's half-lives as the β a PyTorch user
// gives (Options::beta1(0.9) logs "beta1 = 0.9"), when β in 6 digits is exactly the half-life.
std::string logged_setting(const Options& options, const std::string& name,
                           const std::string& value) {
  const bool first = name == "beta1_halflife";
  if (!first && name != "beta2_halflife") return name + " = " + value;
  const std::string beta = detail::format_number(first ? options.beta1() : options.beta2());
  Options given;
  try {
    first ? given.beta1(std::stod(beta)) : given.beta2(std::stod(beta));
  } catch (const std::exception&) {
    return name + " = " + value;  // a β that rounds to 0 or 1 in 6 digits
  }
  const bool exact = first ? given.beta1_halflife() == options.beta1_halflife()
                           : given.beta2_halflife() == options.beta2_halflife();
  return exact ? (first ? "beta1 = " : "beta2 = ") + beta : name + " = " + value;
}

// The value of the watched monitor (Options::monitor) in `validation`; std::invalid_argument
// naming the monitors it has otherwise.
double watched_value(const Monitors& validation, const Options& options) {
  if (validation.contains(options.monitor())) return validation.at(options.monitor());
  std::string known;
  for (const auto& [name, value] : validation) known += (known.empty() ? "" : ", ") + name;
  throw std::invalid_argument("downhill: setting monitor = '" + options.monitor() +
                              "' names no validation monitor; the validation has: " + known);
}

// Whether `value` improves on `best` by more than min_improvement of |best|, in the direction
// monitor_mode says is better.
bool improves(double best, double value, const Options& options) {
  const double gain = options.monitor_mode() == "max" ? value - best : best - value;
  return gain > std::abs(best) * options.min_improvement();
}

// Every setting at debug level; at info, one line with those that differ from the defaults.
void log_settings(spdlog::logger& log, const std::string& algorithm, const Options& options) {
  const auto defaults = Options().settings();
  std::string changed;
  for (const auto& [name, value] : options.settings()) {
    const std::string shown = logged_setting(options, name, value);
    log.debug("setting {}", shown);
    const auto same = std::find(defaults.begin(), defaults.end(), std::pair(name, value));
    if (same == defaults.end()) changed += (changed.empty() ? "" : ", ") + shown;
  }
  log.info("{} settings: {}", algorithm,
           changed.empty() ? "the defaults" : changed + ", the others default");
}

}  // namespace

// The core of the loop: validate before a pass when due, train a pass, count, stop. What
// happens around it (log lines, patience, plateau, history, checkpoints, the progress line,
// divergence) is done by the built-in callbacks (callbacks/builtins.h), called with the
// user's at each event.
struct Iteration::Impl {
  Impl(const detail::RunParts& parts, Dataset& train, Dataset* valid)
      : optimizer(parts.optimizer),
        engine(parts.engine),
        loop(parts.loop),
        ranks(parts.ranks),
        user_callbacks(parts.callbacks),
        train(train),
        valid(valid) {}
  ~Impl() {
    if (loop.point_data == &train) loop.point_data = nullptr;
  }
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;

  // Runs to the next item; false when the loop has ended.
  bool advance();
  // A run starts at its first step: it continues a checkpoint (loaded by hand, or found
  // with resume(true)), or starts the loop's counters afresh. The algorithm's state
  // (moments, update count) belongs to the optimizer and carries on. False when the
  // checkpoint's run had stopped by itself and would stop again at once: it is over.
  bool start_run();
  // Whether the checkpoint's run, which stopped by itself for `reason` (patience or a limit),
  // would stop again at once under this run's settings.
  bool stop_still_holds(StopReason reason) const;
  // A re-run of a run that had stopped: it ends as that run ended, training nothing and
  // writing nothing.
  void end_already_stopped(StopReason reason);
  // full_batch with no validation set: each validation is the loss at the point the next
  // update starts from, evaluated once for both (LoopState::point_data), when the training
  // data is one batch of everything.
  void point_validation();
  // Evaluates the validation data and keeps the parameters when they are the best so far.
  void validate(bool closing) { record_validation(measure_validation(), closing); }
  // The validation's monitors, the callbacks told of each batch (on_validation_batch).
  Monitors measure_validation();
  // measure_validation() for the closing validation, which the checkpoint written after it
  // must not see: the validation data (the training data, when there is none of its own),
  // its generator and the global CPU generator are put back where they stood.
  Monitors measure_closing_validation();
  // Counts the closing validation measure_closing_validation() kept in the loop's counters.
  void record_closing_validation();
  // Counts a validation, keeps the parameters when they are the best so far, and tells the
  // callbacks.
  void record_validation(const Monitors& validation, bool closing);
  // A resumed run compares with the best validation's value of the monitor it watches now
  // (the checkpoint keeps the best validation's every monitor).
  void rewatch_best();
  // "resumed from WHERE: ..." — where the run stands after a load.
  void log_resumed(const std::string& where) const;
  // Options::batch_size sizes only the batches of the datasets minimize() makes: a warning
  // when it was set and the run's dataset batches otherwise. And a line for a generator
  // dataset that takes the default pass length.
  void warn_of_unused_batch_size() const;
  // Trains the rest of the pass; returns its monitors. A stop asked inside the pass leaves
  // it where it stands (its progress is kept for the checkpoint) and returns nothing.
  Monitors train_pass();
  // The run stops by itself: the callbacks' on_stop (the checkpoint), the closing validation
  // of a max_passes or max_steps stop, the best parameters back, the closing lines, on_run_end.
  // Throws DivergenceError after a divergence.
  bool end_run();
  // Records why the run stopped and says so, with the best validation.
  void stopped(StopReason reason);
  void restore_best() {
    if (loop.counters.best_validation == 0) {
      log->warn("no validation of this run was finite; the parameters are left as they are");
      return;
    }
    optimizer.restore_best();
  }
  // Whether max_steps updates have been applied (update_count(), which skipped updates and
  // batches that only fill an accumulate window leave as it was). Data-parallel, every rank
  // has the same update_count() (the ranks agree on it at each update), so every rank reaches
  // the limit after the same update and stops there without asking the others.
  bool step_limit_reached() const {
    const auto& limit = optimizer.options().max_steps();
    return limit && optimizer.update_count() >= *limit;
  }
  // The tolerance (gradient_tolerance, step_tolerance, loss_tolerance) that the update just
  // applied reached, if any; `batch` holds its batch's loss. Data-parallel, the gradient and
  // the step are the same on every rank, and the loss's is reached when every rank's is.
  std::optional<StopReason> tolerance_reached(const Monitors& batch);
  void update_seconds() { loop.counters.seconds = elapsed_seconds(); }
  double elapsed_seconds() const {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - run_start).count();
  }
  // The callbacks' view of the run as it stands, with the event's monitors.
  RunView view(const Monitors& monitors, bool improved = false, bool closing = false,
               bool skipped = false) const;
  void notify(detail::CallbackList::Hook hook, const Monitors& monitors, bool improved = false,
              bool closing = false, bool skipped = false) {
    RunView event = view(monitors, improved, closing, skipped);
    callbacks.notify(hook, event);
  }
  // The caller left the range (break, or an exception): the run ends where it stands.
  void leave() noexcept;
  // A stop a callback asked on one rank stops every rank: the built-ins decide from agreed
  // values, a user's callback may not.
  void agree_on_stop();

  Optimizer& optimizer;
  detail::UpdateEngine& engine;
  detail::LoopState& loop;
  detail::RankGroup& ranks;
  const std::vector<std::shared_ptr<Callback>>& user_callbacks;
  Dataset& train;
  Dataset* valid;
  detail::CallbackList callbacks;  // the built-ins, then the user's
  std::chrono::steady_clock::time_point run_start;
  bool resumed = false;                 // the run continues a checkpoint
  std::optional<double> previous_loss;  // of the run's latest update (loss_tolerance)
  // The run continues a patience stop: the validation before the next pass was done.
  bool resumed_after_validation = false;
  // A tolerance reached at a pass's last update stops the run before the next pass.
  std::optional<StopReason> stop_before_next_pass;
  std::optional<detail::InterruptGuard> interrupt;
  value_type current;
  bool started = false;
  bool running = false;  // started, and start_run() succeeded
  bool done = false;
  std::shared_ptr<spdlog::logger> log = logger();  // looked up once per run, not per pass
};

RunView Iteration::Impl::view(const Monitors& monitors, bool improved, bool closing,
                              bool skipped) const {
  const auto& counters = loop.counters;
  return RunView{.optimizer = optimizer,
                 .passes = counters.passes,
                 .pass_steps = counters.pass.steps,
                 .updates = optimizer.update_count(),
                 .validations = counters.validations,
                 .monitors = monitors,
                 .improved = improved,
                 .closing = closing,
                 .skipped = skipped,
                 .best_validation = counters.best_validation,
                 .best_pass = counters.best_pass,
                 .best = counters.best_monitors,
                 .resumed = resumed,
                 .seconds = elapsed_seconds(),
                 .stop = callbacks.stop(),
                 .stop_detail = callbacks.stop_detail()};
}

void Iteration::Impl::agree_on_stop() {
  const bool asked = callbacks.stopping();
  if (ranks.any(asked, "a callback asked the run to stop") && !asked) {
    callbacks.request(StopReason::kCallback, "asked on another rank");
  }
}

bool Iteration::Impl::start_run() {
  // The settings given for this run decide whether and from where it resumes; they are
  // applied after the load, so that they change the checkpoint's settings.
  const Options planned = engine.planned_options();
  if (ranks.writes_files()) detail::CheckpointWriter::check_folder(planned.checkpoint());
  resumed = ranks.unanimous(loop.resume_pending(), "a checkpoint loaded by hand");
  if (resumed) {
    log_resumed("the checkpoint loaded by load_checkpoint");
  } else {
    const bool resuming = planned.resume() || planned.resume_required();
    bool found = resuming && std::filesystem::exists(planned.checkpoint());
    if (resuming) {
      found = ranks.unanimous(found, "the checkpoint '" + planned.checkpoint() + "' exists");
    }
    if (found) {
      detail::load_checkpoint(planned.checkpoint(), engine, loop, &train, valid);
      resumed = true;
      log_resumed("'" + planned.checkpoint() + "'");
    } else if (planned.resume_required()) {
      throw std::invalid_argument("downhill: resume_required(true): there is no checkpoint '" +
                                  planned.checkpoint() +
                                  "' to resume (is the path right?); use resume(true) to "
                                  "start afresh when it does not exist yet");
    } else {
      if (resuming) {
        log->info("no checkpoint '{}' to resume yet: starting afresh", planned.checkpoint());
      }
      loop.start_afresh();
    }
  }
  loop.resume_datasets(train, valid);
  ranks.start_run(train, valid);
  engine.apply_run_settings();
  if (resumed) rewatch_best();
  auto& counters = loop.counters;
  run_start = std::chrono::steady_clock::now() -
              std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                  std::chrono::duration<double>(counters.seconds));
  if (resumed && stop_still_holds(counters.stop)) {
    end_already_stopped(counters.stop);
    return false;
  }
  warn_of_unused_batch_size();
  resumed_after_validation = resumed && counters.stop == StopReason::kPatience;
  counters.stop = StopReason::kNotStopped;
  counters.stop_detail.clear();
  counters.closing_validation = {};
  loop.interrupt_requested = false;
  point_validation();
  previous_loss.reset();
  stop_before_next_pass.reset();
  detail::add_builtin_callbacks(
      callbacks, detail::RunParts{optimizer, engine, loop, ranks, user_callbacks}, train, valid);
  for (const auto& callback : user_callbacks) callbacks.add(callback);
  notify(&Callback::on_run_start, no_monitors());
  return true;
}

void Iteration::Impl::point_validation() {
  loop.point_data = nullptr;
  if (!optimizer.options().full_batch() || valid || ranks.place().world_size > 1) return;
  if (train.slice_count() == 1 && train.iteration_size() == 1 &&
      !train.options().shuffle_samples()) {
    loop.point_data = &train;
    return;
  }
  log->warn(
      "full_batch is on (set, or L-BFGS's default), but the training data '{}' is not one "
      "batch of everything (a dataset of tensors with batch_size(0), without "
      "shuffle_samples): each validation evaluates it anew",
      train.name());
}

bool Iteration::Impl::stop_still_holds(StopReason reason) const {
  const auto& counters = loop.counters;
  const auto& options = optimizer.options();
  switch (reason) {
    case StopReason::kPatience:  // as callbacks/patience.cpp decides
      return counters.validations - counters.best_validation > options.patience();
    case StopReason::kMaxPasses:
      return options.max_passes() && counters.passes >= *options.max_passes();
    case StopReason::kMaxSteps:
      return step_limit_reached();
    default:  // Ctrl-C, a divergence or a callback's stop: the re-run goes on
      return false;
  }
}

std::optional<StopReason> Iteration::Impl::tolerance_reached(const Monitors& batch) {
  const auto& options = optimizer.options();
  if (options.gradient_tolerance() > 0 &&
      engine.last_gradient_max() <= options.gradient_tolerance()) {
    return StopReason::kGradientTolerance;
  }
  if (options.step_tolerance() > 0 && engine.last_step_max() <= options.step_tolerance()) {
    return StopReason::kStepTolerance;
  }
  if (options.loss_tolerance() <= 0) return std::nullopt;
  double loss =
      batch.contains("loss") ? batch.at("loss") : std::numeric_limits<double>::quiet_NaN();
  // An update that searched along a line (L-BFGS) knows the loss where it ended: its change
  // is the update's own, as torch.optim.LBFGS's tolerance_change compares.
  if (const auto& searched = engine.last_searched_losses()) {
    previous_loss = searched->first;
    loss = searched->second;
  }
  // A NaN compares false: a non-finite loss never reaches the tolerance.
  const bool reached =
      previous_loss &&
      std::abs(*previous_loss - loss) / std::max({std::abs(*previous_loss), std::abs(loss), 1.0}) <=
          options.loss_tolerance();
  previous_loss = loss;
  static const std::string kQuestion = "the loss changed by more than loss_tolerance";
  if (ranks.any(!reached, kQuestion)) return std::nullopt;
  return StopReason::kLossTolerance;
}

void Iteration::Impl::end_already_stopped(StopReason reason) {
  auto& counters = loop.counters;
  // The closing validation was measured before the checkpoint, of the parameters it holds:
  // counted now, it ends the re-run with the best and the counters the run ended with.
  if (!counters.closing_validation.empty()) record_closing_validation();
  log->info(
      "the checkpoint's run had already stopped ({}); nothing to do: no pass is trained, and "
      "the checkpoint and history are left as they are (raise {} to train on)",
      to_string(reason), to_string(reason));  // each of these stops is named as its setting
  restore_best();
  stopped(reason);
}

Monitors Iteration::Impl::measure_validation() {
  return optimizer.evaluate(valid ? *valid : train, [this](int64_t batches, const Monitors& batch) {
    RunView event = view(batch);
    event.validation_steps = batches;
    callbacks.notify(&Callback::on_validation_batch, event);
  });
}

void Iteration::Impl::record_closing_validation() {
  const Monitors closing = std::exchange(loop.counters.closing_validation, Monitors());
  record_validation(closing, /*closing=*/true);
}

Monitors Iteration::Impl::measure_closing_validation() {
  Dataset& data = valid ? *valid : train;
  const detail::DatasetPosition before = detail::position_of(data);
  at::Generator global = at::detail::getDefaultCPUGenerator();  // a handle to the same one
  at::Tensor global_before;
  {
    std::lock_guard<std::mutex> lock(global.mutex());
    global_before = global.get_state();
  }
  Monitors closing = measure_validation();
  detail::put_back(data, before);
  std::lock_guard<std::mutex> lock(global.mutex());
  global.set_state(global_before);
  return closing;
}

void Iteration::Impl::record_validation(const Monitors& validation, bool closing) {
  auto& counters = loop.counters;
  ++counters.validations;
  const double value = watched_value(validation, optimizer.options());
  // A non-finite value never improves nor stands as the best; until a finite one is seen
  // (best_validation 0), any finite value improves.
  const bool improved =
      std::isfinite(value) &&
      (counters.best_validation == 0 || improves(counters.best_loss, value, optimizer.options()));
  if (improved) {
    counters.best_loss = value;
    counters.best_validation = counters.validations;
    counters.best_monitors = validation;
    counters.best_pass = counters.passes;
    loop.keep_best(optimizer.params());
  }
  counters.last_validation = validation;
  if (closing) update_seconds();  // the closing record's time
  notify(&Callback::on_validation, validation, improved, closing);
}

void Iteration::Impl::rewatch_best() {
  auto& counters = loop.counters;
  if (counters.best_validation == 0) return;
  const auto& options = optimizer.options();
  // A checkpoint of format 1 kept only the best loss.
  if (counters.best_monitors.empty() && options.monitor() == "loss") return;
  counters.best_loss = watched_value(counters.best_monitors, options);
}

void Iteration::Impl::log_resumed(const std::string& where) const {
  const auto& counters = loop.counters;
  const std::string best = counters.best_validation == 0
                               ? "no finite validation yet"
                               : "the best: validation " +
                                     std::to_string(counters.best_validation) + ", after pass " +
                                     std::to_string(counters.best_pass);
  log->info("resumed from {}: {} passes and {} updates done{}, {} validations ({})", where,
            counters.passes, engine.update_count(),
            counters.pass.steps > 0 ? " and " + std::to_string(counters.pass.steps) +
                                          " batches of pass " + std::to_string(counters.passes + 1)
                                    : std::string(),
            counters.validations, best);
}

void Iteration::Impl::warn_of_unused_batch_size() const {
  // A generator has no length to take a pass's from: say that the default was taken.
  for (const Dataset* data : {&train, valid}) {
    if (data && data->slice_count() == 0 && !data->options().iteration_size() &&
        data->iteration_size() == detail::kGeneratorIterationSize) {
      log->info(
          "dataset '{}' is a generator: {} batches a pass, the default "
          "(DatasetOptions::iteration_size sets another)",
          data->name(), data->iteration_size());
    }
  }
  const auto& options = optimizer.options();
  if (!options.is_set("batch_size") || train.slice_count() == 0 ||
      train.options().batch_size() == options.batch_size()) {
    return;
  }
  log->warn(
      "{}: Options::batch_size = {} does nothing here: the dataset '{}' has batch_size {} "
      "(DatasetOptions::batch_size); Options::batch_size sizes only the batches of the "
      "datasets minimize(loss, params, tensors) makes",
      optimizer.name(), options.batch_size(), train.name(), train.options().batch_size());
}

Monitors Iteration::Impl::train_pass() {
  auto& counters = loop.counters;
  auto& pass = counters.pass;  // not empty when a resumed run finishes a pass it stopped inside
  notify(&Callback::on_pass_start, no_monitors());
  agree_on_stop();
  if (callbacks.stopping()) return {};
  for (int64_t b = pass.steps; !train.pass_over(b); ++b) {
    const Batch batch = train.next();
    const int64_t updates_before = optimizer.update_count();
    Monitors monitors;
    try {
      monitors = optimizer.step(batch);
    } catch (...) {
      rethrow_with_context("downhill: " + optimizer.name() + " pass " +
                           std::to_string(counters.passes + 1) + ", batch " +
                           std::to_string(b + 1) + ": ");
    }
    detail::add_weighted(pass, monitors, static_cast<double>(train.samples(batch)));
    ++pass.steps;
    const bool skipped = !engine.last_update_applied();
    if (skipped) ++pass.skipped;
    notify(&Callback::on_update, monitors, false, false, skipped);
    // The step limit stops the run right after the update that reaches it, inside the pass,
    // which a checkpoint then resumes as Ctrl-C's does. Reached at the pass's last batch, the
    // pass ends (counted and yielded) and advance() stops before the next.
    // A tolerance reached stops the run as the step limit does.
    const auto tolerance = optimizer.update_count() != updates_before ? tolerance_reached(monitors)
                                                                      : std::optional<StopReason>();
    if (tolerance || step_limit_reached()) {
      if (!train.pass_over(b + 1)) {
        callbacks.request(tolerance ? *tolerance : StopReason::kMaxSteps);
      } else if (tolerance) {
        stop_before_next_pass = tolerance;
      }
    }
    // Ctrl-C on any rank stops every rank after the same step (the step agreed on it).
    if (loop.interrupt_requested) callbacks.request(StopReason::kInterrupted);
    if (callbacks.stopping()) return {};
  }
  // Each rank's pass so far stays its own (a resumed pass goes on adding to it).
  detail::PassProgress group = pass;
  ranks.agree(group);
  Monitors out = detail::weighted_mean(group);
  if (pass.skipped > 0) out.set("skipped", static_cast<double>(pass.skipped));
  pass = {};
  return out;
}

bool Iteration::Impl::end_run() {
  const StopReason reason = callbacks.stop();
  auto& counters = loop.counters;
  counters.stop = reason;  // the checkpoint (on_stop) keeps it
  // Validations run before a pass, so the final parameters of a max_passes or max_steps stop
  // were never validated: validate once more, so that the best can be them. It is measured
  // before the checkpoint (on_stop) and counted after it: the checkpoint holds the run as it
  // stood, so that a run with a higher limit continues it exactly, and the closing validation
  // beside it, so that a re-run with the same limit ends as this run does.
  const bool closes = reason == StopReason::kMaxPasses || reason == StopReason::kMaxSteps ||
                      reason == StopReason::kGradientTolerance ||
                      reason == StopReason::kLossTolerance || reason == StopReason::kStepTolerance;
  if (closes) counters.closing_validation = measure_closing_validation();
  notify(&Callback::on_stop, no_monitors());
  if (closes) record_closing_validation();
  restore_best();
  stopped(reason);
  RunView end = view(no_monitors());
  callbacks.notify_quietly(&Callback::on_run_end, end);
  if (reason == StopReason::kDiverged) {
    throw DivergenceError(callbacks.stop_detail(), loop.counters.consecutive_skipped);
  }
  return false;
}

void Iteration::Impl::stopped(StopReason reason) {
  auto& counters = loop.counters;
  counters.stop = reason;
  if (reason == StopReason::kCallback || reason == StopReason::kDiverged) {
    counters.stop_detail = callbacks.stop_detail();
  }
  interrupt.reset();
  done = true;
  if (!log->should_log(spdlog::level::info)) return;
  const std::string why = std::string(to_string(reason)) +
                          (reason == StopReason::kCallback ? ": " + counters.stop_detail : "");
  log->info("stopped ({}) after {} passes and {} updates", why, counters.passes,
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

void Iteration::Impl::leave() noexcept {
  stopped(StopReason::kLeft);
  RunView end = view(no_monitors());
  end.stop = StopReason::kLeft;
  callbacks.notify_quietly(&Callback::on_run_end, end);
}

bool Iteration::Impl::advance() {
  if (done) return false;
  auto& counters = loop.counters;
  const auto& options = optimizer.options();
  if (!started) {
    started = true;
    interrupt.emplace();
    if (!start_run()) return false;
    running = true;
    log_settings(*log, optimizer.name(), options);
    agree_on_stop();
  }
  if (stop_before_next_pass) callbacks.request(*stop_before_next_pass);
  if (options.max_passes() && counters.passes >= *options.max_passes()) {
    callbacks.request(StopReason::kMaxPasses);
  }
  if (step_limit_reached()) callbacks.request(StopReason::kMaxSteps);
  if (callbacks.stopping()) return end_run();
  // A run resumed inside a pass validated before that pass already, and so did one resumed
  // from a patience stop, whose validation ended the run before the pass.
  const bool validated = std::exchange(resumed_after_validation, false);
  if (counters.passes % options.validate_every() == 0 && counters.pass.steps == 0 && !validated) {
    validate(/*closing=*/false);
    agree_on_stop();
    if (callbacks.stopping()) return end_run();
  }
  Monitors training = train_pass();
  if (callbacks.stopping()) return end_run();
  ++counters.passes;
  update_seconds();
  notify(&Callback::on_pass_end, training);
  agree_on_stop();  // a stop asked at a pass's end ends the run before the next
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
    if (impl->running && !impl->done) impl->leave();
  }
  Walk(const Walk&) = delete;
  Walk& operator=(const Walk&) = delete;
  std::shared_ptr<Iteration::Impl> impl;
};

Iteration::Iteration(const detail::RunParts& parts, Dataset& train, Dataset* valid)
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
