#include "encap.h"

namespace tapas::encap {

namespace {

constexpr uint16_t kEtherTypeIpv4 = 0x0800;
constexpr uint16_t kEtherTypeIpv6 = 0x86dd;
constexpr uint16_t kEtherTypeVlan = 0x8100;
constexpr uint16_t kEtherTypeQinQ = 0x88a8;

uint16_t be16(const uint8_t* p) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }
uint32_t be32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) << 24 | static_cast<uint32_t>(p[1]) << 16 | static_cast<uint32_t>(p[2]) << 8 | p[3];
}
void put16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}
void put32(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 24);
  p[1] = static_cast<uint8_t>(v >> 16);
  p[2] = static_cast<uint8_t>(v >> 8);
  p[3] = static_cast<uint8_t>(v);
}

bool is_vlan_ethertype(uint16_t type) { return type == kEtherTypeVlan || type == kEtherTypeQinQ; }

// The three class-selector bits of the DSCP, i.e. the top three bits of the
// IPv4 TOS or IPv6 traffic class: what the Linux erspan driver reports as cos.
uint8_t cos_of_payload(uint16_t ethertype, const uint8_t* l3, size_t length) {
  if (ethertype == kEtherTypeIpv4 && length >= 2 && (l3[0] >> 4) == 4) return static_cast<uint8_t>(l3[1] >> 5);
  if (ethertype == kEtherTypeIpv6 && length >= 2 && (l3[0] >> 4) == 6) {
    uint8_t traffic_class = static_cast<uint8_t>((l3[0] & 0x0f) << 4 | l3[1] >> 4);
    return static_cast<uint8_t>(traffic_class >> 5);
  }
  return 0;
}

}  // namespace

size_t write_gre_header(const GreHeader& header, uint8_t* out) {
  uint16_t flags = 0;
  if (header.key) flags |= kGreFlagKey;
  if (header.sequence) flags |= kGreFlagSequence;
  put16(out, flags);
  put16(out + 2, header.protocol);
  size_t offset = kGreBaseLength;
  if (header.key) {
    put32(out + offset, *header.key);
    offset += 4;
  }
  if (header.sequence) {
    put32(out + offset, *header.sequence);
    offset += 4;
  }
  return offset;
}

void put_gre_sequence(uint8_t* header, const GreHeader& layout, uint32_t sequence) {
  put32(header + layout.sequence_offset(), sequence);
}

void write_erspan_ii_header(const ErspanIIHeader& header, uint8_t* out) {
  uint32_t word0 = kErspanVersionII << 28 | static_cast<uint32_t>(header.vlan & 0x0fff) << 16 |
                   static_cast<uint32_t>(header.cos & 0x7) << 13 | static_cast<uint32_t>(header.encap & 0x3) << 11 |
                   static_cast<uint32_t>(header.truncated ? 1 : 0) << 10 | (header.session & kErspanMaxSession);
  put32(out, word0);
  put32(out + 4, header.index & kErspanMaxIndex);
}

void write_erspan_iii_header(const ErspanIIIHeader& header, uint8_t* out) {
  uint32_t word0 = kErspanVersionIII << 28 | static_cast<uint32_t>(header.vlan & 0x0fff) << 16 |
                   static_cast<uint32_t>(header.cos & 0x7) << 13 | static_cast<uint32_t>(header.bso & 0x3) << 11 |
                   static_cast<uint32_t>(header.truncated ? 1 : 0) << 10 | (header.session & kErspanMaxSession);
  uint32_t word2 = static_cast<uint32_t>(header.sgt) << 16 | static_cast<uint32_t>(header.p ? 1 : 0) << 15 |
                   static_cast<uint32_t>(header.ft & 0x1f) << 10 | static_cast<uint32_t>(header.hwid & kErspanMaxHardwareId) << 4 |
                   static_cast<uint32_t>(header.egress ? 1 : 0) << 3 | static_cast<uint32_t>(header.gra & 0x3) << 1 |
                   (header.optional_subheader ? 1u : 0u);
  put32(out, word0);
  put32(out + 4, header.timestamp);
  put32(out + 8, word2);
}

