#include "stats.h"

#include <utility>

namespace tapas {

namespace {

template <typename Stat>
bool same_ids(const std::vector<Stat>& a, const std::vector<Stat>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i].id != b[i].id) return false;
  }
  return true;
}

template <typename Stat>
void changed_entries(const std::vector<Stat>& before, const std::vector<Stat>& now, std::vector<Stat>& changed,
                     std::vector<uint32_t>& at) {
  for (size_t i = 0; i < now.size(); ++i) {
    if (now[i] == before[i]) continue;
    changed.push_back(now[i]);
    at.push_back(static_cast<uint32_t>(i));
  }
}

}  // namespace

StatsDelta StatsChanges::next(EngineStats current) {
  StatsDelta delta;
  if (!started_ || !same_ids(current.sources, delivered_.sources) || !same_ids(current.sinks, delivered_.sinks) ||
      !same_ids(current.rules, delivered_.rules) || !same_ids(current.interfaces, delivered_.interfaces)) {
    started_ = true;
    delta.full = true;
    delta.changed = current;
    delivered_ = std::move(current);
    return delta;
  }
  changed_entries(delivered_.sources, current.sources, delta.changed.sources, delta.source_at);
  changed_entries(delivered_.sinks, current.sinks, delta.changed.sinks, delta.sink_at);
  changed_entries(delivered_.rules, current.rules, delta.changed.rules, delta.rule_at);
  changed_entries(delivered_.interfaces, current.interfaces, delta.changed.interfaces, delta.interface_at);
  delivered_ = std::move(current);
  return delta;
}

}  // namespace tapas
