// Entering a network namespace on the calling thread only, for as long as a
// socket is being opened: a socket stays in the namespace it was created in.
#pragma once

#include <string>

namespace tapas {

class NetnsScope {
 public:
  // netns: a name under /run/netns, an absolute path (/proc/PID/ns/net), or
  // empty for the current namespace. On failure error() says why.
  explicit NetnsScope(const std::string& netns);
  ~NetnsScope();
  NetnsScope(const NetnsScope&) = delete;
  NetnsScope& operator=(const NetnsScope&) = delete;

  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }

 private:
  int original_ = -1;
  std::string error_;
};

std::string errno_text(int err);

}  // namespace tapas
