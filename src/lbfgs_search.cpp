#include "lbfgs_search.h"

#include <downhill/logging.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>
#include <utility>

#include "update_engine.h"

namespace downhill::detail {

namespace {

// Two brackets ends whose distance along the direction is below this have met (as
// torch.optim.LBFGS's tolerance_change in its line search).
constexpr double kBracketTolerance = 1e-9;

// The minimizer of the cubic through (x1, f1) and (x2, f2) with slopes g1 and g2, within
// [lo, hi] (Nocedal & Wright, eq. 3.59); the middle of [lo, hi] when the cubic has none, or
// a point's value is not finite (a step too far).
double cubic_minimizer(double x1, double f1, double g1, double x2, double f2, double g2, double lo,
                       double hi) {
  const double middle = (lo + hi) / 2;
  if (!std::isfinite(f1) || !std::isfinite(f2) || !std::isfinite(g1) || !std::isfinite(g2)) {
    return middle;
  }
  const double d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2);
  const double d2_square = d1 * d1 - g1 * g2;
  if (!(d2_square >= 0)) return middle;
  const double d2 = std::sqrt(d2_square);
  const double at = x1 <= x2 ? x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
                             : x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2));
  if (!std::isfinite(at)) return middle;
  return std::min(std::max(at, lo), hi);
}

// One point tried along the direction: its step, loss and slope gᵀd, the gradient buffer
// holding its gradient, and its evaluation (loss tensor and monitors).
struct Trial {
  double t = 0;
  double f = 0;
  double gtd = 0;
  size_t buffer = 0;
  at::Tensor loss;
  Monitors monitors;
};

constexpr size_t kBuffers = 4;  // the start's gradient and three trials at most (the zoom's)

}  // namespace

// The search of one dtype, kept in the workspace between updates, so that its lists of
// pointers and sizes are made once.
class LbfgsSearch {
 public:
  virtual ~LbfgsSearch() = default;
  virtual BatchEvaluation run(BatchEvaluation start, const PointObjective& objective) = 0;
};

LbfgsWorkspace::LbfgsWorkspace() = default;
LbfgsWorkspace::~LbfgsWorkspace() = default;

namespace {

template <typename V>
class Search final : public LbfgsSearch {
 public:
  Search(UpdateEngine& engine, LbfgsWorkspace& work) : engine_(engine), work_(work) {
    const auto& params = engine.params();
    for (size_t i = 0; i < params.size(); ++i) {
      if (params.is_frozen(params.group_of(i)) || params.tensor(i).numel() == 0) continue;
      index_.push_back(i);
      sizes_.push_back(params.tensor(i).numel());
    }
  }

