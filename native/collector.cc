#include "collector.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>
#include <vector>

#include "netns.h"
#include "pcap_writer.h"
#include "sink_port.h"

namespace tapas {

namespace {
constexpr int kBatch = 32;
// The largest IP datagram: a reassembled GRE packet can be that long.
constexpr size_t kBufferSize = 65536;
}  // namespace

struct Collector::Runtime {
  int epoll_fd = -1;
  int wake_fd = -1;
  // family of each socket, so the parser knows whether an IP header comes
  // first, and whether it is the VXLAN socket (UDP payloads)
  struct Listener {
    int fd;
    int family;
    bool vxlan;
  };
  std::vector<Listener> sockets;
  PcapWriter pcap;
  SinkCounters port_counters;
  std::unique_ptr<PortSink> port;
  std::vector<uint8_t> buffers = std::vector<uint8_t>(kBatch * kBufferSize);
  std::array<iovec, kBatch> iov{};
  std::array<mmsghdr, kBatch> messages{};

  ~Runtime() {
    for (const Listener& listener : sockets) close(listener.fd);
    if (wake_fd >= 0) close(wake_fd);
    if (epoll_fd >= 0) close(epoll_fd);
  }
};

Collector::Collector() = default;
Collector::~Collector() {
  // A destructor must not throw (a failed join would end the process).
  try {
    stop();
  } catch (...) {
  }
}

// A raw GRE socket (udp_port 0), or a UDP socket bound to udp_port for VXLAN.
static std::string open_listener(int family, const std::string& listen_ip, uint16_t udp_port, int& fd, int& socket_errno) {
  if (udp_port == 0) {
    fd = socket(family, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, encap::kIpProtocolGre);
  } else {
    fd = socket(family, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, IPPROTO_UDP);
  }
  socket_errno = errno;
  if (fd < 0) {
    if (udp_port != 0) return "cannot open a UDP socket: " + errno_text(errno);
    return errno == EPERM ? "receiving tunnel packets needs CAP_NET_RAW (run as root)"
                          : "cannot open a raw GRE socket: " + errno_text(errno);
  }
  // Bursts of mirrored traffic arrive faster than one thread writes a file.
  int buffer = 8 << 20;
  setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &buffer, sizeof buffer);
  if (udp_port != 0 && family == AF_INET6) {
    // The IPv4 socket takes IPv4: this one only IPv6, so that both can bind the port.
    int on = 1;
    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof on);
  }
  if (listen_ip.empty() && udp_port == 0) return "";
  sockaddr_storage local{};
  socklen_t length;
  if (family == AF_INET) {
    auto* v4 = reinterpret_cast<sockaddr_in*>(&local);
    v4->sin_family = AF_INET;
    v4->sin_port = htons(udp_port);
    if (!listen_ip.empty()) inet_pton(AF_INET, listen_ip.c_str(), &v4->sin_addr);
    length = sizeof *v4;
  } else {
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&local);
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(udp_port);
    if (!listen_ip.empty()) inet_pton(AF_INET6, listen_ip.c_str(), &v6->sin6_addr);
    length = sizeof *v6;
  }
  if (bind(fd, reinterpret_cast<sockaddr*>(&local), length) != 0) {
    const std::string where = udp_port == 0 ? listen_ip
                              : (listen_ip.empty() ? "" : listen_ip + " ") + "UDP port " + std::to_string(udp_port);
    return "cannot listen on " + where + ": " + errno_text(errno);
  }
  return "";
}

std::string Collector::start(const CollectorSpec& spec) {
  if (runtime_) return "the collector is already running";
  if (spec.pcap_path.empty() == spec.to_ifname.empty()) return "the collector needs exactly one of a pcap file or an interface";
  spec_ = spec;
  auto runtime = std::make_unique<Runtime>();

  std::vector<int> families;
  in_addr v4;
  in6_addr v6;
  if (spec.listen_ip.empty()) {
    families = {AF_INET, AF_INET6};
  } else if (inet_pton(AF_INET, spec.listen_ip.c_str(), &v4) == 1) {
    families = {AF_INET};
  } else if (inet_pton(AF_INET6, spec.listen_ip.c_str(), &v6) == 1) {
    families = {AF_INET6};
  } else {
    return "'" + spec.listen_ip + "' is not an IPv4 or IPv6 address";
  }
  {
    NetnsScope scope(spec.netns);
    if (!scope.ok()) return scope.error();
    const bool nothing_selected = !spec.key && !spec.session && !spec.vni;
    const bool want_gre = nothing_selected || spec.key || spec.session;
    const bool want_vxlan = nothing_selected || spec.vni || spec.udp_port;
    std::vector<uint16_t> kinds;  // 0: raw GRE, else the VXLAN UDP port
    if (want_gre) kinds.push_back(0);
    if (want_vxlan) kinds.push_back(spec.udp_port.value_or(encap::kVxlanDefaultPort));
    for (uint16_t udp_port : kinds) {
      for (int family : families) {
        int fd = -1;
        int socket_errno = 0;
        std::string error = open_listener(family, spec.listen_ip, udp_port, fd, socket_errno);
        if (fd >= 0) runtime->sockets.push_back({fd, family, udp_port != 0});
        // A kernel without IPv6 still collects IPv4 when no address was asked for.
        const bool no_ipv6 = family == AF_INET6 && spec.listen_ip.empty() && fd < 0 && socket_errno == EAFNOSUPPORT;
        if (!error.empty() && !no_ipv6) return error;
      }
    }
  }

  if (!spec.pcap_path.empty()) {
    std::string error = runtime->pcap.open(spec.pcap_path);
    if (!error.empty()) return error;
  } else {
    SinkSpec port;
    port.id = "collector-output";
    port.kind = SinkKind::Port;
    port.ifname = spec.to_ifname;
    port.netns = spec.to_netns.empty() ? spec.netns : spec.to_netns;
    runtime->port = std::make_unique<PortSink>(port, runtime->port_counters);
    std::string error = runtime->port->open();
    if (!error.empty()) return error;
  }

  runtime->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
  runtime->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (runtime->epoll_fd < 0 || runtime->wake_fd < 0) return "cannot create the collector: " + errno_text(errno);
  epoll_event event{};
  event.events = EPOLLIN;
  event.data.fd = runtime->wake_fd;
  epoll_ctl(runtime->epoll_fd, EPOLL_CTL_ADD, runtime->wake_fd, &event);
  for (const Runtime::Listener& listener : runtime->sockets) {
    event.data.fd = listener.fd;
    epoll_ctl(runtime->epoll_fd, EPOLL_CTL_ADD, listener.fd, &event);
  }
  for (int i = 0; i < kBatch; ++i) {
    runtime->iov[i] = {runtime->buffers.data() + static_cast<size_t>(i) * kBufferSize, kBufferSize};
    runtime->messages[i].msg_hdr.msg_iov = &runtime->iov[i];
    runtime->messages[i].msg_hdr.msg_iovlen = 1;
  }
  runtime_ = std::move(runtime);
  thread_ = std::thread([this] { run(); });
  return "";
}

