#include "link_events.h"

#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

namespace tapas {

namespace {

// Room for a burst of link messages (each a kilobyte or two) between two
// polls; a socket that overflows anyway only costs one look at everything.
constexpr int kReceiveBuffer = 4 << 20;
// The largest link message: a few kilobytes, more with many VFs.
constexpr size_t kMessageRoom = 64 * 1024;

std::string attribute_string(const rtattr* attribute) {
  const char* text = static_cast<const char*>(RTA_DATA(attribute));
  size_t length = RTA_PAYLOAD(attribute);
  while (length > 0 && text[length - 1] == '\0') --length;
  return std::string(text, length);
}

// One RTM_NEWLINK or RTM_DELLINK: its ifindex, its name and alternative names.
void take_link_message(const nlmsghdr* header, LinkChanges& changes) {
  if (header->nlmsg_len < NLMSG_LENGTH(sizeof(ifinfomsg))) return;
  const auto* info = static_cast<const ifinfomsg*>(NLMSG_DATA(header));
  if (info->ifi_index > 0) changes.ifindexes.insert(info->ifi_index);
  int left = static_cast<int>(header->nlmsg_len - NLMSG_LENGTH(sizeof(ifinfomsg)));
  for (const rtattr* attribute = IFLA_RTA(info); RTA_OK(attribute, left); attribute = RTA_NEXT(attribute, left)) {
    const unsigned short type = attribute->rta_type & NLA_TYPE_MASK;
    if (type == IFLA_IFNAME) {
      changes.names.insert(attribute_string(attribute));
    } else if (type == IFLA_PROP_LIST) {
      int nested_left = static_cast<int>(RTA_PAYLOAD(attribute));
      for (const rtattr* nested = static_cast<const rtattr*>(RTA_DATA(attribute)); RTA_OK(nested, nested_left);
           nested = RTA_NEXT(nested, nested_left)) {
        if ((nested->rta_type & NLA_TYPE_MASK) == IFLA_ALT_IFNAME) changes.names.insert(attribute_string(nested));
      }
    }
  }
}

// Reads everything the socket holds now (it never blocks). Returns false when
// something may have been lost (the socket overflowed, or failed).
bool drain(int fd, LinkChanges& changes, std::vector<char>& buffer) {
  bool complete = true;
  for (;;) {
    const ssize_t received = recv(fd, buffer.data(), buffer.size(), MSG_DONTWAIT | MSG_TRUNC);
    if (received < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return complete;
      if (errno == ENOBUFS) {  // messages were dropped; the socket goes on
        complete = false;
        continue;
      }
      return false;
    }
    if (received == 0) return complete;
    if (static_cast<size_t>(received) > buffer.size()) {  // a message too large for the buffer: cut, so unknown
      complete = false;
      continue;
    }
    int left = static_cast<int>(received);
    for (const auto* header = reinterpret_cast<const nlmsghdr*>(buffer.data()); NLMSG_OK(header, left);
         header = NLMSG_NEXT(header, left)) {
      if (header->nlmsg_type == RTM_NEWLINK || header->nlmsg_type == RTM_DELLINK) take_link_message(header, changes);
    }
  }
}

}  // namespace

void LinkChanges::merge(const LinkChanges& other) {
  all = all || other.all;
  if (all) {
    ifindexes.clear();
    names.clear();
    return;
  }
  ifindexes.insert(other.ifindexes.begin(), other.ifindexes.end());
  names.insert(other.names.begin(), other.names.end());
}

void merge(LinkChangeSet& into, const LinkChangeSet& from) {
  for (const auto& [netns, changes] : from) into[netns].merge(changes);
}

LinkEvents::LinkEvents() : epoll_fd_(epoll_create1(EPOLL_CLOEXEC)) {}

LinkEvents::~LinkEvents() {
  close();
  if (epoll_fd_ >= 0) ::close(epoll_fd_);
}

void LinkEvents::close_space(Space& space) {
  if (space.fd >= 0) ::close(space.fd);  // closing takes it out of the epoll set
  space.fd = -1;
  space.identity = NetnsIdentity{};
  space.polled = false;
}

void LinkEvents::open_space(const std::string& netns, Space& space) {
  close_space(space);
  NetnsScope scope(netns);  // fails fast on a FIFO, a device or another kind of namespace
  if (!scope.ok()) return;  // no socket: the callers look for themselves
  int fd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_ROUTE);
  if (fd < 0) return;
  int size = kReceiveBuffer;
  if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof size) != 0) {
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
  }
  sockaddr_nl address{};
  address.nl_family = AF_NETLINK;
  address.nl_groups = RTMGRP_LINK;
  if (bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    ::close(fd);
    return;
  }
  epoll_event event{};
  event.events = EPOLLIN;
  event.data.fd = fd;
  if (epoll_fd_ < 0 || epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, fd, &event) != 0) {
    ::close(fd);
    return;
  }
  space.fd = fd;
  space.identity = scope.identity();
}

void LinkEvents::follow(const std::set<std::string>& namespaces) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = spaces_.begin(); it != spaces_.end();) {
    if (namespaces.count(it->first) != 0) {
      ++it;
      continue;
    }
    close_space(it->second);
    it = spaces_.erase(it);
  }
  for (const std::string& netns : namespaces) {
    auto [it, added] = spaces_.try_emplace(netns);
    if (added) open_space(netns, it->second);
  }
}

void LinkEvents::check(NamespaceLook& look) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [netns, space] : spaces_) {
    const NetnsIdentity& now = look_at(look, netns);
    if (space.fd >= 0 && now.ok && now == space.identity) continue;
    // Gone, replaced, or never had a socket: a new one where there is a namespace now.
    if (space.fd >= 0 || now.ok) open_space(netns, space);
  }
}

LinkChangeSet LinkEvents::poll() {
  std::lock_guard<std::mutex> lock(mu_);
  LinkChangeSet changes;
  if (epoll_fd_ < 0) return changes;
  // Only the sockets with something to read, and those never polled.
  std::set<int> ready;
  std::vector<epoll_event> events(spaces_.size() + 1);
  int count;
  do count = epoll_wait(epoll_fd_, events.data(), static_cast<int>(events.size()), 0);
  while (count < 0 && errno == EINTR);
  for (int i = 0; i < count; ++i) ready.insert(events[i].data.fd);
  std::vector<char> buffer;
  for (auto& [netns, space] : spaces_) {
    if (space.fd < 0 || (space.polled && ready.count(space.fd) == 0)) continue;
    if (buffer.empty()) buffer.resize(kMessageRoom);
    LinkChanges found;
    const bool complete = drain(space.fd, found, buffer);
    // What happened before a socket's first poll is unknown to it.
    if (!complete || !space.polled) found.all = true;
    space.polled = true;
    if (found.all || !found.ifindexes.empty() || !found.names.empty()) changes[netns].merge(found);
  }
  return changes;
}

bool LinkEvents::covers(const std::string& netns, const NetnsIdentity& identity) const {
  return identity.ok && covered(netns) == identity;
}

NetnsIdentity LinkEvents::covered(const std::string& netns) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = spaces_.find(netns);
  return it != spaces_.end() && it->second.fd >= 0 && it->second.polled ? it->second.identity : NetnsIdentity{};
}

void LinkEvents::close() {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& [netns, space] : spaces_) close_space(space);
  spaces_.clear();
}

}  // namespace tapas
