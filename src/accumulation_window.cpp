#include "accumulation_window.h"

#include <stdexcept>
#include <string>
#include <utility>

namespace downhill::detail {

bool AccumulationWindow::add(std::vector<at::Tensor>& grads, int64_t size) {
  if (size == 1) return true;
  at::NoGradGuard no_grad;
  if (count_ == 0) {
    sums_.assign(grads.size(), at::Tensor());
    for (size_t i = 0; i < grads.size(); ++i) {
      if (grads[i].defined()) sums_[i] = grads[i].detach().clone(at::MemoryFormat::Contiguous);
    }
  } else {
    for (size_t i = 0; i < grads.size(); ++i) {
      if (sums_[i].defined()) sums_[i].add_(grads[i]);
    }
  }
  if (++count_ < size) return false;
  for (auto& sum : sums_) {
    if (sum.defined()) sum.div_(static_cast<double>(size));
  }
  grads = std::move(sums_);
  clear();
  return true;
}

void AccumulationWindow::clear() {
  sums_.clear();
  count_ = 0;
}

void AccumulationWindow::check_size_change(int64_t from, int64_t to) const {
  if (count_ == 0 || to == from) return;
  throw std::invalid_argument("downhill: change_options: accumulate cannot change while " +
                              std::to_string(count_) +
                              " batches of a window are summed; change it after the update");
}

void AccumulationWindow::commit(WindowSnapshot&& snapshot) {
  count_ = snapshot.count;
  sums_ = std::move(snapshot.sums);
}

}  // namespace downhill::detail
