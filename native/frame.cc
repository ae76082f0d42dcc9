#include "frame.h"

#include <algorithm>
#include <cstring>

namespace tapas {

static uint16_t read_be16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }

int Frame::vlan_id() const {
  if (has_stripped_tag) return stripped_tci & 0x0fff;
  if (captured_length < kMacAddressesLength + kVlanTagLength) return -1;
  uint16_t ethertype = read_be16(data + kMacAddressesLength);
  if (ethertype != kEtherTypeVlan && ethertype != kEtherTypeQinQ) return -1;
  return read_be16(data + kMacAddressesLength + 2) & 0x0fff;
}

bool vlan_matches(const std::vector<VlanRange>& filter, int vlan_id) {
  if (filter.empty()) return true;
  if (vlan_id <= 0) return false;
  for (const VlanRange& range : filter) {
    if (vlan_id >= range.low && vlan_id <= range.high) return true;
  }
  return false;
}

uint32_t copy_original_frame(const Frame& frame, uint8_t* out, uint32_t capacity) {
  if (!frame.has_stripped_tag || frame.captured_length < kMacAddressesLength) {
    uint32_t n = std::min(frame.captured_length, capacity);
    std::memcpy(out, frame.data, n);
    return n;
  }
  uint32_t total = std::min(frame.original_length(), capacity);
  uint8_t tag[kVlanTagLength] = {
      static_cast<uint8_t>(frame.stripped_tpid >> 8), static_cast<uint8_t>(frame.stripped_tpid),
      static_cast<uint8_t>(frame.stripped_tci >> 8), static_cast<uint8_t>(frame.stripped_tci)};
  uint8_t* p = out;
  uint32_t left = total;
  auto put = [&](const uint8_t* src, uint32_t n) {
    n = std::min(n, left);
    std::memcpy(p, src, n);
    p += n;
    left -= n;
  };
  put(frame.data, kMacAddressesLength);
  put(tag, kVlanTagLength);
  put(frame.data + kMacAddressesLength, frame.captured_length - kMacAddressesLength);
  return total;
}

}  // namespace tapas
