#include "worker.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "netns.h"

namespace tapas {

namespace {
// Often enough that a vanished interface shows within a fraction of a second,
// rarely enough to cost nothing next to the traffic.
constexpr auto kHealthInterval = std::chrono::milliseconds(200);
constexpr auto kRetryInterval = std::chrono::milliseconds(500);
constexpr int kMaxEvents = 64;

std::string where(const std::string& ifname, const std::string& netns) {
  return "'" + ifname + "'" + (netns.empty() ? "" : " in network namespace '" + netns + "'");
}
}  // namespace

Worker::Worker() {
  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (epoll_fd_ < 0 || wake_fd_ < 0) throw std::runtime_error("cannot create worker: " + errno_text(errno));
  epoll_event event{};
  event.events = EPOLLIN;
  event.data.ptr = nullptr;  // the mailbox
  epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &event);
  next_health_check_ = Clock::now() + kHealthInterval;
  thread_ = std::thread([this] { run(); });
}

Worker::~Worker() {
  stop();
  close(wake_fd_);
  close(epoll_fd_);
}

void Worker::stop() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(mailbox_mu_);
    stopping_ = true;
  }
  uint64_t one = 1;
  (void)!write(wake_fd_, &one, sizeof one);
  thread_.join();
}

void Worker::apply(const WorkerPlan& plan) {
  std::unique_lock<std::mutex> lock(mailbox_mu_);
  pending_ = &plan;
  uint64_t target = applied_generation_ + 1;
  uint64_t one = 1;
  (void)!write(wake_fd_, &one, sizeof one);
  mailbox_cv_.wait(lock, [&] { return applied_generation_ >= target; });
}

void Worker::run() {
  epoll_event events[kMaxEvents];
  for (;;) {
    int timeout = static_cast<int>(
        std::chrono::duration_cast<std::chrono::milliseconds>(next_health_check_ - Clock::now()).count());
    int count = epoll_wait(epoll_fd_, events, kMaxEvents, timeout < 0 ? 0 : timeout);
    for (int i = 0; i < count; ++i) {
      auto* source = static_cast<SourceSlot*>(events[i].data.ptr);
      if (source == nullptr) {
        uint64_t drained;
        (void)!read(wake_fd_, &drained, sizeof drained);
        std::unique_lock<std::mutex> lock(mailbox_mu_);
        if (stopping_) {
          lock.unlock();
          for (auto& [id, slot] : sources_) {
            if (slot->ring) take_ring_statistics(*slot);
          }
          return;
        }
        if (pending_ != nullptr) {
          reconcile(*pending_);
          pending_ = nullptr;
          ++applied_generation_;
          mailbox_cv_.notify_all();
        }
        // Sources after the mailbox may have been closed by reconcile; poll again.
        break;
      }
      if (events[i].events & EPOLLERR) {
        // A packet socket reports its interface going down once; read the
        // error so that level-triggered epoll stops repeating it.
        int error = 0;
        socklen_t length = sizeof error;
        getsockopt(source->ring->fd(), SOL_SOCKET, SO_ERROR, &error, &length);
        next_health_check_ = Clock::now();
      }
      drain(*source);
    }
    if (Clock::now() >= next_health_check_) {
      check_health();
      next_health_check_ = Clock::now() + kHealthInterval;
    }
  }
}

void Worker::drain(SourceSlot& source) {
  RxRing& ring = *source.ring;
  // Bounded, so that one busy source cannot starve the others.
  for (uint32_t blocks = 0; blocks < source.spec.ring.block_count && ring.block_ready(); ++blocks) {
    ring.consume_block([&](const Frame& frame) { dispatch(source, frame); });
    flush_dirty_sinks();
  }
}

