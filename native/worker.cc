#include "worker.h"

#include <pthread.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <system_error>

#include "netns.h"

namespace tapas {

namespace {
constexpr int kMaxEvents = 256;
constexpr uint32_t kMaxPasses = 16;
// A round under this many frames is light; after it the worker waits out one
// default block timeout before it looks again.
constexpr size_t kLightRound = 64;
constexpr auto kCoalesceInterval = std::chrono::milliseconds(1);

void wake(int fd) {
  uint64_t one = 1;
  (void)!write(fd, &one, sizeof one);
}

// Best effort: without CAP_SYS_NICE the worker keeps the priority it has.
void raise_priority(WorkerPriority priority) {
  if (priority == WorkerPriority::Realtime) {
    sched_param param{};
    param.sched_priority = 1;
    if (pthread_setschedparam(pthread_self(), SCHED_FIFO, &param) == 0) return;
  }
  if (priority != WorkerPriority::Normal) setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), -10);
}
}  // namespace

// Throws std::runtime_error (descriptors or threads exhausted); the addon turns
// that into a JavaScript error. Nothing is left open when it throws.
Worker::Worker(WorkerPriority priority) : priority_(priority) {
  auto fail = [this](const std::string& what) {
    const std::string text = what + ": " + errno_text(errno);
    if (wake_fd_ >= 0) close(wake_fd_);
    if (epoll_fd_ >= 0) close(epoll_fd_);
    throw std::runtime_error(text);
  };
  epoll_fd_ = epoll_create1(EPOLL_CLOEXEC);
  if (epoll_fd_ < 0) fail("epoll_create1");
  wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0) fail("eventfd");
  epoll_event event{};
  event.events = EPOLLIN;
  event.data.ptr = nullptr;  // the mailbox
  if (epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &event) != 0) fail("epoll_ctl");
  try {
    thread_ = std::thread([this] {
      // Named, so that top -H and the idle benchmark tell the engine's threads from Node's.
      pthread_setname_np(pthread_self(), "tapas-worker");
      guarded_run();
    });
  } catch (const std::system_error& error) {
    errno = error.code().value();
    fail("cannot start a worker thread");
  }
}

// An exception must not end the process from a thread: the worker stops, and
// install() from then on applies updates itself so that the engine never
// waits for it.
void Worker::guarded_run() {
  try {
    run();
  } catch (...) {
    std::lock_guard<std::mutex> lock(mailbox_mu_);
    stopping_ = true;
    if (pending_ != nullptr) {
      try {
        apply_update(*pending_);
      } catch (...) {
      }
      pending_ = nullptr;
    }
    mailbox_cv_.notify_all();
  }
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
  wake(wake_fd_);
  thread_.join();
}

void Worker::install(WorkerUpdate& update) {
  std::unique_lock<std::mutex> lock(mailbox_mu_);
  if (!thread_.joinable() || stopping_) {
    apply_update(update);  // nothing runs: no thread to hand over to
    return;
  }
  pending_ = &update;
  wake(wake_fd_);
  mailbox_cv_.wait(lock, [&] { return pending_ == nullptr; });
}