  BatchEvaluation run(BatchEvaluation start, const PointObjective& objective) override {
    objective_ = &objective;
    settings_ = lbfgs_settings(engine_.options());
    const double f0 = start.monitors.at("loss");
    if (index_.empty()) {  // every parameter frozen: nothing to search
      engine_.record_searched_update({.loss_before = f0, .loss_after = f0});
      return start;
    }
    prepare_buffers();
    const auto& g0 = buffer(0);
    if (!copy_gradients(start.grads, 0)) {
      engine_.skip("the gradient at the start point holds a NaN or an infinity");
      return start;
    }
    // The start's gradient may lie in a buffer the search reuses (the previous update's end
    // point): from here it is read from buffer 0, which the search leaves alone.
    for (size_t k = 0; k < index_.size(); ++k) start.grads[index_[k]] = work_.gradients[0][k];
    if (!std::isfinite(f0)) {
      engine_.skip("the loss at the start point is " + std::to_string(f0));
      return start;
    }
    const double g_max = max_abs(g0);
    // The update ends where it started: counted, with the start's measures and no step.
    const auto stay = [&] {
      engine_.record_searched_update({.gradient_max = g_max,
                                      .gradient_norm = std::sqrt(dot(g0, g0)),
                                      .loss_before = f0,
                                      .loss_after = f0});
      return start;
    };
    if (g_max == 0) return stay();  // a stationary point: no direction to search
    const auto& d = direction_;
    double gtd = two_loop(g0, d);
    if (!(gtd < 0)) {
      // The pairs give no descent direction (rounding in nearly flat curvature): start the
      // history anew, from steepest descent.
      for (const size_t i : index_) {
        auto& slots = engine_.slots(i);
        slots[0].zero_();
        slots[1].zero_();
      }
      gtd = two_loop(g0, d);
    }
    // A slope along d above −step_tolerance promises no step above it (torch.optim.LBFGS's
    // tolerance_change stops here too): no search, a step of 0, which that tolerance stops.
    if (gtd > -engine_.options().step_tolerance()) return stay();
    const double first_scale = engine_.update_count() == 0 ? std::min(1.0, 1.0 / sum_abs(g0)) : 1.0;
    const double t0 = first_scale * engine_.options().learning_rate();
    const auto& x0 = start_;
    for (size_t k = 0; k < index_.size(); ++k) {
      std::memcpy(x0[k], param(k), sizeof(V) * static_cast<size_t>(sizes_[k]));
    }
    f0_ = f0;
    gtd0_ = gtd;
    Trial accepted;
    try {
      accepted = settings_.line_search ? strong_wolfe(t0, max_abs(d)) : fixed_step(t0);
    } catch (...) {
      move_to(0);
      bump_versions();
      throw;
    }
    if (!std::isfinite(accepted.f)) {  // the fixed step's point
      move_to(0);
      bump_versions();
      engine_.skip("the loss at the point of the fixed step is " + std::to_string(accepted.f));
      return start;
    }
    move_to(accepted.t);
    bump_versions();
    if (accepted.t == 0) return stay();  // no point along the direction lowered the loss
    const auto& g = buffer(accepted.buffer);
    add_pair(accepted.t, d, g0, g);
    engine_.record_searched_update({.gradient_max = max_abs(g),
                                    .step_max = std::abs(accepted.t) * max_abs(d),
                                    .gradient_norm = std::sqrt(dot(g, g)),
                                    .loss_before = f0,
                                    .loss_after = accepted.f});
    BatchEvaluation end{std::move(accepted.loss), std::move(accepted.monitors), {}};
    end.grads.resize(engine_.params().size());
    for (size_t k = 0; k < index_.size(); ++k) {
      end.grads[index_[k]] = work_.gradients[accepted.buffer][k];
    }
    return end;
  }

 private:
  using Parts = std::vector<V*>;

  V* param(size_t k) const { return engine_.params().tensor(index_[k]).template data_ptr<V>(); }

  // `tensors`' memory, into `out` (whose storage is reused from update to update).
  static void find_parts(std::vector<at::Tensor>& tensors, Parts& out) {
    out.resize(tensors.size());
    for (size_t k = 0; k < tensors.size(); ++k) out[k] = tensors[k].template data_ptr<V>();
  }
  const Parts& buffer(size_t b) const { return buffers_[b]; }
  // Row `row` of state slot `slot` (0: s, 1: y) of each parameter, found once per update.
  const Parts& row(size_t slot, int64_t row) const { return rows_[slot][static_cast<size_t>(row)]; }
  void find_rows() {
    for (size_t slot = 0; slot < 2; ++slot) {
      rows_[slot].resize(static_cast<size_t>(settings_.history));
      for (size_t k = 0; k < index_.size(); ++k) {
        V* base = engine_.slots(index_[k])[slot].template data_ptr<V>();
        for (int64_t r = 0; r < settings_.history; ++r) {
          auto& row = rows_[slot][static_cast<size_t>(r)];
          row.resize(index_.size());
          row[k] = base + r * sizes_[k];
        }
      }
    }
  }