void Collector::stop() {
  if (thread_.joinable()) {
    uint64_t one = 1;
    (void)!write(runtime_->wake_fd, &one, sizeof one);
    thread_.join();
  }
  if (runtime_) runtime_->pcap.flush();
}

void Collector::run() {
  Runtime& rt = *runtime_;
  epoll_event events[4];
  for (;;) {
    int count = epoll_wait(rt.epoll_fd, events, 4, -1);
    for (int e = 0; e < count; ++e) {
      const int fd = events[e].data.fd;
      if (fd == rt.wake_fd) return;
      int family = AF_INET;
      bool vxlan = false;
      for (const Runtime::Listener& listener : rt.sockets) {
        if (listener.fd != fd) continue;
        family = listener.family;
        vxlan = listener.vxlan;
      }
      // Bounded, so that a flood on one socket cannot keep stop() waiting.
      for (int round = 0; round < 64; ++round) {
        int received = recvmmsg(fd, rt.messages.data(), kBatch, MSG_DONTWAIT, nullptr);
        if (received <= 0) break;
        timespec now{};
        clock_gettime(CLOCK_REALTIME, &now);
        for (int i = 0; i < received; ++i) {
          counters_.received.add(1);
          const uint8_t* data = static_cast<const uint8_t*>(rt.iov[i].iov_base);
          const size_t length = rt.messages[i].msg_len;
          encap::TunnelPacket packet;
          // An IPv4 raw socket delivers the IP header, an IPv6 one only the
          // payload; a UDP socket only the UDP payload.
          encap::ParseStatus status = vxlan              ? encap::parse_vxlan_packet(data, length, packet)
                                      : family == AF_INET ? encap::parse_ipv4_gre_packet(data, length, packet)
                                                          : encap::parse_gre_packet(data, length, packet);
          const size_t type_index = static_cast<size_t>(packet.type) - 1;
          if (status != encap::ParseStatus::Ok) {
            counters_.malformed.add(1);
            counters_.malformed_by_reason[static_cast<size_t>(status)].add(1);
            if (type_index < counters_.malformed_by_type.size()) counters_.malformed_by_type[type_index].add(1);
            continue;
          }
          if (!selected(packet)) {
            counters_.filtered.add(1);
            continue;
          }
          counters_.accepted.add(1);
          if (type_index < counters_.accepted_by_type.size()) counters_.accepted_by_type[type_index].add(1);
          const bool erspan = packet.type == encap::TunnelType::ErspanII || packet.type == encap::TunnelType::ErspanIII;
          if (erspan && packet.erspan.truncated) counters_.truncated.add(1);
          const uint32_t inner_length = static_cast<uint32_t>(packet.inner_length);
          if (rt.port) {
            Frame frame;
            frame.data = packet.inner;
            frame.captured_length = frame.wire_length = inner_length;
            if (rt.port->enqueue(frame) == Enqueued::Oversize) counters_.oversize.add(1);
          } else if (rt.pcap.write(now, packet.inner, inner_length, inner_length)) {
            counters_.written.add(1);
            counters_.written_bytes.add(inner_length);
          } else {
            counters_.output_errors.add(1);
          }
        }
        if (rt.port) {
          // Queued frames point into the receive buffers: send before the next recvmmsg.
          const uint64_t sent_before = rt.port_counters.packets.get();
          const uint64_t bytes_before = rt.port_counters.bytes.get();
          const uint64_t errors_before = rt.port_counters.errors.get();
          rt.port->flush();
          counters_.written.add(rt.port_counters.packets.get() - sent_before);
          counters_.written_bytes.add(rt.port_counters.bytes.get() - bytes_before);
          counters_.output_errors.add(rt.port_counters.errors.get() - errors_before);
        } else {
          rt.pcap.flush();
        }
        if (received < kBatch) break;
      }
    }
  }
}

bool Collector::selected(const encap::TunnelPacket& packet) const {
  if (!spec_.key && !spec_.session && !spec_.vni) return true;
  switch (packet.type) {
    case encap::TunnelType::Gre: return spec_.key && packet.gre.key == spec_.key;
    case encap::TunnelType::Vxlan: return spec_.vni && packet.vni == *spec_.vni;
    case encap::TunnelType::ErspanII:
    case encap::TunnelType::ErspanIII: break;
  }
  return spec_.session && packet.erspan.session == *spec_.session;
}

}  // namespace tapas
