// Entering a network namespace on the calling thread only, for as long as a
// socket is being opened: a socket stays in the namespace it was created in.
#pragma once

#include <sys/types.h>

#include <string>

namespace tapas {

// netns: a name under /run/netns, an absolute path (/proc/PID/ns/net), or
// empty for the current namespace.
//
// Opens the namespace file without ever blocking: a FIFO or a device given
// as netns would otherwise hang open() (a FIFO waits for a writer) or wake a
// driver. It is first opened with O_PATH, which touches no driver, and only
// a file on nsfs that is a network namespace is then opened for real.
// Returns the descriptor (O_CLOEXEC), or -1 with error saying why.
int open_netns(const std::string& netns, std::string& error);

// Identifies a namespace without opening it (stat only, which never blocks,
// whatever the file is), to tell whether two names denote the same one and
// whether a name still denotes the namespace it did. For a namespace file
// (a bind mount under /run/netns, /proc/PID/ns/net) stat follows the mount
// and any symlink to the namespace itself: dev and ino are nsfs's and the
// namespace's own inode, the same as fstat on an opened descriptor of it,
// however the path is spelled. ok is false when the file cannot be stat'ed.
struct NetnsIdentity {
  bool ok = false;
  dev_t dev = 0;
  ino_t ino = 0;
  bool operator==(const NetnsIdentity&) const = default;
};
NetnsIdentity netns_identity(const std::string& netns);

// The path a netns name denotes: "" -> "", "N" -> "/run/netns/N", "/x" -> "/x".
std::string netns_path(const std::string& netns);

// netns_path, lexically normalized: repeated '/', "." components and a
// trailing '/' dropped ("/run/netns//N/", "/run/netns/./N" -> "/run/netns/N").
// What two spellings are compared by when a namespace cannot be looked up.
std::string netns_key(const std::string& netns);

class NetnsScope {
 public:
  explicit NetnsScope(const std::string& netns);
  ~NetnsScope();
  NetnsScope(const NetnsScope&) = delete;
  NetnsScope& operator=(const NetnsScope&) = delete;

  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }
  // The namespace the thread is in now (fstat of the descriptor it entered;
  // the current one for ""): what a socket opened in the scope lives in.
  const NetnsIdentity& identity() const { return identity_; }

 private:
  int original_ = -1;
  std::string error_;
  NetnsIdentity identity_;
};

std::string errno_text(int err);

}  // namespace tapas
