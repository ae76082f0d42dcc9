#include "netns.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <linux/nsfs.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace tapas {

std::string errno_text(int err) { return std::strerror(err); }

std::string netns_path(const std::string& netns) {
  if (netns.empty() || netns[0] == '/') return netns;
  return "/run/netns/" + netns;
}

std::string netns_key(const std::string& netns) {
  const std::string path = netns_path(netns);
  if (path.empty()) return path;
  std::string key;
  size_t start = 0;
  while (start <= path.size()) {
    size_t end = path.find('/', start);
    if (end == std::string::npos) end = path.size();
    const std::string part = path.substr(start, end - start);
    if (!part.empty() && part != ".") key += "/" + part;
    start = end + 1;
  }
  return key.empty() ? "/" : key;
}

namespace {

NetnsIdentity identity_of(const struct stat& status) {
  NetnsIdentity identity;
  identity.ok = true;
  identity.dev = status.st_dev;
  identity.ino = status.st_ino;
  return identity;
}

std::string quoted(const std::string& netns) { return "'" + netns + "'"; }

// "" when netns may be looked up at all.
std::string check_name(const std::string& netns) {
  if (netns.find('/') != std::string::npos && netns[0] != '/') return "invalid network namespace name " + quoted(netns);
  if (netns.find('\0') != std::string::npos) return "invalid network namespace name (it contains a NUL byte)";
  return "";
}

std::string open_error(const std::string& netns, int err) {
  return err == ENOENT ? "network namespace " + quoted(netns) + " does not exist"
                       : "cannot open network namespace " + quoted(netns) + ": " + errno_text(err);
}

}  // namespace

int open_netns(const std::string& netns, std::string& error) {
  error = check_name(netns);
  if (!error.empty()) return -1;
  const std::string path = netns_path(netns);
  // O_PATH: no open() of the file itself, so neither a FIFO nor a device can block or react.
  int handle = open(path.c_str(), O_PATH | O_CLOEXEC);
  if (handle < 0) {
    error = open_error(netns, errno);
    return -1;
  }
  struct statfs fs {};
  if (fstatfs(handle, &fs) != 0) {
    error = "cannot look at network namespace " + quoted(netns) + ": " + errno_text(errno);
    close(handle);
    return -1;
  }
  if (static_cast<unsigned long>(fs.f_type) != NSFS_MAGIC) {
    error = quoted(netns) + " is not a network namespace";
    close(handle);
    return -1;
  }
  // Re-open the very file the handle refers to (no race with a rename), now
  // known to be a namespace: opening it cannot block.
  int fd = open(("/proc/self/fd/" + std::to_string(handle)).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT) fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);  // no /proc
  const int open_errno = errno;
  close(handle);
  if (fd < 0) {
    error = open_error(netns, open_errno);
    return -1;
  }
  // nsfs holds every kind of namespace: a mount or PID namespace is no network namespace.
  int type = ioctl(fd, NS_GET_NSTYPE);
  if (type >= 0 && type != CLONE_NEWNET) {
    error = quoted(netns) + " is not a network namespace";
    close(fd);
    return -1;
  }
  return fd;
}

NetnsIdentity netns_identity(const std::string& netns) {
  NetnsIdentity identity;
  if (!check_name(netns).empty()) return identity;
  // Our own namespace is the one this thread's sockets are created in by default.
  const std::string path = netns.empty() ? "/proc/thread-self/ns/net" : netns_path(netns);
  struct stat status {};
  if (stat(path.c_str(), &status) != 0) return identity;
  return identity_of(status);
}

NetnsScope::NetnsScope(const std::string& netns) {
  if (netns.empty()) {
    identity_ = netns_identity(netns);
    return;
  }
  int target = open_netns(netns, error_);
  if (target < 0) return;
  struct stat status {};
  if (fstat(target, &status) == 0) identity_ = identity_of(status);
  original_ = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (original_ < 0) {
    error_ = "cannot open the current network namespace: " + errno_text(errno);
  } else if (setns(target, CLONE_NEWNET) != 0) {
    error_ = errno == EPERM ? "entering network namespace " + quoted(netns) + " needs CAP_SYS_ADMIN"
                            : "cannot enter network namespace " + quoted(netns) + ": " + errno_text(errno);
    close(original_);
    original_ = -1;
    identity_ = NetnsIdentity{};
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
