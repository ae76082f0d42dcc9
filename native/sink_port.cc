#include "sink_port.h"

#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>

#include "netns.h"

namespace tapas {

PortSink::~PortSink() {
  if (fd_ >= 0) close(fd_);
}

std::string PortSink::open() {
  NetnsScope scope(spec_.netns);
  if (!scope.ok()) return scope.error();
  netns_ = scope.identity();
  // Protocol 0: a send-only socket that never receives.
  fd_ = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd_ < 0) {
    return errno == EPERM ? "sending needs CAP_NET_RAW (run as root)"
                          : "cannot open a packet socket: " + errno_text(errno);
  }
  InterfaceInfo info;
  std::string error = query_interface(fd_, spec_.ifname, info);
  if (!error.empty()) return error;
  ifindex_ = info.ifindex;
  max_frame_ = info.mtu + ETH_HLEN;

  int one = 1;
  if (setsockopt(fd_, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof one) != 0) {
    return "PACKET_QDISC_BYPASS is not supported: " + errno_text(errno);
  }
  int buffer = 4 << 20;
  setsockopt(fd_, SOL_SOCKET, SO_SNDBUFFORCE, &buffer, sizeof buffer);

  sockaddr_ll address{};
  address.sll_family = AF_PACKET;
  address.sll_protocol = 0;
  address.sll_ifindex = ifindex_;
  if (bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    return "cannot bind to '" + spec_.ifname + "': " + errno_text(errno);
  }
  return "";
}

Enqueued PortSink::enqueue(const Frame& frame) {
  // The kernel allows 4 more bytes for an 802.1Q-tagged frame.
  const bool tagged = frame.has_stripped_tag || frame.vlan_id() >= 0;
  if (frame.original_length() > max_frame_.load(std::memory_order_relaxed) + (tagged ? kVlanTagLength : 0)) return Enqueued::Oversize;

  std::array<iovec, 3>& iov = pieces_[queued_];
  msghdr& header = messages_[queued_].msg_hdr;
  header = msghdr{};
  header.msg_iov = iov.data();
  if (frame.has_stripped_tag && frame.captured_length >= kMacAddressesLength) {
    std::array<uint8_t, kVlanTagLength>& tag = tags_[queued_];
    tag = {static_cast<uint8_t>(frame.stripped_tpid >> 8), static_cast<uint8_t>(frame.stripped_tpid),
           static_cast<uint8_t>(frame.stripped_tci >> 8), static_cast<uint8_t>(frame.stripped_tci)};
    iov[0] = {const_cast<uint8_t*>(frame.data), kMacAddressesLength};
    iov[1] = {tag.data(), kVlanTagLength};
    iov[2] = {const_cast<uint8_t*>(frame.data) + kMacAddressesLength, frame.captured_length - kMacAddressesLength};
    header.msg_iovlen = 3;
  } else {
    iov[0] = {const_cast<uint8_t*>(frame.data), frame.captured_length};
    header.msg_iovlen = 1;
  }
  if (++queued_ == kBatch) flush();
  return Enqueued::Queued;
}

void PortSink::flush() {
  int sent_from = 0;
  while (sent_from < queued_) {
    int sent = sendmmsg(fd_, messages_.data() + sent_from, static_cast<unsigned>(queued_ - sent_from), MSG_DONTWAIT);
    if (sent <= 0) {
      // The first message of the rest failed; count it and carry on with the others.
      counters_.errors.add(1);
      ++sent_from;
      continue;
    }
    for (int i = sent_from; i < sent_from + sent; ++i) counters_.bytes.add(messages_[i].msg_len);
    counters_.packets.add(static_cast<uint64_t>(sent));
    sent_from += sent;
  }
  queued_ = 0;
}

LinkState PortSink::link_state() {
  LinkState state = bound_link_state(fd_, ifindex_);
  if (state == LinkState::Up) {
    ifreq req{};
    req.ifr_ifindex = ifindex_;
    if (ioctl(fd_, SIOCGIFNAME, &req) == 0 && ioctl(fd_, SIOCGIFMTU, &req) == 0) {
      max_frame_.store(static_cast<uint32_t>(req.ifr_mtu) + ETH_HLEN, std::memory_order_relaxed);
    }
  }
  return state;
}

}  // namespace tapas
