// The collector: terminates GRE, ERSPAN type II and III and VXLAN tunnels in
// user space, for hosts whose kernel cannot. A raw socket of protocol 47
// (IPv4 and IPv6) and a UDP socket on the VXLAN port, in a network namespace,
// receive tunnel packets; the encap parsers validate them;
// the inner frames of the selected tunnels go to a pcap file or out of a
// local interface (through the port sink).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "encap.h"
#include "status.h"

namespace tapas {

struct CollectorSpec {
  std::string netns;      // where to listen; empty: the current namespace
  std::string listen_ip;  // one local address; empty: any, IPv4 and IPv6
  // Which tunnels to accept. None: every GRE, ERSPAN and VXLAN packet. Else
  // any of: GRE with that key, ERSPAN (II or III) with that session, VXLAN
  // with that VNI.
  std::optional<uint32_t> key;
  std::optional<uint16_t> session;
  std::optional<uint32_t> vni;
  // VXLAN is received on this UDP port (default 4789). A UDP socket is opened
  // when a VNI or a port is given, or nothing is selected; the raw GRE
  // sockets unless only a VNI is.
  std::optional<uint16_t> udp_port;
  std::string pcap_path;  // write inner frames here, or
  std::string to_ifname;  // send them out of this interface
  std::string to_netns;   // the interface's namespace; empty: netns
};

struct CollectorCounters {
  Counter received;  // every packet the raw sockets delivered
  Counter accepted;  // well-formed and of a selected tunnel
  Counter filtered;  // well-formed, another tunnel
  Counter malformed;
  std::array<Counter, static_cast<size_t>(encap::ParseStatus::Count)> malformed_by_reason;
  // By tunnel type (index TunnelType - 1: gre, erspanII, erspanIII, vxlan), as
  // far as the parser got: a GRE packet of unknown protocol counts as gre.
  std::array<Counter, 4> malformed_by_type;
  std::array<Counter, 4> accepted_by_type;
  Counter truncated;  // accepted ERSPAN (II or III) frames whose T bit says they were cut
  Counter written;    // frames written to the pcap file or sent out of the interface
  Counter written_bytes;  // their bytes (the inner frames')
  Counter output_errors;
  Counter oversize;  // too large for the output interface's MTU
};

class Collector {
 public:
  Collector();
  ~Collector();
  Collector(const Collector&) = delete;
  Collector& operator=(const Collector&) = delete;

  // Opens every socket (inside the namespaces) and starts receiving. "" or why not.
  std::string start(const CollectorSpec& spec);
  // Stops receiving and flushes the output. Counters stay readable.
  void stop();
  const CollectorCounters& counters() const { return counters_; }

 private:
  struct Runtime;
  void run();
  bool selected(const encap::TunnelPacket& packet) const;

  CollectorSpec spec_;
  CollectorCounters counters_;
  std::unique_ptr<Runtime> runtime_;
  std::thread thread_;
};

}  // namespace tapas
