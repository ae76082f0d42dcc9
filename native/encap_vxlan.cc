// VXLAN (RFC 7348) as tapas sends and terminates it: the UDP payload only.
// The kernel's UDP socket adds UDP and IP headers, so no vxlan device or
// module is involved; a mirror is one VNI toward one collector port.
#include "encap.h"

namespace tapas::encap {

void write_vxlan_header(uint32_t vni, uint8_t* out) {
  // flags (I), 24 reserved bits, VNI, 8 reserved bits: all reserved bits zero.
  out[0] = kVxlanFlagVni;
  out[1] = out[2] = out[3] = 0;
  out[4] = static_cast<uint8_t>(vni >> 16);
  out[5] = static_cast<uint8_t>(vni >> 8);
  out[6] = static_cast<uint8_t>(vni);
  out[7] = 0;
}

ParseStatus parse_vxlan_packet(const uint8_t* data, size_t length, TunnelPacket& out) {
  out.type = TunnelType::Vxlan;
  if (length < kVxlanHeaderLength) return ParseStatus::Short;
  // Without I the VNI means nothing (RFC 7348 5); other flag bits are
  // reserved and ignored on receipt, as the RFC asks.
  if ((data[0] & kVxlanFlagVni) == 0) return ParseStatus::VxlanFlags;
  if (length - kVxlanHeaderLength < kEthernetHeaderLength) return ParseStatus::InnerShort;
  TunnelPacket packet;
  packet.type = TunnelType::Vxlan;
  packet.vni = static_cast<uint32_t>(data[4]) << 16 | static_cast<uint32_t>(data[5]) << 8 | data[6];
  packet.inner = data + kVxlanHeaderLength;
  packet.inner_length = length - kVxlanHeaderLength;
  out = packet;
  return ParseStatus::Ok;
}

}  // namespace tapas::encap
