#include "bpf_loader.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/ethtool.h>
#include <linux/if_link.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sockios.h>
#include <linux/veth.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <set>

extern "C" {
#include "bpf/mirror.h"
}
#include "own_traffic.h"

namespace tapas::bpf {

static_assert(TAPAS_OWN_TRAFFIC_MARK == kOwnTrafficMark, "the tc programs skip what the AF_PACKET path marks, and mark alike");

namespace {

// The uapi headers of Debian 12 (Linux 6.1) predate tcx (Linux 6.6).
constexpr int kBpfTcxIngress = 46;  // BPF_TCX_INGRESS
constexpr int kBpfTcxEgress = 47;   // BPF_TCX_EGRESS
constexpr uint32_t kBpfFBefore = 1U << 3;  // BPF_F_BEFORE: with no relative program, first

// libbpf's messages (the verifier's log among them) go here instead of
// stderr: the last few lines become part of an error.
thread_local std::string* libbpf_log = nullptr;
int capture_libbpf(enum libbpf_print_level level, const char* format, va_list args) {
  if (level == LIBBPF_DEBUG || libbpf_log == nullptr) return 0;
  char line[512];
  int n = vsnprintf(line, sizeof line, format, args);
  if (n > 0) {
    libbpf_log->append(line);
    if (libbpf_log->size() > 4096) libbpf_log->erase(0, libbpf_log->size() - 4096);
  }
  return 0;
}

std::string describe(const std::string& ifname, const std::string& netns) {
  return "'" + ifname + "'" + (netns.empty() ? "" : " in network namespace '" + netns + "'");
}

std::string hook_key_bytes(int ifindex, uint32_t direction) {
  tapas_hook_key key{};
  key.ifindex = static_cast<uint32_t>(ifindex);
  key.direction = direction;
  return std::string(reinterpret_cast<const char*>(&key), sizeof key);
}


// rtnetlink on the calling thread's namespace: one request, its ack.
struct NlRequest {
  char buffer[512]{};
  nlmsghdr* header() { return reinterpret_cast<nlmsghdr*>(buffer); }
  rtattr* put(int type, const void* data, size_t length) {
    auto* attr = reinterpret_cast<rtattr*>(buffer + NLMSG_ALIGN(header()->nlmsg_len));
    attr->rta_type = static_cast<unsigned short>(type);
    attr->rta_len = static_cast<unsigned short>(RTA_LENGTH(length));
    if (length != 0) std::memcpy(RTA_DATA(attr), data, length);
    header()->nlmsg_len = NLMSG_ALIGN(header()->nlmsg_len) + RTA_ALIGN(attr->rta_len);
    return attr;
  }
  void end(rtattr* nest) { nest->rta_len = static_cast<unsigned short>(buffer + header()->nlmsg_len - reinterpret_cast<char*>(nest)); }
};

int netlink_call(NlRequest& request) {
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (fd < 0) return -errno;
  request.header()->nlmsg_flags |= NLM_F_REQUEST | NLM_F_ACK;
  sockaddr_nl kernel{};
  kernel.nl_family = AF_NETLINK;
  int result = -EIO;
  if (sendto(fd, request.buffer, request.header()->nlmsg_len, 0, reinterpret_cast<sockaddr*>(&kernel), sizeof kernel) >= 0) {
    char reply[4096];
    ssize_t n = recv(fd, reply, sizeof reply, 0);
    auto* header = reinterpret_cast<nlmsghdr*>(reply);
    if (n >= static_cast<ssize_t>(sizeof(nlmsghdr) + sizeof(nlmsgerr)) && header->nlmsg_type == NLMSG_ERROR) {
      result = reinterpret_cast<nlmsgerr*>(NLMSG_DATA(header))->error;
    }
  } else {
    result = -errno;
  }
  ::close(fd);
  return result;
}

// A veth pair a <-> b, down, in the thread's namespace.
int create_veth(const std::string& a, const std::string& b) {
  NlRequest r;
  r.header()->nlmsg_len = NLMSG_LENGTH(sizeof(ifinfomsg));
  r.header()->nlmsg_type = RTM_NEWLINK;
  r.header()->nlmsg_flags = NLM_F_CREATE | NLM_F_EXCL;
  uint32_t mtu = 65000;  // the clone, headers added, must pass b's MTU check
  r.put(IFLA_IFNAME, a.c_str(), a.size() + 1);
  r.put(IFLA_MTU, &mtu, sizeof mtu);
  rtattr* info = r.put(IFLA_LINKINFO, nullptr, 0);
  r.put(IFLA_INFO_KIND, "veth", 4);
  rtattr* data = r.put(IFLA_INFO_DATA, nullptr, 0);
  rtattr* peer = r.put(VETH_INFO_PEER, nullptr, 0);
  ifinfomsg peer_info{};
  std::memcpy(r.buffer + r.header()->nlmsg_len, &peer_info, sizeof peer_info);
  r.header()->nlmsg_len += NLMSG_ALIGN(sizeof peer_info);
  r.put(IFLA_IFNAME, b.c_str(), b.size() + 1);
  r.put(IFLA_MTU, &mtu, sizeof mtu);
  r.end(peer);
  r.end(data);
  r.end(info);
  return netlink_call(r);
}

int set_up(int ifindex) {
  NlRequest r;
  r.header()->nlmsg_len = NLMSG_LENGTH(sizeof(ifinfomsg));
  r.header()->nlmsg_type = RTM_NEWLINK;
  auto* info = reinterpret_cast<ifinfomsg*>(NLMSG_DATA(r.header()));
  info->ifi_index = ifindex;
  info->ifi_flags = IFF_UP;
  info->ifi_change = IFF_UP;
  return netlink_call(r);
}

int delete_link(int ifindex) {
  NlRequest r;
  r.header()->nlmsg_len = NLMSG_LENGTH(sizeof(ifinfomsg));
  r.header()->nlmsg_type = RTM_DELLINK;
  reinterpret_cast<ifinfomsg*>(NLMSG_DATA(r.header()))->ifi_index = ifindex;
  return netlink_call(r);
}

bool mac_of(const std::string& ifname, uint8_t (&mac)[6]) {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  ifreq request{};
  std::snprintf(request.ifr_name, sizeof request.ifr_name, "%s", ifname.c_str());
  bool ok = ioctl(fd, SIOCGIFHWADDR, &request) == 0;
  if (ok) std::memcpy(mac, request.ifr_hwaddr.sa_data, 6);
  ::close(fd);
  return ok;
}

// Every offload of a tunnel veth end that can be turned off, off: the
// kernel then segments a GSO clone on its way through (the copies are
// wire-sized frames, each encapsulated on its own, with its own ERSPAN
// sequence number), fills in checksums left to the hardware, and puts an
// offloaded VLAN tag into the frame; and the second end does no GRO, which
// would merge the segments again.
int clear_offloads(const std::string& ifname) {
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  constexpr uint32_t kWords = 4;  // room for 128 feature bits; the kernel says how many it has
  alignas(ethtool_gfeatures) unsigned char get_buffer[sizeof(ethtool_gfeatures) + kWords * sizeof(ethtool_get_features_block)]{};
  alignas(ethtool_sfeatures) unsigned char set_buffer[sizeof(ethtool_sfeatures) + kWords * sizeof(ethtool_set_features_block)]{};
  auto* get = reinterpret_cast<ethtool_gfeatures*>(get_buffer);
  auto* set = reinterpret_cast<ethtool_sfeatures*>(set_buffer);
  get->cmd = ETHTOOL_GFEATURES;
  get->size = kWords;
  ifreq request{};
  std::snprintf(request.ifr_name, sizeof request.ifr_name, "%s", ifname.c_str());
  request.ifr_data = reinterpret_cast<char*>(get);
  int result = 0;
  if (ioctl(fd, SIOCETHTOOL, &request) != 0) {
    result = -errno;
  } else {
    set->cmd = ETHTOOL_SFEATURES;
    set->size = std::min(get->size, kWords);
    for (uint32_t i = 0; i < set->size; ++i) {
      set->features[i].valid = get->features[i].available;
      set->features[i].requested = 0;
    }
    request.ifr_data = reinterpret_cast<char*>(set);
    // A positive answer flags features the device could not change: those stay as they were.
    if (ioctl(fd, SIOCETHTOOL, &request) < 0) result = -errno;
  }
  ::close(fd);
  return result;
}

bool write_sysctl(const std::string& path, char value = '1') {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  bool ok = write(fd, &value, 1) == 1;
  ::close(fd);
  return ok;
}
// A sysctl's integer value, or -1.
int read_sysctl(const std::string& path) {
  char text[16] = {};
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  ssize_t n = read(fd, text, sizeof text - 1);
  ::close(fd);
  return n > 0 ? std::atoi(text) : -1;
}
// No IPv6 on tapas's veth ends: their own router solicitations or MLD
// reports would otherwise be encapsulated and sent to the collector.
void disable_ipv6(const std::string& ifname) { write_sysctl("/proc/sys/net/ipv6/conf/" + ifname + "/disable_ipv6"); }
// bpf_fib_lookup from the second end's ingress answers only where that
// interface forwards (its own setting, not the namespace's). Nothing it
// receives reaches the stack: tapas_send redirects or drops every packet.
// And GRE copies above the path MTU go up the first end's stack to be
// forwarded and fragmented; their source address is the host's own
// (accept_local), which a strict reverse-path filter would refuse.
bool enable_forwarding(const std::string& ifname) {
  return write_sysctl("/proc/sys/net/ipv4/conf/" + ifname + "/forwarding") &&
         write_sysctl("/proc/sys/net/ipv4/conf/" + ifname + "/accept_local") &&
         write_sysctl("/proc/sys/net/ipv4/conf/" + ifname + "/rp_filter", '0');
}

// Tunnel veth ends are named tpg<pid>a<n> / tpg<pid>b<n>: those of a pid
// that no longer runs were left by a killed tapas and are removed.
constexpr const char* kTunnelPrefix = "tpg";
void sweep_tunnels() {
  struct if_nameindex* names = if_nameindex();
  if (names == nullptr) return;
  for (struct if_nameindex* n = names; n->if_index != 0; ++n) {
    const char* name = n->if_name;
    if (std::strncmp(name, kTunnelPrefix, 3) != 0) continue;
    char* end = nullptr;
    long pid = std::strtol(name + 3, &end, 10);
    if (end == name + 3 || (*end != 'a' && *end != 'b') || pid <= 0) continue;
    if (kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;
    delete_link(static_cast<int>(n->if_index));  // deleting one end deletes both; the other may fail
  }
  if_freenameindex(names);
}

// Whether the tc program prog_id is tapas's and was loaded by a tapas that
// no longer runs (the pid in its tapas_owner map). Not known: false.
bool left_by_a_dead_tapas(uint32_t prog_id) {
  int fd = bpf_prog_get_fd_by_id(prog_id);
  if (fd < 0) return false;
  uint32_t map_ids[8] = {};
  bpf_prog_info info{};
  info.nr_map_ids = 8;
  info.map_ids = reinterpret_cast<uintptr_t>(map_ids);
  uint32_t length = sizeof info;
  bool ours = bpf_obj_get_info_by_fd(fd, &info, &length) == 0 && std::strncmp(info.name, "tapas_", 6) == 0;
  ::close(fd);
  if (!ours) return false;
  for (uint32_t i = 0; i < std::min<uint32_t>(info.nr_map_ids, 8); ++i) {
    int map = bpf_map_get_fd_by_id(map_ids[i]);
    if (map < 0) continue;
    bpf_map_info map_info{};
    uint32_t map_length = sizeof map_info;
    const uint32_t zero = 0;
    uint32_t pid = 0;
    bool owner = bpf_obj_get_info_by_fd(map, &map_info, &map_length) == 0 && std::strcmp(map_info.name, "tapas_owner") == 0 &&
                 bpf_map_lookup_elem(map, &zero, &pid) == 0;
    ::close(map);
    if (owner) return pid != 0 && pid != static_cast<uint32_t>(getpid()) && kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH;
  }
  return false;
}

// tcx links go with their process; cls_bpf filters outlive it and go on
// copying. Those at tapas's handle and priority in the thread's namespace
// whose tapas no longer runs are removed; any other filter stays.
void sweep_filters() {
  struct if_nameindex* names = if_nameindex();
  if (names == nullptr) return;
  for (struct if_nameindex* n = names; n->if_index != 0; ++n) {
    for (auto point : {BPF_TC_INGRESS, BPF_TC_EGRESS}) {
      LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = static_cast<int>(n->if_index), .attach_point = point);
      LIBBPF_OPTS(bpf_tc_opts, query, .handle = kTcHandle, .priority = kTcPriority);
      if (bpf_tc_query(&hook, &query) != 0 || !left_by_a_dead_tapas(query.prog_id)) continue;
      LIBBPF_OPTS(bpf_tc_opts, leftover, .handle = kTcHandle, .priority = kTcPriority);
      bpf_tc_detach(&hook, &leftover);
    }
  }
  if_freenameindex(names);
}

// The address the namespace's routes would send from to reach remote.
std::string local_address_for(const std::string& remote, uint32_t& local) {
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(9);
  if (inet_pton(AF_INET, remote.c_str(), &to.sin_addr) != 1) return "not an IPv4 address: " + remote;
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return "socket: " + errno_text(errno);
  std::string error;
  if (connect(fd, reinterpret_cast<sockaddr*>(&to), sizeof to) != 0) {
    error = "no route to the collector " + remote + ": " + errno_text(errno);
  } else {
    sockaddr_in me{};
    socklen_t length = sizeof me;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&me), &length) != 0) error = "getsockname: " + errno_text(errno);
    local = me.sin_addr.s_addr;
  }
  ::close(fd);
  return error;
}
}  // namespace

