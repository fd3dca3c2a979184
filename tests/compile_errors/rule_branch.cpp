// Must not compile: a rule body that branches on a value. The test (tests/CMakeLists.txt,
// rule_branch_error) passes when the compiler's message is downhill's one line.
#include <downhill/rule.h>

#include <array>

template <typename V>
struct Branching {
  static constexpr const char* name = "Branching";
  static constexpr std::array<const char*, 0> state = {};
  V lr;
  explicit Branching(const downhill::RuleContext& c) : lr(c.constant<V>(c.learning_rate())) {}
  V operator()(const V& g, std::array<V, 0>&) const {
    if (g > 0) return lr;  // lanes::select(g > 0, lr, -lr) is what works
    return -lr;
  }
};

int main() { downhill::register_rule<Branching>(); }
