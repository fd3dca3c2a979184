#include "communicator.h"

#include <ATen/ScalarOps.h>
#include <downhill/distributed.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <mutex>
#include <numeric>
#include <optional>
#include <stdexcept>
#include <string_view>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <unordered_map>

#include "text.h"

namespace downhill {

struct ProcessGroup::Impl {
  c10::intrusive_ptr<c10d::ProcessGroup> group;
};

ProcessGroup::ProcessGroup(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}

std::shared_ptr<const ProcessGroup> ProcessGroup::of(c10::intrusive_ptr<c10d::ProcessGroup> group) {
  if (!group) throw std::invalid_argument("downhill: ProcessGroup::of: the process group is null");
  auto impl = std::make_shared<Impl>();
  impl->group = std::move(group);
  return std::shared_ptr<const ProcessGroup>(new ProcessGroup(std::move(impl)));
}

c10::intrusive_ptr<c10d::ProcessGroup> ProcessGroup::group() const { return impl_->group; }

namespace {

// The value of environment variable `name`, or empty.
std::string environment(const char* name) {
  const char* value = std::getenv(name);
  return value ? value : "";
}

// `text` as an integer in [low, high]; std::runtime_error naming the variable otherwise.
int64_t parse_variable(const char* name, const std::string& text, int64_t low, int64_t high) {
  size_t used = 0;
  int64_t value = 0;
  try {
    value = std::stoll(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != text.size() || text.empty() || value < low || value > high) {
    throw std::runtime_error("downhill: distributed: environment variable " + std::string(name) +
                             " = '" + text + "' is not an integer in [" + std::to_string(low) +
                             ", " + std::to_string(high) + "]");
  }
  return value;
}

}  // namespace

Place torchrun_place() {
  const std::string rank = environment("RANK"), size = environment("WORLD_SIZE");
  if (rank.empty() || size.empty()) return {};
  Place place;
  place.world_size = parse_variable("WORLD_SIZE", size, 1, 1 << 20);
  place.rank = parse_variable("RANK", rank, 0, place.world_size - 1);
  return place;
}

namespace detail {

namespace {

using Milliseconds = std::chrono::milliseconds;

Milliseconds milliseconds_of(double seconds) {
  return Milliseconds(static_cast<int64_t>(std::min(seconds, 1e9) * 1000.0));
}

// The announcement of a collective (Communicator): its fields, each sent as x and −x so that
// one MAX gives every rank the largest and the smallest value of each. Fixed in size, so
// that two announcements always meet safely whatever they announce.
enum AnnouncedField : int64_t { kOperation, kNumel, kLayout, kAgreedCount, kFirstAgreed };
constexpr int64_t kAnnouncedFields = 32;
constexpr int64_t kInlineAgreed = kAnnouncedFields - kFirstAgreed;  // more take a second one
// A NaN compares as this (MAX of NaNs is not defined), and reads back as "nan".
constexpr double kNanStandIn = -std::numeric_limits<double>::max();

// FNV-1a over `text`, 32 bits (exact in a double).
uint32_t text_hash(std::string_view text) {
  uint32_t hash = 2166136261u;
  for (const char c : text) hash = (hash ^ static_cast<unsigned char>(c)) * 16777619u;
  return hash;
}

// Layouts (dtypes and sizes) mixed into one 32-bit value.
uint32_t mix(uint32_t hash, int64_t value) {
  for (int byte = 0; byte < 8; ++byte) {
    hash = (hash ^ static_cast<uint32_t>((static_cast<uint64_t>(value) >> (8 * byte)) & 0xff)) *
           16777619u;
  }
  return hash;
}

// The operations this process has announced, by hash: so that it can name another rank's.
class OperationNames {
 public:
  void remember(uint32_t hash, const std::string& what) {
    const std::lock_guard<std::mutex> lock(mutex_);
    if (names_.size() < 4096) names_.try_emplace(hash, what);  // no copy when known
  }
  std::string name(uint32_t hash) const {
    const std::lock_guard<std::mutex> lock(mutex_);
    const auto found = names_.find(hash);
    return found == names_.end() ? "in another collective" : found->second;
  }

