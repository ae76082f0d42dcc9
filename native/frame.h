// A captured frame as the dispatcher and the sinks see it: a view into the
// RX ring, valid until its block is handed back to the kernel.
#pragma once

#include <cstdint>
#include <ctime>
#include <string>
#include <vector>

#include "plan.h"

namespace tapas {

constexpr uint16_t kEtherTypeVlan = 0x8100;
constexpr uint16_t kEtherTypeQinQ = 0x88a8;
constexpr uint32_t kMacAddressesLength = 12;
constexpr uint32_t kVlanTagLength = 4;

struct Frame {
  const uint8_t* data = nullptr;
  uint32_t captured_length = 0;  // tp_snaplen: what is in the ring
  uint32_t wire_length = 0;      // tp_len: what was on the wire
  bool outgoing = false;         // PACKET_OUTGOING: the interface transmitted it
  // A tag the kernel moved out of the frame into ring metadata; sinks put it back.
  bool has_stripped_tag = false;
  uint16_t stripped_tci = 0;
  uint16_t stripped_tpid = kEtherTypeVlan;
  // When the kernel captured it (tp_sec/tp_nsec, CLOCK_REALTIME); zero when
  // the frame did not come from a ring. A file sink writes it.
  timespec timestamp{};
  // The source interface, IF or IF@NETNS as the plan spells it (owned by the
  // ring, valid as long as the frame); null when not from a ring. pcapng
  // files name it in their interface blocks.
  const std::string* interface = nullptr;

  // The 802.1Q VLAN id, or -1 for an untagged frame.
  int vlan_id() const;
  // Length of the frame as it was on the wire, tag included.
  uint32_t original_length() const { return captured_length + (has_stripped_tag ? kVlanTagLength : 0); }
};

// The TaaS meaning: IN is traffic into the workload, i.e. the host side transmits.
inline bool direction_matches(Direction rule, bool outgoing) {
  return (static_cast<uint8_t>(rule) & static_cast<uint8_t>(outgoing ? Direction::In : Direction::Out)) != 0;
}

bool vlan_matches(const std::vector<VlanRange>& filter, int vlan_id);

}  // namespace tapas