void Worker::dispatch(SourceSlot& source, const Frame& frame) {
  source.counters.packets.add(1);
  source.counters.bytes.add(frame.wire_length + (frame.has_stripped_tag ? kVlanTagLength : 0));
  if (frame.captured_length < frame.wire_length) source.counters.truncated.add(1);
  ++frame_sequence_;
  int vlan_id = -2;  // computed once, and only if a rule filters on it
  for (RuleSlot* rule : source.rules) {
    if (!direction_matches(rule->spec.direction, frame.outgoing)) continue;
    if (!rule->spec.vlans.empty()) {
      if (vlan_id == -2) vlan_id = frame.vlan_id();
      if (!vlan_matches(rule->spec.vlans, vlan_id)) continue;
    }
    SinkSlot& sink = *rule->sink;
    if (!sink.sink) {
      rule->counters.unavailable.add(1);
      continue;
    }
    if (sink.last_frame != frame_sequence_) {
      if (sink.sink->enqueue(frame) == Enqueued::Oversize) {
        rule->counters.oversize.add(1);
        continue;
      }
      sink.last_frame = frame_sequence_;
      if (!sink.dirty) {
        sink.dirty = true;
        dirty_sinks_.push_back(&sink);
      }
    }
    rule->counters.packets.add(1);
    rule->counters.bytes.add(frame.original_length());
  }
}

void Worker::flush_dirty_sinks() {
  for (SinkSlot* sink : dirty_sinks_) {
    sink->sink->flush();
    sink->dirty = false;
  }
  dirty_sinks_.clear();
}

void Worker::open_source(SourceSlot& source) {
  auto ring = std::make_unique<RxRing>();
  std::string error = ring->open(source.spec, source.fanout_group);
  if (!error.empty()) {
    source.health.set_failed(error);
    source.retry_at = Clock::now() + kRetryInterval;
    return;
  }
  epoll_event event{};
  event.events = EPOLLIN;
  event.data.ptr = &source;
  epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, ring->fd(), &event);
  source.ring = std::move(ring);
  source.health.set_ok();
}

void Worker::close_source(SourceSlot& source, std::string reason) {
  if (source.ring) {
    take_ring_statistics(source);
    epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, source.ring->fd(), nullptr);
    source.ring.reset();
  }
  source.health.set_failed(std::move(reason));
  source.retry_at = Clock::now() + kRetryInterval;
}

void Worker::open_sink(SinkSlot& sink) {
  std::unique_ptr<Sink> opened = make_sink(sink.spec, sink.counters);
  std::string error = opened->open();
  if (!error.empty()) {
    sink.sink.reset();
    sink.health.set_failed(error);
    sink.retry_at = Clock::now() + kRetryInterval;
    return;
  }
  sink.sink = std::move(opened);
  sink.health.set_ok();
}

void Worker::take_ring_statistics(SourceSlot& source) {
  RingStatistics stats = source.ring->take_statistics();
  source.counters.ring_drops.add(stats.drops);
  source.counters.ring_freezes.add(stats.freezes);
}

void Worker::reconcile(const WorkerPlan& desired) {
  std::lock_guard<std::mutex> lock(registry_mu_);
  const Plan& plan = desired.plan;

  std::map<std::string, std::unique_ptr<SinkSlot>> sinks;
  for (const SinkSpec& spec : plan.sinks) {
    auto existing = sinks_.find(spec.id);
    std::unique_ptr<SinkSlot> slot;
    if (existing != sinks_.end()) slot = std::move(existing->second);
    if (!slot) slot = std::make_unique<SinkSlot>();
    if (!slot->sink || !(slot->spec == spec)) {
      slot->spec = spec;
      open_sink(*slot);
    }
    sinks.emplace(spec.id, std::move(slot));
  }
  sinks_.swap(sinks);  // what is left in `sinks` was dropped from the plan and closes here

  std::map<std::string, std::unique_ptr<SourceSlot>> sources;
  for (const SourceSpec& spec : plan.sources) {
    auto group = desired.fanout_groups.find(spec.id);
    uint16_t fanout_group = group == desired.fanout_groups.end() ? 0 : group->second;
    auto existing = sources_.find(spec.id);
    std::unique_ptr<SourceSlot> slot;
    if (existing != sources_.end()) slot = std::move(existing->second);
    if (!slot) slot = std::make_unique<SourceSlot>();
    if (!(slot->spec == spec) || slot->fanout_group != fanout_group) {
      if (slot->ring) close_source(*slot, "reopening");
      slot->spec = spec;
      slot->fanout_group = fanout_group;
    }
    if (!slot->ring) open_source(*slot);
    slot->rules.clear();
    sources.emplace(spec.id, std::move(slot));
  }
  for (auto& [id, dropped] : sources_) {
    if (dropped && dropped->ring) epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, dropped->ring->fd(), nullptr);
  }
  sources_.swap(sources);

  std::map<std::string, std::unique_ptr<RuleSlot>> rules;
  for (const RuleSpec& spec : plan.rules) {
    auto existing = rules_.find(spec.id);
    std::unique_ptr<RuleSlot> slot;
    if (existing != rules_.end()) slot = std::move(existing->second);
    if (!slot) slot = std::make_unique<RuleSlot>();
    slot->spec = spec;
    slot->sink = sinks_.at(spec.sink_id).get();
    sources_.at(spec.source_id)->rules.push_back(slot.get());
    rules.emplace(spec.id, std::move(slot));
  }
  rules_.swap(rules);
}