  // Four running sums, so that the additions need not wait for each other.
  double dot(const Parts& a, const Parts& b) const {
    double sums[4] = {0, 0, 0, 0};
    for (size_t k = 0; k < a.size(); ++k) {
      const V* x = a[k];
      const V* y = b[k];
      const int64_t n = sizes_[k];
      int64_t j = 0;
      for (; j + 4 <= n; j += 4) {
        for (int lane = 0; lane < 4; ++lane)
          sums[lane] += double(x[j + lane]) * double(y[j + lane]);
      }
      for (; j < n; ++j) sums[0] += double(x[j]) * double(y[j]);
    }
    return (sums[0] + sums[1]) + (sums[2] + sums[3]);
  }
  double max_abs(const Parts& a) const {
    double out = 0;
    for (size_t k = 0; k < a.size(); ++k) {
      for (int64_t j = 0; j < sizes_[k]; ++j) out = std::max(out, double(std::abs(a[k][j])));
    }
    return out;
  }
  double sum_abs(const Parts& a) const {
    double out = 0;
    for (size_t k = 0; k < a.size(); ++k) {
      for (int64_t j = 0; j < sizes_[k]; ++j) out += double(std::abs(a[k][j]));
    }
    return out;
  }
  // y += a·x
  void add_scaled(const Parts& y, double a, const Parts& x) const {
    const V scale = static_cast<V>(a);
    for (size_t k = 0; k < y.size(); ++k) {
      for (int64_t j = 0; j < sizes_[k]; ++j) y[k][j] += scale * x[k][j];
    }
  }

  // The buffers for this update: one per parameter that updates, of its shape, reused.
  void prepare_buffers() {
    const auto& params = engine_.params();
    const auto fits = [&](const std::vector<at::Tensor>& tensors) {
      if (tensors.size() != index_.size()) return false;
      for (size_t k = 0; k < index_.size(); ++k) {
        const auto& param = params.tensor(index_[k]);
        if (tensors[k].sizes() != param.sizes() || tensors[k].scalar_type() != param.scalar_type())
          return false;
      }
      return true;
    };
    const auto make = [&](std::vector<at::Tensor>& tensors) {
      if (fits(tensors)) return;
      tensors.clear();
      for (const size_t i : index_) {
        tensors.push_back(at::empty_like(params.tensor(i).detach(), at::MemoryFormat::Contiguous));
      }
    };
    make(work_.start);
    make(work_.direction);
    work_.gradients.resize(kBuffers);
    for (auto& gradient : work_.gradients) make(gradient);
    free_.assign(kBuffers, true);
    free_[0] = false;
    // A history setting changed since the slots were made: keep the newest pairs that fit.
    const auto history = settings_.history;
    for (const size_t i : index_) {
      auto& slots = engine_.slots(i);
      for (size_t slot = 0; slot < 2; ++slot) {
        auto& pairs = slots[slot];
        if (pairs.size(0) == history) continue;
        const int64_t kept = std::min(history, pairs.size(0));
        auto resized = at::zeros(
            [&] {
              auto shape = pairs.sizes().vec();
              shape[0] = history;
              return shape;
            }(),
            pairs.options());
        resized.narrow(0, history - kept, kept).copy_(pairs.narrow(0, pairs.size(0) - kept, kept));
        pairs = resized;
      }
    }
    find_rows();
    find_parts(work_.start, start_);
    find_parts(work_.direction, direction_);
    buffers_.resize(kBuffers);
    for (size_t b = 0; b < kBuffers; ++b) find_parts(work_.gradients[b], buffers_[b]);
  }

