// A snapshot of the engine's counters and health, keyed by the plan's ids.
// The common shape is the same for every capture backend; what only the
// AF_PACKET backend has sits in PacketSourceStat.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace tapas {

struct EndpointHealth {
  std::string id;
  bool ok = false;
  std::string reason;  // empty when ok
  bool operator==(const EndpointHealth&) const = default;
};

// AF_PACKET only: the ring the source is captured with.
struct PacketSourceStat {
  uint64_t ring_freezes = 0;      // PACKET_STATISTICS tp_freeze_q_cnt, summed
  uint32_t block_timeout_ms = 0;  // of the V3 ring it runs (or will run) on; 0 for V2
  bool operator==(const PacketSourceStat&) const = default;
};

struct SourceStat : EndpointHealth {
  uint64_t packets = 0, bytes = 0;
  uint64_t capture_drops = 0;  // frames the kernel had no room for (a full ring)
  uint64_t truncated = 0;      // captured shorter than on the wire
  std::optional<PacketSourceStat> packet;  // absent for a source the plan check refused
  bool operator==(const SourceStat&) const = default;
};

struct SinkStat : EndpointHealth {
  uint64_t packets = 0, bytes = 0, errors = 0, truncated = 0, fragmented = 0;
  // A file sink: pcap files opened, and removed to keep the rotation's count.
  // Reported for file sinks only, so that other sinks' stats read as before.
  bool file = false;
  uint64_t files_opened = 0, files_removed = 0;
  bool operator==(const SinkStat&) const = default;
};

// ok: the rule is installed. A rule the plan check refused is not ok and says
// why; a rule whose source or sink fails at run time stays ok (their own
// stats say what is wrong) and counts what it could not send as unavailable.
struct RuleStat : EndpointHealth {
  uint64_t packets = 0, bytes = 0, oversize = 0, unavailable = 0;
  uint64_t filtered = 0, sampled_out = 0, truncated = 0;
  bool operator==(const RuleStat&) const = default;
};

// What the engine last saw of an interface the plan asked it to watch.
struct InterfaceStat {
  std::string id;
  bool present = false;
  bool up = false;       // IFF_UP: administratively up
  bool running = false;  // IFF_RUNNING: carrier
  std::string mac;       // aa:bb:cc:dd:ee:ff; empty when absent or not Ethernet
  uint32_t mtu = 0;
  int ifindex = 0;
  std::string reason;  // why it is not present (or could not be looked at); empty otherwise
  // Present, and the same interface (namespace identity and ifindex) as this
  // earlier entry of the list, under another spelling: a port registered twice.
  std::string same_as;
  bool operator==(const InterfaceStat&) const = default;
};

struct EngineStats {
  std::vector<SourceStat> sources;
  std::vector<SinkStat> sinks;
  std::vector<RuleStat> rules;
  std::vector<InterfaceStat> interfaces;
};

// What of the stats changed since the last delta taken: a reader that keeps
// the previous stats (the JavaScript side) converts and patches only these,
// which for an idle engine is nothing. When a list's ids are not what they
// were (another plan ran), every list is given whole.
struct StatsDelta {
  bool full = false;
  EngineStats changed;  // full: everything; else only the entries that changed
  // Not full: the position of each changed entry in its list.
  std::vector<uint32_t> source_at, sink_at, rule_at, interface_at;
};

class StatsChanges {
 public:
  // The first delta is always full.
  StatsDelta next(EngineStats current);

 private:
  bool started_ = false;
  EngineStats delivered_;
};

}  // namespace tapas
