#pragma once
// SGD, which NAG extends.

#include "algorithms/builtin.h"

namespace downhill::detail {

class Sgd : public BuiltinOptimizer {
 public:
  Sgd(Loss loss, Params params, Options options, std::string name = "SGD");

 protected:
  at::Tensor compute_update(size_t index, const at::Tensor& grad, const at::Tensor& hv,
                            std::vector<at::Tensor>& state) override;
  bool fused_update(size_t index, const at::Tensor& grad, const at::Tensor& hv, double grad_scale,
                    double clip_elem) override;
};

}  // namespace downhill::detail
