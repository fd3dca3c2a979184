// NAG: SGD with Nesterov momentum forced on.
#include "algorithms/sgd.h"

namespace downhill::detail {

namespace {

class Nag final : public Sgd {
 public:
  Nag(Loss loss, Params params, Options options)
      : Sgd(std::move(loss), std::move(params), std::move(options), "NAG") {}

 protected:
  bool nesterov() const override { return true; }
};

}  // namespace

std::unique_ptr<Optimizer> make_nag(Loss loss, Params params, Options options) {
  return std::make_unique<Nag>(std::move(loss), std::move(params), std::move(options));
}

}  // namespace downhill::detail