  // Copies the parameters' gradients (of every parameter; those that update are read) into
  // buffer `b`; false when one is not finite.
  bool copy_gradients(const std::vector<at::Tensor>& grads, size_t b) {
    auto& into = work_.gradients[b];
    for (size_t k = 0; k < index_.size(); ++k) {
      const auto& grad = grads[index_[k]];
      if (grad.data_ptr() == into[k].data_ptr()) continue;  // already there
      if (grad.is_contiguous() && grad.scalar_type() == into[k].scalar_type() &&
          grad.device() == into[k].device()) {
        std::memcpy(into[k].template data_ptr<V>(), grad.template data_ptr<V>(),
                    sizeof(V) * static_cast<size_t>(sizes_[k]));
      } else {
        into[k].copy_(grad);
      }
    }
    const auto& g = buffer(b);
    for (size_t k = 0; k < g.size(); ++k) {
      for (int64_t j = 0; j < sizes_[k]; ++j) {
        if (!std::isfinite(g[k][j])) return false;
      }
    }
    return true;
  }

  // d = −H·g by the two-loop recursion over the pairs kept (zero rows are empty), H₀ = γI
  // with γ = sᵀy / yᵀy of the newest pair (1 without one). Returns gᵀd.
  double two_loop(const Parts& g, const Parts& d) {
    const int64_t rows = settings_.history;
    alpha_.assign(static_cast<size_t>(rows), 0.0);
    rho_.assign(static_cast<size_t>(rows), 0.0);
    for (size_t k = 0; k < d.size(); ++k) {
      for (int64_t j = 0; j < sizes_[k]; ++j) d[k][j] = -g[k][j];
    }
    double gamma = 1.0;
    bool newest = true;
    for (int64_t r = rows - 1; r >= 0; --r) {
      const auto& s = row(0, r);
      const auto& y = row(1, r);
      const double ys = dot(y, s);
      if (ys == 0) continue;  // an empty row
      if (newest) {
        gamma = ys / dot(y, y);
        newest = false;
      }
      rho_[r] = 1.0 / ys;
      alpha_[r] = rho_[r] * dot(s, d);
      add_scaled(d, -alpha_[r], y);
    }
    const V scale = static_cast<V>(gamma);
    for (size_t k = 0; k < d.size(); ++k) {
      for (int64_t j = 0; j < sizes_[k]; ++j) d[k][j] *= scale;
    }
    for (int64_t r = 0; r < rows; ++r) {
      if (rho_[r] == 0) continue;
      const auto& s = row(0, r);
      const auto& y = row(1, r);
      const double beta = rho_[r] * dot(y, d);
      add_scaled(d, alpha_[r] - beta, s);
    }
    return dot(g, d);
  }

  // Keeps (s, y) = (t·d, g − g₀) as the newest pair (the last row; the rows move up, the
  // oldest pair out), unless sᵀy ≤ ε‖s‖‖y‖: no upward curvature along the step, to the
  // dtype's precision ε.
  void add_pair(double t, const Parts& d, const Parts& g0, const Parts& g) {
    const V step = static_cast<V>(t);
    double ys = 0, ss = 0, yy = 0;
    for (size_t k = 0; k < d.size(); ++k) {
      for (int64_t j = 0; j < sizes_[k]; ++j) {
        const double s = double(step * d[k][j]);
        const double y = double(g[k][j] - g0[k][j]);
        ys += s * y;
        ss += s * s;
        yy += y * y;
      }
    }
    const double bound = std::numeric_limits<V>::epsilon() * std::sqrt(ss * yy);
    if (!(ys > bound)) {
      if (!std::exchange(work_.warned_skipped_pair, true)) {
        logger()->warn(
            "{}: a curvature pair with s'y = {:g} <= eps*|s|*|y| = {:g} was not kept (the loss "
            "does not curve upward along the step, to {} precision); the next ones are not "
            "logged",
            engine_.name(), ys, bound, sizeof(V) == 4 ? "float32" : "float64");
      }
      return;
    }
    const auto rows = static_cast<size_t>(settings_.history);
    for (size_t k = 0; k < index_.size(); ++k) {
      const auto n = static_cast<size_t>(sizes_[k]);
      auto& slots = engine_.slots(index_[k]);
      V* s = slots[0].template data_ptr<V>();
      V* y = slots[1].template data_ptr<V>();
      std::memmove(s, s + n, sizeof(V) * n * (rows - 1));
      std::memmove(y, y + n, sizeof(V) * n * (rows - 1));
      s += n * (rows - 1);
      y += n * (rows - 1);
      for (size_t j = 0; j < n; ++j) {
        s[j] = step * d[k][j];
        y[j] = g[k][j] - g0[k][j];
      }
    }
  }

