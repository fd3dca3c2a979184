// The update engine's part of a checkpoint: its fields, declared once (checkpoint_schema.h),
// and save(), read() and commit() on them.
#include <downhill/logging.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "checkpoint_schema.h"
#include "group_settings.h"
#include "update_engine.h"

namespace downhill::detail {

namespace {

using Record = EngineSnapshot;

auto has(std::string key) {
  return [key = std::move(key)](const EntryReader& reader) { return reader.has(key); };
}

// "[w] [b, frozen]": the parameters of each group, in group order.
std::string describe_grouping(const std::vector<std::string>& names,
                              const std::vector<int64_t>& groups,
                              const std::vector<int64_t>& frozen, int64_t count) {
  for (const auto g : groups) count = std::max(count, g + 1);
  for (const auto g : frozen) count = std::max(count, g + 1);
  std::string text;
  for (int64_t g = 0; g < count; ++g) {
    std::string members;
    for (size_t i = 0; i < groups.size() && i < names.size(); ++i) {
      if (groups[i] == g) members += (members.empty() ? "" : ", ") + names[i];
    }
    if (std::find(frozen.begin(), frozen.end(), g) != frozen.end()) {
      members += members.empty() ? "frozen" : ", frozen";
    }
    text += (text.empty() ? "[" : " [") + members + "]";
  }
  return text;
}

std::vector<std::string> split_names(const std::string& joined) {
  std::vector<std::string> names;
  std::string name;
  for (const char c : joined + ",") {
    if (c != ',') {
      name += c;
      continue;
    }
    names.push_back(name);
    name.clear();
  }
  return names;
}

}  // namespace

// The engine's fields: a write and a read function each, side by side (a friend of
// UpdateEngine, for its members).
struct EngineFields {
  static void write_algorithm(const Record& r, EntryWriter& out) {
    out.text("algorithm", r.algorithm);
  }
  static void read_algorithm(EntryReader& in, const UpdateEngine& e, Record& r) {
    r.algorithm = in.text("algorithm");
    if (r.algorithm != e.name_) {
      in.mismatch("it was written by " + r.algorithm + ", this is " + e.name_);
    }
  }

  static void write_param_name(const Record& r, EntryWriter& out) {
    out.integer("param_count", static_cast<int64_t>(r.names.size()));
    for (size_t i = 0; i < r.names.size(); ++i) {
      out.text(archive_key("param_name", i), r.names[i]);
    }
  }
  static void read_param_name(EntryReader& in, const UpdateEngine& e, Record& r) {
    const auto count = in.integer("param_count", 0);
    if (count != static_cast<int64_t>(e.params_.size())) {
      in.mismatch("it has " + std::to_string(count) + " parameters, this optimizer has " +
                  std::to_string(e.params_.size()));
    }
    for (size_t i = 0; i < e.params_.size(); ++i) {
      r.names.push_back(in.text(archive_key("param_name", i)));
      if (r.names[i] != e.params_.name(i)) {
        in.mismatch("parameter " + std::to_string(i) + " is named '" + r.names[i] + "' there, '" +
                    e.params_.name(i) + "' here");
      }
    }
  }

