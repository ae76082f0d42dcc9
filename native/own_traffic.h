// Tunnel sinks send through the kernel's IP stack, so their packets pass every
// packet socket on the underlay interface, including a capture ring of ours
// when that interface is itself a mirrored source: each copy would be
// mirrored again, without end. Sending sockets mark what they send; capture
// sockets drop marked packets in a socket filter, before the ring.
#pragma once

#include <cstdint>
#include <string>

namespace tapas {

// Chosen to be unlikely to collide with fwmark-based policy routing. A host
// with a routing rule for this mark would route tunnel traffic by that rule.
constexpr uint32_t kOwnTrafficMark = 0x7a9a5000;

// SO_MARK on a sending socket (needs CAP_NET_ADMIN). "" or why not.
std::string mark_own_traffic(int fd);
// A classic BPF socket filter that drops marked packets and passes the rest
// whole. Attach before bind, so nothing unfiltered reaches the ring. "" or why not.
//
// It drops the tunnels between tapas agents too, also those that arrive from
// a peer (they carry no mark here): GRE over IPv4 or IPv6 with exactly the
// flags K and S (key and sequence number, version 0) and protocol 0x6558.
// Tap mirrors send GRE with K only and ERSPAN with S only, so those are still
// captured. A later fragment of an IPv4 GRE packet has no GRE header to tell
// by: every such fragment is dropped (a mirrored frame larger than the
// underlay's MTU crosses it in fragments, and the receiving host's capture
// would otherwise mirror those again). IPv6 fragments are not looked into.
std::string ignore_own_traffic(int fd);

}  // namespace tapas
