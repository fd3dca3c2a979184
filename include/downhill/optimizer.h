#pragma once
// The optimizer users hold: a facade over the update engine, the loop and checkpoints.

#include <downhill/batch.h>
#include <downhill/distributed.h>
#include <downhill/monitors.h>
#include <downhill/named_tensors.h>
#include <downhill/options.h>
#include <downhill/params.h>
#include <downhill/run_summary.h>
#include <torch/types.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace downhill {

class Callback;
class Dataset;
class Iteration;

namespace detail {
struct BatchEvaluation;
class EvaluationCache;
class LbfgsWorkspace;
class UpdateRule;
class UpdateEngine;
class LoopState;
class RankGroup;
}  // namespace detail

/// The base class of the algorithms; downhill::build() makes one by name.
///
/// An optimizer holds shallow handles to the caller's parameter tensors and
/// updates them in place. It is not copyable; move the unique_ptr build() returns.
class Optimizer {
 public:
  virtual ~Optimizer();
  Optimizer(const Optimizer&) = delete;
  Optimizer& operator=(const Optimizer&) = delete;

  /// The algorithm's display name, e.g. "RMSProp".
  const std::string& name() const noexcept;
  const Params& params() const noexcept;
  /// The parameter tensors, in the order of params().
  std::vector<torch::Tensor> tensors() const;
  /// The optimizer's options, which are also parameter group 0's update settings.
  const Options& options() const noexcept;
  /// The update settings of parameter group `group` (Params::group(); 0: options()).
  /// Throws std::out_of_range for a group that does not exist.
  const Options& group_options(size_t group) const;

  /// Changes settings of this live optimizer between updates: `change` edits a copy of
  /// the options and of every group's settings, e.g.
  /// `opt->change_options([](Options& o) { o.learning_rate(1e-3); })`. The result is
  /// validated first; on an error (std::invalid_argument naming the setting) nothing
  /// changes. It takes effect at the next update (or, for loop settings, the next use),
  /// and the update settings are saved in checkpoints. The algorithm cannot change, nor
  /// can momentum be turned on or off (its velocity is state), nor accumulate while a
  /// window of batches is partly summed.
  void change_options(const GroupSettings& change);
  /// As change_options(change), for the update settings of group `group` only.
  void change_options(size_t group, const GroupSettings& change);
  /// This process's rank and the group's size (docs/guide.md, "Scaling out"): rank 0 of 1
  /// unless the optimizer was built data-parallel.
  Place place() const noexcept;

  /// Whether apply() needs Hessian-vector products (ESGD).
  virtual bool needs_hessian_vector_products() const;

  /// Applies one update from gradients you computed (one per parameter, in the
  /// order of params(); a frozen group's may be undefined): clipping, the algorithm,
  /// weight decay, the schedule and momentum. Data-parallel, every rank must call it: the
  /// gradients are averaged across ranks first. Throws
  /// std::invalid_argument, updating nothing, if any gradient does not match its
  /// parameter (count, shape, dtype, device). Returns false, updating nothing
  /// (parameters and state stay exactly as they were), if any gradient holds a
  /// NaN or an infinity, or if the update would write one into any parameter or state
  /// tensor (docs/guide.md, "Guarantees"); a warning is logged. L-BFGS refuses it
  /// (std::logic_error): its update evaluates the loss several times; give it a loss that
  /// returns your gradients instead (Evaluation::with_gradients).
  bool apply(const std::vector<torch::Tensor>& grads);
  /// As apply(grads), with the Hessian-vector products ESGD needs (others ignore them).
  bool apply(const std::vector<torch::Tensor>& grads,
             const std::vector<torch::Tensor>& hessian_vector_products);