Loader::~Loader() { close(); }

std::string Loader::open(const std::string& object_path, AttachMode mode) {
  std::lock_guard lock(mutex_);
  mode_ = mode;
  object_path_ = object_path;
  Programs first;
  std::string error = load(first);
  if (!error.empty()) return error;
  object_ = first.object;
  counters_fd_ = bpf_map__fd(bpf_object__find_map_by_name(object_, "tapas_counters"));
  cpus_ = std::max(1, libbpf_num_possible_cpus());
  health_ = std::thread([this] { health(); });
  return "";
}

// Every 500 ms: interfaces that vanished, came back or were replaced (a new
// ifindex) are attached and installed anew. The AF_PACKET engine follows
// rtnetlink events instead; here each entry costs a namespace switch and
// an ioctl per tick (first slice).
void Loader::health() {
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    wake_.wait_for(lock, std::chrono::milliseconds(500));
    if (stopping_ || object_ == nullptr) break;
    try {
      if (stale()) apply_locked(last_sources_, last_rules_);
    } catch (...) {
      // Never ends the process: tried again on the next tick.
    }
  }
}

namespace {
// The ifindex of ifname in netns, and the namespace it was looked up in (0 when gone).
int ifindex_in(const std::string& netns, const std::string& ifname, NetnsIdentity* ns = nullptr) {
  NetnsScope scope(netns);
  if (!scope.ok()) return 0;
  if (ns != nullptr) *ns = scope.identity();
  return static_cast<int>(if_nametoindex(ifname.c_str()));
}
}  // namespace

