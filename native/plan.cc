#include "plan.h"

#include <set>

#include "encap.h"

namespace tapas {

// A tunnel may have a mirrored source as its underlay: its packets carry the
// own-traffic mark that capture sockets drop, so no loop check is needed here.
static std::string validate_tunnel_sink(const SinkSpec& sink) {
  if (sink.remote_ip.empty()) return "tunnel sink '" + sink.id + "' names no remote IP";
  if (sink.kind == SinkKind::Erspan) {
    if (sink.session > encap::kErspanMaxSession) return "ERSPAN session id must be 0-1023 (sink '" + sink.id + "')";
    if (sink.erspan_index > encap::kErspanMaxIndex) return "ERSPAN index must fit 20 bits (sink '" + sink.id + "')";
  }
  return "";
}

std::string validate_plan(const Plan& plan) {
  std::string error;
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
    } else {
      error = validate_tunnel_sink(sink);
      if (!error.empty()) return error;
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

}  // namespace tapas
