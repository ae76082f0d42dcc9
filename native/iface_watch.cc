#include "iface_watch.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <map>
#include <set>
#include <tuple>

#include "iface.h"
#include "link_events.h"

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
  observe(look, nullptr, nullptr);
}

void InterfaceWatch::refresh(NamespaceLook& look, const LinkChangeSet* changes, const LinkEvents& events) {
  std::lock_guard<std::mutex> work(work_mu_);
  observe(look, changes, changes == nullptr ? nullptr : &events);
}

void InterfaceWatch::close() {
  std::lock_guard<std::mutex> work(work_mu_);
  for (auto& [netns, space] : namespaces_) close_socket(space.fd);
  namespaces_.clear();
  entries_.clear();
  observed_.clear();
  identities_.clear();
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
  space.made = true;
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

void InterfaceWatch::observe(NamespaceLook& look, const LinkChangeSet* changes, const LinkEvents* events) {
  // A new list of entries (watch) is looked at whole.
  if (observed_.size() != entries_.size()) {
    changes = nullptr;
    events = nullptr;
  }
  // Nothing looked at again: the published results stand (and cost no copy).
  bool looked = changes == nullptr;
  observed_.resize(entries_.size());
  identities_.resize(entries_.size());
  std::set<std::string> used;
  std::map<std::string, bool> covered;  // by namespace: asked once per observe
  for (size_t i = 0; i < entries_.size(); ++i) {
    const Entry& entry = entries_[i];
    InterfaceStat& stat = observed_[i];
    if (!entry.refused.empty()) {
      stat = InterfaceStat{};
      stat.id = entry.spec.id;
      stat.reason = entry.refused;
      identities_[i] = {};
      continue;
    }
    used.insert(entry.spec.netns);
    Namespace& space = namespace_for(entry.spec.netns, look);
    // Kept as it was while no word came of it from a namespace the events cover.
    auto known = events == nullptr ? covered.end() : covered.find(entry.spec.netns);
    if (events != nullptr && known == covered.end()) {
      known = covered.emplace(entry.spec.netns, space.fd >= 0 && !space.made && events->covers(entry.spec.netns, space.identity)).first;
    }
    if (events != nullptr && known->second) {
      auto it = changes->find(entry.spec.netns);
      if (it == changes->end() || !it->second.touches(stat.ifindex, entry.spec.ifname)) continue;
    }
    looked = true;
    stat = InterfaceStat{};
    stat.id = entry.spec.id;
    identities_[i] = {};
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
    if (space.identity.ok) identities_[i] = {space.identity, info.ifindex};
  }
  // Sockets in namespaces no longer watched would keep those namespaces alive.
  for (auto it = namespaces_.begin(); it != namespaces_.end();) {
    if (used.count(it->first) != 0) {
      it->second.made = false;
      ++it;
      continue;
    }
    close_socket(it->second.fd);
    it = namespaces_.erase(it);
  }
  if (!looked) return;
  std::vector<InterfaceStat> results = observed_;
  // The first entry of each interface; a later one names it.
  std::map<std::tuple<dev_t, ino_t, int>, size_t> first;
  for (size_t i = 0; i < results.size(); ++i) {
    results[i].same_as.clear();
    const auto& [identity, ifindex] = identities_[i];
    if (ifindex == 0) continue;
    auto [it, added] = first.try_emplace({identity.dev, identity.ino, ifindex}, i);
    if (!added) results[i].same_as = results[it->second].id;
  }
  std::lock_guard<std::mutex> lock(results_mu_);
  results_.swap(results);
}

}  // namespace tapas