bool Loader::stale() const {
  for (const auto& [id, s] : sources_) {
    if (s.attach.empty() && !s.same_as.empty()) continue;  // refused until the next plan
    if (s.attach.empty()) return true;
    NetnsIdentity ns;
    if (ifindex_in(s.spec.netns, s.spec.ifname, &ns) != s.ifindex || !(ns == s.ns)) return true;
  }
  for (const Installed& r : rules_) {
    if (r.waiting) return true;  // (a rule refused with its source is not waiting)
    if (!r.spec.gre_remote.empty()) {
      auto t = tunnels_.find(r.spec.id);
      if (r.reason.empty() && (t == tunnels_.end() || ifindex_in(t->second.netns, t->second.name_a) != r.target)) return true;
      continue;
    }
    if (r.reason.empty() && ifindex_in(r.spec.sink_netns, r.spec.sink_ifname) != r.target) return true;
  }
  return false;
}

// Opens and loads a copy of the programs; every copy after the first shares
// the first one's counters map.
std::string Loader::load(Programs& into) {
  std::string log;
  libbpf_log = &log;
  libbpf_set_print(capture_libbpf);
  bpf_object* object = nullptr;
  auto fail = [&](const std::string& what, int err) {
    std::string text = what + ": " + errno_text(err < 0 ? -err : err);
    if (err == -EPERM || err == EPERM) text += " (the bpf data path needs root: CAP_BPF and CAP_NET_ADMIN)";
    while (!log.empty() && log.back() == '\n') log.pop_back();
    // The last line libbpf logged (already prefixed "libbpf: ").
    if (!log.empty()) text += "; " + log.substr(log.rfind('\n') == std::string::npos ? 0 : log.rfind('\n') + 1);
    libbpf_log = nullptr;
    if (object != nullptr) bpf_object__close(object);
    return text;
  };
  object = bpf_object__open_file(object_path_.c_str(), nullptr);
  if (object == nullptr) return fail("cannot open the bpf program " + object_path_, errno);
  bpf_map* counters = bpf_object__find_map_by_name(object, "tapas_counters");
  if (counters == nullptr) return fail("the bpf object lacks tapas's maps", ENOENT);
  if (counters_fd_ >= 0) {
    int err = bpf_map__reuse_fd(counters, counters_fd_);
    if (err != 0) return fail("cannot share the counters map", err);
  }
  int err = bpf_object__load(object);
  if (err != 0) return fail("cannot load the bpf program into the kernel", err);
  bpf_program* in = bpf_object__find_program_by_name(object, "tapas_in");
  bpf_program* out = bpf_object__find_program_by_name(object, "tapas_out");
  bpf_map* hooks = bpf_object__find_map_by_name(object, "tapas_hooks");
  if (!in || !out || !hooks) return fail("the bpf object lacks tapas's programs or maps", ENOENT);
  bpf_program* send = bpf_object__find_program_by_name(object, "tapas_send");
  bpf_map* tunnels = bpf_object__find_map_by_name(object, "tapas_tunnels");
  bpf_map* sequences = bpf_object__find_map_by_name(object, "tapas_sequences");
  if (!send || !tunnels || !sequences) return fail("the bpf object lacks tapas's tunnel programs or maps", ENOENT);
  bpf_map* owner = bpf_object__find_map_by_name(object, "tapas_owner");
  const uint32_t zero = 0, pid = static_cast<uint32_t>(getpid());
  if (owner == nullptr || bpf_map_update_elem(bpf_map__fd(owner), &zero, &pid, BPF_ANY) != 0) {
    return fail("cannot record the owner of the bpf programs", owner == nullptr ? ENOENT : errno);
  }
  // No program reads the owner map: bound to each, it is found from a filter's program.
  for (bpf_program* program : {in, out, send}) {
    if ((err = bpf_prog_bind_map(bpf_program__fd(program), bpf_map__fd(owner), nullptr)) != 0) {
      return fail("cannot bind the owner map to the bpf programs", err);
    }
  }
  into.prog_send = bpf_program__fd(send);
  into.tunnels_fd = bpf_map__fd(tunnels);
  into.sequences_fd = bpf_map__fd(sequences);
  into.object = object;
  into.prog_in = bpf_program__fd(in);
  into.prog_out = bpf_program__fd(out);
  into.hooks_fd = bpf_map__fd(hooks);
  libbpf_log = nullptr;
  return "";
}

