#include "plan.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <set>

#include "encap.h"
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
  if (sink.kind == SinkKind::Erspan) {
    if (sink.session > encap::kErspanMaxSession) return "ERSPAN session id must be 0-1023 (sink '" + sink.id + "')";
    if (sink.erspan_index > encap::kErspanMaxIndex) return "ERSPAN index must fit 20 bits (sink '" + sink.id + "')";
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

// The key under which two namespace names compare equal (see plan.h).
struct NamespaceKey {
  NetnsIdentity identity;
  std::string path;
};

bool same_namespace(const NamespaceKey& a, const NamespaceKey& b) {
  if (a.identity.ok && b.identity.ok) return a.identity == b.identity;
  return a.path == b.path;
}

}  // namespace

PlanVerdict check_plan(const Plan& plan) {
  PlanVerdict verdict;

  const std::set<std::string> duplicate_sources = duplicate_ids(plan.sources);
  std::vector<std::pair<const SourceSpec*, NamespaceKey>> valid_sources;
  for (const SourceSpec& source : plan.sources) {
    std::string reason = check_id(source, duplicate_sources, "source");
    if (reason.empty() && source.ifname.empty()) reason = "source '" + source.id + "' names no interface";
    if (!reason.empty()) {
      verdict.sources.emplace(source.id, reason);
      continue;
    }
    valid_sources.push_back({&source, {netns_identity(source.netns), netns_path(source.netns)}});
  }

  const std::set<std::string> duplicate_sinks = duplicate_ids(plan.sinks);
  for (const SinkSpec& sink : plan.sinks) {
    std::string reason = check_id(sink, duplicate_sinks, "sink");
    if (reason.empty()) {
      switch (sink.kind) {
        case SinkKind::Port: {
          if (sink.ifname.empty()) {
            reason = "sink '" + sink.id + "' names no interface";
            break;
          }
          // Its copies would be captured by the source and sent once more.
          const NamespaceKey key{netns_identity(sink.netns), netns_path(sink.netns)};
          for (const auto& [source, source_key] : valid_sources) {
            if (source->ifname == sink.ifname && same_namespace(source_key, key)) {
              reason = "destination port '" + sink.ifname + "'" +
                       (sink.netns.empty() ? "" : " in network namespace '" + sink.netns + "'") +
                       " is also a mirrored source";
              break;
            }
          }
          break;
        }
        case SinkKind::Gre:
        case SinkKind::Erspan:
          reason = check_tunnel_sink(sink);
          break;
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
