#include "own_traffic.h"

#include <linux/filter.h>
#include <sys/socket.h>

#include <cerrno>
#include <iterator>

#include "netns.h"

namespace tapas {

std::string mark_own_traffic(int fd) {
  uint32_t mark = kOwnTrafficMark;
  if (setsockopt(fd, SOL_SOCKET, SO_MARK, &mark, sizeof mark) != 0) {
    return errno == EPERM ? "marking tunnel packets needs CAP_NET_ADMIN (run as root)"
                          : "cannot mark tunnel packets: " + errno_text(errno);
  }
  return "";
}

std::string ignore_own_traffic(int fd) {
  // Offsets are from the Ethernet header (an AF_PACKET SOCK_RAW socket). The
  // mark is read from skb metadata, not from packet bytes.
  constexpr uint32_t kAgentTunnelFlags = 0x3000;  // K | S, version 0
  constexpr uint32_t kTransparentEthernet = 0x6558;
  sock_filter program[] = {
      /* 0 */ BPF_STMT(BPF_LD | BPF_W | BPF_LEN, 0),
      /* 1 */ BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 66, 0, 19),         // too short to be read safely: 21
      /* 2 */ BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 12),                 // ethertype
      /* 3 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0x0800, 2, 0),      // IPv4: 6
      /* 4 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0x86dd, 10, 0),     // IPv6: 15
      /* 5 */ BPF_JUMP(BPF_JMP | BPF_JA, 15, 0, 0),                   // mark: 21
      /* 6 */ BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 23),                 // IPv4 protocol
      /* 7 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 47, 0, 13),         // not GRE: 21
      /* 8 */ BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 20),                 // fragment offset
      /* 9 */ BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, 0x1fff, 11, 0),    // a later fragment: 21
      /* 10 */ BPF_STMT(BPF_LDX | BPF_B | BPF_MSH, 14),                // X = IPv4 header length
      /* 11 */ BPF_STMT(BPF_LD | BPF_H | BPF_IND, 14),                 // GRE flags and version
      /* 12 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, kAgentTunnelFlags, 0, 8),  // other flags: 21
      /* 13 */ BPF_STMT(BPF_LD | BPF_H | BPF_IND, 16),                // GRE protocol
      /* 14 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, kTransparentEthernet, 8, 6),  // drop: 23, else 21
      /* 15 */ BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 20),                // IPv6 next header
      /* 16 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 47, 0, 4),         // not GRE: 21
      /* 17 */ BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 54),                // GRE flags and version
      /* 18 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, kAgentTunnelFlags, 0, 2),  // other flags: 21
      /* 19 */ BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 56),                // GRE protocol
      /* 20 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, kTransparentEthernet, 2, 0),  // drop: 23
      /* 21 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, static_cast<uint32_t>(SKF_AD_OFF + SKF_AD_MARK)),
      /* 22 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, kOwnTrafficMark, 0, 1),
      /* 23 */ BPF_STMT(BPF_RET | BPF_K, 0),            // ours, or a peer agent's tunnel: drop
      /* 24 */ BPF_STMT(BPF_RET | BPF_K, 0xffffffffu),  // anything else: the whole packet
  };
  sock_fprog filter{static_cast<unsigned short>(std::size(program)), program};
  if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &filter, sizeof filter) != 0) {
    return "cannot attach the filter that ignores tapas's own tunnel traffic: " + errno_text(errno);
  }
  return "";
}

}  // namespace tapas
