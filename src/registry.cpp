#include <downhill/registry.h>

#include <algorithm>
#include <cctype>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "algorithms/builtin.h"
#include "text.h"

namespace downhill {

namespace {

// A built-in algorithm's factory: the Optimizer facade over its rule, with the algorithm's own
// defaults for the settings left unset.
template <std::unique_ptr<detail::UpdateRule> (*make_rule)(), Options (*with_defaults)(Options)>
std::unique_ptr<Optimizer> make_builtin(Loss loss, Params params, Options options) {
  return detail::make_rule_optimizer(std::move(loss), std::move(params),
                                     with_defaults(std::move(options)), make_rule());
}

struct Registry {
  std::mutex mutex;
  std::map<std::string, Factory> factories{
#define DOWNHILL_BUILTIN_FACTORY(id) \
  {#id, make_builtin<detail::make_##id##_rule, detail::with_##id##_defaults>},
      DOWNHILL_BUILTIN_ALGORITHMS(DOWNHILL_BUILTIN_FACTORY)
          DOWNHILL_SEARCH_ALGORITHMS(DOWNHILL_BUILTIN_FACTORY)
#undef DOWNHILL_BUILTIN_FACTORY
  };
};

Registry& registry() {
  static Registry instance;
  return instance;
}

std::string known_names() {
  std::string out;
  for (const auto& name : algorithm_names()) out += (out.empty() ? "" : ", ") + name;
  return out;
}

}  // namespace

namespace detail {

Options with_algorithm_defaults(Options options) {
  const std::string algo = to_lower(options.algo());
#define DOWNHILL_BUILTIN_DEFAULTS(id) \
  if (algo == #id) return with_##id##_defaults(std::move(options));
  DOWNHILL_BUILTIN_ALGORITHMS(DOWNHILL_BUILTIN_DEFAULTS)
  DOWNHILL_SEARCH_ALGORITHMS(DOWNHILL_BUILTIN_DEFAULTS)
#undef DOWNHILL_BUILTIN_DEFAULTS
  return options;
}

void check_state_names(const std::string& algorithm, const std::vector<std::string>& names) {
  for (size_t k = 0; k < names.size(); ++k) {
    const auto& name = names[k];
    std::string problem;
    if (name.empty()) problem = "is empty";
    if (name == "velocity") problem = "is momentum's (state() lists '<param>.velocity')";
    for (size_t j = 0; j < k && problem.empty(); ++j) {
      if (names[j] == name)
        problem = "names slots " + std::to_string(j) + " and " + std::to_string(k);
    }
    if (problem.empty()) continue;
    throw std::invalid_argument("downhill: algorithm '" + algorithm + "': its state name '" + name +
                                "' " + problem +
                                "; each state tensor needs a name of its own, not 'velocity'");
  }
}

}  // namespace detail

std::unique_ptr<Optimizer> build(std::string_view algo, Loss loss, Params params, Options options) {
  Factory factory;
  {
    auto& r = registry();
    std::lock_guard<std::mutex> lock(r.mutex);
    auto it = r.factories.find(detail::to_lower(algo));
    if (it != r.factories.end()) factory = it->second;
  }
  if (!factory) {
    const std::string closest = detail::closest_name(algo, algorithm_names());
    throw std::invalid_argument("downhill: unknown algorithm '" + std::string(algo) + "'" +
                                (closest.empty() ? "" : "; did you mean '" + closest + "'?") +
                                "; known algorithms: " + known_names());
  }
  auto optimizer = factory(std::move(loss), std::move(params), std::move(options));
  if (!optimizer) {
    throw std::invalid_argument(
        "downhill: the factory registered for algorithm '" + std::string(algo) +
        "' returned no optimizer (a null pointer); a factory must return one "
        "or throw");
  }
  return optimizer;
}

std::unique_ptr<Optimizer> build(std::string_view algo, Params params, Options options) {
  return build(algo, Loss(), std::move(params), std::move(options));
}

void register_algorithm(std::string_view name, Factory factory) {
  if (name.empty()) throw std::invalid_argument("downhill: an algorithm name must not be empty");
  if (!factory) {
    throw std::invalid_argument("downhill: the factory for algorithm '" + std::string(name) +
                                "' is empty");
  }
  auto& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  if (!r.factories.emplace(detail::to_lower(name), std::move(factory)).second) {
    throw std::invalid_argument("downhill: an algorithm named '" + detail::to_lower(name) +
                                "' is already registered");
  }
}

std::vector<std::string> builtin_algorithm_names() {
  return {
#define DOWNHILL_BUILTIN_NAME(id) #id,
      DOWNHILL_BUILTIN_ALGORITHMS(DOWNHILL_BUILTIN_NAME)
#undef DOWNHILL_BUILTIN_NAME
  };
}

std::vector<std::string> algorithm_names() {
  auto& r = registry();
  std::lock_guard<std::mutex> lock(r.mutex);
  std::vector<std::string> names;
  for (const auto& [name, factory] : r.factories) names.push_back(name);
  return names;
}

}  // namespace downhill
