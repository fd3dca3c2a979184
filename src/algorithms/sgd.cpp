#include "algorithms/sgd.h"

namespace downhill::detail {

DOWNHILL_DEFINE_BUILTIN(sgd, Sgd)

}  // namespace downhill::detail
