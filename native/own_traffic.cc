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
      /* 1 */ BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 34, 0, 27),          // shorter than Ethernet + IPv4: mark (29)
      /* 2 */ BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 12),                  // ethertype
      /* 3 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0x0800, 1, 0),       // IPv4: 5
      /* 4 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0x86dd, 16, 24),     // IPv6: 21, else mark (29)
      // IPv4
      /* 5 */ BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 23),                  // protocol
      /* 6 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 47, 0, 22),          // not GRE: mark (29)
      /* 7 */ BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 20),                  // flags and fragment offset
      /* 8 */ BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, 0x1fff, 22, 0),     // a later fragment of GRE: drop (31)
      /* 9 */ BPF_STMT(BPF_LDX | BPF_B | BPF_MSH, 14),                 // X = IPv4 header length
      /* 10 */ BPF_STMT(BPF_MISC | BPF_TXA, 0),
      /* 11 */ BPF_STMT(BPF_ALU | BPF_ADD | BPF_K, 18),                // Ethernet + IPv4 + 4 bytes of GRE
      /* 12 */ BPF_STMT(BPF_ST, 0),
      /* 13 */ BPF_STMT(BPF_LD | BPF_W | BPF_LEN, 0),
      /* 14 */ BPF_STMT(BPF_LDX | BPF_MEM, 0),
      /* 15 */ BPF_JUMP(BPF_JMP | BPF_JGE | BPF_X, 0, 0, 13),          // no whole GRE header: mark (29)
      /* 16 */ BPF_STMT(BPF_LDX | BPF_B | BPF_MSH, 14),
      /* 17 */ BPF_STMT(BPF_LD | BPF_H | BPF_IND, 14),                 // GRE flags and version
      /* 18 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, kAgentTunnelFlags, 0, 10),  // other flags: mark (29)
      /* 19 */ BPF_STMT(BPF_LD | BPF_H | BPF_IND, 16),                 // GRE protocol
      /* 20 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, kTransparentEthernet, 10, 8),  // drop (31), else mark (29)
      // IPv6
      /* 21 */ BPF_STMT(BPF_LD | BPF_W | BPF_LEN, 0),
      /* 22 */ BPF_JUMP(BPF_JMP | BPF_JGE | BPF_K, 58, 0, 6),          // no whole GRE header: mark (29)
      /* 23 */ BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 20),                 // next header
      /* 24 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 47, 0, 4),          // not GRE: mark (29)
      /* 25 */ BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 54),                 // GRE flags and version
      /* 26 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, kAgentTunnelFlags, 0, 2),  // other flags: mark (29)
      /* 27 */ BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 56),                 // GRE protocol
      /* 28 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, kTransparentEthernet, 2, 0),  // drop (31)
      // Sent by tapas on this host
      /* 29 */ BPF_STMT(BPF_LD | BPF_W | BPF_ABS, static_cast<uint32_t>(SKF_AD_OFF + SKF_AD_MARK)),
      /* 30 */ BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, kOwnTrafficMark, 0, 1),
      /* 31 */ BPF_STMT(BPF_RET | BPF_K, 0),            // ours, or a peer agent's tunnel: drop
      /* 32 */ BPF_STMT(BPF_RET | BPF_K, 0xffffffffu),  // anything else: the whole packet
  };

  sock_fprog filter{static_cast<unsigned short>(std::size(program)), program};
  if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &filter, sizeof filter) != 0) {
    return "cannot attach the filter that ignores tapas's own tunnel traffic: " + errno_text(errno);
  }
  return "";
}

}  // namespace tapas
