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
  // Blocks larger than a 64 KiB GRO super-packet, or the kernel clamps it.
  uint32_t block_size = 128 * 1024;
  uint32_t block_count = 16;
  // TPACKET_V3 holds packets until a block retires; the kernel default (8 ms)
  // would show up as mirror latency at low rates.
  uint32_t block_timeout_ms = 1;
  bool operator==(const RingSpec&) const = default;
};

struct SourceSpec {
  std::string id;
  std::string ifname;
  std::string netns;  // empty: the engine's own namespace
  RingSpec ring;
  bool operator==(const SourceSpec&) const = default;
};

enum class SinkKind : uint8_t { Port = 1 };

struct SinkSpec {
  std::string id;
  SinkKind kind = SinkKind::Port;
  std::string ifname;
  std::string netns;
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
