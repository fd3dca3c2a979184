#pragma once
// Writing an algorithm: a rule type, registered by name, runs in the same update chain
// as the built-in algorithms (clipping → the rule → momentum), fused into one pass over
// each parameter's memory on the CPU and as tensor operations elsewhere.
//
// A rule is a class template over the value type V its body computes on — float or
// double (one element, in the fused kernel) or at::Tensor (the tensor reference):
//
//   template <typename V>
//   struct Lion {
//     static constexpr const char* name = "Lion";                    // display name
//     static constexpr std::array<const char*, 1> state = {"m"};     // named state
//     V lr, beta1, rest1, beta2, rest2;                              // this update's constants
//     explicit Lion(const downhill::RuleContext& c)
//         : lr(c.constant<V>(c.learning_rate())), ... {}
//     V operator()(const V& g, std::array<V, 1>& s) const {          // the body
//       auto& [m] = s;
//       const V u = lr * downhill::lanes::sign(beta1 * m + rest1 * g);
//       m = beta2 * m + rest2 * g;
//       return u;
//     }
//   };
//   downhill::register_rule<Lion>("my_lion");  // build("my_lion", ...) now finds it
//
// The body receives the clipped gradient g and the parameter's state (read before, written
// after), and returns the update u; momentum then applies it (p ← p − u without momentum).
// Write it with + − × ÷, comparisons, and downhill::lanes (select, sqrt, abs, min, max,
// clamp, sign) so that it compiles for both value types; take every constant from the
// context (RuleContext::constant) so that both round alike. Optional members:
//   - `V operator()(const V& g, const V& hv, std::array<V, N>& s) const` instead: the
//     rule needs Hessian-vector products (as ESGD), which step() computes;
//   - `static double initial_value(size_t slot, const downhill::Options&)`: the state's
//     initial value (0 otherwise);
//   - `static double state_minimum(size_t slot)`: the least value the slot may hold (0 for
//     a running mean of squares); a checkpoint holding less is refused (−∞ otherwise);
//   - `static constexpr bool kNesterov = true`: always use Nesterov momentum;
//   - `static constexpr bool kUsesLearningRate = false`: the update is not proportional to
//     the learning rate (as ADADELTA's), so weight decay adds λ·p rather than lr·λ·p;
//   - `static constexpr bool kScheduleInLearningRate = true`: the update is
//     c.learning_rate() times terms free of it (as SGD's and Adam's), so the schedule's
//     factor f(t) is taken there — c.learning_rate() is then lr·f(t), formed in double and
//     rounded once — rather than multiplying the update after the body;
//   - hyperparameters of its own, set per build by name like any other setting: declared as
//     downhill::Setting handles (downhill/settings.h) outside the template, read in the
//     constructor with `handle(c.options())`, and `static void declare_settings()` touching
//     them, which register_rule calls so that they are in the table before any Options is
//     read (docs/guide.md, "Settings by name");
//   - `using Settings = S;` (S a struct declared outside the template, so that it is one
//     type for every V) and a constructor `(const RuleContext&, const Settings&)`:
//     settings fixed when the rule is registered, given to register_rule;
//   - `static void check_options(const downhill::Options&, at::ScalarType dtype)`: throws
//     std::invalid_argument for settings whose arithmetic degenerates for parameters of
//     `dtype` (an ε the body divides by that is 0, ...), at build and change_options;
//   - `static constexpr bool kBounded = false`: the body uses more than the operations
//     above, so the update guard cannot run it on ranges of values (V = Interval<T>,
//     downhill/detail/interval.h); each update then takes the guard's checked path.
// The update guard runs the body a third way, on the ranges [lo, hi] of its inputs, to prove
// that an update writes finite values only before it runs in place; an update it cannot
// prove runs on copies first, and one that would write a NaN or an infinity changes nothing
// (apply() returns false).
// docs/guide.md ("Writing your own algorithm") has a complete example; so does
// examples/custom_rule.cpp. The fused kernel is compiled in your code, with your flags:
// -O3 (or -O2 -ftree-vectorize) vectorizes it, and -ffp-contract=off keeps the compiler
// from fusing a multiply and an add into one FMA (GCC and Clang may do so by default where
// the target has FMA), so that the kernel and the reference agree bit for bit, as they do
// for the built-in algorithms.

#include <downhill/detail/rule_runner.h>
#include <downhill/lanes.h>
#include <downhill/optimizer.h>
#include <downhill/registry.h>
#include <downhill/rule_context.h>
#include <downhill/settings.h>

#include <memory>
#include <string>
#include <string_view>
#include <utility>

namespace downhill {

namespace detail {
/// Calls Rule's `declare_settings()`, if it has one: its hyperparameters enter the settings table.
template <template <typename> class Rule>
void declare_rule_settings() {
  if constexpr (requires { Rule<float>::declare_settings(); }) Rule<float>::declare_settings();
}

/// An Optimizer whose algorithm is `rule` (what build() returns for a registered rule).
std::unique_ptr<Optimizer> make_rule_optimizer(Loss loss, Params params, Options options,
                                               std::unique_ptr<UpdateRule> rule);
}  // namespace detail

/// Registers the rule template `Rule` under `name` (case-insensitive; Rule's own name when
/// empty), with its `settings` when it has a nested Settings type, so that build() finds it
/// and algorithm_names() lists it. Throws std::invalid_argument if the name is taken.
template <template <typename> class Rule>
void register_rule(std::string_view name = {},
                   typename detail::RuleRunner<Rule>::Settings settings = {}) {
  detail::check_state_names(Rule<float>::name, detail::RuleRunner<Rule>().state_names());
  detail::declare_rule_settings<Rule>();
  register_algorithm(name.empty() ? std::string_view(Rule<float>::name) : name,
                     [settings](Loss loss, Params params, Options options) {
                       return detail::make_rule_optimizer(
                           std::move(loss), std::move(params), std::move(options),
                           std::make_unique<detail::RuleRunner<Rule>>(settings));
                     });
}

}  // namespace downhill
