#include "iface_watch.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <set>

#include "iface.h"

namespace tapas {

namespace {

void close_socket(int& fd) {
  if (fd >= 0) ::close(fd);
  fd = -1;
}

std::string in_namespace(const std::string& netns) {
  return netns.empty() ? "" : " in network namespace '" + netns + "'";
}

}  // namespace

const NetnsIdentity& look_at(NamespaceLook& look, const std::string& netns) {
  auto it = look.find(netns);
  if (it == look.end()) it = look.emplace(netns, netns_identity(netns)).first;
  return it->second;
}

InterfaceWatch::~InterfaceWatch() { close(); }

void InterfaceWatch::watch(const std::vector<InterfaceSpec>& specs, const std::map<std::string, std::string>& refused) {
  std::lock_guard<std::mutex> work(work_mu_);
  entries_.clear();
  for (const InterfaceSpec& spec : specs) {
    auto it = refused.find(spec.id);
    entries_.push_back({spec, it == refused.end() ? "" : it->second});
  }
  NamespaceLook look;
  observe(look);
}

void InterfaceWatch::refresh(NamespaceLook& look) {
  std::lock_guard<std::mutex> work(work_mu_);
  observe(look);
}

void InterfaceWatch::close() {
  std::lock_guard<std::mutex> work(work_mu_);
  for (auto& [netns, space] : namespaces_) close_socket(space.fd);
  namespaces_.clear();
  entries_.clear();
}

std::vector<InterfaceStat> InterfaceWatch::snapshot() const {
  std::lock_guard<std::mutex> results(results_mu_);
  return results_;
}

InterfaceWatch::Namespace& InterfaceWatch::namespace_for(const std::string& netns, NamespaceLook& look) {
  Namespace& space = namespaces_[netns];
  // stat only: cheap, and it never blocks, whatever the file is.
  const NetnsIdentity now = look_at(look, netns);
  if (now.ok && now == space.identity && (space.fd >= 0 || !space.error.empty())) return space;
  // Gone, replaced (a namespace re-created under the same name) or never looked at.
  if (space.fd >= 0 && !now.ok) space.deleted = true;
  close_socket(space.fd);
  space.identity = now;
  space.error.clear();
  NetnsScope scope(netns);  // fails fast on a FIFO, a device or another kind of namespace
  if (!scope.ok()) {
    // Until a namespace of that name is created again, say what happened to the one it named.
    space.error = space.deleted && !now.ok ? "network namespace '" + netns + "' was deleted" : scope.error();
    // Look again next time: the namespace may be created later.
    if (!now.ok) space.identity = NetnsIdentity{};
    return space;
  }
  space.deleted = false;
  // What the socket is made in, whatever the file names by now.
  space.identity = scope.identity();
  // AF_UNIX: needs no privilege and no protocol; its ioctls reach the
  // namespace's interfaces all the same.
  space.fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (space.fd < 0) {
    space.error = "cannot open a socket" + in_namespace(netns) + ": " + errno_text(errno);
    // A socket may be had later (descriptors freed): try again next time.
    space.identity = NetnsIdentity{};
  }
  return space;
}

void InterfaceWatch::observe(NamespaceLook& look) {
  std::vector<InterfaceStat> results;
  results.reserve(entries_.size());
  // Of each present entry: which interface it is, to tell one port spelled twice.
  std::vector<std::pair<NetnsIdentity, int>> identities(entries_.size());
  std::set<std::string> used;
  for (const Entry& entry : entries_) {
    InterfaceStat& stat = results.emplace_back();
    stat.id = entry.spec.id;
    if (!entry.refused.empty()) {
      stat.reason = entry.refused;
      continue;
    }
    used.insert(entry.spec.netns);
    Namespace& space = namespace_for(entry.spec.netns, look);
    if (space.fd < 0) {
      stat.reason = space.error;
      continue;
    }
    InterfaceInfo info;
    std::string error = query_interface(space.fd, entry.spec.ifname, info);
    if (!error.empty()) {
      stat.reason = error + in_namespace(entry.spec.netns);
      continue;
    }
    stat.present = true;
    stat.up = info.up;
    stat.running = info.running;
    stat.mac = info.mac;
    stat.mtu = info.mtu;
    stat.ifindex = info.ifindex;
    if (space.identity.ok) identities[results.size() - 1] = {space.identity, info.ifindex};
  }
  for (size_t i = 0; i < results.size(); ++i) {
    if (identities[i].second == 0) continue;
    for (size_t j = 0; j < i; ++j) {
      if (identities[j] == identities[i]) {
        results[i].same_as = results[j].id;
        break;
      }
    }
  }
  // Sockets in namespaces no longer watched would keep those namespaces alive.
  for (auto it = namespaces_.begin(); it != namespaces_.end();) {
    if (used.count(it->first) != 0) {
      ++it;
      continue;
    }
    close_socket(it->second.fd);
    it = namespaces_.erase(it);
  }
  std::lock_guard<std::mutex> lock(results_mu_);
  results_.swap(results);
}

}  // namespace tapas