 private:
  mutable std::mutex mutex_;
  std::unordered_map<uint32_t, std::string> names_;
};

OperationNames& operation_names() {
  static OperationNames names;
  return names;
}

// Writes `value` at `field` and −value at `stride + field`, so that one MAX over the ranks gives
// both the largest and the smallest value.
void put_both(double* to, int64_t stride, int64_t field, double value) {
  to[field] = value;
  to[stride + field] = -value;
}

// Agreed value `a`, a NaN as its stand-in (MAX of NaNs is not defined).
double comparable(const Agreement& agreed, int64_t a) {
  const double value = agreed.values[static_cast<size_t>(a)];
  return std::isnan(value) ? kNanStandIn : value;
}

std::string shown_value(double value) {
  return value == kNanStandIn ? std::string("nan") : format_number(value);
}

// Gradients travel in buckets of at most this size (or one tensor, when larger), as
// DistributedDataParallel's bucket_cap_mb: a few collectives per step, each large enough to
// run at full speed, and the next bucket packed while the previous one is sent.
constexpr int64_t kBucketBytes = 25 << 20;

class GroupCommunicator final : public Communicator {
 public:
  GroupCommunicator(c10::intrusive_ptr<c10d::ProcessGroup> group, double timeout_seconds,
                    c10::intrusive_ptr<c10d::Store> store = {})
      : group_(std::move(group)), store_(std::move(store)), timeout_seconds_(timeout_seconds) {}

  int64_t rank() const noexcept override { return group_->getRank(); }
  int64_t size() const noexcept override { return group_->getSize(); }
  std::string backend() const override { return group_->getBackendName(); }

  std::vector<at::Tensor> average(const std::vector<at::Tensor>& tensors,
                                  std::vector<double>& flags, const Agreement& agreed) override {
    std::vector<size_t> order(tensors.size());
    std::iota(order.begin(), order.end(), size_t{0});
    begin_average(tensors, order, flags, agreed);
    for (size_t i = 0; i < tensors.size(); ++i) {
      if (tensors[i].defined()) give(i, tensors[i]);
    }
    return finish_average(flags);
  }

  void begin_average(const std::vector<at::Tensor>& like, const std::vector<size_t>& order,
                     const std::vector<double>& flags, const Agreement& agreed) override {
    plan_buckets(like, flags.size(), order);
    // Checked before the first bucket goes: meanwhile the backward pass runs.
    send_announcement("averaging gradients", plan_numel_, plan_layout_, agreed);
    given_.assign(like.size(), at::Tensor());
    sizes_.assign(like.size(), {});
    for (size_t i = 0; i < like.size(); ++i) {
      if (like[i].defined()) sizes_[i] = like[i].sizes().vec();
    }
    bucket_of_.assign(like.size(), kNoBucket);
    waiting_.assign(buckets_.size(), 0);
    for (size_t b = 0; b < buckets_.size(); ++b) {
      for (const auto& entry : buckets_[b].entries) bucket_of_[entry.index] = b;
      waiting_[b] = buckets_[b].entries.size();
    }
    flags_ = flags;
    works_.clear();
    sent_buckets_ = 0;
    send_ready_buckets();  // a bucket of the flags alone is ready at once
  }

  void give(size_t index, const at::Tensor& tensor) override {
    if (index >= bucket_of_.size() || bucket_of_[index] == kNoBucket || given_[index].defined()) {
      return;  // not averaged (frozen), or given already
    }
    given_[index] = tensor;
    --waiting_[bucket_of_[index]];
    send_ready_buckets();
  }

