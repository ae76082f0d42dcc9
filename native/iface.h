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

// Opens a packet socket in netns and queries ifname: a check of privileges,
// namespace and name before asking the engine for anything. Each call opens
// and closes a packet socket, whose close waits for an RCU grace period
// (~12 ms): to follow interfaces over time, put them in the plan's
// `interfaces` instead (iface_watch.h).
std::string probe_interface(const std::string& ifname, const std::string& netns, InterfaceInfo& info);

}  // namespace tapas
