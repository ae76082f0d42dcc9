#include "sink_tunnel.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <unistd.h>

#include <algorithm>
#include <ctime>
#include <cerrno>
#include <map>
#include <mutex>

#include "netns.h"
#include "own_traffic.h"

namespace tapas {

namespace {

constexpr uint32_t kIpv4HeaderLength = 20;  // a raw socket without IP options
constexpr uint32_t kIpv6HeaderLength = 40;
constexpr uint32_t kMaxIpDatagram = 65535;
constexpr int kSendBuffer = 4 << 20;
constexpr int64_t kMtuRefreshIntervalNs = 1'000'000'000;

// Sequence numbers belong to the tunnel, not to one worker's socket: every
// worker sending into the same tunnel draws from one counter, and a sink
// re-opened after a plan change continues where it was.
std::shared_ptr<std::atomic<uint32_t>> tunnel_sequence(const std::string& tunnel) {
  static std::mutex mu;
  static std::map<std::string, std::weak_ptr<std::atomic<uint32_t>>> sequences;
  std::lock_guard<std::mutex> lock(mu);
  for (auto it = sequences.begin(); it != sequences.end();) {
    it = it->second.expired() ? sequences.erase(it) : std::next(it);
  }
  std::weak_ptr<std::atomic<uint32_t>>& slot = sequences[tunnel];
  std::shared_ptr<std::atomic<uint32_t>> sequence = slot.lock();
  if (!sequence) {
    sequence = std::make_shared<std::atomic<uint32_t>>(0);
    slot = sequence;
  }
  return sequence;
}

constexpr uint32_t kUdpHeaderLength = 8;

int64_t realtime_ns() {
  timespec now{};
  clock_gettime(CLOCK_REALTIME, &now);
  return now.tv_sec * 1'000'000'000LL + now.tv_nsec;
}

}  // namespace

TunnelSink::TunnelSink(const SinkSpec& spec, SinkCounters& counters) : spec_(spec), counters_(counters) {
  if (spec_.kind == SinkKind::Erspan || spec_.kind == SinkKind::ErspanIII) {
    const bool type3 = spec_.kind == SinkKind::ErspanIII;
    tunnel_.type = type3 ? encap::TunnelType::ErspanIII : encap::TunnelType::ErspanII;
    tunnel_.session = spec_.session;
    tunnel_.index = spec_.erspan_index;
    tunnel_.hwid = spec_.hwid;
    truncate_ = true;
    erspan_ = true;
    sequence_ = tunnel_sequence(spec_.netns + "|" + spec_.remote_ip + (type3 ? "|erspan3|" : "|erspan|") + std::to_string(spec_.session));
  } else if (spec_.kind == SinkKind::Vxlan) {
    // RFC 7348 4.3: a VTEP must not fragment. There is no T bit: what is cut is counted.
    tunnel_.type = encap::TunnelType::Vxlan;
    tunnel_.vni = spec_.vni;
    truncate_ = true;
  } else {
    tunnel_.type = encap::TunnelType::Gre;
    tunnel_.key = spec_.key;
    tunnel_.sequence = spec_.gre_sequence;
    truncate_ = spec_.gre_truncate;
    if (spec_.gre_sequence) sequence_ = tunnel_sequence(spec_.netns + "|" + spec_.remote_ip + "|gre|" + std::to_string(spec_.key));
  }
  gre_ = tunnel_.gre_layout();
  encap_length_ = tunnel_.length();
}

TunnelSink::~TunnelSink() {
  if (fd_ >= 0) close(fd_);
}

std::string TunnelSink::open() {
  sockaddr_storage remote{};
  socklen_t remote_length = 0;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&remote);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&remote);
  if (inet_pton(AF_INET, spec_.remote_ip.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = family_ = AF_INET;
    v4->sin_port = htons(spec_.udp_port);
    remote_length = sizeof *v4;
    ip_header_length_ = kIpv4HeaderLength;
  } else if (inet_pton(AF_INET6, spec_.remote_ip.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = family_ = AF_INET6;
    v6->sin6_port = htons(spec_.udp_port);
    remote_length = sizeof *v6;
    ip_header_length_ = kIpv6HeaderLength;
  } else {
    return "remote '" + spec_.remote_ip + "' is not an IPv4 or IPv6 address";
  }

  NetnsScope scope(spec_.netns);
  if (!scope.ok()) return scope.error();
  netns_ = scope.identity();
  if (tunnel_.type == encap::TunnelType::Vxlan) {
    // A plain UDP socket: the kernel writes UDP and IP headers, checksum
    // included. Connected, its source port is one ephemeral port for the
    // whole tunnel (collectors key on the VNI and destination port).
    fd_ = socket(family_, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, IPPROTO_UDP);
    ip_header_length_ += kUdpHeaderLength;
    if (fd_ < 0) return "cannot open a UDP socket: " + errno_text(errno);
  } else {
    fd_ = socket(family_, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, encap::kIpProtocolGre);
    if (fd_ < 0) {
      return errno == EPERM ? "sending tunnel packets needs CAP_NET_RAW (run as root)"
                            : "cannot open a raw GRE socket: " + errno_text(errno);
    }
  }
  std::string error = mark_own_traffic(fd_);
  if (!error.empty()) return error;

  // Truncating sinks want the path MTU enforced (DF set, EMSGSIZE above it);
  // fragmenting ones want DF clear so that the kernel and routers may fragment.
  int discover;
  int level;
  int option;
  if (family_ == AF_INET) {
    level = IPPROTO_IP;
    option = IP_MTU_DISCOVER;
    discover = truncate_ ? IP_PMTUDISC_DO : IP_PMTUDISC_DONT;
  } else {
    level = IPPROTO_IPV6;
    option = IPV6_MTU_DISCOVER;
    discover = truncate_ ? IPV6_PMTUDISC_DO : IPV6_PMTUDISC_DONT;
  }
  if (setsockopt(fd_, level, option, &discover, sizeof discover) != 0) {
    return "cannot set path MTU discovery: " + errno_text(errno);
  }
  int buffer = kSendBuffer;
  setsockopt(fd_, SOL_SOCKET, SO_SNDBUFFORCE, &buffer, sizeof buffer);

  // Connected: the route is looked up once, sends need no address, and the
  // path MTU of that route can be read back.
  if (connect(fd_, reinterpret_cast<sockaddr*>(&remote), remote_length) != 0) {
    return "no route to " + spec_.remote_ip + (spec_.netns.empty() ? "" : " in network namespace '" + spec_.netns + "'") +
           ": " + errno_text(errno);
  }
  max_datagram_inner_ = kMaxIpDatagram - ip_header_length_ - static_cast<uint32_t>(encap_length_);
  refresh_path_mtu();
  if (max_inner_ < encap::kEthernetHeaderLength) {
    return "the path MTU to " + spec_.remote_ip + " leaves no room for a frame";
  }
  return "";
}

void TunnelSink::refresh_path_mtu() {
  int mtu = 0;
  socklen_t length = sizeof mtu;
  bool ok = family_ == AF_INET ? getsockopt(fd_, IPPROTO_IP, IP_MTU, &mtu, &length) == 0
                               : getsockopt(fd_, IPPROTO_IPV6, IPV6_MTU, &mtu, &length) == 0;
  if (!ok || mtu <= 0) return;  // keep the last known value
  int64_t room = static_cast<int64_t>(mtu) - ip_header_length_ - static_cast<int64_t>(encap_length_);
  max_inner_ = static_cast<uint32_t>(std::clamp<int64_t>(room, 0, max_datagram_inner_));
}

LinkState TunnelSink::link_state() { return LinkState::Up; }

void TunnelSink::fit(Message& message) {
  const uint32_t limit = truncate_ ? std::min(max_inner_, max_datagram_inner_) : max_datagram_inner_;
  uint32_t left = std::min(message.inner_length, limit);
  for (int i = 1; i < message.pieces; ++i) {
    size_t n = std::min<size_t>(message.full_length[i], left);
    message.iov[i].iov_len = n;
    left -= static_cast<uint32_t>(n);
  }
  message.truncated = message.inner_length > limit;
  message.above_path_mtu = !truncate_ && message.inner_length > max_inner_;
  if (erspan_) {
    uint8_t* erspan = message.header.data() + gre_.length();
    encap::set_erspan_truncated(erspan, message.truncated || message.cut_on_capture);
  }
}

Enqueued TunnelSink::enqueue(const Frame& frame) {
  const uint32_t inner_length = frame.original_length();
  // GRE without truncation can carry at most one IP datagram; a larger GRO
  // super-packet is refused (and counted by the caller) rather than cut.
  if (!truncate_ && inner_length > max_datagram_inner_) return Enqueued::Oversize;

  Message& message = batch_[queued_];
  encap::FrameHeaderFields fields;
  if (erspan_) {
    fields.frame_class = frame.has_stripped_tag
                             ? encap::classify_frame_with_tag(frame.data, frame.captured_length, frame.stripped_tci)
                             : encap::classify_frame(frame.data, frame.captured_length);
  }
  if (tunnel_.type == encap::TunnelType::ErspanIII) {
    // D per frame, so that a BOTH mirror keeps each frame's direction in one
    // session: the host side transmitting is TaaS IN (ingress, 0), receiving OUT (egress, 1).
    fields.egress = !frame.outgoing;
    fields.timestamp = encap::erspan_timestamp(realtime_ns());
  }
  // Sequence number and T bit are filled in by flush() and fit().
  const size_t header_length = encap::write_tunnel_headers(tunnel_, fields, message.header.data());

  message.iov[0] = {message.header.data(), header_length};
  if (frame.has_stripped_tag && frame.captured_length >= kMacAddressesLength) {
    message.tag = {static_cast<uint8_t>(frame.stripped_tpid >> 8), static_cast<uint8_t>(frame.stripped_tpid),
                   static_cast<uint8_t>(frame.stripped_tci >> 8), static_cast<uint8_t>(frame.stripped_tci)};
    message.iov[1] = {const_cast<uint8_t*>(frame.data), kMacAddressesLength};
    message.iov[2] = {message.tag.data(), kVlanTagLength};
    message.iov[3] = {const_cast<uint8_t*>(frame.data) + kMacAddressesLength, frame.captured_length - kMacAddressesLength};
    message.pieces = 4;
  } else {
    message.iov[1] = {const_cast<uint8_t*>(frame.data), frame.captured_length};
    message.pieces = 2;
  }
  for (int i = 0; i < message.pieces; ++i) message.full_length[i] = message.iov[i].iov_len;
  message.inner_length = inner_length;
  message.cut_on_capture = frame.captured_length < frame.wire_length;
  fit(message);

  msghdr& header = mmsg_[queued_].msg_hdr;
  header = msghdr{};
  header.msg_iov = message.iov.data();
  header.msg_iovlen = static_cast<size_t>(message.pieces);
  if (++queued_ == kBatch) flush();
  return Enqueued::Queued;
}

void TunnelSink::account_sent(const Message& message, unsigned bytes) {
  counters_.packets.add(1);
  counters_.bytes.add(bytes);
  if (message.truncated) counters_.truncated.add(1);
  if (message.above_path_mtu) counters_.fragmented.add(1);
}

void TunnelSink::flush() {
  if (queued_ == 0) return;
  timespec now{};
  clock_gettime(CLOCK_MONOTONIC_COARSE, &now);
  const int64_t now_ns = now.tv_sec * 1'000'000'000LL + now.tv_nsec;
  if (now_ns >= next_mtu_refresh_ns_) {
    // Frames already queued were fitted to the old value; EMSGSIZE below refits any that no longer fit.
    refresh_path_mtu();
    next_mtu_refresh_ns_ = now_ns + kMtuRefreshIntervalNs;
  }
  if (sequence_) {
    // Numbers are taken per batch: one atomic operation however many workers share the tunnel.
    uint32_t next = sequence_->fetch_add(static_cast<uint32_t>(queued_), std::memory_order_relaxed);
    for (int i = 0; i < queued_; ++i) encap::put_gre_sequence(batch_[i].header.data(), gre_, next++);
  }
  int sent_from = 0;
  bool retried = false;
  while (sent_from < queued_) {
    int sent = sendmmsg(fd_, mmsg_.data() + sent_from, static_cast<unsigned>(queued_ - sent_from), MSG_DONTWAIT);
    if (sent > 0) {
      for (int i = sent_from; i < sent_from + sent; ++i) account_sent(batch_[i], mmsg_[i].msg_len);
      sent_from += sent;
      retried = false;
      continue;
    }
    const int error = errno;
    Message& failed = batch_[sent_from];
    // Retried once: an ICMP error from the remote (e.g. protocol unreachable
    // while no collector listens) is reported by failing the next send, which
    // then never left; and EMSGSIZE means the path MTU shrank, so the frame is
    // cut to the new one. Anything else, or a second failure, drops the frame.
    if (!retried && error != EAGAIN && error != ENOBUFS) {
      retried = true;
      if (error == EMSGSIZE) {
        refresh_path_mtu();
        fit(failed);
      }
      continue;
    }
    counters_.errors.add(1);
    ++sent_from;
    retried = false;
  }
  queued_ = 0;
}

}  // namespace tapas
