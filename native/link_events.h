// Word from the kernel of which interfaces changed, per network namespace:
// one rtnetlink socket per namespace, subscribed to RTMGRP_LINK, tells of
// every link that is created, deleted, renamed, moved to or from the
// namespace, or changes its flags, carrier, MTU, address or alternative
// names. The engine reads an interface's state again (the ioctls and socket
// calls it always used) only when word came of it, instead of reading every
// interface on every tick: an idle host costs nothing.
//
// What the sockets say is only ever a reason to look: the state itself is
// read as before. A socket that cannot keep up (ENOBUFS), a socket just made
// (what happened before it existed is unknown) and a namespace whose file
// now names another namespace all count as "anything may have changed".
#pragma once

#include <map>
#include <mutex>
#include <set>
#include <string>
#include <unordered_set>

#include "iface_watch.h"
#include "netns.h"

namespace tapas {

// What changed in one namespace since the last poll.
struct LinkChanges {
  bool all = false;  // anything may have changed: look at everything
  std::unordered_set<int> ifindexes;
  std::unordered_set<std::string> names;  // names and alternative names, as the messages give them now
  // An interface last seen with this ifindex (0: not found) under this name.
  bool touches(int ifindex, const std::string& ifname) const {
    return all || (ifindex > 0 && ifindexes.count(ifindex) != 0) || names.count(ifname) != 0;
  }
  void merge(const LinkChanges& other);
};

// By namespace as the plan spells it ("" is the engine's own).
using LinkChangeSet = std::map<std::string, LinkChanges>;
void merge(LinkChangeSet& into, const LinkChangeSet& from);

class LinkEvents {
 public:
  LinkEvents();
  ~LinkEvents();
  LinkEvents(const LinkEvents&) = delete;
  LinkEvents& operator=(const LinkEvents&) = delete;

  // Follows exactly these namespaces from now on: makes a socket in each new
  // one (entering it the way every namespace is entered, never blocking) and
  // closes the others'.
  void follow(const std::set<std::string>& namespaces);
  // With what this look saw of each namespace file: a namespace whose file is
  // gone or names another namespace than its socket lives in gets a new
  // socket, or none while there is no namespace of that name.
  void check(NamespaceLook& look);
  // What changed since the last poll, in every followed namespace with a
  // socket (a socket's first poll says `all`). Never blocks.
  LinkChangeSet poll();
  // Whether every change in netns since the last poll before this call is in
  // the polls: a socket there, polled at least once, in the namespace with
  // this identity. Otherwise the caller must look for itself.
  bool covers(const std::string& netns, const NetnsIdentity& identity) const;
  // The identity covers() compares with; not ok when nothing is covered there.
  NetnsIdentity covered(const std::string& netns) const;
  // Closes every socket (the descriptor below stays, for as long as this lives).
  void close();
  // Readable (poll) when a socket has something to say: to wait for it. -1 when it could not be made.
  int fd() const { return epoll_fd_; }

 private:
  struct Space {
    int fd = -1;
    NetnsIdentity identity;  // the namespace the socket lives in
    bool polled = false;
  };
  void open_space(const std::string& netns, Space& space);
  static void close_space(Space& space);

  mutable std::mutex mu_;
  std::map<std::string, Space> spaces_;
  int epoll_fd_ = -1;  // every socket: poll reads only those with something to say
};

}  // namespace tapas
