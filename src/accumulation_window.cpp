#include "accumulation_window.h"

#include <torch/serialize/input-archive.h>
#include <torch/serialize/output-archive.h>

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

void AccumulationWindow::save(torch::serialize::OutputArchive& archive, int64_t size) const {
  archive.write("accumulate", c10::IValue(size));
  archive.write("window_count", c10::IValue(count_));
  for (size_t i = 0; i < sums_.size() && count_ > 0; ++i) {
    if (sums_[i].defined()) archive.write(archive_key("window", i), sums_[i]);
  }
}

WindowSnapshot AccumulationWindow::read(torch::serialize::InputArchive& archive,
                                        const Params& params, int64_t size,
                                        const Mismatch& mismatch) {
  WindowSnapshot snapshot;
  snapshot.count = read_value(archive, "window_count").toInt();
  if (snapshot.count == 0) return snapshot;
  const auto accumulate = read_value(archive, "accumulate").toInt();
  if (accumulate != size) {
    mismatch("it holds " + std::to_string(snapshot.count) + " batches of a window of " +
             std::to_string(accumulate) + " (accumulate), this optimizer accumulates " +
             std::to_string(size));
  }
  snapshot.sums.resize(params.size());
  for (size_t i = 0; i < params.size(); ++i) {
    if (!archive.try_read(archive_key("window", i), snapshot.sums[i])) continue;
    expect_like(snapshot.sums[i], params.tensor(i),
                "the accumulated gradient of parameter '" + params.name(i) + "'", mismatch);
  }
  return snapshot;
}

void AccumulationWindow::commit(WindowSnapshot&& snapshot) {
  count_ = snapshot.count;
  sums_ = std::move(snapshot.sums);
}

}  // namespace downhill::detail
