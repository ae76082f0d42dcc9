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

namespace {

// The sockaddr_ll the kernel writes after each frame header holds the packet type.
template <typename Header>
const sockaddr_ll* link_address(const Header* header) {
  return reinterpret_cast<const sockaddr_ll*>(reinterpret_cast<const uint8_t*>(header) + TPACKET_ALIGN(sizeof(Header)));
}

// The fields both header versions share, read once, with every length checked
// against the room the header has in the ring before anything is copied.
template <typename Header>
bool fill_frame(const Header* header, size_t room, uint16_t vlan_tci, uint16_t vlan_tpid, Frame& frame) {
  if (TPACKET_ALIGN(sizeof(Header)) + sizeof(sockaddr_ll) > room) return false;
  if (header->tp_mac > room || header->tp_snaplen > room - header->tp_mac) return false;
  frame.data = reinterpret_cast<const uint8_t*>(header) + header->tp_mac;
  frame.captured_length = header->tp_snaplen;
  frame.wire_length = header->tp_len;
  frame.outgoing = link_address(header)->sll_pkttype == PACKET_OUTGOING;
  frame.timestamp = {static_cast<time_t>(header->tp_sec), static_cast<long>(header->tp_nsec)};
  if (header->tp_status & TP_STATUS_VLAN_VALID) {
    frame.has_stripped_tag = true;
    frame.stripped_tci = vlan_tci;
    if (header->tp_status & TP_STATUS_VLAN_TPID_VALID) frame.stripped_tpid = vlan_tpid;
  }
  return true;
}

bool power_of_two(uint32_t n) { return n != 0 && (n & (n - 1)) == 0; }

}  // namespace

RxRing::~RxRing() {
  if (map_ != nullptr) munmap(map_, map_size_);
  if (fd_ >= 0) close(fd_);
}

std::string check_ring(const RingSpec& ring) {
  if (ring.version != 2 && ring.version != 3) return "ring version must be 2 or 3 (TPACKET_V2 or TPACKET_V3)";
  if (!power_of_two(ring.block_size) || ring.block_size < static_cast<uint32_t>(getpagesize()) ||
      ring.block_size > kMaxRingBlockSize) {
    return "ring block size must be a power of two from a page to 1 GiB";
  }
  if (ring.version == 3 && ring.block_size < 65536) return "a TPACKET_V3 block must hold 64 KiB (a GRO super-packet)";
  if (ring.version == 2 && (!power_of_two(ring.frame_size) || ring.frame_size < 256 || ring.frame_size > ring.block_size)) {
    return "ring frame size must be a power of two between 256 and the block size";
  }
  if (ring.block_count < 2 || ring.block_count > kMaxRingBlockCount) return "a ring needs 2 to 65536 blocks";
  if (ring.block_timeout_ms > kMaxRingBlockTimeoutMs) return "the ring block timeout must be 0 to 1000 ms";
  return "";
}

std::string RxRing::open(const SourceSpec& spec, const RingSpec& ring, uint16_t fanout_group) {
  std::string error = check_ring(ring);
  if (!error.empty()) return error;

  NetnsScope scope(spec.netns);
  if (!scope.ok()) return scope.error();
  netns_ = scope.identity();
  interface_ = spec.netns.empty() ? spec.ifname : spec.ifname + "@" + spec.netns;

  // Protocol 0: receive nothing until the ring is in place and bind names the interface.
  fd_ = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd_ < 0) {
    return errno == EPERM ? "capturing needs CAP_NET_RAW (run as root)"
                          : "cannot open a packet socket: " + errno_text(errno);
  }
  InterfaceInfo info;
  error = query_interface(fd_, spec.ifname, info);
  if (!error.empty()) return error;
  ifindex_ = info.ifindex;

  version_ = ring.version == 2 ? TPACKET_V2 : TPACKET_V3;
  if (setsockopt(fd_, SOL_PACKET, PACKET_VERSION, &version_, sizeof version_) != 0) {
    return "TPACKET_V" + std::to_string(ring.version) + " is not supported: " + errno_text(errno);
  }
  block_size_ = ring.block_size;
  block_count_ = ring.block_count;
  // V3 ignores the frame size but checks it; 2 KiB divides every valid block.
  frame_size_ = version_ == TPACKET_V2 ? ring.frame_size : 2048;
  frame_count_ = block_size_ / frame_size_ * block_count_;
  tpacket_req3 request{};
  request.tp_block_size = block_size_;
  request.tp_block_nr = block_count_;
  request.tp_frame_size = frame_size_;
  request.tp_frame_nr = frame_count_;
  if (version_ == TPACKET_V3) request.tp_retire_blk_tov = ring.block_timeout_ms;
  // tpacket_req is the first part of tpacket_req3: V2 reads only that.
  socklen_t request_size = version_ == TPACKET_V3 ? sizeof(tpacket_req3) : sizeof(tpacket_req);
  if (setsockopt(fd_, SOL_PACKET, PACKET_RX_RING, &request, request_size) != 0) {
    return "cannot set up the receive ring: " + errno_text(errno);
  }
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

bool RxRing::read_frame(const uint8_t* header, size_t room, Frame& frame) const {
  frame.interface = &interface_;
  if (version_ == TPACKET_V2) {
    const auto* h2 = reinterpret_cast<const tpacket2_hdr*>(header);
    return fill_frame(h2, room, h2->tp_vlan_tci, h2->tp_vlan_tpid, frame);
  }
  const auto* h3 = reinterpret_cast<const tpacket3_hdr*>(header);
  return fill_frame(h3, room, h3->hv1.tp_vlan_tci, h3->hv1.tp_vlan_tpid, frame);
}

void RxRing::release_batch() {
  if (version_ == TPACKET_V2) {
    for (uint32_t i = 0; i < batch_frames_; ++i) {
      __atomic_store_n(&frame_at(next_frame_)->tp_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
      next_frame_ = (next_frame_ + 1) % frame_count_;
    }
    batch_frames_ = 0;
    return;
  }
  __atomic_store_n(&current_block()->hdr.bh1.block_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
  next_block_.store((next_block_.load(std::memory_order_relaxed) + 1) % block_count_, std::memory_order_relaxed);
}

bool RxRing::holds_frames() const {
  return version_ != TPACKET_V3 || map_ == nullptr || user_owns(current_block());
}

RingStatistics RxRing::take_statistics() {
  // tpacket_stats is the first part of tpacket_stats_v3: V2 fills only that.
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