uint32_t Loader::take_slot() {
  uint32_t slot;
  if (!free_slots_.empty()) {
    slot = free_slots_.back();
    free_slots_.pop_back();
  } else if (next_slot_ < TAPAS_BPF_MAX_SLOTS) {
    slot = next_slot_++;
  } else {
    return kNoSlot;  // the counters map is full
  }
  // A slot starts from zero: what a former owner counted is not the new one's.
  std::vector<tapas_counters> zero(static_cast<size_t>(cpus_));
  bpf_map_update_elem(counters_fd_, &slot, zero.data(), BPF_ANY);
  return slot;
}

void Loader::free_slot(uint32_t slot) {
  if (slot != kNoSlot) free_slots_.push_back(slot);
}

// On the calling thread, in the source's namespace (NetnsScope): bpf_link_create
// and the tc netlink requests find the ifindex in the thread's namespace.
std::string Loader::attach(Attached& s, const std::map<std::string, Attached>& peers) {
  NetnsScope scope(s.spec.netns);
  if (!scope.ok()) return scope.error();
  s.ns = scope.identity();
  s.ifindex = static_cast<int>(if_nametoindex(s.spec.ifname.c_str()));
  if (s.ifindex == 0) return describe(s.spec.ifname, s.spec.netns) + " does not exist";  // as the AF_PACKET path says
  // Two spellings of one interface would copy every frame twice: the later one is refused, as on AF_PACKET.
  s.same_as.clear();
  for (const auto& [id, other] : peers) {
    if (id != s.spec.id && !other.attach.empty() && other.ns == s.ns && other.ifindex == s.ifindex) {
      s.same_as = id;
      return "the same interface as source '" + id + "' (spelled " + describe(other.spec.ifname, other.spec.netns) + ")";
    }
  }
  Programs& programs = programs_[key_of(s.ns)];
  if (programs.object == nullptr) {
    std::string error = load(programs);
    if (!error.empty()) {
      programs_.erase(key_of(s.ns));
      return error;
    }
    sweep_filters();
  }
  const int prog_in = programs.prog_in, prog_out = programs.prog_out;

  if (mode_ != AttachMode::Tc) {
    // Ingress (OUT) first in the chain: the frame as it arrived, before other
    // programs change or drop it (AF_PACKET sees it there too). Egress (IN)
    // last: the frame as it leaves, after other programs (as AF_PACKET sees it).
    LIBBPF_OPTS(bpf_link_create_opts, first, .flags = kBpfFBefore);
    int out = bpf_link_create(prog_out, s.ifindex, static_cast<bpf_attach_type>(kBpfTcxIngress), &first);
    int out_errno = errno;
    if (out >= 0) {
      int in = bpf_link_create(prog_in, s.ifindex, static_cast<bpf_attach_type>(kBpfTcxEgress), nullptr);
      if (in < 0) {
        int err = errno;
        ::close(out);
        return "cannot attach to the egress of " + describe(s.spec.ifname, s.spec.netns) + " (tcx): " + errno_text(err);
      }
      s.link_in = in;
      s.link_out = out;
      s.attach = "tcx";
      return "";
    }
    // EINVAL: a kernel without tcx (before 6.6); anything else is a real failure.
    if (mode_ == AttachMode::Tcx || out_errno != EINVAL) {
      return "cannot attach to the ingress of " + describe(s.spec.ifname, s.spec.netns) + " (tcx): " + errno_text(out_errno);
    }
  }

  // cls_bpf on a clsact qdisc: created when missing, never deleted (other
  // tc users may add to it; an empty clsact costs nothing).
  LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = s.ifindex, .attach_point = static_cast<bpf_tc_attach_point>(BPF_TC_INGRESS | BPF_TC_EGRESS));
  int err = bpf_tc_hook_create(&hook);
  if (err != 0 && err != -EEXIST) return "cannot add a clsact qdisc to " + describe(s.spec.ifname, s.spec.netns) + ": " + errno_text(-err);
  for (auto [point, prog] : {std::pair{BPF_TC_INGRESS, prog_out}, std::pair{BPF_TC_EGRESS, prog_in}}) {
    hook.attach_point = point;
    // A filter at tapas's handle and priority: one a killed tapas left (its
    // program is named tapas_*), replaced; anyone else's, left alone.
    LIBBPF_OPTS(bpf_tc_opts, query, .handle = kTcHandle, .priority = kTcPriority);
    if (bpf_tc_query(&hook, &query) == 0) {
      bpf_prog_info info{};
      uint32_t length = sizeof info;
      int fd = bpf_prog_get_fd_by_id(query.prog_id);
      bool ours = fd >= 0 && bpf_obj_get_info_by_fd(fd, &info, &length) == 0 && std::strncmp(info.name, "tapas_", 6) == 0;
      if (fd >= 0) ::close(fd);
      if (!ours) {
        return "the tc filter at handle 0x7470 priority 49152 of " + describe(s.spec.ifname, s.spec.netns) + " is not tapas's";
      }
    }
    LIBBPF_OPTS(bpf_tc_opts, opts, .prog_fd = prog, .flags = BPF_TC_F_REPLACE, .handle = kTcHandle, .priority = kTcPriority);
    err = bpf_tc_attach(&hook, &opts);
    if (err != 0) {
      if (point == BPF_TC_EGRESS) {
        // Not half attached: the ingress filter added just before goes again.
        hook.attach_point = BPF_TC_INGRESS;
        LIBBPF_OPTS(bpf_tc_opts, added, .handle = kTcHandle, .priority = kTcPriority);
        bpf_tc_detach(&hook, &added);
      }
      return "cannot attach a tc filter to " + describe(s.spec.ifname, s.spec.netns) + ": " + errno_text(-err);
    }
  }
  s.attach = "tc";
  return "";
}