  /// One mini-batch: evaluates the loss, differentiates it (with Hessian-vector
  /// products for ESGD) unless the loss returned its gradient, and applies the update.
  /// Returns that batch's monitors, computed before the update. Needs an optimizer built
  /// with a loss. With Options::accumulate(k), the update comes at every k-th batch, from
  /// the mean of the k batches' gradients. L-BFGS's update is one iteration: its line
  /// search evaluates the batch again at each point it tries, and the point it ends at is
  /// kept, so that the next step() on the same batch (the same tensors, unchanged) with
  /// the parameters unchanged starts from it without evaluating it again.
  Monitors step(const Batch& batch);
  /// Monitors averaged over one pass of `data` (weighted by samples); no update.
  Monitors evaluate(Dataset& data);
  /// As evaluate(data), calling `after_batch(batches, monitors)` after each batch with the
  /// batches evaluated so far and that batch's monitors (a progress display, say).
  Monitors evaluate(Dataset& data,
                    const std::function<void(int64_t, const Monitors&)>& after_batch);
  /// The loop (docs/guide.md, "The loop") as a range: one (training, validation) pair per pass.
  /// Validation uses `train` when `valid` is null. Both must outlive the range.
  Iteration iterate(Dataset& train, Dataset* valid = nullptr);
  /// iterate() with settings for this run and those after it, without rebuilding:
  /// `opt->iterate(train, &valid, [](Options& o) { o.learning_rate(1e-3).patience(3); })`.
  /// The change is checked now (std::invalid_argument, as change_options) and applied as
  /// change_options(settings) when the run starts, after a checkpoint it resumes is loaded;
  /// the settings stay changed.
  Iteration iterate(Dataset& train, Dataset* valid, const GroupSettings& settings);
  /// minimize() with settings, as iterate(train, valid, settings).
  std::pair<Monitors, Monitors> minimize(Dataset& train, Dataset* valid,
                                         const GroupSettings& settings);
  /// Runs iterate() to its end and returns the last pass's (training, validation) pair, as
  /// iterate() yielded it: that pass's training monitors and the latest validation before
  /// it (a run resumed at its very end, which trains no pass, returns the closing
  /// validation's). The parameters are then the best validation's; last_run() has its
  /// monitors.
  std::pair<Monitors, Monitors> minimize(Dataset& train, Dataset* valid = nullptr);

  /// Adds a callback (downhill/callbacks.h, docs/guide.md "Callbacks") to the runs that
  /// start from now on: the loop calls its hooks after the built-in ones, in the order the
  /// callbacks were added. Throws std::invalid_argument for a null callback or one added
  /// already.
  void add_callback(std::shared_ptr<Callback> callback);
  /// Takes a callback added before out of the runs that start from now on. Throws
  /// std::invalid_argument when it was not added.
  void remove_callback(const std::shared_ptr<Callback>& callback);

  /// The latest run of iterate() / minimize(): the best validation's monitors and pass,
  /// passes and updates run, and why it stopped (kNotStopped while it runs).
  RunSummary last_run() const;

  /// Copies `values` into the parameters (same count, shapes and dtypes).
  void set_params(const std::vector<torch::Tensor>& values);
  /// Copies the parameters of the best validation back (no-op before any validation).
  void restore_best();

  /// Every state tensor of the algorithm and of momentum, named "PARAM.SLOT"
  /// (e.g. "u.G", "u.velocity"). Handles share storage with the live state.
  NamedTensors state();
  /// Updates applied so far (Adam's t).
  int64_t update_count() const noexcept;
  /// Puts the algorithm's state back as state() gave it: every "PARAM.SLOT" tensor (each of
  /// its live tensor's shape and dtype; copied in), with the update counter, as
  /// torch.optim's load_state_dict does. The parameters and settings stay as they are; a
  /// checkpoint (load_checkpoint) restores a whole run. Throws std::invalid_argument naming
  /// the first entry missing, unknown, repeated or of another shape or dtype, or a negative
  /// count; nothing changes then.
  void load_state(const NamedTensors& state, int64_t update_count);

  /// Writes everything needed to continue this run to `path`: parameters, every
  /// state tensor and counter, the best parameters and loss, the loop's counters,
  /// the datasets' slice orders and positions, and the random generators' states.
  /// Written atomically (a temporary file in the same folder, fsynced, then
  /// renamed over `path`). The loop calls it when Options::checkpoint is set.
  void save_checkpoint(const std::string& path, const Dataset* train = nullptr,
                       const Dataset* valid = nullptr) const;
  /// Loads a checkpoint written by save_checkpoint(): parameters, state and
  /// generators at once; the next iterate()/minimize() continues the run (and
  /// puts its datasets where they were). Throws std::invalid_argument naming the
  /// mismatch when the checkpoint is of another problem (algorithm, parameter
  /// names, shapes or dtypes, state tensors), and std::runtime_error when it cannot be
  /// read; either way nothing has changed.
  void load_checkpoint(const std::string& path);

