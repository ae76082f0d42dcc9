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
  // The mark is read from skb metadata, not from packet bytes.
  sock_filter program[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, static_cast<uint32_t>(SKF_AD_OFF + SKF_AD_MARK)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, kOwnTrafficMark, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, 0),            // ours: drop
      BPF_STMT(BPF_RET | BPF_K, 0xffffffffu),  // anything else: the whole packet
  };
  sock_fprog filter{static_cast<unsigned short>(std::size(program)), program};
  if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &filter, sizeof filter) != 0) {
    return "cannot attach the filter that ignores tapas's own tunnel traffic: " + errno_text(errno);
  }
  return "";
}

}  // namespace tapas