void Loader::detach(Attached& s) {
  if (s.attach == "tcx") {
    // Closing the last descriptor of a tcx link detaches it.
    ::close(s.link_in);
    ::close(s.link_out);
    s.link_in = s.link_out = -1;
  } else if (s.attach == "tc") {
    NetnsScope scope(s.spec.netns);
    if (scope.ok() && scope.identity() == s.ns) {
      for (auto point : {BPF_TC_INGRESS, BPF_TC_EGRESS}) {
        LIBBPF_OPTS(bpf_tc_hook, hook, .ifindex = s.ifindex, .attach_point = point);
        LIBBPF_OPTS(bpf_tc_opts, opts, .handle = kTcHandle, .priority = kTcPriority);
        bpf_tc_detach(&hook, &opts);  // gone with its interface or namespace: nothing to do
      }
    }
  }
  s.attach.clear();
}

void Loader::apply(const std::vector<SourceSpec>& sources, const std::vector<RuleSpec>& rules) {
  std::lock_guard lock(mutex_);
  if (object_ == nullptr) return;
  last_sources_ = sources;
  last_rules_ = rules;
  apply_locked(sources, rules);
}

void Loader::apply_locked(const std::vector<SourceSpec>& sources, const std::vector<RuleSpec>& rules) {
  // Sources: keep what is attached to the same interface, detach the rest.
  std::map<std::string, Attached> next;
  for (const SourceSpec& spec : sources) {
    auto running = sources_.find(spec.id);
    if (running != sources_.end() && running->second.spec.ifname == spec.ifname && running->second.spec.netns == spec.netns &&
        !running->second.attach.empty() && netns_identity(spec.netns) == running->second.ns &&
        [&] {
          NetnsScope scope(spec.netns);
          return scope.ok() && static_cast<int>(if_nametoindex(spec.ifname.c_str())) == running->second.ifindex;
        }()) {
      next.emplace(spec.id, std::move(running->second));
      sources_.erase(running);
      continue;
    }
    Attached fresh;
    fresh.spec = spec;
    fresh.slot = take_slot();
    next.emplace(spec.id, std::move(fresh));
  }
  for (auto& [id, old] : sources_) {
    detach(old);
    free_slot(old.slot);
  }
  sources_.clear();
  // In plan order: of two spellings of one interface, the earlier one runs.
  for (const SourceSpec& spec : sources) {
    auto found = next.find(spec.id);
    if (found == next.end()) continue;
    Attached& s = found->second;
    if (s.attach.empty()) s.reason = s.slot == kNoSlot ? "more sources and rules than the bpf data path counts (16384)" : attach(s, next);
  }
  sources_ = std::move(next);

  // Rules: slots kept by id, so that counters of unchanged rules go on.
  std::map<std::string, uint32_t> old_slots;
  for (const Installed& r : rules_) old_slots[r.spec.id] = r.slot;
  std::vector<Installed> installed;
  std::map<NsKey, std::map<std::string, tapas_hook>> hooks;  // per namespace, by key bytes
  for (const RuleSpec& spec : rules) {
    Installed r;
    r.spec = spec;
    auto kept = old_slots.find(spec.id);
    if (kept != old_slots.end() && kept->second != kNoSlot) {
      r.slot = kept->second;
      old_slots.erase(kept);
    } else {
      r.slot = take_slot();
    }
    auto source = sources_.find(spec.source_id);
    if (r.slot == kNoSlot) {
      r.reason = "more sources and rules than the bpf data path counts (16384)";
    } else if (source == sources_.end()) {
      r.reason = "rule '" + spec.id + "' names unknown source '" + spec.source_id + "'";
    } else if (spec.vlans.size() > TAPAS_BPF_MAX_VLAN_RANGES) {
      r.reason = "more than " + std::to_string(TAPAS_BPF_MAX_VLAN_RANGES) + " VLAN ranges";
    } else if (source->second.attach.empty() && !source->second.same_as.empty()) {
      r.reason = source->second.reason;  // refused with its source
    } else if (source->second.attach.empty()) {
      r.waiting = true;  // the source's own stats say why
    } else {
      const Attached& s = source->second;
      int target = 0;
      if (!spec.gre_remote.empty()) {
        NetnsIdentity sink_ns = netns_identity(spec.sink_netns);
        if (!sink_ns.ok) r.waiting = true;
        else if (!(sink_ns == s.ns)) r.reason = "the tunnel's underlay is not in the source's network namespace";
        else r.reason = tunnel_for(r, s.ns, target);
        if (!r.reason.empty() && r.reason.rfind("wait:", 0) == 0) {
          r.reason.clear();
          r.waiting = true;
        }
      } else {
        NetnsScope scope(spec.sink_netns);
        // A port or namespace that is missing is the sink's trouble (its stats say so): wait for it.
        if (!scope.ok()) r.waiting = true;
        else if (!(scope.identity() == s.ns)) r.reason = "the tap service port is not in the source's network namespace";
        else if ((target = static_cast<int>(if_nametoindex(spec.sink_ifname.c_str()))) == 0) r.waiting = true;
      }
      r.target = target;
      const bool tunnel = !spec.gre_remote.empty();
      for (const auto& [id, other] : sources_) {
        if (!tunnel && r.reason.empty() && !other.attach.empty() && other.ns == s.ns && other.ifindex == target) {
          r.reason = "destination port '" + spec.sink_ifname + "' is also a mirrored source";
        }
      }
      for (uint32_t direction : {uint32_t{TAPAS_BPF_DIR_IN}, uint32_t{TAPAS_BPF_DIR_OUT}}) {
        if (!r.reason.empty() || r.waiting) break;
        if (!(direction == TAPAS_BPF_DIR_IN ? spec.in : spec.out)) continue;
        tapas_hook& hook = hooks[key_of(s.ns)][hook_key_bytes(s.ifindex, direction)];
        hook.slot = s.slot;
        if (hook.targets >= TAPAS_BPF_MAX_TARGETS) {
          r.reason = "more than " + std::to_string(TAPAS_BPF_MAX_TARGETS) + " rules on one source and direction";
          break;
        }
        tapas_target& t = hook.target[hook.targets++];
        t.ifindex = static_cast<uint32_t>(target);
        t.tunnel = tunnel ? 1 : 0;
        t.slot = r.slot;
        t.vlan_ranges = static_cast<uint16_t>(spec.vlans.size());
        for (size_t i = 0; i < spec.vlans.size(); ++i) {
          t.vlan_lo[i] = spec.vlans[i].first;
          t.vlan_hi[i] = spec.vlans[i].second;
        }
      }
    }
    installed.push_back(std::move(r));
  }
  for (auto& [ns, programs] : programs_) {
    const auto& wanted = hooks[ns];
    std::vector<std::string> keys;
    for (const auto& [key, hook] : wanted) {
      // Replaces the entry in one step: frames see the old rules or the new.
      bpf_map_update_elem(programs.hooks_fd, key.data(), &hook, BPF_ANY);
      keys.push_back(key);
    }
    for (const std::string& key : programs.keys) {
      if (wanted.find(key) == wanted.end()) bpf_map_delete_elem(programs.hooks_fd, key.data());
    }
    programs.keys = std::move(keys);
  }
  for (auto it = tunnels_.begin(); it != tunnels_.end();) {
    bool used = std::any_of(installed.begin(), installed.end(), [&](const Installed& r) {
      return r.spec.id == it->first && r.reason.empty() && !r.waiting && r.target == it->second.ifindex_a;
    });
    if (used) {
      ++it;
      continue;
    }
    drop_tunnel(it->second);
    it = tunnels_.erase(it);
  }
  // The programs of a namespace no source is attached in any more.
  std::set<NsKey> in_use;
  for (const auto& [id, s] : sources_) {
    if (!s.attach.empty()) in_use.insert(key_of(s.ns));
  }
  for (auto it = programs_.begin(); it != programs_.end();) {
    if (in_use.count(it->first) != 0) {
      ++it;
      continue;
    }
    bpf_object__close(it->second.object);
    it = programs_.erase(it);
  }
  for (const auto& [id, slot] : old_slots) free_slot(slot);
  rules_ = std::move(installed);
}

