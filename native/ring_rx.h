// A receive ring on one interface, TPACKET_V3 (blocks of frames) or TPACKET_V2
// (one slot per frame). The kernel fills it; a worker reads a batch of what
// the kernel handed over, sends its copies, and only then hands the batch
// back: until then the sinks' queued copies still point into the ring.
#pragma once

#include <linux/if_packet.h>

#include <atomic>
#include <cstdint>
#include <string>

#include "frame.h"
#include "iface.h"
#include "plan.h"

namespace tapas {

// How every source's ring is laid out: an engine option (engine.h), not part
// of the plan, which says only what to mirror.
struct RingSpec {
  // TPACKET_V3 (the default) hands over whole blocks: few wake-ups and any
  // frame size, but a frame waits until its block retires (older kernels
  // round the retire timer up to a jiffy, 4 ms at HZ=250). TPACKET_V2 hands over
  // each frame at once: lower latency, a wake-up per frame at low rates, and
  // frames longer than a slot are truncated (counted).
  uint32_t version = 3;
  // Blocks larger than a 64 KiB GRO super-packet, or the kernel clamps it.
  uint32_t block_size = 128 * 1024;
  uint32_t block_count = 16;
  // V3: how long a partly filled block waits before the kernel hands it over;
  // 0 lets the engine choose from the number of sources (see engine.cc).
  uint32_t block_timeout_ms = 0;
  // V2: bytes per frame slot, header included: 2048 holds a 1500-MTU frame with a VLAN tag.
  uint32_t frame_size = 2048;
  bool operator==(const RingSpec&) const = default;
};

// The limits of each field, for the addon's messages and check_ring.
constexpr uint32_t kMaxRingBlockSize = 1u << 30;
constexpr uint32_t kMaxRingBlockCount = 1u << 16;
constexpr uint32_t kMaxRingBlockTimeoutMs = 1000;

// "" when the kernel can set up such a ring, or what is wrong with it.
std::string check_ring(const RingSpec& ring);

struct RingStatistics {
  uint64_t drops = 0;
  uint64_t freezes = 0;
};

class RxRing {
 public:
  RxRing() = default;
  ~RxRing();
  RxRing(const RxRing&) = delete;
  RxRing& operator=(const RxRing&) = delete;

  // Opens the socket inside netns, maps the ring, binds to ifname and joins
  // fanout_group (0: none). Returns "" or why it failed.
  std::string open(const SourceSpec& spec, const RingSpec& ring, uint16_t fanout_group);
  int fd() const { return fd_; }
  // How many batches one wake-up may read, so that one busy source cannot starve the others.
  uint32_t batches_per_wake() const { return block_count_; }

  bool batch_ready() const { return version_ == TPACKET_V3 ? user_owns(current_block()) : user_owns(frame_at(next_frame_)); }
  // Calls visit(const Frame&) for every frame of the next batch (a V3 block,
  // or up to a block's worth of consecutive V2 frames). Frames stay valid
  // until release_batch().
  // Returns how many frames the batch held.
  template <typename Visit>
  size_t read_batch(Visit&& visit);
  void release_batch();
  // TPACKET_V2: frames are handed over one by one, for latency.
  bool per_frame() const { return version_ == TPACKET_V2; }

  // Drops and freezes since the last call (the kernel resets on read).
  RingStatistics take_statistics();
  // Whether the next block to read is the reader's (handed over, not yet
  // read and released): the kernel drops only while the ring is full, and
  // then that block is the reader's until the reader reads it. Any thread may
  // ask (one status word); always true for TPACKET_V2.
  bool holds_frames() const;
  LinkState link_state() const { return bound_link_state(fd_, ifindex_); }
  // The namespace the socket was opened in (it keeps that namespace alive), and the interface it is bound to.
  const NetnsIdentity& netns_identity() const { return netns_; }
  int ifindex() const { return ifindex_; }

 private:
  tpacket_block_desc* current_block() const {
    return reinterpret_cast<tpacket_block_desc*>(map_ + static_cast<size_t>(next_block_.load(std::memory_order_relaxed)) * block_size_);
  }
  tpacket2_hdr* frame_at(uint32_t index) const {
    return reinterpret_cast<tpacket2_hdr*>(map_ + static_cast<size_t>(index) * frame_size_);
  }
  static bool user_owns(const tpacket_block_desc* block) {
    return (__atomic_load_n(&block->hdr.bh1.block_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER) != 0;
  }
  static bool user_owns(const tpacket2_hdr* frame) {
    return (__atomic_load_n(&frame->tp_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER) != 0;
  }
  bool read_frame(const uint8_t* header, size_t room, Frame& frame) const;

  int fd_ = -1;
  int version_ = TPACKET_V3;
  uint8_t* map_ = nullptr;
  size_t map_size_ = 0;
  uint32_t block_size_ = 0;
  uint32_t block_count_ = 0;
  // The next V3 block to read: written by the worker, read by holds_frames too.
  std::atomic<uint32_t> next_block_{0};
  uint32_t frame_size_ = 0;  // V2
  uint32_t frame_count_ = 0;
  uint32_t next_frame_ = 0;
  uint32_t batch_frames_ = 0;  // V2: frames read by read_batch, released by release_batch
  int ifindex_ = 0;
  NetnsIdentity netns_;
  std::string interface_;  // IF or IF@NETNS, as the plan spells it: Frame::interface points here
};

template <typename Visit>
size_t RxRing::read_batch(Visit&& visit) {
  Frame frame;
  if (version_ == TPACKET_V2) {
    const uint32_t limit = block_size_ / frame_size_;
    batch_frames_ = 0;
    for (uint32_t index = next_frame_; batch_frames_ < limit && user_owns(frame_at(index));
         index = (index + 1) % frame_count_) {
      frame = Frame{};
      if (read_frame(reinterpret_cast<const uint8_t*>(frame_at(index)), frame_size_, frame)) visit(frame);
      ++batch_frames_;
    }
    return batch_frames_;
  }
  const tpacket_block_desc* block = current_block();
  const uint32_t count = block->hdr.bh1.num_pkts;
  const auto* start = reinterpret_cast<const uint8_t*>(block);
  size_t offset = block->hdr.bh1.offset_to_first_pkt;
  uint32_t i = 0;
  for (; i < count && offset + sizeof(tpacket3_hdr) <= block_size_; ++i) {
    const uint8_t* header = start + offset;
    frame = Frame{};
    if (read_frame(header, block_size_ - offset, frame)) visit(frame);
    const uint32_t next = reinterpret_cast<const tpacket3_hdr*>(header)->tp_next_offset;
    if (next == 0) {
      ++i;
      break;
    }
    offset += next;
  }
  return i;
}

}  // namespace tapas
