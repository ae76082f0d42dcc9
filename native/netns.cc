#include "netns.h"

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace tapas {

std::string errno_text(int err) { return std::strerror(err); }

static std::string netns_path(const std::string& netns) {
  return netns[0] == '/' ? netns : "/run/netns/" + netns;
}

NetnsScope::NetnsScope(const std::string& netns) {
  if (netns.empty()) return;
  if (netns.find('/') != std::string::npos && netns[0] != '/') {
    error_ = "invalid network namespace name '" + netns + "'";
    return;
  }
  int target = open(netns_path(netns).c_str(), O_RDONLY | O_CLOEXEC);
  if (target < 0) {
    error_ = errno == ENOENT ? "network namespace '" + netns + "' does not exist"
                             : "cannot open network namespace '" + netns + "': " + errno_text(errno);
    return;
  }
  original_ = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (original_ < 0) {
    error_ = "cannot open the current network namespace: " + errno_text(errno);
  } else if (setns(target, CLONE_NEWNET) != 0) {
    error_ = errno == EPERM ? "entering network namespace '" + netns + "' needs CAP_SYS_ADMIN"
                            : "cannot enter network namespace '" + netns + "': " + errno_text(errno);
    close(original_);
    original_ = -1;
  }
  close(target);
}

NetnsScope::~NetnsScope() {
  if (original_ < 0) return;
  // Failing to return would leave this thread in the wrong namespace for
  // every later socket; there is no sane way to continue.
  if (setns(original_, CLONE_NEWNET) != 0) std::abort();
  close(original_);
}

}  // namespace tapas
