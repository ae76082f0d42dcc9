// Looking up an interface by name inside a socket's network namespace.
#pragma once

#include <cstdint>
#include <string>

namespace tapas {

struct InterfaceInfo {
  int ifindex = 0;
  uint32_t mtu = 0;
  std::string mac;  // aa:bb:cc:dd:ee:ff; empty when the interface has no Ethernet address
  bool up = false;       // IFF_UP
  bool running = false;  // IFF_RUNNING: carrier
};

// Interface names as the kernel accepts them (dev_valid_name) and the API
// checks them: 1-15 bytes, no NUL, no '/', no ':', no whitespace. "" when
// ifname is one, or what is wrong with it.
std::string check_interface_name(const std::string& ifname);

// fd: any socket in the namespace to look in. Returns "" on success, or why not.
std::string query_interface(int fd, const std::string& ifname, InterfaceInfo& info);

// Whether the interface a packet socket is bound to is still usable.
enum class LinkState { Up, Down, Removed };
LinkState bound_link_state(int fd, int ifindex);


}  // namespace tapas