  // The parameters were written through their memory: autograd is told, as after the update
  // chain's fused kernels.
  void bump_versions() {
    for (const size_t i : index_) engine_.params().tensor(i).unsafeGetTensorImpl()->bump_version();
  }

  // Writes x₀ + t·d into the parameters.
  void move_to(double t) {
    const auto& x0 = start_;
    const auto& d = direction_;
    const V step = static_cast<V>(t);
    for (size_t k = 0; k < index_.size(); ++k) {
      V* p = param(k);
      for (int64_t j = 0; j < sizes_[k]; ++j) p[j] = x0[k][j] + step * d[k][j];
    }
  }

  size_t acquire() {
    for (size_t b = 1; b < kBuffers; ++b) {
      if (free_[b]) {
        free_[b] = false;
        return b;
      }
    }
    throw std::logic_error("downhill: L-BFGS's line search ran out of gradient buffers");
  }
  void release(const Trial& trial) {
    if (trial.buffer != 0) free_[trial.buffer] = true;
  }

  // The point at step t: its loss, gradient and slope. A point whose loss or slope is not
  // finite counts as too far (loss +∞).
  Trial evaluate(double t) {
    move_to(t);
    BatchEvaluation evaluation = (*objective_)();
    Trial trial;
    trial.t = t;
    trial.buffer = acquire();
    trial.f = evaluation.monitors.at("loss");
    const bool finite_grad = copy_gradients(evaluation.grads, trial.buffer);
    trial.gtd = dot(buffer(trial.buffer), direction_);
    if (!finite_grad || !std::isfinite(trial.f) || !std::isfinite(trial.gtd)) {
      trial.f = std::numeric_limits<double>::infinity();
      trial.gtd = 0;
    }
    trial.loss = std::move(evaluation.loss);
    trial.monitors = std::move(evaluation.monitors);
    return trial;
  }

  Trial start_trial() const {
    Trial trial;
    trial.f = f0_;
    trial.gtd = gtd0_;
    return trial;
  }

  Trial fixed_step(double t) { return evaluate(t); }

  bool sufficient_decrease(const Trial& trial) const {
    return trial.f <= f0_ + settings_.c1 * trial.t * gtd0_;
  }
  bool curvature_holds(const Trial& trial) const {
    return std::abs(trial.gtd) <= -settings_.c2 * gtd0_;
  }

