// NAG: SGD with Nesterov momentum always on.
#include "algorithms/sgd.h"

namespace downhill::detail {

namespace {

template <typename V>
struct Nag : Sgd<V> {
  static constexpr const char* name = "NAG";
  static constexpr bool kNesterov = true;
  using Sgd<V>::Sgd;
};

}  // namespace

DOWNHILL_DEFINE_BUILTIN(nag, Nag)

}  // namespace downhill::detail