uint32_t erspan_timestamp(int64_t realtime_ns) {
  // Granularity 0: units of 100 us, as the Linux driver counts them; wraps every ~5 days.
  return static_cast<uint32_t>(static_cast<uint64_t>(realtime_ns) / 100'000u);
}

void set_erspan_truncated(uint8_t* erspan_header, bool truncated) {
  // T is bit 10 of the first word: bit 2 of its third byte.
  if (truncated) {
    erspan_header[2] |= 0x04;
  } else {
    erspan_header[2] &= static_cast<uint8_t>(~0x04);
  }
}

FrameClass classify_frame(const uint8_t* frame, size_t length) {
  FrameClass result;
  if (length < kEthernetHeaderLength) return result;
  uint16_t type = be16(frame + 12);
  size_t offset = kEthernetHeaderLength;
  if (is_vlan_ethertype(type)) {
    if (length < kEthernetHeaderLength + 4) return result;
    result.vlan = be16(frame + 14) & 0x0fff;
    result.encap = kErspanEncapTagInFrame;
    type = be16(frame + 16);
    offset += 4;
    // A second (inner) tag of a QinQ frame: the class is in the packet behind it.
    if (is_vlan_ethertype(type) && length >= offset + 4) {
      type = be16(frame + offset + 2);
      offset += 4;
    }
  }
  result.cos = cos_of_payload(type, frame + offset, length - offset);
  return result;
}

FrameClass classify_frame_with_tag(const uint8_t* frame, size_t length, uint16_t tci) {
  // The frame in the ring lacks its outer tag: what follows the MAC addresses
  // is what followed the tag.
  // An inner tag still in the frame (QinQ) is skipped by classify_frame for the class.
  FrameClass result = classify_frame(frame, length);
  result.vlan = tci & 0x0fff;
  result.encap = kErspanEncapTagInFrame;
  return result;
}

uint32_t openstack_erspan_index(uint32_t tunnel_id) {
  uint32_t index = 0;
  uint32_t place = 1;
  // Decimal digits become hex digits: 102 -> 0x102. Only digits that still fit 20 bits count.
  for (uint32_t rest = tunnel_id; rest != 0 && place <= 0x10000; rest /= 10, place <<= 4) index += (rest % 10) * place;
  return index & kErspanMaxIndex;
}

const char* tunnel_type_name(TunnelType type) {
  switch (type) {
    case TunnelType::Gre: return "gre";
    case TunnelType::ErspanII: return "erspanII";
    case TunnelType::ErspanIII: return "erspanIII";
    case TunnelType::Vxlan: return "vxlan";
  }
  return "unknown";
}

GreHeader TunnelHeaders::gre_layout() const {
  GreHeader gre;
  if (is_erspan()) {
    // Both ERSPAN types: flag S only, one sequence counter per tunnel.
    gre.protocol = type == TunnelType::ErspanII ? kGreProtocolErspanII : kGreProtocolErspanIII;
    gre.sequence = 0;
  } else {
    gre.protocol = kGreProtocolTransparentEthernet;
    gre.key = key;
    if (sequence) gre.sequence = 0;
  }
  return gre;
}

size_t TunnelHeaders::length() const {
  switch (type) {
    case TunnelType::Vxlan: return kVxlanHeaderLength;
    case TunnelType::ErspanII: return gre_layout().length() + kErspanIIHeaderLength;
    case TunnelType::ErspanIII: return gre_layout().length() + kErspanIIIHeaderLength;
    case TunnelType::Gre: break;
  }
  return gre_layout().length();
}

size_t write_tunnel_headers(const TunnelHeaders& tunnel, const FrameHeaderFields& fields, uint8_t* out) {
  if (tunnel.type == TunnelType::Vxlan) {
    write_vxlan_header(tunnel.vni, out);
    return kVxlanHeaderLength;
  }
  GreHeader gre = tunnel.gre_layout();
  if (gre.sequence) gre.sequence = fields.sequence;
  size_t length = write_gre_header(gre, out);
  const FrameClass& frame_class = fields.frame_class;
  if (tunnel.type == TunnelType::ErspanII) {
    ErspanIIHeader erspan;
    erspan.vlan = frame_class.vlan;
    erspan.cos = frame_class.cos;
    erspan.encap = frame_class.encap;
    erspan.truncated = fields.truncated;
    erspan.session = tunnel.session;
    erspan.index = tunnel.index;
    write_erspan_ii_header(erspan, out + length);
    length += kErspanIIHeaderLength;
  } else if (tunnel.type == TunnelType::ErspanIII) {
    ErspanIIIHeader erspan;
    erspan.vlan = frame_class.vlan;
    erspan.cos = frame_class.cos;
    // Type III has no en field: those two bits are BSO, 0 for a good frame.
    // Whether the frame carried its tag shows in the frame itself.
    erspan.truncated = fields.truncated;
    erspan.session = tunnel.session;
    erspan.timestamp = fields.timestamp;
    erspan.hwid = tunnel.hwid;
    erspan.egress = fields.egress;
    write_erspan_iii_header(erspan, out + length);
    length += kErspanIIIHeaderLength;
  }
  return length;
}

size_t write_tunnel_headers(const TunnelHeaders& tunnel, const FrameClass& frame_class, uint32_t sequence,
                            bool truncated, uint8_t* out) {
  FrameHeaderFields fields;
  fields.frame_class = frame_class;
  fields.sequence = sequence;
  fields.truncated = truncated;
  return write_tunnel_headers(tunnel, fields, out);
}

const char* parse_status_name(ParseStatus status) {
  switch (status) {
    case ParseStatus::Ok: return "ok";
    case ParseStatus::Short: return "short";
    case ParseStatus::NotGre: return "notGre";
    case ParseStatus::GreVersion: return "greVersion";
    case ParseStatus::GreFlags: return "greFlags";
    case ParseStatus::GreChecksum: return "greChecksum";
    case ParseStatus::UnknownProtocol: return "unknownProtocol";
    case ParseStatus::ErspanVersion: return "erspanVersion";
    case ParseStatus::InnerShort: return "innerShort";
    case ParseStatus::VxlanFlags: return "vxlanFlags";
    case ParseStatus::Count: break;
  }
  return "unknown";
}

uint16_t internet_checksum(const uint8_t* data, size_t length) {
  uint32_t sum = 0;
  size_t i = 0;
  for (; i + 1 < length; i += 2) sum += be16(data + i);
  if (i < length) sum += static_cast<uint32_t>(data[i]) << 8;
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum);
}