  // Which group each parameter is in, and which groups are frozen: a file written for
  // another grouping would restore each group's settings onto other parameters. Format
  // 1 does not record it: such a file loads only where the grouping cannot differ.
  static void write_param_groups(const Record& r, EntryWriter& out) {
    out.integers("param_groups", r.param_groups);
    out.integers("frozen_groups", r.frozen_groups);
  }
  static void read_param_groups(EntryReader& in, const UpdateEngine& e, Record& r) {
    const auto live = e.grouping();
    const auto groups = static_cast<int64_t>(e.params_.group_count());
    if (in.version() == 1 && !in.has("param_groups")) {
      if (groups > 1) {
        in.invalid(
            "it is of format 1, which does not record which group each "
            "parameter is in; this optimizer has " +
            std::to_string(groups) + " groups, so it loads only into an optimizer with one group");
      }
      r.param_groups = live.param_groups;
      r.frozen_groups = live.frozen_groups;
      return;
    }
    r.param_groups = in.integers("param_groups");
    r.frozen_groups = in.integers("frozen_groups");
    if (r.param_groups == live.param_groups && r.frozen_groups == live.frozen_groups) {
      return;
    }
    // Group numbers count from 0, one per parameter, as many groups as parameters at most
    // (an empty group aside): the description below lists them.
    const auto limit = static_cast<int64_t>(r.param_groups.size()) + groups;
    for (const auto& list : {r.param_groups, r.frozen_groups}) {
      for (const auto g : list) {
        if (g < 0 || g > limit) {
          in.invalid("its entries 'param_groups' and 'frozen_groups' hold group " +
                     std::to_string(g) + "; group numbers count from 0");
        }
      }
    }
    if (r.param_groups.size() != e.params_.size()) {
      in.invalid("its entry 'param_groups' holds " + std::to_string(r.param_groups.size()) +
                 " groups for " + std::to_string(e.params_.size()) + " parameters");
    }
    std::string what = "its parameters are grouped otherwise";
    for (size_t i = 0; i < r.param_groups.size() && i < live.param_groups.size(); ++i) {
      if (r.param_groups[i] == live.param_groups[i]) continue;
      what = "parameter '" + e.params_.name(i) + "' is in group " +
             std::to_string(r.param_groups[i]) + " there, in group " +
             std::to_string(live.param_groups[i]) + " here";
      break;
    }
    const int64_t groups_there =
        in.has("group_count") ? std::clamp<int64_t>(in.integer("group_count"), 0, limit) : 0;
    in.mismatch(what + " (groups there: " +
                describe_grouping(r.names, r.param_groups, r.frozen_groups, groups_there) +
                "; here: " +
                describe_grouping(r.names, live.param_groups, live.frozen_groups, groups) + ")");
  }

  static void write_param(const Record& r, EntryWriter& out) {
    for (size_t i = 0; i < r.values.size(); ++i) {
      out.tensor(archive_key("param", i), r.values[i]);
    }
  }
  static void read_param(EntryReader& in, const UpdateEngine& e, Record& r) {
    for (size_t i = 0; i < e.params_.size(); ++i) {
      r.values.push_back(in.tensor_like(archive_key("param", i), e.params_.tensor(i),
                                        "parameter '" + e.params_.name(i) + "'"));
    }
  }

  // The rule's state, each slot within the rule's domain for it (Adam's v ≥ 0).
  static void write_state(const Record& r, EntryWriter& out) {
    for (size_t i = 0; i < r.state.size(); ++i) {
      out.integer(archive_key("slot_count", i), static_cast<int64_t>(r.state[i].size()));
      for (size_t s = 0; s < r.state[i].size(); ++s) {
        out.tensor(archive_key("state", i, s), r.state[i][s]);
      }
    }
  }
  static void read_state(EntryReader& in, const UpdateEngine& e, Record& r) {
    const auto names = e.rule_->state_names();
    r.state.resize(e.params_.size());
    for (size_t i = 0; i < e.params_.size(); ++i) {
      const auto& name = e.params_.name(i);
      const auto slots = in.integer(archive_key("slot_count", i), 0);
      if (slots != static_cast<int64_t>(e.state_[i].size())) {
        in.mismatch("parameter '" + name + "' has " + std::to_string(slots) +
                    " state tensors there, " + std::to_string(e.state_[i].size()) + " here");
      }
      for (size_t s = 0; s < e.state_[i].size(); ++s) {
        r.state[i].push_back(in.tensor_like(archive_key("state", i, s), e.state_[i][s],
                                            "state tensor " + std::to_string(s) + " ('" + names[s] +
                                                "') of parameter '" + name + "'",
                                            e.rule_->state_minimum(s)));
      }
    }
  }

