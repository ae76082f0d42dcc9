// C++-level checks of the tunnel header builders and parsers: exact bytes
// against the formats of RFC 2784/2890 and ERSPAN type II, round trips, and
// every malformed-packet verdict. Run with ctest; exits non-zero on a failure.
#include <cstdio>
#include <cstring>
#include <vector>

#include "check.h"
#include "encap.h"

using namespace tapas::encap;

namespace {

using Bytes = std::vector<uint8_t>;

Bytes ethernet_frame(uint16_t ethertype, Bytes payload, int vlan = -1) {
  Bytes frame = {0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2};
  if (vlan >= 0) {
    frame.insert(frame.end(), {0x81, 0x00, static_cast<uint8_t>(vlan >> 8), static_cast<uint8_t>(vlan)});
  }
  frame.push_back(static_cast<uint8_t>(ethertype >> 8));
  frame.push_back(static_cast<uint8_t>(ethertype));
  frame.insert(frame.end(), payload.begin(), payload.end());
  while (frame.size() < 60) frame.push_back(0xab);
  return frame;
}

Bytes gre_packet(const GreHeader& gre, const ErspanIIHeader* erspan, const Bytes& frame) {
  Bytes packet(kGreMaxLength + kErspanIIHeaderLength);
  size_t n = write_gre_header(gre, packet.data());
  if (erspan != nullptr) {
    write_erspan_ii_header(*erspan, packet.data() + n);
    n += kErspanIIHeaderLength;
  }
  packet.resize(n);
  packet.insert(packet.end(), frame.begin(), frame.end());
  return packet;
}

ParseStatus parse(const Bytes& packet, TunnelPacket& out) { return parse_gre_packet(packet.data(), packet.size(), out); }

void gre_with_key_has_the_rfc_2890_layout() {
  GreHeader gre;
  gre.protocol = kGreProtocolTransparentEthernet;
  gre.key = 0x66;
  uint8_t out[kGreMaxLength];
  CHECK(write_gre_header(gre, out) == 8);
  const uint8_t expected[] = {0x20, 0x00, 0x65, 0x58, 0x00, 0x00, 0x00, 0x66};
  CHECK(std::memcmp(out, expected, sizeof expected) == 0);
}

void erspan_ii_has_the_documented_words() {
  GreHeader gre;
  gre.protocol = kGreProtocolErspanII;
  gre.sequence = 7;
  uint8_t out[kGreMaxLength];
  CHECK(write_gre_header(gre, out) == 8);
  const uint8_t expected_gre[] = {0x10, 0x00, 0x88, 0xbe, 0, 0, 0, 7};
  CHECK(std::memcmp(out, expected_gre, sizeof expected_gre) == 0);
  put_gre_sequence(out, gre, 0x01020304);
  CHECK(out[4] == 1 && out[5] == 2 && out[6] == 3 && out[7] == 4);

  ErspanIIHeader erspan{100, 5, kErspanEncapTagInFrame, true, 101, 0x102};
  uint8_t header[8];
  write_erspan_ii_header(erspan, header);
  // w0 = 1<<28 | vlan<<16 | cos<<13 | en<<11 | T<<10 | session
  const uint32_t w0 = 1u << 28 | 100u << 16 | 5u << 13 | 3u << 11 | 1u << 10 | 101u;
  const uint8_t expected[] = {static_cast<uint8_t>(w0 >> 24), static_cast<uint8_t>(w0 >> 16),
                              static_cast<uint8_t>(w0 >> 8), static_cast<uint8_t>(w0), 0, 0, 0x01, 0x02};
  CHECK(std::memcmp(header, expected, 8) == 0);
  set_erspan_truncated(header, false);
  CHECK((header[2] & 0x04) == 0);
  set_erspan_truncated(header, true);
  CHECK(std::memcmp(header, expected, 8) == 0);
}

void index_reads_the_tunnel_id_as_hex_digits() {
  CHECK(openstack_erspan_index(102) == 0x102);
  CHECK(openstack_erspan_index(1023) == 0x1023);
  CHECK(openstack_erspan_index(0) == 0);
  CHECK(openstack_erspan_index(7) == 7);
  CHECK(openstack_erspan_index(99999) == 0x99999);
  CHECK(openstack_erspan_index(123456) == 0x23456);  // cut to 20 bits
}

void class_of_service_comes_from_the_inner_dscp() {
  // IPv4, DSCP EF (46): TOS 0xb8, class selector 5.
  Bytes ipv4 = {0x45, 0xb8, 0, 20};
  CHECK(classify_frame(ethernet_frame(0x0800, ipv4).data(), 60).cos == 5);
  FrameClass tagged = classify_frame(ethernet_frame(0x0800, ipv4, 10).data(), 64);
  CHECK(tagged.cos == 5 && tagged.vlan == 10 && tagged.encap == kErspanEncapTagInFrame);
  // IPv6 traffic class 0xb8 spans the first two bytes: 0x6b 0x80.
  Bytes ipv6 = {0x6b, 0x80, 0, 0};
  CHECK(classify_frame(ethernet_frame(0x86dd, ipv6).data(), 60).cos == 5);
  FrameClass arp = classify_frame(ethernet_frame(0x0806, {0, 1}).data(), 60);
  CHECK(arp.cos == 0 && arp.vlan == 0 && arp.encap == kErspanEncapUntagged);
  // A tag the kernel moved into ring metadata counts as in the frame: tapas puts it back.
  FrameClass stripped = classify_frame_with_tag(ethernet_frame(0x0800, {0x45, 0x60}).data(), 60, 0x2000 | 42);
  CHECK(stripped.vlan == 42 && stripped.encap == kErspanEncapTagInFrame && stripped.cos == 3);
  // Never reads past a short frame.
  CHECK(classify_frame(ethernet_frame(0x0800, ipv4).data(), 15).cos == 0);
}

void builders_and_parser_round_trip() {
  Bytes frame = ethernet_frame(0x88b5, {1, 2, 3});
  GreHeader gre;
  gre.protocol = kGreProtocolTransparentEthernet;
  gre.key = 0xdeadbeef;
  TunnelPacket out;
  const Bytes gre_bytes = gre_packet(gre, nullptr, frame);  // out.inner points into it
  CHECK(parse(gre_bytes, out) == ParseStatus::Ok);
  CHECK(out.type == TunnelType::Gre && out.gre.key == 0xdeadbeefu && !out.gre.sequence);
  CHECK(out.inner_length == frame.size() && std::memcmp(out.inner, frame.data(), frame.size()) == 0);

  GreHeader erspan_gre;
  erspan_gre.protocol = kGreProtocolErspanII;
  erspan_gre.sequence = 41;
  ErspanIIHeader erspan{4094, 7, 3, true, 1023, 0xfffff};
  const Bytes erspan_bytes = gre_packet(erspan_gre, &erspan, frame);
  CHECK(parse(erspan_bytes, out) == ParseStatus::Ok);
  CHECK(out.type == TunnelType::ErspanII && out.gre.sequence == 41u);
  CHECK(out.erspan.vlan == 4094 && out.erspan.cos == 7 && out.erspan.encap == 3 && out.erspan.truncated);
  CHECK(out.erspan.session == 1023 && out.erspan.index == 0xfffff);
  CHECK(out.inner_length == frame.size() && std::memcmp(out.inner, frame.data(), frame.size()) == 0);
}

void malformed_packets_get_their_verdict() {
  Bytes frame = ethernet_frame(0x88b5, {});
  GreHeader gre;
  gre.protocol = kGreProtocolTransparentEthernet;
  gre.key = 1;
  const Bytes good = gre_packet(gre, nullptr, frame);
  TunnelPacket out;

  // Every cut inside the headers is short, every cut inside the frame's header too short to be a frame.
  for (size_t n = 0; n < good.size(); ++n) {
    Bytes cut(good.begin(), good.begin() + static_cast<long>(n));
    ParseStatus status = parse(cut, out);
    CHECK(status == (n < 8 ? ParseStatus::Short : n < 8 + kEthernetHeaderLength ? ParseStatus::InnerShort : ParseStatus::Ok));
  }
  Bytes version = good;
  version[1] |= 0x01;  // PPTP's enhanced GRE
  CHECK(parse(version, out) == ParseStatus::GreVersion);
  Bytes routing = good;
  routing[0] |= 0x40;
  CHECK(parse(routing, out) == ParseStatus::GreFlags);
  Bytes reserved = good;
  reserved[1] |= 0x80;
  CHECK(parse(reserved, out) == ParseStatus::GreFlags);
  Bytes protocol = good;
  protocol[2] = 0x08;
  protocol[3] = 0x00;  // IPv4 in GRE: not an Ethernet frame
  CHECK(parse(protocol, out) == ParseStatus::UnknownProtocol);

  GreHeader erspan_gre;
  erspan_gre.protocol = kGreProtocolErspanII;
  erspan_gre.sequence = 1;
  ErspanIIHeader erspan{};
  Bytes type3 = gre_packet(erspan_gre, &erspan, frame);
  type3[8] = static_cast<uint8_t>((type3[8] & 0x0f) | 0x20);  // version 2 (type III's) under type II's protocol
  CHECK(parse(type3, out) == ParseStatus::ErspanVersion);
  Bytes erspan_short = gre_packet(erspan_gre, &erspan, {});
  erspan_short.resize(12);
  CHECK(parse(erspan_short, out) == ParseStatus::Short);

  // A checksum is verified when present.
  Bytes with_checksum = {0x80, 0x00, 0x65, 0x58, 0, 0, 0, 0};
  with_checksum.insert(with_checksum.end(), frame.begin(), frame.end());
  uint16_t sum = internet_checksum(with_checksum.data(), with_checksum.size());
  with_checksum[4] = static_cast<uint8_t>(sum >> 8);
  with_checksum[5] = static_cast<uint8_t>(sum);
  CHECK(parse(with_checksum, out) == ParseStatus::Ok && out.gre.checksum_present);
  with_checksum.back() ^= 0xff;
  CHECK(parse(with_checksum, out) == ParseStatus::GreChecksum);
}

void ipv4_wrapper_checks_the_outer_header() {
  Bytes frame = ethernet_frame(0x88b5, {});
  GreHeader gre;
  gre.protocol = kGreProtocolTransparentEthernet;
  gre.key = 9;
  Bytes inner = gre_packet(gre, nullptr, frame);
  auto ipv4 = [&](uint8_t version_ihl, uint8_t protocol, uint16_t flags_fragment, size_t total) {
    Bytes packet = {version_ihl, 0, static_cast<uint8_t>(total >> 8), static_cast<uint8_t>(total), 0, 0,
                    static_cast<uint8_t>(flags_fragment >> 8), static_cast<uint8_t>(flags_fragment), 64, protocol, 0, 0,
                    10, 0, 0, 1, 10, 0, 0, 2};
    packet.insert(packet.end(), inner.begin(), inner.end());
    return packet;
  };
  const size_t total = 20 + inner.size();
  TunnelPacket out;
  Bytes ok = ipv4(0x45, 47, 0x4000, total);
  CHECK(parse_ipv4_gre_packet(ok.data(), ok.size(), out) == ParseStatus::Ok && out.gre.key == 9u);
  Bytes trailer = ok;
  trailer.push_back(0);  // bytes after the datagram (Ethernet padding) are not part of the frame
  CHECK(parse_ipv4_gre_packet(trailer.data(), trailer.size(), out) == ParseStatus::Ok && out.inner_length == frame.size());
  Bytes udp = ipv4(0x45, 17, 0, total);
  CHECK(parse_ipv4_gre_packet(udp.data(), udp.size(), out) == ParseStatus::NotGre);
  Bytes fragment = ipv4(0x45, 47, 0x2000, total);
  CHECK(parse_ipv4_gre_packet(fragment.data(), fragment.size(), out) == ParseStatus::NotGre);
  Bytes bad_ihl = ipv4(0x44, 47, 0, total);
  CHECK(parse_ipv4_gre_packet(bad_ihl.data(), bad_ihl.size(), out) == ParseStatus::NotGre);
  Bytes long_total = ipv4(0x45, 47, 0, total + 1);
  CHECK(parse_ipv4_gre_packet(long_total.data(), long_total.size(), out) == ParseStatus::Short);
  Bytes huge_ihl = ipv4(0x4f, 47, 0, total);  // 60-byte header
  CHECK(parse_ipv4_gre_packet(huge_ihl.data(), huge_ihl.size(), out) != ParseStatus::Ok);
}

// ERSPAN III as the Linux driver lays it out (include/net/erspan.h): version 2,
// then the timestamp, then sgt | P | ft | hwid | D | gra | O.
void erspan_iii_has_the_documented_words() {
  TunnelHeaders tunnel;
  tunnel.type = TunnelType::ErspanIII;
  tunnel.session = 0x155;
  tunnel.hwid = 0x2b;
  FrameHeaderFields fields;
  fields.frame_class = {100, kErspanEncapTagInFrame, 5};
  fields.sequence = 7;
  fields.truncated = true;
  fields.egress = true;
  fields.timestamp = 0xdeadbeef;
  uint8_t out[kMaxTunnelHeaderLength];
  CHECK(tunnel.length() == 8 + kErspanIIIHeaderLength);
  CHECK(write_tunnel_headers(tunnel, fields, out) == tunnel.length());
  const uint8_t expected[] = {
      0x10, 0x00, 0x22, 0xeb, 0, 0, 0, 7,  // GRE: S, protocol 0x22EB, sequence 7
      0x20, 0x64, 0xa5, 0x55,              // ver 2, vlan 100, cos 5, bso 0, T, session 0x155
      0xde, 0xad, 0xbe, 0xef,              // timestamp
      0x00, 0x00, 0x82, 0xb8,              // sgt 0, P 1, ft 0, hwid 0x2b, D 1, gra 0, O 0
  };
  CHECK(std::memcmp(out, expected, sizeof expected) == 0);
  Bytes packet(out, out + tunnel.length());
  Bytes frame = ethernet_frame(0x88b5, {1, 2, 3});
  packet.insert(packet.end(), frame.begin(), frame.end());
  TunnelPacket parsed;
  CHECK(parse(packet, parsed) == ParseStatus::Ok);
  CHECK(parsed.type == TunnelType::ErspanIII && parsed.erspan3.session == 0x155 && parsed.erspan3.hwid == 0x2b);
  CHECK(parsed.erspan3.egress && parsed.erspan3.truncated && parsed.erspan3.timestamp == 0xdeadbeefu && parsed.erspan3.p);
  CHECK(parsed.erspan.session == 0x155 && parsed.erspan.truncated);
  CHECK(parsed.inner_length == frame.size() && std::memcmp(parsed.inner, frame.data(), frame.size()) == 0);
  // O=1: the 8-byte platform subheader is skipped, its id kept.
  Bytes with_sub(packet.begin(), packet.begin() + 8 + kErspanIIIHeaderLength);
  with_sub[8 + 11] |= 0x01;
  const Bytes sub = {0xfc, 0, 0, 0, 0, 0, 0, 0};
  with_sub.insert(with_sub.end(), sub.begin(), sub.end());
  with_sub.insert(with_sub.end(), frame.begin(), frame.end());
  CHECK(parse(with_sub, parsed) == ParseStatus::Ok && parsed.erspan3.optional_subheader && parsed.erspan3.platform_id == 63);
  CHECK(parsed.inner_length == frame.size() && std::memcmp(parsed.inner, frame.data(), frame.size()) == 0);
  with_sub.resize(8 + kErspanIIIHeaderLength + 4);
  CHECK(parse(with_sub, parsed) == ParseStatus::Short && parsed.type == TunnelType::ErspanIII);
  // Version 1 under 0x22EB.
  packet[8] = static_cast<uint8_t>((packet[8] & 0x0f) | 0x10);
  CHECK(parse(packet, parsed) == ParseStatus::ErspanVersion);
  CHECK(erspan_timestamp(1'000'000'000LL) == 10'000u);
}

void vxlan_has_flag_i_and_the_vni() {
  TunnelHeaders tunnel;
  tunnel.type = TunnelType::Vxlan;
  tunnel.vni = 0xabcdef;
  uint8_t out[kMaxTunnelHeaderLength];
  CHECK(write_tunnel_headers(tunnel, FrameHeaderFields{}, out) == kVxlanHeaderLength);
  const uint8_t expected[] = {0x08, 0, 0, 0, 0xab, 0xcd, 0xef, 0};
  CHECK(std::memcmp(out, expected, sizeof expected) == 0);
  Bytes packet(out, out + kVxlanHeaderLength);
  Bytes frame = ethernet_frame(0x0800, {0x45});
  packet.insert(packet.end(), frame.begin(), frame.end());
  TunnelPacket parsed;
  CHECK(parse_vxlan_packet(packet.data(), packet.size(), parsed) == ParseStatus::Ok && parsed.vni == 0xabcdefu);
  CHECK(parsed.inner_length == frame.size());
  packet[0] = 0;
  CHECK(parse_vxlan_packet(packet.data(), packet.size(), parsed) == ParseStatus::VxlanFlags);
  CHECK(parse_vxlan_packet(packet.data(), 7, parsed) == ParseStatus::Short && parsed.type == TunnelType::Vxlan);
  packet[0] = 0x08;
  CHECK(parse_vxlan_packet(packet.data(), 8 + 13, parsed) == ParseStatus::InnerShort);
}

}  // namespace

int main() {
  erspan_iii_has_the_documented_words();
  vxlan_has_flag_i_and_the_vni();
  gre_with_key_has_the_rfc_2890_layout();
  erspan_ii_has_the_documented_words();
  index_reads_the_tunnel_id_as_hex_digits();
  class_of_service_comes_from_the_inner_dscp();
  builders_and_parser_round_trip();
  malformed_packets_get_their_verdict();
  ipv4_wrapper_checks_the_outer_header();
  return checks_result("encap");
}