void Worker::run() {
  raise_priority(priority_);
  epoll_event events[kMaxEvents];
  // Edge-triggered: epoll reports a ring once per retired block (or frame)
  // instead of polling every ready ring again on each wait, which with
  // hundreds of quiet rings cost more than the frames did. The price is that
  // a ring still holding data after a drain must be remembered here.
  std::vector<SourceLane*> ready;
  for (;;) {
    // Asleep with nothing queued: every block the kernel handed over has been
    // read (a block handed over meanwhile wakes the wait at once).
    if (ready.empty()) asleep_.store(true, std::memory_order_release);
    int count = epoll_wait(epoll_fd_, events, kMaxEvents, ready.empty() ? -1 : 0);
    asleep_.store(false, std::memory_order_release);
    const auto woke = std::chrono::steady_clock::now();
    bool mailbox = false;
    for (int i = 0; i < count; ++i) {
      auto* source = static_cast<SourceLane*>(events[i].data.ptr);
      if (source == nullptr) {
        mailbox = true;
        continue;
      }
      if (events[i].events & EPOLLERR) {
        // A packet socket reports its link going down as an error; clear it.
        // The engine's health check tells down from removed.
        int error = 0;
        socklen_t length = sizeof error;
        getsockopt(source->ring->fd(), SOL_SOCKET, SO_ERROR, &error, &length);
      }
      if (!source->queued) {
        source->queued = true;
        ready.push_back(source);
      }
    }
    if (mailbox) {
      uint64_t ignored;
      (void)!read(wake_fd_, &ignored, sizeof ignored);
      std::lock_guard<std::mutex> lock(mailbox_mu_);
      if (stopping_) return;
      if (pending_ != nullptr) {
        // The lanes queued so far may be ones the update removes: look at
        // every ring that remains once, edges missed meanwhile included.
        for (SourceLane* source : ready) source->queued = false;
        apply_update(*pending_);
        pending_ = nullptr;
        mailbox_cv_.notify_all();
        ready = sources_;
        for (SourceLane* source : ready) source->queued = true;
      }
    }
    const size_t frames = drain(ready);
    // Many quiet sources each retire a block with a frame or two, and each
    // such block would cost a wake-up of its own: after a light round, wait
    // out a block timeout so that the next round collects them together. A
    // single source retires at most one block per timeout anyway.
    if (coalesce_wakeups_ && frames < kLightRound) std::this_thread::sleep_until(woke + kCoalesceInterval);
  }
}

void Worker::apply_update(WorkerUpdate& update) {
  for (auto& [lane, ring] : update.rings) {
    if (lane->ring) {
      epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, lane->ring->fd(), nullptr);
      if (lane->ring->per_frame()) --per_frame_rings_;
      std::erase(sources_, lane);
    }
    std::swap(lane->ring, ring);
    if (lane->ring) {
      if (lane->ring->per_frame()) ++per_frame_rings_;
      sources_.push_back(lane);
      epoll_event event{};
      event.events = EPOLLIN | EPOLLET;
      event.data.ptr = lane;
      epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, lane->ring->fd(), &event);
    }
  }
  coalesce_wakeups_ = sources_.size() > 1 && per_frame_rings_ == 0;
  for (auto& [lane, sink] : update.sinks) std::swap(lane->sink, sink);
  for (RuleAssignment& rule : update.rules) {
    if (!(rule.lane->spec == rule.spec)) rule.lane->since_sampled = 0;
    rule.lane->spec = std::move(rule.spec);
    rule.lane->sink = rule.sink;
    rule.lane->filter = std::move(rule.filter);
  }
  for (auto& [lane, rules] : update.rule_lists) lane->rules = std::move(rules);
}

size_t Worker::drain(std::vector<SourceLane*>& ready) {
  size_t frames = 0;
  std::vector<SourceLane*>& held = held_batches_;
  // One batch from every ready source per pass, one flush per pass: copies of
  // all the sources feeding a sink go out in the same send. Bounded, so that
  // busy sources cannot keep the worker from its mailbox; what is still
  // ready then stays in `ready` for the next round.
  for (uint32_t pass = 0; pass < kMaxPasses && !ready.empty(); ++pass) {
    held.clear();
    for (SourceLane* source : ready) {
      RxRing& ring = *source->ring;
      if (!ring.batch_ready()) {
        source->queued = false;
        continue;
      }
      frames += ring.read_batch([&](const Frame& frame) { dispatch(*source, frame); });
      held.push_back(source);
    }
    // The queued copies point into the rings: send them before the kernel may reuse them.
    flush_dirty_sinks();
    for (SourceLane* source : held) source->ring->release_batch();
    ready.swap(held);
  }
  return frames;
}

const uint8_t* Worker::wire_bytes(const Frame& frame) {
  if (!frame.has_stripped_tag || frame.captured_length < kMacAddressesLength) return frame.data;
  // The kernel moved the tag into ring metadata; filters such as `vlan 10`
  // look for it where it was on the wire, after the MAC addresses.
  scratch_.resize(frame.captured_length + kVlanTagLength);
  uint8_t* out = scratch_.data();
  std::memcpy(out, frame.data, kMacAddressesLength);
  out[12] = static_cast<uint8_t>(frame.stripped_tpid >> 8);
  out[13] = static_cast<uint8_t>(frame.stripped_tpid);
  out[14] = static_cast<uint8_t>(frame.stripped_tci >> 8);
  out[15] = static_cast<uint8_t>(frame.stripped_tci);
  std::memcpy(out + kMacAddressesLength + kVlanTagLength, frame.data + kMacAddressesLength,
              frame.captured_length - kMacAddressesLength);
  return out;
}

