#pragma once
// The built-in algorithms: one list, which the registry and the tests read. A new
// algorithm is its own file under src/algorithms/ and one name added here.

#include <downhill/rule.h>

#include <memory>
#include <string>
#include <vector>

/// X(id) for every built-in algorithm, in the order tests and docs list them.
#define DOWNHILL_BUILTIN_ALGORITHMS(X) \
  X(sgd) X(nag) X(rprop) X(rmsprop) X(adagrad) X(adadelta) X(esgd) X(adam)

namespace downhill::detail {

#define DOWNHILL_DECLARE_BUILTIN(id) std::unique_ptr<UpdateRule> make_##id##_rule();
DOWNHILL_BUILTIN_ALGORITHMS(DOWNHILL_DECLARE_BUILTIN)
#undef DOWNHILL_DECLARE_BUILTIN

/// Defines make_<id>_rule() for the rule template `Rule`, in the rule's file.
#define DOWNHILL_DEFINE_BUILTIN(id, Rule) \
  std::unique_ptr<UpdateRule> make_##id##_rule() { return std::make_unique<RuleRunner<Rule>>(); }

}  // namespace downhill::detail