void Worker::check_health() {
  const auto now = Clock::now();
  std::lock_guard<std::mutex> lock(registry_mu_);
  for (auto& [id, source] : sources_) {
    if (!source->ring) {
      if (now >= source->retry_at) open_source(*source);
      continue;
    }
    take_ring_statistics(*source);
    switch (source->ring->link_state()) {
      case LinkState::Removed:
        close_source(*source, "interface " + where(source->spec.ifname, source->spec.netns) + " was removed");
        break;
      case LinkState::Down:
        // The kernel re-attaches the socket when the link comes back up.
        source->health.set_failed("interface " + where(source->spec.ifname, source->spec.netns) + " is down");
        break;
      case LinkState::Up:
        source->health.set_ok();
        break;
    }
  }
  for (auto& [id, sink] : sinks_) {
    if (!sink->sink) {
      if (now >= sink->retry_at) open_sink(*sink);
      continue;
    }
    switch (sink->sink->link_state()) {
      case LinkState::Removed:
        sink->sink.reset();
        sink->health.set_failed("interface " + where(sink->spec.ifname, sink->spec.netns) + " was removed");
        sink->retry_at = now + kRetryInterval;
        break;
      case LinkState::Down:
        sink->health.set_failed("interface " + where(sink->spec.ifname, sink->spec.netns) + " is down");
        break;
      case LinkState::Up:
        sink->health.set_ok();
        break;
    }
  }
}

template <typename Stat>
static Stat& entry(std::vector<Stat>& list, const std::string& id) {
  for (Stat& stat : list) {
    if (stat.id == id) return stat;
  }
  list.emplace_back();
  list.back().id = id;
  list.back().ok = true;
  return list.back();
}

void Worker::collect(EngineStats& stats) const {
  std::lock_guard<std::mutex> lock(registry_mu_);
  for (const auto& [id, source] : sources_) {
    SourceStat& stat = entry(stats.sources, id);
    if (!source->health.ok() && stat.ok) {
      stat.ok = false;
      stat.reason = source->health.reason();
    }
    stat.packets += source->counters.packets.get();
    stat.bytes += source->counters.bytes.get();
    stat.ring_drops += source->counters.ring_drops.get();
    stat.ring_freezes += source->counters.ring_freezes.get();
    stat.truncated += source->counters.truncated.get();
  }
  for (const auto& [id, sink] : sinks_) {
    SinkStat& stat = entry(stats.sinks, id);
    if (!sink->health.ok() && stat.ok) {
      stat.ok = false;
      stat.reason = sink->health.reason();
    }
    stat.packets += sink->counters.packets.get();
    stat.bytes += sink->counters.bytes.get();
    stat.errors += sink->counters.errors.get();
  }
  for (const auto& [id, rule] : rules_) {
    RuleStat* stat = nullptr;
    for (RuleStat& existing : stats.rules) {
      if (existing.id == id) stat = &existing;
    }
    if (stat == nullptr) {
      stats.rules.emplace_back();
      stat = &stats.rules.back();
      stat->id = id;
    }
    stat->packets += rule->counters.packets.get();
    stat->bytes += rule->counters.bytes.get();
    stat->oversize += rule->counters.oversize.get();
    stat->unavailable += rule->counters.unavailable.get();
  }
}

}  // namespace tapas