  std::vector<at::Tensor> finish_average(std::vector<double>& flags) override {
    for (size_t b = 0; b < buckets_.size(); ++b) waiting_[b] = 0;  // the rest go as zeros
    send_ready_buckets();
    std::vector<at::Tensor> out(given_.size());
    for (size_t b = 0; b < buckets_.size(); ++b) {
      wait(works_[b], "averaging gradients");
      auto& bucket = buckets_[b];
      if (b == 0 && !flags_.empty()) {
        const auto summed =
            bucket.buffer.narrow(0, bucket.numel, static_cast<int64_t>(flags_.size()))
                .to(at::kDouble);
        for (size_t f = 0; f < flags_.size(); ++f) {
          flags_[f] = summed[static_cast<int64_t>(f)].item<double>();
        }
      }
      for (const auto& entry : bucket.entries) {
        out[entry.index] =
            bucket.buffer.narrow(0, entry.offset, entry.numel).view(sizes_[entry.index]);
      }
    }
    flags = flags_;
    given_.clear();  // no handle on the caller's tensors between steps
    works_.clear();
    return out;
  }

  void sum(std::vector<double>& values, const std::string& what) override {
    if (values.empty()) return;
    announce(what, static_cast<int64_t>(values.size()), 0);
    std::vector<at::Tensor> one{at::tensor(values, at::kDouble)};
    wait(run(what, [&] { return group_->allreduce(one); }), what);
    const double* data = one[0].data_ptr<double>();
    std::copy(data, data + values.size(), values.begin());
  }

  void broadcast(std::vector<at::Tensor>& tensors) override {
    at::NoGradGuard no_grad;
    int64_t numel = 0;
    uint32_t layout = 2166136261u;
    for (const auto& tensor : tensors) {
      numel += tensor.numel();
      layout = mix(mix(layout, tensor.numel()), static_cast<int64_t>(tensor.scalar_type()));
    }
    announce("broadcasting from rank 0", numel, layout);
    for (auto& tensor : tensors) {
      std::vector<at::Tensor> one{tensor.is_contiguous() ? tensor : tensor.contiguous()};
      c10d::BroadcastOptions options;
      options.rootRank = 0;
      wait(run("broadcasting from rank 0", [&] { return group_->broadcast(one, options); }),
           "broadcasting from rank 0");
      if (!one[0].is_same(tensor)) tensor.copy_(one[0]);
    }
  }

  void check_same(const std::vector<std::string>& lines, const std::string& what) override {
    std::string text;
    for (const auto& line : lines) text += line + '\n';
    // Each rank writes its text into its own row of a zero table; the sum is every row.
    std::vector<double> lengths(static_cast<size_t>(size()), 0.0);
    lengths[static_cast<size_t>(rank())] = static_cast<double>(text.size());
    sum(lengths, "comparing " + what);
    const auto longest = static_cast<int64_t>(*std::max_element(lengths.begin(), lengths.end()));
    std::vector<at::Tensor> table{at::zeros({size(), std::max<int64_t>(longest, 1)}, at::kInt)};
    auto* row = table[0].data_ptr<int32_t>() + rank() * table[0].size(1);
    for (size_t c = 0; c < text.size(); ++c) row[c] = static_cast<unsigned char>(text[c]);
    announce("comparing " + what + " line by line", table[0].numel(), 0);
    wait(run("comparing " + what, [&] { return group_->allreduce(table); }), "comparing " + what);
    auto lines_of = [&](int64_t r) {
      const auto* cells = table[0].data_ptr<int32_t>() + r * table[0].size(1);
      std::vector<std::string> out(1);
      for (int64_t c = 0; c < static_cast<int64_t>(lengths[static_cast<size_t>(r)]); ++c) {
        if (cells[c] == '\n') {
          out.emplace_back();
        } else {
          out.back() += static_cast<char>(cells[c]);
        }
      }
      out.pop_back();  // after the last newline
      return out;
    };
    const auto first = lines_of(0);
    for (int64_t r = 1; r < size(); ++r) {
      const auto other = lines_of(r);
      if (other == first) continue;
      size_t line = 0;
      while (line < first.size() && line < other.size() && first[line] == other[line]) ++line;
      auto shown = [&](const std::vector<std::string>& of) {
        return line < of.size() ? "'" + of[line] + "'" : std::string("nothing more");
      };
      throw std::invalid_argument("downhill: distributed: the ranks' " + what +
                                  " differ: rank 0 has " + shown(first) + ", rank " +
                                  std::to_string(r) + " has " + shown(other) +
                                  "; every rank must build the same optimizer");
    }
  }