// The rule's veth pair in the source's namespace: kept while its namespace,
// collector, key and interfaces stay the same, else made anew. Returns ""
// (ifindex: the end the clone goes to), "wait: ..." when it is worth trying
// again, or why the rule cannot run.
std::string Loader::tunnel_for(const Installed& rule, const NetnsIdentity& ns, int& ifindex) {
  auto found = tunnels_.find(rule.spec.id);
  if (found != tunnels_.end()) {
    Tunnel& t = found->second;
    if (t.ns == ns && t.netns == rule.spec.sink_netns && t.remote == rule.spec.gre_remote && t.key == rule.spec.gre_key &&
        t.erspan == rule.spec.erspan && t.session == rule.spec.erspan_session && t.index == rule.spec.erspan_index &&
        t.slot == rule.slot && ifindex_in(t.netns, t.name_a) == t.ifindex_a && ifindex_in(t.netns, t.name_b) == t.ifindex_b) {
      ifindex = t.ifindex_a;
      return "";
    }
    drop_tunnel(t);
    tunnels_.erase(found);
  }
  auto programs = programs_.find(key_of(ns));
  if (programs == programs_.end()) return "wait: no programs in the source's namespace";
  NetnsScope scope(rule.spec.sink_netns);
  if (!scope.ok()) return "wait: " + scope.error();
  if (!programs->second.swept) {
    sweep_tunnels();
    programs->second.swept = true;
  }
  Tunnel t;
  t.netns = rule.spec.sink_netns;
  t.ns = scope.identity();
  t.remote = rule.spec.gre_remote;
  t.key = rule.spec.gre_key;
  t.slot = rule.slot;
  t.tunnels_fd = programs->second.tunnels_fd;
  uint32_t local = 0;
  std::string error = local_address_for(t.remote, local);
  if (!error.empty()) return "wait: " + error;
  // Numbers wrap at 1000 (names have 15 characters at most): skip those a kept tunnel still holds.
  for (int tries = 0; tries < 1000; ++tries) {
    const std::string n = std::to_string(next_tunnel_++ % 1000);
    t.name_a = kTunnelPrefix + std::to_string(getpid()) + "a" + n;
    t.name_b = kTunnelPrefix + std::to_string(getpid()) + "b" + n;
    if (std::none_of(tunnels_.begin(), tunnels_.end(), [&](const auto& kept) { return kept.second.name_a == t.name_a; })) break;
  }
  int err = create_veth(t.name_a, t.name_b);
  if (err == -EEXIST) {
    delete_link(static_cast<int>(if_nametoindex(t.name_a.c_str())));
    err = create_veth(t.name_a, t.name_b);
  }
  if (err != 0) return "cannot create the tunnel's veth pair " + t.name_a + ": " + errno_text(-err);
  t.ifindex_a = static_cast<int>(if_nametoindex(t.name_a.c_str()));
  t.ifindex_b = static_cast<int>(if_nametoindex(t.name_b.c_str()));
  auto failed = [&](const std::string& what) {
    drop_tunnel(t);
    return what;
  };
  if (t.ifindex_a == 0 || t.ifindex_b == 0) return failed("the tunnel's veth pair vanished");
  disable_ipv6(t.name_a);
  disable_ipv6(t.name_b);
  for (const std::string& name : {t.name_a, t.name_b}) {
    if (!enable_forwarding(name)) return failed("cannot let " + name + " forward: " + errno_text(errno));
  }
  tapas_tunnel entry{};
  entry.slot = t.slot;
  entry.local = local;
  inet_pton(AF_INET, t.remote.c_str(), &entry.remote);
  entry.key = t.key;
  entry.ifindex_a = static_cast<uint32_t>(t.ifindex_a);
  // The reverse-path filter in effect is the higher of all and the interface's (0 here).
  entry.fragment = read_sysctl("/proc/sys/net/ipv4/conf/all/rp_filter") == 1 ? 0 : 1;
  if (!mac_of(t.name_a, entry.mac_a)) return failed("cannot read the MAC address of " + t.name_a + ": " + errno_text(errno));
  t.erspan = rule.spec.erspan;
  t.session = rule.spec.erspan_session;
  t.index = rule.spec.erspan_index;
  if (t.erspan) {
    auto sequence_key = std::make_tuple(key_of(ns), t.remote, t.session);
    auto known = sequences_.find(sequence_key);
    if (known == sequences_.end()) {
      if (sequences_.size() >= TAPAS_BPF_MAX_TUNNELS) return failed("more ERSPAN tunnels than the bpf data path numbers");
      const uint32_t at = static_cast<uint32_t>(sequences_.size());
      const uint32_t zero = 0;
      bpf_map_update_elem(programs->second.sequences_fd, &at, &zero, BPF_ANY);
      known = sequences_.emplace(sequence_key, at).first;
    }
    entry.erspan = 1;
    entry.session = t.session;
    entry.index = t.index;
    entry.sequence = known->second;
  }
  for (int index : {t.ifindex_a, t.ifindex_b}) {
    uint32_t k = static_cast<uint32_t>(index);
    if (bpf_map_update_elem(t.tunnels_fd, &k, &entry, BPF_ANY) != 0) return failed("cannot fill the tunnels map: " + errno_text(errno));
  }
  for (const std::string& name : {t.name_a, t.name_b}) {
    if ((err = clear_offloads(name)) != 0) return failed("cannot turn off the offloads of " + name + ": " + errno_text(-err));
  }
  t.link_b = bpf_link_create(programs->second.prog_send, t.ifindex_b, static_cast<bpf_attach_type>(kBpfTcxIngress), nullptr);
  if (t.link_b < 0) return failed("cannot attach to the tunnel's veth (tcx): " + errno_text(errno));
  if ((err = set_up(t.ifindex_b)) != 0 || (err = set_up(t.ifindex_a)) != 0) return failed("cannot bring the tunnel's veth pair up: " + errno_text(-err));
  ifindex = t.ifindex_a;
  tunnels_.emplace(rule.spec.id, std::move(t));
  return "";
}

