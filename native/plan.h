// The plan as the native engine sees it: plain structs, no N-API.
// addon.cc converts the JavaScript plan into these; everything else reads them.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tapas {

// TaaS direction, from the workload's point of view (see design.md §1):
// IN is what the host-side interface transmits, OUT what it receives.
enum class Direction : uint8_t { In = 1, Out = 2, Both = 3 };

struct VlanRange {
  uint16_t low;
  uint16_t high;
  bool operator==(const VlanRange&) const = default;
};

struct RingSpec {
  // TPACKET_V3 (the default) hands over whole blocks: few wake-ups and any
  // frame size, but a frame waits until its block retires (older kernels
  // round the retire timer up to a jiffy, 4 ms at HZ=250). TPACKET_V2 hands over
  // each frame at once: lower latency, a wake-up per frame at low rates, and
  // frames longer than a slot are truncated (counted).
  uint32_t version = 3;
  // Blocks larger than a 64 KiB GRO super-packet, or the kernel clamps it.
  uint32_t block_size = 128 * 1024;
  uint32_t block_count = 16;
  // V3: how long a partly filled block waits before the kernel hands it over;
  // 0 lets the engine choose from the number of sources (see engine.cc).
  uint32_t block_timeout_ms = 0;
  // V2: bytes per frame slot, header included: 2048 holds a 1500-MTU frame with a VLAN tag.
  uint32_t frame_size = 2048;
  bool operator==(const RingSpec&) const = default;
};

struct SourceSpec {
  std::string id;
  std::string ifname;
  std::string netns;  // empty: the engine's own namespace
  RingSpec ring;
  bool operator==(const SourceSpec&) const = default;
};

// Port: a local interface. Gre, Erspan: a tunnel to remote_ip (design.md §4).
enum class SinkKind : uint8_t { Port = 1, Gre = 2, Erspan = 3 };

struct SinkSpec {
  std::string id;
  SinkKind kind = SinkKind::Port;
  std::string ifname;  // Port only
  std::string netns;   // tunnels: the namespace whose routing carries the underlay
  // Tunnels only.
  std::string remote_ip;         // IPv4 or IPv6 literal
  uint32_t key = 0;              // Gre: the GRE key (the direction's tunnel id)
  uint16_t session = 0;          // Erspan: session id, 0-1023
  uint32_t erspan_index = 0;     // Erspan: 20-bit index
  bool gre_truncate = false;     // Gre: truncate to the path MTU instead of letting the kernel fragment
  bool operator==(const SinkSpec&) const = default;
};

struct RuleSpec {
  std::string id;
  std::string source_id;
  std::string sink_id;
  Direction direction = Direction::Both;
  std::vector<VlanRange> vlans;  // empty: every frame, tagged or not
  bool operator==(const RuleSpec&) const = default;
};

struct Plan {
  std::vector<SourceSpec> sources;
  std::vector<SinkSpec> sinks;
  std::vector<RuleSpec> rules;
};

// Checks references and uniqueness; returns an empty string when the plan is usable.
std::string validate_plan(const Plan& plan);

}  // namespace tapas
