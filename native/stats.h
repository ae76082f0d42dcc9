// A snapshot of the engine's counters and health, keyed by the plan's ids.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace tapas {

struct EndpointHealth {
  std::string id;
  bool ok = false;
  std::string reason;  // empty when ok
};

struct SourceStat : EndpointHealth {
  uint64_t packets = 0, bytes = 0, ring_drops = 0, ring_freezes = 0, truncated = 0;
  uint32_t block_timeout_ms = 0;  // of the V3 ring it runs (or will run) on; 0 for V2
};

struct SinkStat : EndpointHealth {
  uint64_t packets = 0, bytes = 0, errors = 0, truncated = 0, fragmented = 0;
};

struct RuleStat {
  std::string id;
  uint64_t packets = 0, bytes = 0, oversize = 0, unavailable = 0;
};

struct EngineStats {
  std::vector<SourceStat> sources;
  std::vector<SinkStat> sinks;
  std::vector<RuleStat> rules;
};

}  // namespace tapas
