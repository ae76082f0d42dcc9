// A lane is one worker's share of a source, sink or rule: its own socket and
// its own counters, so workers never share a cache line on the packet path.
// The engine owns lanes; a worker reads them, and their pointers change only
// when the worker installs an update between two ring blocks.
#pragma once

#include <memory>
#include <vector>

#include "filter.h"
#include "plan.h"
#include "ring_rx.h"
#include "sink.h"
#include "status.h"

namespace tapas {

struct SinkLane {
  std::unique_ptr<Sink> sink;  // null while the sink is failed
  SinkCounters counters;
  // Worker-only scratch: a frame goes to a sink once even if several rules
  // match, and a sink is flushed once per block. Rules that cut the frame to
  // different lengths (snaplen) make different copies: the lengths already
  // queued for last_frame are kept, and a copy of another length is sent too.
  uint64_t last_frame = 0;
  static constexpr int kCopyLengths = 4;
  uint32_t copy_lengths[kCopyLengths] = {};
  int copies = 0;
  bool dirty = false;
};

struct RuleLane {
  RuleSpec spec;
  SinkLane* sink = nullptr;
  RuleCounters counters;
  // spec.filter compiled (null: no filter); shared with other rules of the same expression.
  std::shared_ptr<const PacketFilter> filter;
  // Worker-only: frames that passed the filter since the last one sent (sampling).
  uint32_t since_sampled = 0;
};

struct SourceLane {
  std::unique_ptr<RxRing> ring;  // null while the source is failed
  SourceCounters counters;
  std::vector<RuleLane*> rules;
  bool queued = false;  // worker-only: in its list of rings to look at
  // Engine-only (the health check): counters.packets when the ring's statistics were last read.
  uint64_t packets_at_statistics = 0;
};

}  // namespace tapas
