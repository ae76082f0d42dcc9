#include "engine.h"

#include <unistd.h>

#include <set>

namespace tapas {

std::string validate_plan(const Plan& plan) {
  std::set<std::string> sources, sinks, rules;
  std::set<std::pair<std::string, std::string>> source_interfaces;
  for (const SourceSpec& source : plan.sources) {
    if (source.id.empty()) return "a source has an empty id";
    if (!sources.insert(source.id).second) return "duplicate source id '" + source.id + "'";
    if (source.ifname.empty()) return "source '" + source.id + "' names no interface";
    source_interfaces.insert({source.netns, source.ifname});
  }
  for (const SinkSpec& sink : plan.sinks) {
    if (sink.id.empty()) return "a sink has an empty id";
    if (!sinks.insert(sink.id).second) return "duplicate sink id '" + sink.id + "'";
    if (sink.kind == SinkKind::Port) {
      if (sink.ifname.empty()) return "sink '" + sink.id + "' names no interface";
      // Its copies would be captured again by the source and sent once more.
      if (source_interfaces.count({sink.netns, sink.ifname}) != 0) {
        return "destination '" + sink.ifname + "' is also a source";
      }
    }
  }
  for (const RuleSpec& rule : plan.rules) {
    if (rule.id.empty()) return "a rule has an empty id";
    if (!rules.insert(rule.id).second) return "duplicate rule id '" + rule.id + "'";
    if (sources.count(rule.source_id) == 0) return "rule '" + rule.id + "' names unknown source '" + rule.source_id + "'";
    if (sinks.count(rule.sink_id) == 0) return "rule '" + rule.id + "' names unknown sink '" + rule.sink_id + "'";
    for (const VlanRange& range : rule.vlans) {
      if (range.low < 1 || range.high > 4094 || range.low > range.high) {
        return "rule '" + rule.id + "' has an invalid VLAN range";
      }
    }
  }
  return "";
}

Engine::Engine(const EngineOptions& options)
    : next_fanout_group_(static_cast<uint16_t>(getpid() * 131)) {
  unsigned count = options.workers == 0 ? 1 : options.workers;
  for (unsigned i = 0; i < count; ++i) workers_.push_back(std::make_unique<Worker>());
}

Engine::~Engine() { close(); }

std::string Engine::apply(const Plan& plan) {
  std::lock_guard<std::mutex> lock(apply_mu_);
  if (closed_) return "the engine is closed";
  std::string error = validate_plan(plan);
  if (!error.empty()) return error;

  WorkerPlan desired{plan, {}};
  if (workers_.size() > 1) {
    std::map<std::string, uint16_t> groups;
    for (const SourceSpec& source : plan.sources) {
      auto known = fanout_groups_.find(source.id);
      uint16_t group;
      if (known != fanout_groups_.end()) {
        group = known->second;
      } else {
        do group = ++next_fanout_group_;
        while (group == 0);
      }
      groups[source.id] = group;
    }
    fanout_groups_ = groups;
    desired.fanout_groups = std::move(groups);
  }
  for (auto& worker : workers_) worker->apply(desired);
  return "";
}

EngineStats Engine::stats() const {
  std::lock_guard<std::mutex> lock(workers_mu_);
  if (closed_) return final_stats_;
  EngineStats stats;
  for (const auto& worker : workers_) worker->collect(stats);
  return stats;
}

void Engine::close() {
  std::lock_guard<std::mutex> apply_lock(apply_mu_);
  std::lock_guard<std::mutex> lock(workers_mu_);
  if (closed_) return;
  // Stopping a worker reads the last ring statistics; keep them for stats() after close.
  for (auto& worker : workers_) worker->stop();
  for (const auto& worker : workers_) worker->collect(final_stats_);
  workers_.clear();
  closed_ = true;
}

}  // namespace tapas