  static void write_velocity(const Record& r, EntryWriter& out) {
    for (size_t i = 0; i < r.velocity.size(); ++i) {
      out.tensor(archive_key("velocity", i), r.velocity[i]);
    }
  }
  static void read_velocity(EntryReader& in, const UpdateEngine& e, Record& r) {
    r.velocity.resize(e.params_.size());
    for (size_t i = 0; i < e.params_.size(); ++i) {
      const auto key = archive_key("velocity", i);
      const bool there = in.has(key), here = e.velocity_[i].defined();
      if (there != here) {
        in.mismatch(std::string("momentum is ") + (there ? "on" : "off") + " there and " +
                    (here ? "on" : "off") + " here");
      }
      if (!there) continue;
      r.velocity[i] = in.tensor_like(key, e.velocity_[i],
                                     "the velocity of parameter '" + e.params_.name(i) + "'");
    }
  }

  // The update settings as they stood (they may have changed live, or by a plateau
  // reduction), by name: a setting this downhill does not know is ignored.
  static void write_group_settings(const Record& r, EntryWriter& out) {
    std::string names;
    for (const auto& name : saved_setting_names()) {
      names += (names.empty() ? "" : ",") + name;
    }
    out.text("group_setting_names", names);
    out.integer("group_count", static_cast<int64_t>(r.group_options->size()));
    for (size_t g = 0; g < r.group_options->size(); ++g) {
      out.tensor(archive_key("group_settings", g), settings_values((*r.group_options)[g]));
    }
  }
  static void read_group_settings(EntryReader& in, const UpdateEngine& e, Record& r) {
    const auto names = split_names(in.text("group_setting_names"));
    const auto groups = in.integer("group_count", 1);
    if (groups != static_cast<int64_t>(e.group_options_.size())) {
      in.mismatch("it has " + std::to_string(groups) + " parameter groups, this optimizer has " +
                  std::to_string(e.group_options_.size()));
    }
    auto& restored = r.group_options.emplace();
    for (size_t g = 0; g < e.group_options_.size(); ++g) {
      const auto key = archive_key("group_settings", g);
      const auto values = in.tensor(key);
      if (values.dim() != 1 || values.numel() != static_cast<int64_t>(names.size()) ||
          !at::isFloatingType(values.scalar_type()) || !at::isfinite(values).all().item<bool>()) {
        in.invalid("its entry '" + key + "' is not " + std::to_string(names.size()) +
                   " finite numbers, one per name in 'group_setting_names'");
      }
      const std::string where = g == 0 ? "" : " (group " + std::to_string(g) + ")";
      try {
        restored.push_back(with_saved_settings(e.group_options_[g], names, values));
        check_live_change(e.group_options_[g], restored.back(), where, e.name_);
      } catch (const std::invalid_argument& error) {
        in.mismatch(std::string("its settings do not fit: ") + error.what());
      }
    }
    try {
      e.check_degenerate_settings(restored);
    } catch (const std::invalid_argument& error) {
      in.mismatch(std::string("its settings do not fit: ") + error.what());
    }
  }

