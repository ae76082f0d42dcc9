// Looking up an interface by name inside a socket's network namespace.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "netns.h"

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

// Which interface an (ifname, netns) pair names, whatever the spelling: the
// namespace by what it is (NetnsIdentity: a name, a path with "//" or "./",
// a symlink, /proc/self/root/run/netns/N, /proc/PID/ns/net all come to the
// same one) and the interface by its ifindex in it (an altname and the name
// come to the same one).
struct InterfaceIdentity {
  NetnsIdentity netns;     // ok: the namespace exists and could be entered
  std::string netns_key;   // netns_key(netns): compared when either namespace is unknown
  std::string ifname;
  int ifindex = 0;         // 0: not found (no such interface, or the namespace could not be entered)
};

// The same interface: the same namespace (by identity when both are known,
// else by netns_key) and the same ifindex (when both were found, else the
// same name).
bool same_interface(const InterfaceIdentity& a, const InterfaceIdentity& b);

// Without entering anything: the namespace stat'ed, no ifindex.
InterfaceIdentity spelled_interface(const std::string& ifname, const std::string& netns);

// Looks up every (ifname, netns) pair: each namespace named is entered once
// (the netns open path, which never blocks), one AF_UNIX socket made in it
// for SIOCGIFINDEX and closed again, so nothing stays pinned. Results are in
// the order of names.
std::vector<InterfaceIdentity> resolve_interfaces(const std::vector<std::pair<std::string, std::string>>& names);


}  // namespace tapas
