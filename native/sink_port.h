// Local port sink: copies go out of a destination interface through a packet
// socket that bypasses the qdisc layer, so no packet socket on that interface,
// ours included, ever sees them again.
#pragma once

#include <sys/socket.h>
#include <sys/uio.h>

#include <array>
#include <atomic>

#include "sink.h"

namespace tapas {

class PortSink final : public Sink {
 public:
  PortSink(const SinkSpec& spec, SinkCounters& counters) : spec_(spec), counters_(counters) {}
  ~PortSink() override;

  std::string open() override;
  Enqueued enqueue(const Frame& frame) override;
  void flush() override;
  LinkState link_state() override;
  int ifindex() const override { return ifindex_; }

 private:
  static constexpr int kBatch = 64;

  SinkSpec spec_;
  SinkCounters& counters_;
  int fd_ = -1;
  int ifindex_ = 0;
  // MTU plus the Ethernet header; the engine's health check refreshes it while a worker reads it.
  std::atomic<uint32_t> max_frame_{0};
  int queued_ = 0;
  std::array<mmsghdr, kBatch> messages_{};
  std::array<std::array<iovec, 3>, kBatch> pieces_{};
  std::array<std::array<uint8_t, kVlanTagLength>, kBatch> tags_{};
};

}  // namespace tapas
