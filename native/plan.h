// The plan as the native engine sees it: plain structs, no N-API.
// addon.cc converts the JavaScript plan into these; everything else reads them.
//
// The plan says only what to mirror and which interfaces to watch; how the
// capture backend is tuned (AF_PACKET ring sizes, block timeout) is an engine
// option (engine.h), the same for every source.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "iface.h"
#include "pcap_rotation.h"

namespace tapas {

// TaaS direction, from the workload's point of view (see design.md §1):
// IN is what the host-side interface transmits, OUT what it receives.
enum class Direction : uint8_t { In = 1, Out = 2, Both = 3 };

struct VlanRange {
  uint16_t low;
  uint16_t high;
  bool operator==(const VlanRange&) const = default;
};

struct SourceSpec {
  std::string id;
  std::string ifname;
  std::string netns;  // empty: the engine's own namespace
  bool operator==(const SourceSpec&) const = default;
};

// Port: a local interface. Gre, Erspan (type II), ErspanIII, Vxlan: a tunnel
// to remote_ip (design.md §4, docs/tunnels.md). File: pcap files that rotate
// (sink_file.h; only `tapas mirror -w` makes one, never the agent).
// Unknown: a kind this engine does not know; the sink fails, the rest runs.
enum class SinkKind : uint8_t { Unknown = 0, Port = 1, Gre = 2, Erspan = 3, ErspanIII = 4, Vxlan = 5, File = 6 };

struct SinkSpec {
  std::string id;
  SinkKind kind = SinkKind::Port;
  std::string kind_name;  // as the plan spelled it, for the reason when kind is Unknown
  std::string ifname;     // Port only
  std::string netns;      // tunnels: the namespace whose routing carries the underlay
  // Tunnels only.
  std::string remote_ip;         // IPv4 or IPv6 literal
  uint32_t key = 0;              // Gre: the GRE key (the direction's tunnel id)
  uint16_t session = 0;          // Erspan, ErspanIII: session id, 0-1023
  uint32_t erspan_index = 0;     // Erspan: 20-bit index
  uint8_t hwid = 0;              // ErspanIII: hardware id, 0-63
  uint32_t vni = 0;              // Vxlan: 24-bit VNI
  uint16_t udp_port = 4789;      // Vxlan: the collector's UDP port
  bool gre_truncate = false;     // Gre: truncate to the path MTU instead of letting the kernel fragment
  bool gre_sequence = false;     // Gre: sequence numbers too (flags K|S): a tunnel between tapas agents
  RotationSpec file;             // File: the path and how it rotates
  bool operator==(const SinkSpec&) const = default;
};

// A rule's snaplen: at least the headers of a frame; at most what an
// AF_PACKET frame can hold (libpcap's MAXIMUM_SNAPLEN).
constexpr uint32_t kMinSnaplen = 64;
constexpr uint32_t kMaxSnaplen = 262144;

struct RuleSpec {
  std::string id;
  std::string source_id;
  std::string sink_id;
  Direction direction = Direction::Both;
  std::vector<VlanRange> vlans;  // empty: every frame, tagged or not
  // The stages a frame that matched direction and VLANs goes through, in
  // this order (worker.cc): the pcap-filter expression (empty: every frame),
  // one in sample_rate (1: every frame), then only the first snaplen bytes
  // are sent (0: the whole frame).
  std::string filter;
  uint32_t sample_rate = 1;
  uint32_t snaplen = 0;
  bool operator==(const RuleSpec&) const = default;
};

// A port whose state the control plane wants to know, whether or not it is
// also a source or a sink: the engine observes it (iface_watch.h).
struct InterfaceSpec {
  std::string id;
  std::string ifname;
  std::string netns;
  bool operator==(const InterfaceSpec&) const = default;
};

struct Plan {
  std::vector<SourceSpec> sources;
  std::vector<SinkSpec> sinks;
  std::vector<RuleSpec> rules;
  std::vector<InterfaceSpec> interfaces;
};

// Which entries of a plan cannot run, by id, and why. A plan is run in part:
// one bad rule must not stop every other project's mirroring, so the engine
// runs every entry not listed here and reports the listed ones as failed.
//
// An entry is refused when:
//  - its id is empty, or another entry of the same list has the same id
//    (every entry with that id is refused: which one was meant is unknown);
//  - it is the same interface as an earlier source (a source) or an earlier
//    port sink (a port sink) of the plan (below);
//  - a port sink's interface is also a source of the plan (below);
//  - a sink's kind is unknown, a tunnel names no remote or not an IPv4/IPv6
//    literal, or ERSPAN's session, index or hardware id, VXLAN's VNI or UDP
//    port is out of range;
//  - a file sink names no path, a rotation that cannot run (check_rotation),
//    or the same path as an earlier file sink ("the same file as sink 'ID'":
//    two writers would tear each other's records);
//  - a rule names a source or sink that is not in the plan or is refused, or
//    has a VLAN range outside 1-4094 or with low > high, or a filter that
//    libpcap does not compile (the reason quotes libpcap's message).
//
// ONE INTERFACE, ONE ENTRY. An interface is what it is, not how it is
// spelled (InterfaceIdentity, iface.h): its network namespace, where
//   - "" (empty/omitted) is the engine's own namespace,
//   - a name N without '/' is the file /run/netns/N,
//   - an absolute path is that file (e.g. /proc/PID/ns/net),
// compared as the namespace those files are (nsfs device and inode, so
// "/run/netns//N/", "/run/netns/./N", a symlink to it and
// /proc/self/root/run/netns/N are all N), or, while either cannot be looked
// up, as lexically normalized paths (netns_key); and the interface by its
// ifindex in that namespace (an altname is the interface it names), or,
// while either is not found, by name.
//
// Two sources that are the same interface would capture every frame twice:
// the later one in plan order is refused, and so are its rules, with
//   "the same interface as source 'ID' (spelled 'IF' in network namespace 'NS')"
// naming the earlier one as the plan spells it; the same for two port sinks
// ("... as sink 'ID' ..."), which would send every copy twice.
//
// THE SINK-IS-SOURCE RULE (the API layer enforces the same one): a port sink
// may not be the same interface as a source of the same plan, because the
// source would capture the copies and send them once more. Such a sink is
// refused, and so is every rule into it, with the reason
//   "destination port 'IF' is also a mirrored source", or, when the sink
//   names a namespace NS, "destination port 'IF' in network namespace 'NS'
//   is also a mirrored source";
// the source itself, and its rules into other sinks, run.
//
// Identities depend on the world (a namespace or interface created later, a
// symlink retargeted): the engine resolves them on every apply and again
// whenever it is about to re-open a source or sink, and runs the plan anew
// when the verdict changes (engine.cc).
struct PlanVerdict {
  std::map<std::string, std::string> sources, sinks, rules, interfaces;
  // Some entry was refused for being the same interface as another: the
  // verdict may change as the world does, so it is looked at again.
  bool by_identity = false;
  bool operator==(const PlanVerdict&) const = default;
};

// What each source and sink of a plan is, in plan order (sinks that are not
// ports: unused). The engine fills it (resolve_interfaces, iface.h).
struct PlanIdentities {
  std::vector<InterfaceIdentity> sources, sinks;
};

PlanVerdict check_plan(const Plan& plan, const PlanIdentities& identities);
// With identities from the spelling alone (namespaces stat'ed, no ifindex).
PlanVerdict check_plan(const Plan& plan);

}  // namespace tapas
