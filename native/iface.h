// Looking up an interface by name inside a socket's network namespace.
#pragma once

#include <cstdint>
#include <string>

namespace tapas {

struct InterfaceInfo {
  int ifindex = 0;
  uint32_t mtu = 0;
  std::string mac;  // aa:bb:cc:dd:ee:ff
  bool up = false;
};

// fd: any socket in the namespace to look in. Returns "" on success, or why not.
std::string query_interface(int fd, const std::string& ifname, InterfaceInfo& info);

// Whether the interface a packet socket is bound to is still usable.
enum class LinkState { Up, Down, Removed };
LinkState bound_link_state(int fd, int ifindex);

// Opens a packet socket in netns and queries ifname: the check the CLI and the
// agent make before asking the engine for anything (privileges, netns, name).
std::string probe_interface(const std::string& ifname, const std::string& netns, InterfaceInfo& info);

}  // namespace tapas
