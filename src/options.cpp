#include <downhill/options.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <sstream>
#include <stdexcept>

#include "text.h"

namespace downhill {

std::string_view to_string(HvMethod method) {
  switch (method) {
    case HvMethod::kRop:
      return "rop";
    case HvMethod::kLop:
      return "lop";
    case HvMethod::kGrad:
      return "grad";
  }
  return "?";
}

Options& Options::hv_method(std::string_view name) {
  const std::string lower = detail::to_lower(name);
  for (HvMethod m : {HvMethod::kRop, HvMethod::kLop, HvMethod::kGrad}) {
    if (lower == to_string(m)) return hv_method(m);
  }
  throw std::invalid_argument("downhill: setting hv_method = '" + std::string(name) +
                              "' is invalid; allowed: rop, lop, grad");
}

namespace {

template <typename T>
[[noreturn]] void refuse(const char* setting, T value, const char* allowed) {
  std::ostringstream message;
  message << "downhill: setting " << setting << " = " << value
          << " is invalid; allowed: " << allowed;
  throw std::invalid_argument(message.str());
}

// `value > 0`, written so that NaN fails too.
void require_positive(const char* setting, double value) {
  if (!(value > 0) || std::isinf(value)) refuse(setting, value, "a finite number > 0");
}

void require_non_negative(const char* setting, double value) {
  if (!(value >= 0) || std::isinf(value)) refuse(setting, value, "a finite number >= 0");
}

// ln 2 / −ln β, the half-life of an average that keeps β of the old value.
double halflife_of(const char* setting, double beta) {
  if (!(beta > 0 && beta < 1)) refuse(setting, beta, "(0, 1)");
  return std::log(2.0) / -std::log(beta);
}

}  // namespace

Options& Options::beta1(double beta) { return beta1_halflife(halflife_of("beta1", beta)); }
Options& Options::beta2(double beta) { return beta2_halflife(halflife_of("beta2", beta)); }
double Options::beta1() const { return std::exp(-std::log(2.0) / beta1_halflife_); }
double Options::beta2() const { return std::exp(-std::log(2.0) / beta2_halflife_); }

void Options::validate() const {
  require_positive("learning_rate", learning_rate_);
  if (!(momentum_ >= 0 && momentum_ < 1)) refuse("momentum", momentum_, "[0, 1)");
  require_non_negative("max_gradient_norm", max_gradient_norm_);
  require_non_negative("max_gradient_elem", max_gradient_elem_);
  require_positive("rms_halflife", rms_halflife_);
  require_non_negative("rms_regularizer", rms_regularizer_);
  require_positive("beta1_halflife", beta1_halflife_);
  require_positive("beta2_halflife", beta2_halflife_);
  if (!(rprop_increase_ >= 1) || std::isinf(rprop_increase_)) {
    refuse("rprop_increase", rprop_increase_, "a finite number >= 1");
  }
  if (!(rprop_decrease_ > 0 && rprop_decrease_ <= 1)) {
    refuse("rprop_decrease", rprop_decrease_, "(0, 1]");
  }
  require_non_negative("rprop_min_step", rprop_min_step_);
  if (!(rprop_max_step_ >= rprop_min_step_) || std::isinf(rprop_max_step_)) {
    std::ostringstream allowed;
    allowed << "a finite number >= rprop_min_step (" << rprop_min_step_ << ")";
    refuse("rprop_max_step", rprop_max_step_, allowed.str().c_str());
  }
  require_non_negative("weight_decay", weight_decay_);
  require_non_negative("max_gradient_global_norm", max_gradient_global_norm_);
  if (accumulate_ < 1) refuse("accumulate", accumulate_, "an integer >= 1");
  if (plateau_patience_ < 0) refuse("plateau_patience", plateau_patience_, "an integer >= 0");
  if (!(plateau_factor_ > 0 && plateau_factor_ < 1)) {
    refuse("plateau_factor", plateau_factor_, "(0, 1)");
  }
  require_non_negative("plateau_min_learning_rate", plateau_min_learning_rate_);
  if (plateau_cooldown_ < 0) refuse("plateau_cooldown", plateau_cooldown_, "an integer >= 0");
  if (patience_ < 0) refuse("patience", patience_, "an integer >= 0");
  if (validate_every_ < 1) refuse("validate_every", validate_every_, "an integer >= 1");
  require_non_negative("min_improvement", min_improvement_);
  if (max_updates_ && *max_updates_ < 1) refuse("max_updates", *max_updates_, "an integer >= 1");
  if (train_batches_ && *train_batches_ < 1) {
    refuse("train_batches", *train_batches_, "an integer >= 1");
  }
  if (valid_batches_ && *valid_batches_ < 1) {
    refuse("valid_batches", *valid_batches_, "an integer >= 1");
  }
  if (max_nonfinite_ < 1) refuse("max_nonfinite", max_nonfinite_, "an integer >= 1");
  if (checkpoint_every_ < 1) refuse("checkpoint_every", checkpoint_every_, "an integer >= 1");
  require_positive("distributed_timeout", distributed_timeout_);
  if (resume_ && checkpoint_.empty()) {
    refuse("resume", "true", "resume(true) needs checkpoint(path) set");
  }
}

std::vector<std::pair<std::string, std::string>> Options::settings() const {
  std::vector<std::pair<std::string, std::string>> out;
  auto add = [&](const char* name, const auto& value) {
    std::ostringstream text;
    text << value;
    out.emplace_back(name, text.str());
  };
  auto add_optional = [&](const char* name, const std::optional<int64_t>& value) {
    out.emplace_back(name, value ? std::to_string(*value) : std::string("unset"));
  };
  add("algo", algo_);
  add("learning_rate", learning_rate_);
  add("momentum", momentum_);
  add("nesterov", nesterov_ ? "true" : "false");
  add("max_gradient_norm", max_gradient_norm_);
  add("max_gradient_elem", max_gradient_elem_);
  add("rms_halflife", rms_halflife_);
  add("rms_regularizer", rms_regularizer_);
  add("beta1_halflife", beta1_halflife_);
  add("beta2_halflife", beta2_halflife_);
  add("rprop_increase", rprop_increase_);
  add("rprop_decrease", rprop_decrease_);
  add("rprop_min_step", rprop_min_step_);
  add("rprop_max_step", rprop_max_step_);
  add("hv_method", to_string(hv_method_));
  add("weight_decay", weight_decay_);
  add("max_gradient_global_norm", max_gradient_global_norm_);
  add("learning_rate_schedule", learning_rate_schedule_ ? "set" : "none");
  add("accumulate", accumulate_);
  add("fused", fused_ ? "true" : "false");
  add("patience", patience_);
  add("validate_every", validate_every_);
  add("min_improvement", min_improvement_);
  add("plateau_patience", plateau_patience_);
  add("plateau_factor", plateau_factor_);
  add("plateau_min_learning_rate", plateau_min_learning_rate_);
  add("plateau_cooldown", plateau_cooldown_);
  add("monitor_gradients", monitor_gradients_ ? "true" : "false");
  add("batch_size", batch_size_);
  add_optional("max_updates", max_updates_);
  add_optional("train_batches", train_batches_);
  add_optional("valid_batches", valid_batches_);
  add("max_nonfinite", max_nonfinite_);
  add("checkpoint", checkpoint_.empty() ? std::string("none") : checkpoint_);
  add("checkpoint_every", checkpoint_every_);
  add("resume", resume_ ? "true" : "false");
  add("history", history_.empty() ? std::string("none") : history_);
  add("distributed", distributed_ ? "true" : "false");
  add("distributed_timeout", distributed_timeout_);
  add("process_group", process_group_ ? "given" : "none");
  return out;
}

}  // namespace downhill
