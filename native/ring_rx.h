// A TPACKET_V3 receive ring on one interface: the kernel fills blocks of
// frames, we read a block once it is handed to user space and hand it back.
#pragma once

#include <linux/if_packet.h>

#include <cstdint>
#include <string>

#include "frame.h"
#include "iface.h"
#include "plan.h"

namespace tapas {

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
  std::string open(const SourceSpec& spec, uint16_t fanout_group);
  int fd() const { return fd_; }
  uint32_t block_count() const { return block_count_; }

  bool block_ready() const { return user_owns(current()); }
  // Calls visit(const Frame&) for every frame of the current block, then
  // returns the block to the kernel. Frames are valid only inside visit.
  template <typename Visit>
  void consume_block(Visit&& visit);

  // Drops and freezes since the last call (the kernel resets on read).
  RingStatistics take_statistics();
  LinkState link_state() const { return bound_link_state(fd_, ifindex_); }

 private:
  tpacket_block_desc* current() const {
    return reinterpret_cast<tpacket_block_desc*>(map_ + static_cast<size_t>(next_block_) * block_size_);
  }
  static bool user_owns(const tpacket_block_desc* block) {
    return (__atomic_load_n(&block->hdr.bh1.block_status, __ATOMIC_ACQUIRE) & TP_STATUS_USER) != 0;
  }
  static void give_back(tpacket_block_desc* block) {
    __atomic_store_n(&block->hdr.bh1.block_status, TP_STATUS_KERNEL, __ATOMIC_RELEASE);
  }
  bool read_frame(const tpacket_block_desc* block, const tpacket3_hdr* header, Frame& frame) const;

  int fd_ = -1;
  uint8_t* map_ = nullptr;
  size_t map_size_ = 0;
  uint32_t block_size_ = 0;
  uint32_t block_count_ = 0;
  uint32_t next_block_ = 0;
  int ifindex_ = 0;
};

template <typename Visit>
void RxRing::consume_block(Visit&& visit) {
  tpacket_block_desc* block = current();
  const uint32_t count = block->hdr.bh1.num_pkts;
  const uint8_t* block_end = reinterpret_cast<const uint8_t*>(block) + block_size_;
  const uint8_t* cursor = reinterpret_cast<const uint8_t*>(block) + block->hdr.bh1.offset_to_first_pkt;
  for (uint32_t i = 0; i < count; ++i) {
    if (cursor + sizeof(tpacket3_hdr) > block_end) break;
    const auto* header = reinterpret_cast<const tpacket3_hdr*>(cursor);
    Frame frame;
    if (read_frame(block, header, frame)) visit(frame);
    if (header->tp_next_offset == 0) break;
    cursor += header->tp_next_offset;
  }
  give_back(block);
  next_block_ = (next_block_ + 1) % block_count_;
}

}  // namespace tapas