  // The announcement waits for every rank, as a barrier does.
  void barrier() override { announce("waiting for every rank", 0, 0); }

 private:
  struct Entry {
    size_t index;
    int64_t offset;
    int64_t numel;
  };
  struct Bucket {
    at::Tensor buffer;
    int64_t numel = 0;  // of the tensors, before the flags
    std::vector<Entry> entries;
  };
  static constexpr size_t kNoBucket = static_cast<size_t>(-1);

  // Packs and sends, in order, every bucket whose tensors are all given. Each tensor is scaled
  // by 1/size as it is packed, so that the sum is the mean: one pass over it rather than a copy
  // and a division; one not given (finish_average()) is sent as zeros.
  void send_ready_buckets() {
    at::NoGradGuard no_grad;
    while (sent_buckets_ < buckets_.size() && waiting_[sent_buckets_] == 0) {
      check_announcement();
      const size_t b = sent_buckets_++;
      auto& bucket = buckets_[b];
      const auto scale = c10::scalar_to_tensor(1.0 / static_cast<double>(size()));
      for (const auto& entry : bucket.entries) {
        auto packed = bucket.buffer.narrow(0, entry.offset, entry.numel).view(sizes_[entry.index]);
        const auto& tensor = given_[entry.index];
        if (tensor.defined()) {
          at::mul_out(packed, tensor, scale);
        } else {
          packed.zero_();
        }
      }
      if (b == 0 && !flags_.empty()) {
        bucket.buffer.narrow(0, bucket.numel, static_cast<int64_t>(flags_.size()))
            .copy_(at::tensor(flags_, at::kDouble));
      }
      std::vector<at::Tensor> one{bucket.buffer};
      works_.push_back(run("averaging gradients", [&] { return group_->allreduce(one); }));
    }
  }

  // Announces the collective `what` of `numel` elements laid out as `layout` (Communicator):
  // std::runtime_error on every rank when any rank announces another, or when `agreed`
  // differs across ranks.
  void announce(const std::string& what, int64_t numel, uint32_t layout,
                const Agreement& agreed = {}) {
    send_announcement(what, numel, layout, agreed);
    check_announcement();
  }

  // The first half of announce(): the fields sent, without waiting for the other ranks' (an
  // average overlapped with the backward pass waits only before its first bucket).
  void send_announcement(const std::string& what, int64_t numel, uint32_t layout,
                         const Agreement& agreed) {
    const uint32_t operation = text_hash(what);
    operation_names().remember(operation, what);
    if (!announcement_.defined()) announcement_ = at::empty({2 * kAnnouncedFields}, at::kDouble);
    double* fields = announcement_.data_ptr<double>();
    std::fill(fields, fields + 2 * kAnnouncedFields, 0.0);
    const auto agreed_count = static_cast<int64_t>(agreed.values.size());
    put_both(fields, kAnnouncedFields, kOperation, operation);
    put_both(fields, kAnnouncedFields, kNumel, static_cast<double>(numel));
    put_both(fields, kAnnouncedFields, kLayout, layout);
    put_both(fields, kAnnouncedFields, kAgreedCount, static_cast<double>(agreed_count));
    for (int64_t a = 0; a < std::min(agreed_count, kInlineAgreed); ++a) {
      put_both(fields, kAnnouncedFields, kFirstAgreed + a, comparable(agreed, a));
    }
    pending_ = Pending{what, operation, numel, agreed, start_max(announcement_, what)};
  }