void Loader::drop_tunnel(Tunnel& t) {
  if (t.link_b >= 0) ::close(t.link_b);
  t.link_b = -1;
  for (int index : {t.ifindex_a, t.ifindex_b}) {
    uint32_t k = static_cast<uint32_t>(index);
    if (index != 0 && t.tunnels_fd >= 0) bpf_map_delete_elem(t.tunnels_fd, &k);
  }
  NetnsScope scope(t.netns);
  if (scope.ok() && scope.identity() == t.ns && t.ifindex_a != 0 && ifindex_in("", t.name_a) == t.ifindex_a) delete_link(t.ifindex_a);
  t.ifindex_a = t.ifindex_b = 0;
}

void Loader::read_counters(uint32_t slot, RuleState& into) const {
  std::vector<tapas_counters> per_cpu(static_cast<size_t>(cpus_));
  into.packets = into.bytes = into.errors = into.oversize = into.truncated = into.fragmented = 0;
  if (bpf_map_lookup_elem(counters_fd_, &slot, per_cpu.data()) != 0) return;
  for (const tapas_counters& c : per_cpu) {
    into.packets += c.packets;
    into.bytes += c.bytes;
    into.errors += c.errors;
    into.oversize += c.oversize;
    into.truncated += c.truncated;
    into.fragmented += c.fragmented;
  }
}

