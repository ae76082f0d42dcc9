#include "ring_rx.h"

#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <net/if.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "netns.h"
#include "own_traffic.h"

namespace tapas {

// The sockaddr_ll the kernel writes after each frame header holds the packet type.
static const sockaddr_ll* link_address(const tpacket3_hdr* header) {
  return reinterpret_cast<const sockaddr_ll*>(reinterpret_cast<const uint8_t*>(header) +
                                              TPACKET_ALIGN(sizeof(tpacket3_hdr)));
}

RxRing::~RxRing() {
  if (map_ != nullptr) munmap(map_, map_size_);
  if (fd_ >= 0) close(fd_);
}

std::string RxRing::open(const SourceSpec& spec, uint16_t fanout_group) {
  const RingSpec& ring = spec.ring;
  if (ring.block_size < 65536 || ring.block_size % static_cast<uint32_t>(getpagesize()) != 0 ||
      (ring.block_size & (ring.block_size - 1)) != 0) {
    return "ring block size must be a power of two of at least 64 KiB";
  }
  if (ring.block_count < 2) return "a ring needs at least 2 blocks";

  NetnsScope scope(spec.netns);
  if (!scope.ok()) return scope.error();

  // Protocol 0: receive nothing until the ring is in place and bind names the interface.
  fd_ = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd_ < 0) {
    return errno == EPERM ? "capturing needs CAP_NET_RAW (run as root)"
                          : "cannot open a packet socket: " + errno_text(errno);
  }
  InterfaceInfo info;
  std::string error = query_interface(fd_, spec.ifname, info);
  if (!error.empty()) return error;
  ifindex_ = info.ifindex;

  int version = TPACKET_V3;
  if (setsockopt(fd_, SOL_PACKET, PACKET_VERSION, &version, sizeof version) != 0) {
    return "TPACKET_V3 is not supported: " + errno_text(errno);
  }
  tpacket_req3 request{};
  request.tp_block_size = ring.block_size;
  request.tp_block_nr = ring.block_count;
  request.tp_frame_size = TPACKET_ALIGNMENT << 7;  // only a bookkeeping unit in V3
  request.tp_frame_nr = ring.block_size / request.tp_frame_size * ring.block_count;
  request.tp_retire_blk_tov = ring.block_timeout_ms;
  if (setsockopt(fd_, SOL_PACKET, PACKET_RX_RING, &request, sizeof request) != 0) {
    return "cannot set up the receive ring: " + errno_text(errno);
  }
  block_size_ = ring.block_size;
  block_count_ = ring.block_count;
  map_size_ = static_cast<size_t>(block_size_) * block_count_;
  void* map = mmap(nullptr, map_size_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd_, 0);
  if (map == MAP_FAILED) {
    map_size_ = 0;
    return "cannot map the receive ring: " + errno_text(errno);
  }
  map_ = static_cast<uint8_t*>(map);

  // Before bind: our own tunnel packets must never reach the ring.
  error = ignore_own_traffic(fd_);
  if (!error.empty()) return error;

  sockaddr_ll address{};
  address.sll_family = AF_PACKET;
  address.sll_protocol = htons(ETH_P_ALL);
  address.sll_ifindex = ifindex_;
  if (bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    return "cannot bind to '" + spec.ifname + "': " + errno_text(errno);
  }
  if (fanout_group != 0) {
    // A symmetric flow hash keeps both directions of a flow, and their order, on one worker.
    int fanout = fanout_group | (PACKET_FANOUT_HASH << 16);
    if (setsockopt(fd_, SOL_PACKET, PACKET_FANOUT, &fanout, sizeof fanout) != 0) {
      return "cannot join fanout group: " + errno_text(errno);
    }
  }
  take_statistics();  // start counting from here
  return "";
}

bool RxRing::read_frame(const tpacket_block_desc* block, const tpacket3_hdr* header, Frame& frame) const {
  const auto* block_start = reinterpret_cast<const uint8_t*>(block);
  const auto* start = reinterpret_cast<const uint8_t*>(header);
  const size_t header_offset = static_cast<size_t>(start - block_start);
  const size_t mac_offset = header_offset + header->tp_mac;
  // Never trust a length we are about to copy from.
  if (header_offset + TPACKET_ALIGN(sizeof(tpacket3_hdr)) + sizeof(sockaddr_ll) > block_size_) return false;
  if (mac_offset > block_size_ || header->tp_snaplen > block_size_ - mac_offset) return false;

  frame.data = start + header->tp_mac;
  frame.captured_length = header->tp_snaplen;
  frame.wire_length = header->tp_len;
  frame.outgoing = link_address(header)->sll_pkttype == PACKET_OUTGOING;
  if (header->tp_status & TP_STATUS_VLAN_VALID) {
    frame.has_stripped_tag = true;
    frame.stripped_tci = header->hv1.tp_vlan_tci;
    if (header->tp_status & TP_STATUS_VLAN_TPID_VALID) frame.stripped_tpid = header->hv1.tp_vlan_tpid;
  }
  return true;
}

RingStatistics RxRing::take_statistics() {
  tpacket_stats_v3 stats{};
  socklen_t length = sizeof stats;
  RingStatistics result;
  if (getsockopt(fd_, SOL_PACKET, PACKET_STATISTICS, &stats, &length) == 0) {
    result.drops = stats.tp_drops;
    result.freezes = stats.tp_freeze_q_cnt;
  }
  return result;
}

}  // namespace tapas
