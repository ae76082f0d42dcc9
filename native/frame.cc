#include "frame.h"

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

}  // namespace tapas
