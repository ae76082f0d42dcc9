// Tunnel headers on the wire: pure builders and parsers for GRE (RFC 2784,
// RFC 2890 key and sequence number), ERSPAN type II and type III (GRE
// payloads, encap.cc) and VXLAN (a UDP payload, RFC 7348, encap_vxlan.cc),
// with no sockets, so that the sink, the collector, the checks and the fuzz
// target share them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

namespace tapas::encap {

constexpr uint16_t kGreFlagChecksum = 0x8000;
constexpr uint16_t kGreFlagRouting = 0x4000;
constexpr uint16_t kGreFlagKey = 0x2000;
constexpr uint16_t kGreFlagSequence = 0x1000;
constexpr uint16_t kGreVersionMask = 0x0007;
// Everything RFC 2784 reserves (strict source route, recursion, flags) must be zero.
constexpr uint16_t kGreReservedMask = 0x0ff8;

constexpr uint16_t kGreProtocolTransparentEthernet = 0x6558;
constexpr uint16_t kGreProtocolErspanII = 0x88be;
constexpr uint16_t kGreProtocolErspanIII = 0x22eb;

constexpr uint8_t kIpProtocolGre = 47;
constexpr size_t kGreBaseLength = 4;
constexpr size_t kGreMaxLength = 16;  // base + checksum + key + sequence
constexpr size_t kErspanIIHeaderLength = 8;
// ERSPAN type III: 12 bytes, then an 8-byte platform subheader when O is set
// (tapas never sends one; the parser skips it).
constexpr size_t kErspanIIIHeaderLength = 12;
constexpr size_t kErspanIIISubheaderLength = 8;
// The most any tunnel of tapas puts before the frame: GRE with every option
// and an ERSPAN III header (VXLAN's 8 bytes fit too).
constexpr size_t kMaxTunnelHeaderLength = kGreMaxLength + kErspanIIIHeaderLength;
constexpr size_t kEthernetHeaderLength = 14;

constexpr uint32_t kErspanVersionII = 1;  // the version field of type II is 1
constexpr uint32_t kErspanVersionIII = 2;
constexpr uint16_t kErspanMaxSession = 1023;
constexpr uint32_t kErspanMaxIndex = 0xfffff;
constexpr uint8_t kErspanMaxHardwareId = 63;  // 6 bits
// Gra 0: the timestamp counts units of 100 microseconds (what the Linux erspan
// driver sends, and what Wireshark shows as "100 microseconds").
constexpr uint8_t kErspanGranularity100us = 0;
// en: how the original frame carried its VLAN.
constexpr uint8_t kErspanEncapUntagged = 0;
constexpr uint8_t kErspanEncapTagInFrame = 3;

struct GreHeader {
  uint16_t protocol = 0;
  std::optional<uint32_t> key;
  std::optional<uint32_t> sequence;
  // Only the parser sets it: tapas never sends checksums, but accepts them.
  bool checksum_present = false;

