// The engine: validates a plan, hands it to every worker, and sums their
// counters. With more than one worker each source is opened once per worker
// in a fanout group, and the kernel spreads flows across them.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "plan.h"
#include "stats.h"
#include "worker.h"

namespace tapas {

struct EngineOptions {
  unsigned workers = 1;
};

class Engine {
 public:
  explicit Engine(const EngineOptions& options);
  ~Engine();

  // "" once every worker runs the plan, or why the plan was refused (nothing changed then).
  std::string apply(const Plan& plan);
  EngineStats stats() const;
  void close();

 private:
  std::mutex apply_mu_;          // one plan at a time
  mutable std::mutex workers_mu_;  // stats() must not wait for an apply to finish
  std::vector<std::unique_ptr<Worker>> workers_;
  std::map<std::string, uint16_t> fanout_groups_;
  uint16_t next_fanout_group_;
  EngineStats final_stats_;
  bool closed_ = false;
};

}  // namespace tapas
