#include "iface.h"

#include <net/if_arp.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <map>

#include "netns.h"

namespace tapas {

static bool fill_ifreq(ifreq& req, const std::string& ifname) {
  std::memset(&req, 0, sizeof req);
  if (ifname.empty() || ifname.size() >= IFNAMSIZ) return false;
  std::memcpy(req.ifr_name, ifname.data(), ifname.size());
  return true;
}

std::string query_interface(int fd, const std::string& ifname, InterfaceInfo& info) {
  ifreq req;
  if (!fill_ifreq(req, ifname)) return "invalid interface name '" + ifname + "'";
  if (ioctl(fd, SIOCGIFINDEX, &req) != 0) {
    return errno == ENODEV ? "interface '" + ifname + "' does not exist"
                           : "cannot look up interface '" + ifname + "': " + errno_text(errno);
  }
  info.ifindex = req.ifr_ifindex;
  if (ioctl(fd, SIOCGIFMTU, &req) != 0) return "cannot read the MTU of '" + ifname + "': " + errno_text(errno);
  info.mtu = static_cast<uint32_t>(req.ifr_mtu);
  if (ioctl(fd, SIOCGIFFLAGS, &req) != 0) return "cannot read the flags of '" + ifname + "': " + errno_text(errno);
  info.up = (req.ifr_flags & IFF_UP) != 0;
  info.running = (req.ifr_flags & IFF_RUNNING) != 0;
  info.mac.clear();
  // Loopback has a 6-byte (all-zero) address too; other link types have no MAC to show.
  if (ioctl(fd, SIOCGIFHWADDR, &req) == 0 &&
      (req.ifr_hwaddr.sa_family == ARPHRD_ETHER || req.ifr_hwaddr.sa_family == ARPHRD_LOOPBACK)) {
    const auto* m = reinterpret_cast<const uint8_t*>(req.ifr_hwaddr.sa_data);
    char text[18];
    std::snprintf(text, sizeof text, "%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5]);
    info.mac = text;
  }
  return "";
}

std::string check_interface_name(const std::string& ifname) {
  if (ifname.empty() || ifname.size() >= IFNAMSIZ) return "must be 1-15 bytes long";
  for (char c : ifname) {
    if (c == '\0') return "must not contain a NUL byte";
    if (c == '/' || c == ':') return std::string("must not contain '") + c + "'";
    if (c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r') return "must not contain whitespace";
  }
  return "";
}

LinkState bound_link_state(int fd, int ifindex) {
  // The kernel sets a packet socket's ifindex to -1 when its interface is unregistered.
  sockaddr_ll address{};
  socklen_t length = sizeof address;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) != 0 || address.sll_ifindex != ifindex) {
    return LinkState::Removed;
  }
  ifreq req;
  std::memset(&req, 0, sizeof req);
  req.ifr_ifindex = ifindex;
  if (ioctl(fd, SIOCGIFNAME, &req) != 0) return LinkState::Removed;
  if (ioctl(fd, SIOCGIFFLAGS, &req) != 0) return LinkState::Removed;
  return (req.ifr_flags & IFF_UP) != 0 ? LinkState::Up : LinkState::Down;
}

bool same_interface(const InterfaceIdentity& a, const InterfaceIdentity& b) {
  const bool same_netns = a.netns.ok && b.netns.ok ? a.netns == b.netns : a.netns_key == b.netns_key;
  if (!same_netns) return false;
  return a.ifindex != 0 && b.ifindex != 0 ? a.ifindex == b.ifindex : a.ifname == b.ifname;
}

InterfaceIdentity spelled_interface(const std::string& ifname, const std::string& netns) {
  InterfaceIdentity identity;
  identity.netns = netns_identity(netns);
  identity.netns_key = netns_key(netns);
  identity.ifname = ifname;
  return identity;
}

std::vector<InterfaceIdentity> resolve_interfaces(const std::vector<std::pair<std::string, std::string>>& names) {
  std::vector<InterfaceIdentity> identities;
  identities.reserve(names.size());
  std::map<std::string, std::vector<size_t>> by_netns;
  for (size_t i = 0; i < names.size(); ++i) {
    const auto& [ifname, netns] = names[i];
    InterfaceIdentity& identity = identities.emplace_back();
    identity.netns_key = netns_key(netns);
    identity.ifname = ifname;
    by_netns[netns].push_back(i);
  }
  for (const auto& [netns, indexes] : by_netns) {
    NetnsScope scope(netns);  // fails fast on a FIFO, a device or another kind of namespace
    if (!scope.ok()) continue;
    // AF_UNIX: no privilege, no protocol, and no RCU grace period on close.
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    for (size_t i : indexes) {
      InterfaceIdentity& identity = identities[i];
      identity.netns = scope.identity();
      ifreq req;
      if (fd >= 0 && fill_ifreq(req, identity.ifname) && ioctl(fd, SIOCGIFINDEX, &req) == 0) identity.ifindex = req.ifr_ifindex;
    }
    if (fd >= 0) close(fd);
  }
  return identities;
}

}  // namespace tapas