  size_t length() const { return kGreBaseLength + (checksum_present ? 4 : 0) + (key ? 4 : 0) + (sequence ? 4 : 0); }
  // Where the sequence number sits in the header, so a batch can number its
  // messages just before sending. Only meaningful when sequence is set.
  size_t sequence_offset() const { return kGreBaseLength + (checksum_present ? 4 : 0) + (key ? 4 : 0); }
};

struct ErspanIIHeader {
  uint16_t vlan = 0;    // 12 bits
  uint8_t cos = 0;      // 3 bits
  uint8_t encap = 0;    // 2 bits ("en")
  bool truncated = false;
  uint16_t session = 0;  // 10 bits
  uint32_t index = 0;    // 20 bits
};

// ERSPAN type III (draft-foschiano-erspan, as the Linux erspan driver and
// Wireshark read it):
//   w0 = ver(4)=2 | vlan(12) | cos(3) | bso(2) | T(1) | session(10)
//   w1 = timestamp (32)
//   w2 = sgt(16) | P(1) | ft(5) | hwid(6) | D(1) | gra(2) | O(1)
struct ErspanIIIHeader {
  uint16_t vlan = 0;
  uint8_t cos = 0;
  uint8_t bso = 0;  // bad/short/oversized: 0, a good frame
  bool truncated = false;
  uint16_t session = 0;
  uint32_t timestamp = 0;
  uint16_t sgt = 0;
  bool p = true;     // an Ethernet frame without its FCS, as Linux sends
  uint8_t ft = 0;    // frame type 0: Ethernet
  uint8_t hwid = 0;  // 6 bits
  // D: 0 = ingress, 1 = egress. tapas maps TaaS IN (into the workload) to 0
  // and OUT (from it) to 1: the workload's point of view, as TaaS names them.
  bool egress = false;
  uint8_t gra = kErspanGranularity100us;
  bool optional_subheader = false;  // O: an 8-byte platform subheader follows
  uint8_t platform_id = 0;          // its first 6 bits, when O is set
};

// VXLAN (RFC 7348): flags (I = 0x08: the VNI is valid), 24 reserved bits,
// VNI (24 bits), 8 reserved bits; the Ethernet frame follows. Sent in UDP.
constexpr size_t kVxlanHeaderLength = 8;
constexpr uint8_t kVxlanFlagVni = 0x08;
constexpr uint32_t kVxlanMaxVni = 0xffffff;
constexpr uint16_t kVxlanDefaultPort = 4789;

// Writes the header (without a checksum) to out, which must hold kGreMaxLength
// bytes; returns its length.
size_t write_gre_header(const GreHeader& header, uint8_t* out);
void put_gre_sequence(uint8_t* header, const GreHeader& layout, uint32_t sequence);

// Writes the 8 bytes of an ERSPAN type II header; fields wider than theirs are cut.
void write_erspan_ii_header(const ErspanIIHeader& header, uint8_t* out);
// T sits at the same bit of types II and III.
void set_erspan_truncated(uint8_t* erspan_header, bool truncated);
// Writes the 12 bytes of an ERSPAN type III header (never the subheader).
void write_erspan_iii_header(const ErspanIIIHeader& header, uint8_t* out);
// The ERSPAN III timestamp of a CLOCK_REALTIME time: 100 us units, cut to 32 bits.
uint32_t erspan_timestamp(int64_t realtime_ns);
void write_vxlan_header(uint32_t vni, uint8_t* out);

// VLAN and class of service of an Ethernet frame, as ERSPAN reports them:
// vlan/encap from an 802.1Q or 802.1ad tag in the frame, cos from the inner
// IPv4/IPv6 DSCP (its three class-selector bits), 0 for anything else.
struct FrameClass {
  uint16_t vlan = 0;
  uint8_t encap = kErspanEncapUntagged;
  uint8_t cos = 0;
};
FrameClass classify_frame(const uint8_t* frame, size_t length);
// Same, for a frame whose tag the kernel moved into ring metadata.
FrameClass classify_frame_with_tag(const uint8_t* frame, size_t length, uint16_t tci);

// OpenStack's OVS and OVN drivers put the tunnel id into the ERSPAN index read
// as hexadecimal digits (tunnel id 102 gives index 0x102); tapas does the same
// so that existing collectors see identical headers. Ids whose decimal digits
// do not fit 20 bits as hex are cut to the field's width.
uint32_t openstack_erspan_index(uint32_t tunnel_id);

enum class TunnelType : uint8_t { Gre = 1, ErspanII = 2, ErspanIII = 3, Vxlan = 4 };
const char* tunnel_type_name(TunnelType type);  // gre, erspanII, erspanIII, vxlan

// Why a packet is not a tunnel packet tapas can decapsulate. The order is the
// order of the checks; names() gives the counter names.
enum class ParseStatus : uint8_t {
  Ok = 0,
  Short,              // ends inside a header
  NotGre,             // outer IP header says another protocol, or is inconsistent
  GreVersion,         // GRE version other than 0 (e.g. PPTP's enhanced GRE)
  GreFlags,           // routing or reserved bits set
  GreChecksum,        // checksum present and wrong
  UnknownProtocol,    // neither Ethernet bridging nor ERSPAN
  ErspanVersion,      // the ERSPAN version field does not match the GRE protocol (II: 1, III: 2)
  InnerShort,         // inner frame shorter than an Ethernet header
  VxlanFlags,         // VXLAN without the I flag (no valid VNI)
  Count,
};
const char* parse_status_name(ParseStatus status);

// What identifies a tunnel in its headers. Gre: key; ErspanII: session and
// index; ErspanIII: session and hardware id; Vxlan: the VNI.
struct TunnelHeaders {
  TunnelType type = TunnelType::Gre;
  uint32_t key = 0;
  uint16_t session = 0;
  uint32_t index = 0;
  uint8_t hwid = 0;
  uint32_t vni = 0;
  // Gre: number the packets too (flags K and S). Tunnels between tapas agents
  // do: that signature is how a capture ring tells them apart (own_traffic.h).
  bool sequence = false;

  bool is_gre() const { return type != TunnelType::Vxlan; }
  bool is_erspan() const { return type == TunnelType::ErspanII || type == TunnelType::ErspanIII; }
  GreHeader gre_layout() const;  // sequence present (as 0) for ERSPAN and sequenced GRE; unused for VXLAN
  size_t length() const;         // every header byte before the frame (GRE + ERSPAN, or VXLAN)
};

// What varies per frame in the headers.
struct FrameHeaderFields {
  FrameClass frame_class;  // ERSPAN: vlan, en/bso, cos
  uint32_t sequence = 0;   // GRE with S
  bool truncated = false;  // ERSPAN: T
  bool egress = false;     // ERSPAN III: D (TaaS OUT)
  uint32_t timestamp = 0;  // ERSPAN III
};
// Writes every header that precedes the frame: GRE and ERSPAN II/III, or
// VXLAN. out holds TunnelHeaders::length().
size_t write_tunnel_headers(const TunnelHeaders& tunnel, const FrameHeaderFields& fields, uint8_t* out);
// The type II form of the call, kept for its callers.
size_t write_tunnel_headers(const TunnelHeaders& tunnel, const FrameClass& frame_class, uint32_t sequence,
                            bool truncated, uint8_t* out);

struct TunnelPacket {
  // Set as soon as the parser knows it, also when it then fails: the
  // collector counts malformed packets per type.
  TunnelType type = TunnelType::Gre;
  GreHeader gre;
  ErspanIIHeader erspan;      // ErspanII, and the fields III shares (vlan, cos, T, session) for ErspanIII
  ErspanIIIHeader erspan3;    // only for ErspanIII
  uint32_t vni = 0;           // only for Vxlan
  const uint8_t* inner = nullptr;
  size_t inner_length = 0;
};

// Parses a GRE packet (the IP payload). Never reads outside [data, data+length).
ParseStatus parse_gre_packet(const uint8_t* data, size_t length, TunnelPacket& out);
// Parses an IPv4 packet carrying GRE, as an IPv4 raw socket delivers it (IP header included).
ParseStatus parse_ipv4_gre_packet(const uint8_t* data, size_t length, TunnelPacket& out);
// Parses a VXLAN packet (the UDP payload, as a UDP socket delivers it).
ParseStatus parse_vxlan_packet(const uint8_t* data, size_t length, TunnelPacket& out);

// The 16-bit one's complement sum of RFC 1071, for the optional GRE checksum.
uint16_t internet_checksum(const uint8_t* data, size_t length);

}  // namespace tapas::encap