 protected:
  /// An algorithm written as a subclass: the hooks below are its rule. `loss` may be empty
  /// for an optimizer that is only used through apply(). Validates `options` and the
  /// parameters; throws std::invalid_argument. (A rule type, downhill/rule.h, is shorter
  /// and gets the fused path with clipping and momentum.)
  Optimizer(std::string name, Loss loss, Params params, Options options);
  /// An algorithm given as a rule (downhill/rule.h); its name is the rule's.
  Optimizer(Loss loss, Params params, Options options, std::unique_ptr<detail::UpdateRule> rule);

  /// The algorithm's state slots per parameter, e.g. {"f", "G"}.
  virtual std::vector<std::string> state_names() const { return {}; }
  /// Initial value of slot `slot` of parameter `param`; zeros by default.
  virtual torch::Tensor initial_state(size_t slot, const torch::Tensor& param) const;
  /// Called once at the start of every update, before any parameter is touched.
  virtual void begin_update() {}
  /// The reference (tensor-op) rule: turns the clipped gradient `grad` (and, for
  /// ESGD, the Hessian-vector product `hv`) into the update u, updating `state`.
  virtual torch::Tensor compute_update(size_t index, const torch::Tensor& grad,
                                       const torch::Tensor& hv,
                                       std::vector<torch::Tensor>& state) = 0;
  /// Never called; kept so that subclasses that override it still compile. A fused pass
  /// would write the live tensors before the update guard can check their values, so a
  /// subclass's updates run compute_update in the update chain's tensor form on copies,
  /// checked and then copied back (docs/guide.md, "Guarantees").
  // (Parameter names are comments here so that users' -Wextra builds stay quiet.)
  virtual bool fused_update(size_t /*index*/, const torch::Tensor& /*grad*/,
                            const torch::Tensor& /*hv*/, double /*grad_scale*/,
                            double /*clip_elem*/) {
    return false;
  }

  /// Live state of parameter `index` (algorithm slots), for fused kernels.
  std::vector<torch::Tensor>& slots(size_t index);
  /// The momentum velocity of parameter `index` (undefined when momentum is 0).
  torch::Tensor& velocity(size_t index);
  /// Whether this update uses Nesterov momentum (NAG forces it on).
  virtual bool nesterov() const;

 private:
  class HookRule;  // the hooks above as an UpdateRule

  // Whether the algorithm forces Nesterov momentum on every group (else each group's own).
  bool forced_nesterov() const;
  // std::logic_error naming `call` when the optimizer was built without a loss.
  void require_loss(const char* call) const;
  // The loss of one batch, its monitors ("loss" first) and the gradients it returned, checked.
  detail::BatchEvaluation evaluate_batch(const Batch& batch) const;
  // The loss and gradient of `batch` at the parameters as they stand: the kept point's when
  // it is of this batch and these parameters (then taken out), else evaluated (the
  // gradients the loss returned, or autograd's).
  detail::BatchEvaluation evaluate_point(const Batch& batch);
  // evaluate() of the run's one batch of everything (LoopState::point_data): the loss and
  // gradient at the point the next update starts from, evaluated once for both.
  Monitors evaluate_point_data(Dataset& data,
                               const std::function<void(int64_t, const Monitors&)>& after_batch);
  // step() for an algorithm that searches along a line (L-BFGS).
  Monitors search_step(const Batch& batch);
  // With monitor_gradients: each parameter's gradient norm (and the global one) as monitors.
  void add_gradient_monitors(Monitors& monitors, const std::vector<torch::Tensor>& grads) const;
  // step()'s update once the gradients (and ESGD's products) are computed.
  void update_from(const Monitors& monitors, std::vector<torch::Tensor>& grads,
                   std::vector<torch::Tensor>& hvs);
  // d loss / d params (zeros for a parameter the loss does not reach).
  std::vector<torch::Tensor> gradients(const torch::Tensor& loss, bool create_graph);

  // The parts the facade delegates to: the update engine (parameters, rule, state,
  // counters) and the loop's state between passes and runs (counters, best parameters).
  std::unique_ptr<detail::UpdateEngine> engine_;
  std::unique_ptr<detail::LoopState> loop_;
  std::unique_ptr<detail::RankGroup> ranks_;          // data-parallel, or the single local rank
  std::vector<std::shared_ptr<Callback>> callbacks_;  // the user's, in the order added
  Loss loss_;
  bool warned_unused_ = false;
  // The latest point evaluated with its gradient that the next step may start from (L-BFGS's
  // end point, a one-batch run's validation), and L-BFGS's buffers between updates.
  std::unique_ptr<detail::EvaluationCache> points_;
  std::unique_ptr<detail::LbfgsWorkspace> lbfgs_;
};

}  // namespace downhill