void Worker::dispatch(SourceLane& source, const Frame& frame) {
  source.counters.packets.add(1);
  source.counters.bytes.add(frame.wire_length + (frame.has_stripped_tag ? kVlanTagLength : 0));
  if (frame.captured_length < frame.wire_length) source.counters.truncated.add(1);
  ++frame_sequence_;
  int vlan_id = -2;  // computed once, and only if a rule filters on it
  const uint8_t* wire = nullptr;  // the frame with its tag, made once, and only if a rule has a filter
  // Rules of one expression share its program: it runs once per frame.
  const PacketFilter* last_filter = nullptr;
  bool last_verdict = false;
  for (RuleLane* rule : source.rules) {
    if (!direction_matches(rule->spec.direction, frame.outgoing)) continue;
    if (!rule->spec.vlans.empty()) {
      if (vlan_id == -2) vlan_id = frame.vlan_id();
      if (!vlan_matches(rule->spec.vlans, vlan_id)) continue;
    }
    // The rule's stages: filter, then sample, then snaplen (docs/engine.md).
    if (const PacketFilter* filter = rule->filter.get()) {
      if (filter != last_filter) {
        if (wire == nullptr) wire = wire_bytes(frame);
        const uint32_t tag = frame.has_stripped_tag && frame.captured_length >= kMacAddressesLength ? kVlanTagLength : 0;
        last_verdict = filter->matches(wire, frame.captured_length + tag, frame.wire_length + tag);
        last_filter = filter;
      }
      if (!last_verdict) {
        rule->counters.filtered.add(1);
        continue;
      }
    }
    if (rule->spec.sample_rate > 1) {
      // Deterministic: the first frame of every sample_rate that reach this
      // stage, counted per rule (and per worker), independent of other rules.
      const bool take = rule->since_sampled == 0;
      if (++rule->since_sampled >= rule->spec.sample_rate) rule->since_sampled = 0;
      if (!take) {
        rule->counters.sampled_out.add(1);
        continue;
      }
    }
    Frame copy = frame;
    bool cut = false;
    if (rule->spec.snaplen != 0 && frame.original_length() > rule->spec.snaplen) {
      // The copy is the first snaplen bytes of the frame as on the wire (tag
      // included); its wire length stays, so a tunnel knows it was cut (ERSPAN T).
      const uint32_t tag = frame.original_length() - frame.captured_length;
      copy.captured_length = rule->spec.snaplen - tag;
      cut = true;
    }
    SinkLane& sink = *rule->sink;
    if (!sink.sink) {
      rule->counters.unavailable.add(1);
      continue;
    }
    // One copy per distinct length per sink: rules that select the frame
    // identically (same frame, same bytes kept) into one sink send it once.
    const uint32_t length = copy.original_length();
    if (sink.last_frame != frame_sequence_) {
      sink.last_frame = frame_sequence_;
      sink.copies = 0;
    }
    bool queued = false;
    for (int i = 0; i < sink.copies; ++i) queued = queued || sink.copy_lengths[i] == length;
    if (!queued) {
      if (sink.sink->enqueue(copy) == Enqueued::Oversize) {
        rule->counters.oversize.add(1);
        continue;
      }
      // More distinct lengths than remembered are each sent: a copy too many, never one too few.
      if (sink.copies < SinkLane::kCopyLengths) sink.copy_lengths[sink.copies++] = length;
      if (!sink.dirty) {
        sink.dirty = true;
        dirty_sinks_.push_back(&sink);
      }
    }
    if (cut) rule->counters.truncated.add(1);
    rule->counters.packets.add(1);
    rule->counters.bytes.add(length);
  }
}

void Worker::flush_dirty_sinks() {
  for (SinkLane* sink : dirty_sinks_) {
    sink->sink->flush();
    sink->dirty = false;
  }
  dirty_sinks_.clear();
}

}  // namespace tapas