void Loader::stats(std::vector<SourceState>& sources, std::vector<RuleState>& rules) const {
  std::lock_guard lock(mutex_);
  if (object_ == nullptr) {
    sources = final_sources_;
    rules = final_rules_;
    return;
  }
  read(sources, rules);
}

void Loader::read(std::vector<SourceState>& sources, std::vector<RuleState>& rules) const {
  sources.clear();
  rules.clear();
  for (const auto& [id, s] : sources_) {
    SourceState state;
    state.id = id;
    state.ok = !s.attach.empty();
    state.reason = s.reason;
    state.attach = s.attach;
    if (object_ != nullptr) {
      RuleState counted;
      read_counters(s.slot, counted);
      state.packets = counted.packets;
      state.bytes = counted.bytes;
    }
    sources.push_back(std::move(state));
  }
  for (const Installed& r : rules_) {
    RuleState state;
    state.id = r.spec.id;
    state.ok = r.reason.empty();
    state.reason = r.reason;
    if (object_ != nullptr) read_counters(r.slot, state);
    rules.push_back(std::move(state));
  }
}

void Loader::close() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (health_.joinable()) health_.join();
  std::lock_guard lock(mutex_);
  if (object_ == nullptr) return;
  // What was counted stays readable after close.
  read(final_sources_, final_rules_);
  for (auto& [id, s] : sources_) detach(s);
  for (auto& [id, t] : tunnels_) drop_tunnel(t);
  tunnels_.clear();
  for (auto& [ns, programs] : programs_) bpf_object__close(programs.object);
  programs_.clear();
  bpf_object__close(object_);
  object_ = nullptr;
  counters_fd_ = -1;
}

}  // namespace tapas::bpf
