#include "callback_list.h"

#include <downhill/logging.h>
#include <spdlog/spdlog.h>

#include <exception>

namespace downhill::detail {

void CallbackList::notify(Hook hook, RunView& view) {
  current_ = &view;
  try {
    for (const auto& callback : callbacks_) {
      callback->stop_request_.reset();  // one asked outside a hook does not count
      ((*callback).*hook)(view);
      take_request(*callback);
    }
  } catch (...) {
    current_ = nullptr;
    throw;
  }
  current_ = nullptr;
}

void CallbackList::notify_quietly(Hook hook, RunView& view) noexcept {
  current_ = &view;
  for (const auto& callback : callbacks_) {
    try {
      ((*callback).*hook)(view);
    } catch (const std::exception& e) {
      logger()->error("a callback failed after the run ended: {}", e.what());
    } catch (...) {
      logger()->error("a callback failed after the run ended");
    }
    callback->stop_request_.reset();
  }
  current_ = nullptr;
}

bool CallbackList::request(StopReason reason, std::string detail) {
  if (stopping()) return false;
  stop_ = reason;
  stop_detail_ = std::move(detail);
  if (current_) current_->stop = reason;  // its stop_detail refers to stop_detail_
  return true;
}

void CallbackList::take_request(Callback& callback) {
  if (!callback.stop_request_) return;
  request(StopReason::kCallback, std::move(*callback.stop_request_));
  callback.stop_request_.reset();
}

}  // namespace downhill::detail