  // The strong-Wolfe line search from step t: bracketing (Algorithm 3.5), then zoom
  // (Algorithm 3.6), as torch.optim.LBFGS's. Returns the point it ends at (t = 0: none was
  // lower than the start).
  Trial strong_wolfe(double t, double d_norm) {
    const int64_t budget = settings_.max_evaluations;
    Trial previous = start_trial();
    Trial current = evaluate(t);
    int64_t iterations = 0;
    std::array<Trial, 2> bracket;
    size_t ends = 0;  // 1: bracket[0] satisfies both conditions
    bool done = false;
    while (iterations < budget) {
      if (!sufficient_decrease(current) || (iterations > 1 && current.f >= previous.f)) {
        bracket = {std::move(previous), std::move(current)};
        ends = 2;
        break;
      }
      if (curvature_holds(current)) {
        release(previous);
        bracket[0] = std::move(current);
        ends = 1;
        done = true;
        break;
      }
      if (current.gtd >= 0) {  // past a minimum along the line
        bracket = {std::move(previous), std::move(current)};
        ends = 2;
        break;
      }
      const double lo = current.t + 0.01 * (current.t - previous.t);
      const double hi = current.t * 10;
      const double next = cubic_minimizer(previous.t, previous.f, previous.gtd, current.t,
                                          current.f, current.gtd, lo, hi);
      release(previous);
      previous = std::move(current);
      current = evaluate(next);
      ++iterations;
    }
    if (ends == 0) {  // the budget ran out while extrapolating
      release(previous);
      bracket = {start_trial(), std::move(current)};
      ends = 2;
    }
    if (ends == 1) return bracket[0];

    size_t low = bracket[0].f <= bracket[1].f ? 0 : 1;
    bool little_progress = false;
    while (!done && iterations < budget) {
      if (std::abs(bracket[1].t - bracket[0].t) * d_norm < kBracketTolerance) break;
      const double top = std::max(bracket[0].t, bracket[1].t);
      const double bottom = std::min(bracket[0].t, bracket[1].t);
      double next = cubic_minimizer(bracket[0].t, bracket[0].f, bracket[0].gtd, bracket[1].t,
                                    bracket[1].f, bracket[1].gtd, bottom, top);
      // Too near an end: step in from it, unless the last try was not too near as well.
      const double margin = 0.1 * (top - bottom);
      if (std::min(top - next, next - bottom) < margin) {
        if (little_progress || next >= top || next <= bottom) {
          next = std::abs(next - top) < std::abs(next - bottom) ? top - margin : bottom + margin;
          little_progress = false;
        } else {
          little_progress = true;
        }
      } else {
        little_progress = false;
      }
      Trial trial = evaluate(next);
      ++iterations;
      const size_t high = 1 - low;
      if (!sufficient_decrease(trial) || trial.f >= bracket[low].f) {
        release(bracket[high]);
        bracket[high] = std::move(trial);
        low = bracket[0].f <= bracket[1].f ? 0 : 1;
      } else {
        if (curvature_holds(trial)) {
          done = true;
        } else if (trial.gtd * (bracket[high].t - bracket[low].t) >= 0) {
          // The low end becomes the high end, keeping its buffer.
          release(bracket[high]);
          bracket[high] = std::move(bracket[low]);
        } else {
          release(bracket[low]);
        }
        bracket[low] = std::move(trial);
      }
    }
    release(bracket[1 - low]);
    return bracket[low];
  }

  UpdateEngine& engine_;
  LbfgsWorkspace& work_;
  const PointObjective* objective_ = nullptr;  // this update's
  LbfgsSettings settings_;                     // this update's
  Parts start_, direction_;                    // the workspace's buffers' memory
  std::vector<Parts> buffers_;
  std::vector<size_t> index_;   // the parameters that update
  std::vector<int64_t> sizes_;  // their element counts
  std::vector<bool> free_;      // which gradient buffers are free
  std::vector<double> alpha_, rho_;
  std::array<std::vector<Parts>, 2> rows_;
  double f0_ = 0;
  double gtd0_ = 0;
};

}  // namespace

BatchEvaluation lbfgs_update(UpdateEngine& engine, LbfgsWorkspace& work, BatchEvaluation start,
                             const PointObjective& objective) {
  if (!work.search) {
    // The updated parameters share one dtype (check_searched_params); the first one's decides.
    bool single = false;
    for (size_t i = 0; i < engine.params().size(); ++i) {
      if (engine.params().is_frozen(engine.params().group_of(i))) continue;
      single = engine.params().tensor(i).scalar_type() == at::kFloat;
      break;
    }
    work.search = single
                      ? std::unique_ptr<LbfgsSearch>(std::make_unique<Search<float>>(engine, work))
                      : std::make_unique<Search<double>>(engine, work);
  }
  return work.search->run(std::move(start), objective);
}

}  // namespace downhill::detail
