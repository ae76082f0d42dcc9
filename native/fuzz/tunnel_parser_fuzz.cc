// libFuzzer target: the tunnel parsers take bytes from the network, so no
// input may make them read out of bounds, crash or accept something they
// cannot rebuild. Run: native/fuzz/run.sh SECONDS.
#include <cstdlib>
#include <cstring>

#include "encap.h"

using namespace tapas::encap;

static void check_accepted(const uint8_t* data, size_t size, const TunnelPacket& packet) {
  // The inner frame lies inside the input, after the headers.
  if (packet.inner < data || packet.inner + packet.inner_length > data + size) std::abort();
  if (packet.inner_length < kEthernetHeaderLength) std::abort();
  // Rebuilding the headers from the parsed fields and parsing again gives the same fields.
  uint8_t rebuilt[kMaxTunnelHeaderLength + kEthernetHeaderLength];
  if (packet.type == TunnelType::Vxlan) {
    write_vxlan_header(packet.vni, rebuilt);
    std::memcpy(rebuilt + kVxlanHeaderLength, packet.inner, kEthernetHeaderLength);
    TunnelPacket again;
    if (parse_vxlan_packet(rebuilt, kVxlanHeaderLength + kEthernetHeaderLength, again) != ParseStatus::Ok || again.vni != packet.vni) {
      std::abort();
    }
    return;
  }
  GreHeader gre = packet.gre;
  gre.checksum_present = false;  // the builder never writes checksums
  size_t n = write_gre_header(gre, rebuilt);
  if (packet.type == TunnelType::ErspanII) {
    write_erspan_ii_header(packet.erspan, rebuilt + n);
    n += kErspanIIHeaderLength;
  } else if (packet.type == TunnelType::ErspanIII) {
    ErspanIIIHeader header = packet.erspan3;
    header.optional_subheader = false;  // the builder never writes the subheader
    write_erspan_iii_header(header, rebuilt + n);
    n += kErspanIIIHeaderLength;
  }
  std::memcpy(rebuilt + n, packet.inner, kEthernetHeaderLength);
  n += kEthernetHeaderLength;
  TunnelPacket again;
  if (parse_gre_packet(rebuilt, n, again) != ParseStatus::Ok) std::abort();
  if (again.type != packet.type || again.gre.key != packet.gre.key || again.gre.sequence != packet.gre.sequence ||
      again.gre.protocol != packet.gre.protocol) {
    std::abort();
  }
  if (packet.type == TunnelType::ErspanII &&
      (again.erspan.session != packet.erspan.session || again.erspan.index != packet.erspan.index ||
       again.erspan.vlan != packet.erspan.vlan || again.erspan.cos != packet.erspan.cos ||
       again.erspan.encap != packet.erspan.encap || again.erspan.truncated != packet.erspan.truncated)) {
    std::abort();
  }
  const ErspanIIIHeader& a = again.erspan3;
  const ErspanIIIHeader& b = packet.erspan3;
  if (packet.type == TunnelType::ErspanIII &&
      (a.session != b.session || a.vlan != b.vlan || a.cos != b.cos || a.bso != b.bso || a.truncated != b.truncated ||
       a.timestamp != b.timestamp || a.sgt != b.sgt || a.p != b.p || a.ft != b.ft || a.hwid != b.hwid ||
       a.egress != b.egress || a.gra != b.gra)) {
    std::abort();
  }
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  TunnelPacket packet;
  if (parse_gre_packet(data, size, packet) == ParseStatus::Ok) check_accepted(data, size, packet);
  if (parse_ipv4_gre_packet(data, size, packet) == ParseStatus::Ok) check_accepted(data, size, packet);
  if (parse_vxlan_packet(data, size, packet) == ParseStatus::Ok) check_accepted(data, size, packet);
  // The frame classifier reads captured frames of any length.
  FrameClass frame_class = classify_frame(data, size);
  if (frame_class.cos > 7 || frame_class.vlan > 4095) std::abort();
  return 0;
}
