// A worker thread owns its sockets: it waits on them with epoll, dispatches
// every captured frame to the rules of its source, and reconciles itself with
// a new plan between ring blocks, so a running source never misses a block.
#pragma once

#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "plan.h"
#include "ring_rx.h"
#include "sink.h"
#include "stats.h"
#include "status.h"

namespace tapas {

using Clock = std::chrono::steady_clock;

// What a worker needs besides the plan: fanout group per source id (empty
// when this is the only worker).
struct WorkerPlan {
  Plan plan;
  std::map<std::string, uint16_t> fanout_groups;
};

class Worker {
 public:
  Worker();
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Ends the thread after a last read of the ring statistics; counters stay readable.
  void stop();
  // Blocks until the worker thread has reconciled itself with the plan.
  void apply(const WorkerPlan& plan);
  // Adds this worker's counters into stats (ids absent there are appended).
  void collect(EngineStats& stats) const;

 private:
  struct SinkSlot {
    SinkSpec spec;
    std::unique_ptr<Sink> sink;  // null while it cannot be opened
    Health health;
    SinkCounters counters;
    Clock::time_point retry_at;
    uint64_t last_frame = 0;  // so that two rules never send one frame twice to a sink
    bool dirty = false;
  };
  struct RuleSlot {
    RuleSpec spec;
    SinkSlot* sink = nullptr;
    RuleCounters counters;
  };
  struct SourceSlot {
    SourceSpec spec;
    uint16_t fanout_group = 0;
    std::unique_ptr<RxRing> ring;  // null while it cannot be opened
    Health health;
    SourceCounters counters;
    std::vector<RuleSlot*> rules;
    Clock::time_point retry_at;
  };

  void run();
  void reconcile(const WorkerPlan& plan);
  void open_source(SourceSlot& source);
  void close_source(SourceSlot& source, std::string reason);
  void open_sink(SinkSlot& sink);
  void drain(SourceSlot& source);
  void dispatch(SourceSlot& source, const Frame& frame);
  void flush_dirty_sinks();
  void check_health();
  void take_ring_statistics(SourceSlot& source);

  int epoll_fd_ = -1;
  int wake_fd_ = -1;

  // Structure (the maps) changes only on the worker thread, under registry_mu_,
  // so that collect() can walk it from another thread.
  mutable std::mutex registry_mu_;
  std::map<std::string, std::unique_ptr<SourceSlot>> sources_;
  std::map<std::string, std::unique_ptr<SinkSlot>> sinks_;
  std::map<std::string, std::unique_ptr<RuleSlot>> rules_;

  std::vector<SinkSlot*> dirty_sinks_;
  uint64_t frame_sequence_ = 0;
  Clock::time_point next_health_check_;

  std::mutex mailbox_mu_;
  std::condition_variable mailbox_cv_;
  const WorkerPlan* pending_ = nullptr;
  uint64_t applied_generation_ = 0;
  bool stopping_ = false;

  std::thread thread_;
};

}  // namespace tapas
