// A worker thread drains the rings it is given and dispatches every frame to
// the rules of its source. It makes no slow system calls: sockets are opened
// and closed by the engine (both wait for an RCU grace period in the kernel),
// and only handed over, or taken back, between two ring blocks.
#pragma once

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "lanes.h"

namespace tapas {

struct RuleAssignment {
  RuleLane* lane;
  RuleSpec spec;
  SinkLane* sink;
  std::shared_ptr<const PacketFilter> filter;
};

// What changes in one worker. On return from install(), the rings and sinks
// vectors hold what was displaced, for the caller to close.
struct WorkerUpdate {
  std::vector<std::pair<SourceLane*, std::unique_ptr<RxRing>>> rings;
  std::vector<std::pair<SinkLane*, std::unique_ptr<Sink>>> sinks;
  std::vector<RuleAssignment> rules;
  std::vector<std::pair<SourceLane*, std::vector<RuleLane*>>> rule_lists;
};

// How a worker competes for the CPU. A worker that waits behind busy
// processes lets its ring fill: at low rates a TPACKET_V3 ring holds only
// block_count x block timeout of traffic (16 ms by default), so a host under
// load drops frames and adds tens of milliseconds of latency at nice 0.
enum class WorkerPriority : uint8_t {
  Normal = 0,    // nice 0
  High = 1,      // nice -10: ahead of ordinary processes, still time-sliced
  Realtime = 2,  // SCHED_FIFO 1: ahead of every ordinary process
};

class Worker {
 public:
  // Throws std::runtime_error when it cannot get its descriptors or thread.
  explicit Worker(WorkerPriority priority);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Blocks until the worker thread has applied the update.
  void install(WorkerUpdate& update);
  void stop();
  // Waiting for the kernel with nothing left to read: none of its rings holds
  // a block it was handed (any thread may ask; the health check does, to
  // skip looking into a thousand idle rings).
  bool asleep() const { return asleep_.load(std::memory_order_acquire); }

 private:
  void guarded_run();
  void run();
  void apply_update(WorkerUpdate& update);
  size_t drain(std::vector<SourceLane*>& ready);
  void dispatch(SourceLane& source, const Frame& frame);
  void flush_dirty_sinks();
  // The frame as it was on the wire, tag re-inserted, for the filters (scratch_).
  const uint8_t* wire_bytes(const Frame& frame);

  WorkerPriority priority_;
  int epoll_fd_ = -1;
  int wake_fd_ = -1;
  std::vector<SinkLane*> dirty_sinks_;
  std::vector<SourceLane*> held_batches_;
  // With several rings and none of them TPACKET_V2 (those are there for latency).
  bool coalesce_wakeups_ = false;
  std::vector<SourceLane*> sources_;  // the lanes that have a ring
  int per_frame_rings_ = 0;
  uint64_t frame_sequence_ = 0;
  std::vector<uint8_t> scratch_;

  std::mutex mailbox_mu_;
  std::condition_variable mailbox_cv_;
  WorkerUpdate* pending_ = nullptr;
  bool stopping_ = false;
  std::atomic<bool> asleep_{false};
  std::thread thread_;
};

}  // namespace tapas
