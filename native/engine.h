// The engine turns a plan into lanes on its workers. It does every slow thing
// itself, off the packet path: opening sockets (in parallel, since each waits
// for an RCU grace period), closing them, health checks and re-opening what
// failed. Workers only ever see ready sockets handed over between two blocks.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "iface_watch.h"
#include "lanes.h"
#include "link_events.h"
#include "plan.h"
#include "stats.h"
#include "status.h"
#include "worker.h"

namespace tapas {

using Clock = std::chrono::steady_clock;

struct EngineOptions {
  unsigned workers = 1;
  WorkerPriority priority = WorkerPriority::High;
  // The AF_PACKET ring of every source (check_ring must accept it).
  RingSpec ring;
};

class Engine {
 public:
  // Throws std::runtime_error when it cannot start (no descriptors or threads
  // left): plain C++, the addon turns that into a JavaScript error.
  explicit Engine(const EngineOptions& options);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Runs what the plan check (plan.h) accepts and reports the rest as failed
  // in stats(); returns "" once every worker runs it and every interface of
  // plan.interfaces has been observed once, or why nothing was done (the
  // engine is closed).
  std::string apply(const Plan& plan);
  EngineStats stats() const;
  // Stops the workers; stats() keeps returning the final counters.
  void close();

 private:
  struct SourceSlot {
    using Lane = SourceLane;
    SourceSpec spec;
    std::string refused;  // why the plan check refused it; never opened then
    uint16_t fanout_group = 0;
    bool open = false;
    // Set by apply before the ring opens, read by the opener and by stats().
    std::atomic<uint32_t> block_timeout_ms{0};
    Health health;
    Clock::time_point retry_at;
    // Closed because its namespace was deleted: it waits for a namespace of
    // that name, and says so meanwhile.
    bool netns_gone = false;
    // Its link state was read since it was opened: from then on it is read
    // again only on word of a change (LinkEvents) or a sweep.
    bool verified = false;
    std::vector<std::unique_ptr<SourceLane>> lanes;  // one per worker
  };
  struct SinkSlot {
    using Lane = SinkLane;
    SinkSpec spec;
    std::string refused;
    bool open = false;
    Health health;
    Clock::time_point retry_at;
    bool netns_gone = false;
    bool verified = false;
    std::vector<std::unique_ptr<SinkLane>> lanes;
  };
  struct RuleSlot {
    using Lane = RuleLane;
    std::string refused;  // the rule is installed when empty
    std::vector<std::unique_ptr<RuleLane>> lanes;
  };
  using Updates = std::vector<WorkerUpdate>;

  template <typename Slot>
  std::unique_ptr<Slot> new_slot() const;
  void open_sources(const std::vector<SourceSlot*>& slots, Updates& updates);
  void open_sinks(const std::vector<SinkSlot*>& slots, Updates& updates);
  void unplug_source(SourceSlot& slot, Updates& updates);
  void unplug_sink(SinkSlot& slot, Updates& updates);
  // Hands the updates to the workers, then closes what they gave back.
  void install(Updates& updates);
  // Makes the workers run plan_ as verdict_ allows (apply, and the health
  // thread when identities change the verdict).
  void run_plan();
  // What each source and port sink of plan_ is: an open one what it was
  // opened on, the rest looked up (resolve_interfaces).
  PlanIdentities identities() const;
  void health_loop();
  // periodic: the tick every kHealthInterval (namespace files, retries, ring
  // statistics, the sweep); otherwise one for link events that just came.
  void health_tick(bool periodic, Clock::time_point& next_sweep);
  // look: what the interface refresh of this tick saw of each namespace file,
  // or null when this tick had none (namespaces are then looked at only for
  // what waits for one). changes: the link events of this tick; sweep: read
  // every source's and sink's state, event or not.
  void check_health(NamespaceLook* look, const LinkChangeSet& changes, bool sweep);
  // Whether a source or sink must read its link state this tick.
  // covered: what LinkEvents covers, by namespace, filled as asked (once per namespace and check).
  bool look_again(bool verified, const std::string& netns, const NetnsIdentity& identity, int ifindex,
                  const std::string& ifname, const LinkChangeSet& changes, bool sweep,
                  std::map<std::string, NetnsIdentity>& covered) const;
  void collect(EngineStats& stats) const;

  const RingSpec ring_;
  std::vector<std::unique_ptr<Worker>> workers_;
  uint16_t next_fanout_group_;

  std::mutex control_mu_;           // one apply or health check at a time
  Plan plan_;                       // the last plan applied
  PlanVerdict verdict_;             // what of it runs, as last resolved
  Clock::time_point next_identity_check_;
  mutable std::mutex registry_mu_;  // the maps below, as stats() walks them
  std::map<std::string, std::unique_ptr<SourceSlot>> sources_;
  std::map<std::string, std::unique_ptr<SinkSlot>> sinks_;
  std::map<std::string, std::unique_ptr<RuleSlot>> rules_;
  EngineStats final_stats_;
  InterfaceWatch interfaces_;  // its own locks: refreshed without control_mu_
  LinkEvents link_events_;     // its own lock: followed by apply, polled by the health thread
  bool closed_ = false;

  std::atomic<bool> stopping_{false};
  int wake_fd_ = -1;  // eventfd: close() wakes the health thread with it
  std::thread health_thread_;
};

}  // namespace tapas