  // The second half of announce(): waits for every rank's fields and compares them
  // (std::runtime_error on every rank when they differ, before anything else is sent).
  void check_announcement() {
    if (!pending_) return;
    Pending sent = std::move(*pending_);
    pending_.reset();
    const std::string& what = sent.what;
    const uint32_t operation = sent.operation;
    const int64_t numel = sent.numel;
    const Agreement& agreed = sent.agreed;
    wait(sent.work, what);
    double* fields = announcement_.data_ptr<double>();
    const auto agreed_count = static_cast<int64_t>(agreed.values.size());
    auto largest = [&](int64_t field) { return fields[field]; };
    auto smallest = [&](int64_t field) { return -fields[kAnnouncedFields + field]; };
    bool same = true;
    for (int64_t field = kOperation; field < kFirstAgreed; ++field) {
      same = same && largest(field) == smallest(field);
    }
    if (!same) out_of_step(what, operation, numel, largest, smallest);
    // The values beyond the announcement's room follow in one more, of the size announced.
    std::vector<double> high(agreed.values.size()), low(agreed.values.size());
    for (int64_t a = 0; a < std::min(agreed_count, kInlineAgreed); ++a) {
      high[static_cast<size_t>(a)] = largest(kFirstAgreed + a);
      low[static_cast<size_t>(a)] = smallest(kFirstAgreed + a);
    }
    if (agreed_count > kInlineAgreed) {
      const int64_t rest = agreed_count - kInlineAgreed;
      auto more = at::empty({2 * rest}, at::kDouble);
      double* values = more.data_ptr<double>();
      for (int64_t a = 0; a < rest; ++a)
        put_both(values, rest, a, comparable(agreed, kInlineAgreed + a));
      largest_and_smallest(more, what);
      for (int64_t a = 0; a < rest; ++a) {
        high[static_cast<size_t>(kInlineAgreed + a)] = values[a];
        low[static_cast<size_t>(kInlineAgreed + a)] = -values[rest + a];
      }
    }
    for (size_t a = 0; a < agreed.values.size(); ++a) {
      if (high[a] == low[a]) continue;
      throw std::runtime_error(
          "downhill: distributed: the ranks disagree on " + agreed.name_of(a) + ": " +
          shown_value(low[a]) + " on some ranks, " + shown_value(high[a]) +
          " on others; a setting that is a function (a schedule) must give every rank the "
          "same value (nothing was sent, no update was applied)");
    }
  }

  // Starts the largest of each element of `fields` over the ranks, in place.
  c10::intrusive_ptr<c10d::Work> start_max(at::Tensor& fields, const std::string& what) {
    std::vector<at::Tensor> one{fields};
    c10d::AllreduceOptions options;
    options.reduceOp = c10d::ReduceOp::MAX;
    return run(what, [&] { return group_->allreduce(one, options); });
  }

  // The largest of each element of `fields` over the ranks, in place.
  void largest_and_smallest(at::Tensor& fields, const std::string& what) {
    wait(start_max(fields, what), what);
  }

  template <typename Largest, typename Smallest>
  [[noreturn]] void out_of_step(const std::string& what, uint32_t operation, int64_t numel,
                                Largest largest, Smallest smallest) const {
    // Another rank's: whichever extreme this rank's is not.
    auto other = [&](int64_t field, double mine) {
      return largest(field) == mine ? smallest(field) : largest(field);
    };
    const auto other_operation = static_cast<uint32_t>(other(kOperation, operation));
    const auto other_numel = static_cast<int64_t>(other(kNumel, static_cast<double>(numel)));
    auto described = [](const std::string& name, int64_t count) {
      return name + " (" + std::to_string(count) + (count == 1 ? " value)" : " values)");
    };
    const std::string theirs =
        other_operation == operation ? what : operation_names().name(other_operation);
    throw std::runtime_error(
        "downhill: distributed: the ranks are out of step: rank " + std::to_string(rank()) +
        " of " + std::to_string(size()) + " is " + described(what, numel) +
        " while another rank is " + described(theirs, other_numel) +
        "; every rank must make the same calls in the same order (did one leave the loop "
        "early, or call step(), apply() or evaluate() alone?). Nothing was sent");
  }

