// Counters and health shared between a worker (writer) and stats readers.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>

namespace tapas {

// One writer (the owning worker), any number of readers: a relaxed
// load+store avoids a locked instruction per packet.
class Counter {
 public:
  void add(uint64_t n) { value_.store(value_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed); }
  uint64_t get() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

// Whether a source or sink is working, and why not. Written on state changes
// only, so a mutex is fine.
class Health {
 public:
  void set_ok() {
    std::lock_guard<std::mutex> lock(mu_);
    ok_ = true;
    reason_.clear();
  }
  void set_failed(std::string reason) {
    std::lock_guard<std::mutex> lock(mu_);
    ok_ = false;
    reason_ = std::move(reason);
  }
  bool ok() const {
    std::lock_guard<std::mutex> lock(mu_);
    return ok_;
  }
  std::string reason() const {
    std::lock_guard<std::mutex> lock(mu_);
    return reason_;
  }

 private:
  mutable std::mutex mu_;
  bool ok_ = false;
  std::string reason_ = "not opened yet";
};

struct SourceCounters {
  Counter packets, bytes;
  Counter capture_drops;  // PACKET_STATISTICS tp_drops, summed (the kernel resets on read)
  Counter ring_freezes;
  Counter truncated;  // captured shorter than on the wire (tp_snaplen < tp_len)
};

struct SinkCounters {
  Counter packets, bytes;
  Counter errors;  // rejected by the kernel on send
  Counter truncated;   // tunnels: cut to fit the path MTU (ERSPAN sets T)
  Counter fragmented;  // GRE: larger than the path MTU, sent in IP fragments
  Counter files_opened, files_removed;  // file sinks: pcap files opened, and removed by the rotation's file count
};

struct RuleCounters {
  Counter packets, bytes;  // frames matched and handed to the sink
  Counter oversize;        // larger than the sink can carry: dropped, counted
  Counter unavailable;     // matched while the sink was failed
  // What the rule's own stages took out (worker.cc): never drops.
  Counter filtered;        // matched direction and VLANs, not the filter expression
  Counter sampled_out;     // passed the filter, not one of the 1 in sample_rate
  Counter truncated;       // sent cut to snaplen
};

}  // namespace tapas
