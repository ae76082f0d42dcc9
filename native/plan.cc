#include "plan.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <map>
#include <set>

#include "encap.h"
#include "filter.h"
#include "netns.h"

namespace tapas {

namespace {

// A tunnel may have a mirrored source as its underlay: its packets carry the
// own-traffic mark that capture sockets drop, so no loop check is needed here.
std::string check_tunnel_sink(const SinkSpec& sink) {
  if (sink.remote_ip.empty()) return "tunnel sink '" + sink.id + "' names no remote IP";
  in6_addr address;
  if (inet_pton(AF_INET, sink.remote_ip.c_str(), &address) != 1 && inet_pton(AF_INET6, sink.remote_ip.c_str(), &address) != 1) {
    return "remote '" + sink.remote_ip + "' is not an IPv4 or IPv6 address";
  }
  if (sink.kind == SinkKind::Erspan || sink.kind == SinkKind::ErspanIII) {
    if (sink.session > encap::kErspanMaxSession) return "ERSPAN session id must be 0-1023 (sink '" + sink.id + "')";
    if (sink.erspan_index > encap::kErspanMaxIndex) return "ERSPAN index must fit 20 bits (sink '" + sink.id + "')";
    if (sink.hwid > encap::kErspanMaxHardwareId) return "ERSPAN hardware id must be 0-63 (sink '" + sink.id + "')";
  }
  if (sink.kind == SinkKind::Vxlan) {
    if (sink.vni > encap::kVxlanMaxVni) return "VXLAN VNI must be 0-16777215 (sink '" + sink.id + "')";
    if (sink.udp_port == 0) return "VXLAN UDP port must be 1-65535 (sink '" + sink.id + "')";
  }
  return "";
}

// Ids used more than once in a list: every entry with such an id is refused.
template <typename Spec>
std::set<std::string> duplicate_ids(const std::vector<Spec>& specs) {
  std::set<std::string> seen, duplicates;
  for (const Spec& spec : specs) {
    if (!seen.insert(spec.id).second) duplicates.insert(spec.id);
  }
  return duplicates;
}

// The entry-independent reasons: an empty or a duplicate id.
template <typename Spec>
std::string check_id(const Spec& spec, const std::set<std::string>& duplicates, const char* what) {
  if (spec.id.empty()) return std::string("a ") + what + " has an empty id";
  if (duplicates.count(spec.id) != 0) return std::string("duplicate ") + what + " id '" + spec.id + "'";
  return "";
}

// How the plan spells an interface, for a reason that names another entry.
std::string spelled(const std::string& ifname, const std::string& netns) {
  return "'" + ifname + "'" + (netns.empty() ? "" : " in network namespace '" + netns + "'");
}

}  // namespace

PlanVerdict check_plan(const Plan& plan) {
  PlanIdentities identities;
  for (const SourceSpec& source : plan.sources) identities.sources.push_back(spelled_interface(source.ifname, source.netns));
  for (const SinkSpec& sink : plan.sinks) identities.sinks.push_back(spelled_interface(sink.ifname, sink.netns));
  return check_plan(plan, identities);
}

PlanVerdict check_plan(const Plan& plan, const PlanIdentities& identities) {
  PlanVerdict verdict;
  auto identity = [](const std::vector<InterfaceIdentity>& list, size_t i, const std::string& ifname, const std::string& netns) {
    return i < list.size() ? list[i] : spelled_interface(ifname, netns);
  };

  const std::set<std::string> duplicate_sources = duplicate_ids(plan.sources);
  std::vector<std::pair<const SourceSpec*, InterfaceIdentity>> valid_sources;
  for (size_t i = 0; i < plan.sources.size(); ++i) {
    const SourceSpec& source = plan.sources[i];
    std::string reason = check_id(source, duplicate_sources, "source");
    if (reason.empty() && source.ifname.empty()) reason = "source '" + source.id + "' names no interface";
    InterfaceIdentity self = identity(identities.sources, i, source.ifname, source.netns);
    if (reason.empty()) {
      // It would capture every frame the earlier one captures, a second time.
      for (const auto& [earlier, earlier_identity] : valid_sources) {
        if (same_interface(earlier_identity, self)) {
          reason = "the same interface as source '" + earlier->id + "' (spelled " + spelled(earlier->ifname, earlier->netns) + ")";
          verdict.by_identity = true;
          break;
        }
      }
    }
    if (!reason.empty()) {
      verdict.sources.emplace(source.id, reason);
      continue;
    }
    valid_sources.push_back({&source, std::move(self)});
  }

  const std::set<std::string> duplicate_sinks = duplicate_ids(plan.sinks);
  std::vector<std::pair<const SinkSpec*, InterfaceIdentity>> valid_port_sinks;
  std::map<std::string, std::string> file_sinks;  // path -> the sink writing it
  for (size_t i = 0; i < plan.sinks.size(); ++i) {
    const SinkSpec& sink = plan.sinks[i];
    std::string reason = check_id(sink, duplicate_sinks, "sink");
    if (reason.empty()) {
      switch (sink.kind) {
        case SinkKind::Port: {
          if (sink.ifname.empty()) {
            reason = "sink '" + sink.id + "' names no interface";
            break;
          }
          InterfaceIdentity self = identity(identities.sinks, i, sink.ifname, sink.netns);
          // Its copies would be captured by the source and sent once more.
          for (const auto& [source, source_identity] : valid_sources) {
            if (same_interface(source_identity, self)) {
              reason = "destination port '" + sink.ifname + "'" +
                       (sink.netns.empty() ? "" : " in network namespace '" + sink.netns + "'") +
                       " is also a mirrored source";
              verdict.by_identity = true;
              break;
            }
          }
          // It would send every copy the earlier one sends, a second time.
          for (const auto& [earlier, earlier_identity] : valid_port_sinks) {
            if (!reason.empty()) break;
            if (same_interface(earlier_identity, self)) {
              reason = "the same interface as sink '" + earlier->id + "' (spelled " + spelled(earlier->ifname, earlier->netns) + ")";
              verdict.by_identity = true;
            }
          }
          if (reason.empty()) valid_port_sinks.push_back({&sink, std::move(self)});
          break;
        }
        case SinkKind::Gre:
        case SinkKind::Erspan:
        case SinkKind::ErspanIII:
        case SinkKind::Vxlan:
          reason = check_tunnel_sink(sink);
          break;
        case SinkKind::File: {
          reason = check_rotation(sink.file);
          if (!reason.empty()) {
            reason = "file sink '" + sink.id + "': " + reason;
            break;
          }
          auto [earlier, added] = file_sinks.emplace(sink.file.path, sink.id);
          if (!added) reason = "the same file as sink '" + earlier->second + "' ('" + sink.file.path + "')";
          break;
        }
        case SinkKind::Unknown:
          reason = "unknown sink kind '" + sink.kind_name + "'";
          break;
      }
    }
    if (!reason.empty()) verdict.sinks.emplace(sink.id, reason);
  }
  std::set<std::string> source_ids, sink_ids;
  for (const SourceSpec& source : plan.sources) source_ids.insert(source.id);
  for (const SinkSpec& sink : plan.sinks) sink_ids.insert(sink.id);
  const std::set<std::string> duplicate_rules = duplicate_ids(plan.rules);
  for (const RuleSpec& rule : plan.rules) {
    std::string reason = check_id(rule, duplicate_rules, "rule");
    if (reason.empty()) {
      auto source = verdict.sources.find(rule.source_id);
      auto sink = verdict.sinks.find(rule.sink_id);
      if (source_ids.count(rule.source_id) == 0) {
        reason = "rule '" + rule.id + "' names unknown source '" + rule.source_id + "'";
      } else if (sink_ids.count(rule.sink_id) == 0) {
        reason = "rule '" + rule.id + "' names unknown sink '" + rule.sink_id + "'";
      } else if (sink != verdict.sinks.end()) {
        // The sink's own reason says what is wrong (the sink-is-source rule's reason word for word).
        reason = sink->second;
      } else if (source != verdict.sources.end()) {
        reason = source->second;
      }
    }
    for (const VlanRange& range : rule.vlans) {
      if (!reason.empty()) break;
      if (range.low < 1 || range.high > 4094 || range.low > range.high) {
        reason = "rule '" + rule.id + "' has an invalid VLAN range " + std::to_string(range.low) + "-" +
                 std::to_string(range.high) + " (VLAN ids are 1-4094, low to high)";
      }
    }
    if (reason.empty() && !rule.filter.empty()) {
      CompiledFilter compiled = compile_filter(rule.filter);
      if (!compiled.filter) reason = "rule '" + rule.id + "' has a filter that does not compile: " + compiled.error;
    }
    if (!reason.empty()) verdict.rules.emplace(rule.id, reason);
  }

  const std::set<std::string> duplicate_interfaces = duplicate_ids(plan.interfaces);
  for (const InterfaceSpec& interface : plan.interfaces) {
    std::string reason = check_id(interface, duplicate_interfaces, "interface");
    if (reason.empty() && interface.ifname.empty()) reason = "interface '" + interface.id + "' names no interface";
    if (!reason.empty()) verdict.interfaces.emplace(interface.id, reason);
  }
  return verdict;
}

}  // namespace tapas