  // A partly filled window of accumulated gradients.
  static void write_window(const Record& r, EntryWriter& out) {
    out.integer("accumulate", r.window.size);
    out.integer("window_count", r.window.count);
    for (size_t i = 0; i < r.window.sums.size() && r.window.count > 0; ++i) {
      out.tensor(archive_key("window", i), r.window.sums[i]);
    }
  }
  static void read_window(EntryReader& in, const UpdateEngine& e, Record& r) {
    auto& window = r.window;
    window.size = in.integer("accumulate", 1);
    window.count = in.integer("window_count", 0);
    if (window.count == 0) return;
    const auto size = e.options().accumulate();
    if (window.size != size) {
      in.mismatch("it holds " + std::to_string(window.count) + " batches of a window of " +
                  std::to_string(window.size) + " (accumulate), this optimizer accumulates " +
                  std::to_string(size));
    }
    if (window.count >= window.size) {
      in.invalid("its window holds " + std::to_string(window.count) + " batches of a window of " +
                 std::to_string(window.size) + "; a window holds fewer batches than its size");
    }
    window.sums.resize(e.params_.size());
    for (size_t i = 0; i < e.params_.size(); ++i) {
      const auto key = archive_key("window", i);
      if (!in.has(key)) continue;  // a frozen parameter's
      window.sums[i] =
          in.tensor_like(key, e.params_.tensor(i),
                         "the accumulated gradient of parameter '" + e.params_.name(i) + "'");
    }
  }
};

namespace {

// The engine's checkpoint fields, in the order they are written.
const Schema<EngineSnapshot, UpdateEngine>& engine_schema() {
  static const Schema<EngineSnapshot, UpdateEngine> schema({
      {"algorithm", 1, EngineFields::write_algorithm, EngineFields::read_algorithm,
       has("algorithm")},
      {"param_name", 1, EngineFields::write_param_name, EngineFields::read_param_name,
       has("param_count")},
      {"param_groups", 1, EngineFields::write_param_groups, EngineFields::read_param_groups,
       has("param_groups")},
      {"param", 1, EngineFields::write_param, EngineFields::read_param, has("param_0")},
      {"state", 1, EngineFields::write_state, EngineFields::read_state, has("slot_count_0")},
      {"velocity", 1, EngineFields::write_velocity, EngineFields::read_velocity, has("velocity_0")},
      integer_field<Record, UpdateEngine>(
          "update_count", 1, [](auto& r) -> auto& { return r.update_count; }),
      {"group_settings", 2, EngineFields::write_group_settings, EngineFields::read_group_settings,
       has("group_setting_names")},
      {"window", 2, EngineFields::write_window, EngineFields::read_window, has("window_count")},
  });
  return schema;
}

}  // namespace

UpdateEngine::Grouping UpdateEngine::grouping() const {
  Grouping grouping;
  for (size_t i = 0; i < params_.size(); ++i) {
    grouping.param_groups.push_back(static_cast<int64_t>(params_.group_of(i)));
  }
  for (size_t g = 0; g < params_.group_count(); ++g) {
    if (params_.is_frozen(g)) grouping.frozen_groups.push_back(static_cast<int64_t>(g));
  }
  return grouping;
}

void UpdateEngine::save(EntryWriter& writer) {
  ensure_state();
  EngineSnapshot record;
  record.algorithm = name_;
  auto [param_groups, frozen_groups] = grouping();
  record.param_groups = std::move(param_groups);
  record.frozen_groups = std::move(frozen_groups);
  for (size_t i = 0; i < params_.size(); ++i) {
    record.names.push_back(params_.name(i));
    record.values.push_back(params_.tensor(i).detach());
  }
  record.state = state_;
  record.velocity = velocity_;
  record.update_count = update_count_;
  record.group_options = group_options_;
  record.window = window_.snapshot(options().accumulate());
  engine_schema().write(record, writer);
}

EngineSnapshot UpdateEngine::read(EntryReader& reader) {
  ensure_state();
  return engine_schema().read(reader, *this);
}

void UpdateEngine::commit(EngineSnapshot&& snapshot) {
  at::NoGradGuard no_grad;
  for (size_t i = 0; i < params_.size(); ++i) {
    params_.tensor(i).copy_(snapshot.values[i]);
    for (size_t s = 0; s < snapshot.state[i].size(); ++s) state_[i][s].copy_(snapshot.state[i][s]);
    if (velocity_[i].defined()) velocity_[i].copy_(snapshot.velocity[i]);
  }
  update_count_ = snapshot.update_count;
  if (snapshot.group_options) {
    const auto before = options().settings();
    assign_group_options(std::move(*snapshot.group_options));
    const auto after = options().settings();
    for (size_t k = 0; k < before.size(); ++k) {
      if (before[k].second == after[k].second) continue;
      logger()->info("{}: {} = {} from the checkpoint (was {})", name_, after[k].first,
                     after[k].second, before[k].second);
    }
  }
  window_.commit(std::move(snapshot.window));
}

}  // namespace downhill::detail