  // Buckets of tensors of one dtype, consecutive in `order`, made again only when the tensors
  // or the order change.
  void plan_buckets(const std::vector<at::Tensor>& tensors, size_t flag_count,
                    const std::vector<size_t>& order) {
    std::vector<int64_t> key{static_cast<int64_t>(flag_count)};
    for (const auto& t : tensors) {
      key.push_back(t.defined() ? t.numel() : -1);
      key.push_back(t.defined() ? static_cast<int64_t>(t.scalar_type()) : -1);
    }
    for (const size_t i : order) key.push_back(static_cast<int64_t>(i));
    if (key == plan_key_) return;
    plan_key_ = key;
    plan_numel_ = 0;
    plan_layout_ = 2166136261u;
    for (const int64_t value : key) plan_layout_ = mix(plan_layout_, value);
    buckets_.clear();
    std::vector<at::ScalarType> dtypes;
    for (const size_t i : order) {
      const auto& t = tensors.at(i);
      if (!t.defined()) continue;
      const auto dtype = t.scalar_type();
      const auto bytes = [&](int64_t numel) {
        return numel * static_cast<int64_t>(t.element_size());
      };
      if (buckets_.empty() || dtypes.back() != dtype ||
          (buckets_.back().numel > 0 && bytes(buckets_.back().numel + t.numel()) > kBucketBytes)) {
        buckets_.emplace_back();
        dtypes.push_back(dtype);
      }
      auto& bucket = buckets_.back();
      bucket.entries.push_back({i, bucket.numel, t.numel()});
      bucket.numel += t.numel();
    }
    if (buckets_.empty()) {  // nothing but the flags
      buckets_.emplace_back();
      dtypes.push_back(at::kDouble);
    }
    for (size_t b = 0; b < buckets_.size(); ++b) {
      const int64_t extra = b == 0 ? static_cast<int64_t>(flag_count) : 0;
      buckets_[b].buffer = at::empty({buckets_[b].numel + extra}, at::TensorOptions(dtypes[b]));
      plan_numel_ += buckets_[b].numel + extra;
    }
  }

  template <typename Start>
  c10::intrusive_ptr<c10d::Work> run(const std::string& what, Start start) {
    try {
      return start();
    } catch (const std::exception& e) {
      fail(what, e);
    }
  }

  void wait(const c10::intrusive_ptr<c10d::Work>& work, const std::string& what) {
    try {
      work->wait();
    } catch (const std::exception& e) {
      fail(what, e);
    }
  }

  [[noreturn]] void fail(const std::string& what, const std::exception& e) const {
    const auto* error = dynamic_cast<const c10::Error*>(&e);
    throw std::runtime_error("downhill: distributed: rank " + std::to_string(rank()) + " of " +
                             std::to_string(size()) + ": " + what +
                             " failed — a rank died, left the loop, or took longer than " +
                             "distributed_timeout = " + format_number(timeout_seconds_) +
                             " s: " + (error ? error->what_without_backtrace() : e.what()));
  }

