// Observing the interfaces the plan lists under `interfaces`: present, up,
// carrier, MAC, MTU, ifindex. The control plane wants to know the state of
// every port it manages, mirrored or not; asking the data path keeps that off
// the JavaScript thread and away from packet sockets (each close of one waits
// for an RCU grace period, ~12 ms a port).
//
// One AF_UNIX datagram socket per network namespace, cached, answers the
// SIOCGIF* ioctls for every interface in that namespace (an ioctl on any
// socket looks interfaces up in the socket's namespace). A socket pins its
// namespace: each refresh stats the namespace's file and lets go of the
// socket once the name is gone or names another namespace, so a deleted
// namespace is not kept alive by the watch.
//
// An entry that is the same interface as an earlier one (the same namespace,
// by identity, and the same ifindex: another spelling of one port) is
// reported present, with same_as naming the earlier entry.
#pragma once

#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "netns.h"
#include "plan.h"
#include "stats.h"

namespace tapas {

class LinkEvents;
struct LinkChanges;
using LinkChangeSet = std::map<std::string, struct LinkChanges>;

// What each namespace file (by netns as spelled) was at one look: stat'ed
// once per look however many users name it (the watch, the engine's check
// that sockets still live in the namespace their file names).
using NamespaceLook = std::map<std::string, NetnsIdentity>;
const NetnsIdentity& look_at(NamespaceLook& look, const std::string& netns);

class InterfaceWatch {
 public:
  InterfaceWatch() = default;
  ~InterfaceWatch();
  InterfaceWatch(const InterfaceWatch&) = delete;
  InterfaceWatch& operator=(const InterfaceWatch&) = delete;

  // Watches exactly these from now on, and observes each before returning.
  // refused: entries the plan check refused, by id; they are reported, not looked at.
  void watch(const std::vector<InterfaceSpec>& specs, const std::map<std::string, std::string>& refused);
  // Observes the watched interfaces again (the engine's health thread),
  // leaving in look what it saw of each namespace file: those that changes
  // (the link events since the last refresh) touch, and every one whose
  // namespace the events do not cover; every one when changes is null.
  void refresh(NamespaceLook& look, const LinkChangeSet* changes, const LinkEvents& events);
  // Lets go of every socket; the last observations stay readable.
  void close();
  // The last observations, in plan order. Never waits for an observation in progress.
  std::vector<InterfaceStat> snapshot() const;

 private:
  struct Namespace {
    int fd = -1;            // the datagram socket inside it
    NetnsIdentity identity;  // of the namespace file when the socket was made
    std::string error;       // why there is no socket
    bool deleted = false;    // it had a socket, and the namespace file went away since
    bool made = false;       // (re)made, or failed to be, in this observe: every entry in it is looked at
  };
  struct Entry {
    InterfaceSpec spec;
    std::string refused;
  };
  // With work_mu_ held; changes and events null: every entry.
  void observe(NamespaceLook& look, const LinkChangeSet* changes, const LinkEvents* events);
  Namespace& namespace_for(const std::string& netns, NamespaceLook& look);

  std::mutex work_mu_;  // one watch() or refresh() at a time
  std::vector<Entry> entries_;
  std::map<std::string, Namespace> namespaces_;  // by netns as the plan names it
  // What each entry was at its last look (parallel to entries_): kept while nothing touches it.
  std::vector<InterfaceStat> observed_;
  std::vector<std::pair<NetnsIdentity, int>> identities_;  // of each present entry: which interface it is

  mutable std::mutex results_mu_;
  std::vector<InterfaceStat> results_;
};

}  // namespace tapas
