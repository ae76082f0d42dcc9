// Tunnel sink: copies go to a remote collector inside GRE (key = tunnel id,
// the frame as Transparent Ethernet Bridging), ERSPAN type II or type III,
// over a raw IPv4/IPv6 socket of protocol 47, or inside VXLAN over a UDP
// socket. The kernel adds the outer IP (and UDP) header and routes it, so no
// GRE, ERSPAN or VXLAN kernel module is involved.
#pragma once

#include <sys/socket.h>
#include <sys/uio.h>

#include <array>
#include <atomic>
#include <memory>

#include "encap.h"
#include "sink.h"

namespace tapas {

class TunnelSink final : public Sink {
 public:
  TunnelSink(const SinkSpec& spec, SinkCounters& counters);
  ~TunnelSink() override;

  std::string open() override;
  Enqueued enqueue(const Frame& frame) override;
  void flush() override;
  // A raw IP socket has no interface of its own: Up once open. (Called from
  // the engine's health check, not the worker: it touches no sending state.)
  LinkState link_state() override;

 private:
  static constexpr int kBatch = 64;
  // header, MAC addresses, re-inserted tag, rest of the frame
  static constexpr int kPieces = 4;

  struct Message {
    std::array<uint8_t, encap::kMaxTunnelHeaderLength> header{};
    std::array<uint8_t, kVlanTagLength> tag{};
    std::array<iovec, kPieces> iov{};
    std::array<size_t, kPieces> full_length{};  // iov lengths before any truncation
    int pieces = 0;
    uint32_t inner_length = 0;  // the whole original frame
    bool cut_on_capture = false;
    bool truncated = false;
    bool above_path_mtu = false;  // sent whole, fragmented by the kernel
  };

  // Reads the path MTU of the connected route; flush() calls it about once a
  // second so that truncation follows route and PMTU changes.
  void refresh_path_mtu();
  // Cuts message i to what the path carries now, or restores it whole.
  void fit(Message& message);
  void account_sent(const Message& message, unsigned bytes);

  SinkSpec spec_;
  SinkCounters& counters_;
  int fd_ = -1;
  int family_ = 0;
  bool truncate_ = false;      // ERSPAN and VXLAN always; GRE when configured
  bool erspan_ = false;        // the header after GRE has a T bit
  encap::TunnelHeaders tunnel_;
  encap::GreHeader gre_;       // this tunnel's GRE header layout
  size_t encap_length_ = 0;    // GRE (+ ERSPAN) header bytes
  uint32_t ip_header_length_ = 0;  // and UDP's, for VXLAN
  uint32_t max_inner_ = 0;      // inner bytes that fit the path MTU
  uint32_t max_datagram_inner_ = 0;  // inner bytes that fit an IP datagram at all
  int64_t next_mtu_refresh_ns_ = 0;
  std::shared_ptr<std::atomic<uint32_t>> sequence_;  // shared by every worker's instance of this tunnel

  int queued_ = 0;
  std::array<Message, kBatch> batch_{};
  std::array<mmsghdr, kBatch> mmsg_{};
};

}  // namespace tapas