  c10::intrusive_ptr<c10d::ProcessGroup> group_;
  c10::intrusive_ptr<c10d::Store> store_;  // kept alive with the group it serves
  double timeout_seconds_;
  std::vector<int64_t> plan_key_;
  int64_t plan_numel_ = 0;    // the elements every bucket sends
  uint32_t plan_layout_ = 0;  // plan_key_ mixed
  std::vector<Bucket> buckets_;
  // The average in progress (begin_average() to finish_average()).
  std::vector<at::Tensor> given_;                      // by index: the tensors given so far
  std::vector<std::vector<int64_t>> sizes_;            // by index: each tensor's shape
  std::vector<size_t> bucket_of_;                      // by index: its bucket, or kNoBucket
  std::vector<size_t> waiting_;                        // by bucket: tensors not given yet
  std::vector<double> flags_;                          // summed in the first bucket
  std::vector<c10::intrusive_ptr<c10d::Work>> works_;  // by bucket, once sent
  size_t sent_buckets_ = 0;
  at::Tensor announcement_;  // reused: the fields of each announcement
  // An announcement sent and not yet checked (send_announcement()).
  struct Pending {
    std::string what;
    uint32_t operation;
    int64_t numel;
    Agreement agreed;
    c10::intrusive_ptr<c10d::Work> work;
  };
  std::optional<Pending> pending_;
};

// torchrun's group: TCPStore at MASTER_ADDR:MASTER_PORT (served by rank 0, or by torchrun's
// agent when it says so), then Gloo over it.
std::shared_ptr<Communicator> join_torchrun(const Options& options) {
  std::vector<std::string> missing;
  for (const char* name : {"RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT"}) {
    if (environment(name).empty()) missing.push_back(name);
  }
  if (!missing.empty()) {
    std::string names;
    for (const auto& name : missing) names += (names.empty() ? "" : ", ") + name;
    throw std::runtime_error(
        "downhill: distributed(true) needs the environment torchrun gives each process; " + names +
        (missing.size() == 1 ? " is" : " are") +
        " not set. Start the program with `torchrun --standalone --nproc_per_node=N "
        "--no_python PROGRAM` (docs/guide.md, \"Scaling out\"), or hand in a group with "
        "Options::process_group");
  }
  const Place place = torchrun_place();
  const std::string address = environment("MASTER_ADDR");
  const auto port =
      static_cast<uint16_t>(parse_variable("MASTER_PORT", environment("MASTER_PORT"), 1, 65535));
  const auto timeout = milliseconds_of(options.distributed_timeout());
  const std::string where = address + ":" + std::to_string(port);
  try {
    c10d::TCPStoreOptions store_options;
    store_options.port = port;
    store_options.isServer =
        place.rank == 0 && environment("TORCHELASTIC_USE_AGENT_STORE") != "True";
    store_options.numWorkers = static_cast<size_t>(place.world_size);
    store_options.timeout = timeout;
    store_options.waitWorkers = false;  // Gloo's own wait for the others comes next, bounded alike
    auto store = c10::make_intrusive<c10d::TCPStore>(address, store_options);
    auto prefixed = c10::make_intrusive<c10d::PrefixStore>("downhill", store);
    auto gloo_options = c10d::ProcessGroupGloo::Options::create(timeout);
    const std::string interface = environment("GLOO_SOCKET_IFNAME");
    if (!interface.empty()) {
      gloo_options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(interface));
    } else if (address == "localhost" || address.rfind("127.", 0) == 0) {
      gloo_options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
    } else {
      gloo_options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    }
    gloo_options->threads = 2;
    auto group = c10::make_intrusive<c10d::ProcessGroupGloo>(
        prefixed, static_cast<int>(place.rank), static_cast<int>(place.world_size), gloo_options);
    return std::make_shared<GroupCommunicator>(std::move(group), options.distributed_timeout(),
                                               std::move(store));
  } catch (const std::exception& e) {
    const auto* error = dynamic_cast<const c10::Error*>(&e);
    throw std::runtime_error(
        "downhill: distributed: rank " + std::to_string(place.rank) + " of " +
        std::to_string(place.world_size) + " could not join the group at " + where +
        " within distributed_timeout = " + format_number(options.distributed_timeout()) +
        " s: " + (error ? error->what_without_backtrace() : e.what()));
  }
}

}  // namespace

std::shared_ptr<Communicator> Communicator::join(const Options& options) {
  if (options.process_group()) {
    return std::make_shared<GroupCommunicator>(options.process_group()->group(),
                                               options.distributed_timeout());
  }
  // The store's port can be served once per process: torchrun's group is joined at the
  // first build and shared by every optimizer after it.
  static std::mutex mutex;
  static std::shared_ptr<Communicator> shared;
  const std::lock_guard<std::mutex> lock(mutex);
  if (!shared) shared = join_torchrun(options);
  return shared;
}

}  // namespace detail

}  // namespace downhill