ParseStatus parse_gre_packet(const uint8_t* data, size_t length, TunnelPacket& out) {
  out.type = TunnelType::Gre;
  if (length < kGreBaseLength) return ParseStatus::Short;
  const uint16_t flags = be16(data);
  if ((flags & kGreVersionMask) != 0) return ParseStatus::GreVersion;
  if ((flags & (kGreFlagRouting | kGreReservedMask)) != 0) return ParseStatus::GreFlags;
  GreHeader gre;
  gre.protocol = be16(data + 2);
  gre.checksum_present = (flags & kGreFlagChecksum) != 0;
  size_t offset = kGreBaseLength;
  if (gre.checksum_present) {
    if (length < offset + 4) return ParseStatus::Short;
    // The checksum covers the GRE header and payload; summing it all, checksum included, gives 0.
    if (internet_checksum(data, length) != 0) return ParseStatus::GreChecksum;
    offset += 4;
  }
  if (flags & kGreFlagKey) {
    if (length < offset + 4) return ParseStatus::Short;
    gre.key = be32(data + offset);
    offset += 4;
  }
  if (flags & kGreFlagSequence) {
    if (length < offset + 4) return ParseStatus::Short;
    gre.sequence = be32(data + offset);
    offset += 4;
  }

  TunnelPacket packet;
  packet.gre = gre;
  switch (gre.protocol) {
    case kGreProtocolTransparentEthernet:
      packet.type = TunnelType::Gre;
      break;
    case kGreProtocolErspanII: {
      out.type = TunnelType::ErspanII;
      if (length < offset + kErspanIIHeaderLength) return ParseStatus::Short;
      const uint32_t word0 = be32(data + offset);
      const uint32_t word1 = be32(data + offset + 4);
      if ((word0 >> 28) != kErspanVersionII) return ParseStatus::ErspanVersion;
      packet.type = TunnelType::ErspanII;
      packet.erspan.vlan = static_cast<uint16_t>(word0 >> 16 & 0x0fff);
      packet.erspan.cos = static_cast<uint8_t>(word0 >> 13 & 0x7);
      packet.erspan.encap = static_cast<uint8_t>(word0 >> 11 & 0x3);
      packet.erspan.truncated = (word0 >> 10 & 0x1) != 0;
      packet.erspan.session = static_cast<uint16_t>(word0 & kErspanMaxSession);
      packet.erspan.index = word1 & kErspanMaxIndex;
      offset += kErspanIIHeaderLength;
      break;
    }
    case kGreProtocolErspanIII: {
      out.type = TunnelType::ErspanIII;
      if (length < offset + kErspanIIIHeaderLength) return ParseStatus::Short;
      const uint32_t word0 = be32(data + offset);
      const uint32_t word2 = be32(data + offset + 8);
      if ((word0 >> 28) != kErspanVersionIII) return ParseStatus::ErspanVersion;
      packet.type = TunnelType::ErspanIII;
      ErspanIIIHeader& e = packet.erspan3;
      e.vlan = static_cast<uint16_t>(word0 >> 16 & 0x0fff);
      e.cos = static_cast<uint8_t>(word0 >> 13 & 0x7);
      e.bso = static_cast<uint8_t>(word0 >> 11 & 0x3);
      e.truncated = (word0 >> 10 & 0x1) != 0;
      e.session = static_cast<uint16_t>(word0 & kErspanMaxSession);
      e.timestamp = be32(data + offset + 4);
      e.sgt = static_cast<uint16_t>(word2 >> 16);
      e.p = (word2 >> 15 & 0x1) != 0;
      e.ft = static_cast<uint8_t>(word2 >> 10 & 0x1f);
      e.hwid = static_cast<uint8_t>(word2 >> 4 & kErspanMaxHardwareId);
      e.egress = (word2 >> 3 & 0x1) != 0;
      e.gra = static_cast<uint8_t>(word2 >> 1 & 0x3);
      e.optional_subheader = (word2 & 0x1) != 0;
      offset += kErspanIIIHeaderLength;
      if (e.optional_subheader) {
        // The platform subheader: its id is the top 6 bits; the rest is the platform's own.
        if (length < offset + kErspanIIISubheaderLength) return ParseStatus::Short;
        e.platform_id = static_cast<uint8_t>(data[offset] >> 2);
        offset += kErspanIIISubheaderLength;
      }
      // What both types share, where a caller that does not care about the type looks.
      packet.erspan.vlan = e.vlan;
      packet.erspan.cos = e.cos;
      packet.erspan.truncated = e.truncated;
      packet.erspan.session = e.session;
      break;
    }
    default:
      return ParseStatus::UnknownProtocol;
  }
  if (length - offset < kEthernetHeaderLength) return ParseStatus::InnerShort;
  packet.inner = data + offset;
  packet.inner_length = length - offset;
  out = packet;
  return ParseStatus::Ok;
}

ParseStatus parse_ipv4_gre_packet(const uint8_t* data, size_t length, TunnelPacket& out) {
  if (length < 20) return ParseStatus::Short;
  if ((data[0] >> 4) != 4) return ParseStatus::NotGre;
  const size_t header_length = static_cast<size_t>(data[0] & 0x0f) * 4;
  const size_t total_length = be16(data + 2);
  if (header_length < 20 || total_length < header_length) return ParseStatus::NotGre;
  if (data[9] != kIpProtocolGre) return ParseStatus::NotGre;
  if (length < total_length) return ParseStatus::Short;
  // A raw socket delivers reassembled datagrams; a fragment here cannot be decapsulated.
  if ((be16(data + 6) & 0x3fff) != 0) return ParseStatus::NotGre;
  return parse_gre_packet(data + header_length, total_length - header_length, out);
}

}  // namespace tapas::encap
