#include "engine.h"

#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <functional>
#include <set>
#include <stdexcept>
#include <system_error>

namespace tapas {

namespace {

// The health thread's periodic tick: the plan's `interfaces` fresh enough for a
// control plane that reports port state (within a second); with the same stat
// of each namespace file, the check that each source's and sink's namespace
// still is the one its file names (a deleted namespace is let go of within
// about this long); retries; ring statistics. What is read again of
// interfaces, sources and sinks is only what the kernel's link events
// (LinkEvents) touched: an idle host costs a stat per namespace, not a few
// system calls per interface. Link events themselves wake the thread at once
// (kEventDelay later, to take a burst together).
constexpr auto kHealthInterval = std::chrono::milliseconds(500);
constexpr auto kEventDelay = std::chrono::milliseconds(20);
constexpr auto kRetryInterval = std::chrono::milliseconds(500);
// Now and then every interface, source and sink is read again, events or not:
// a safety net that costs little (a few system calls per entry every 10 s).
constexpr auto kSweepInterval = std::chrono::seconds(10);
// Opening or closing a packet socket waits for an RCU grace period; done side
// by side, many of them share one.
constexpr size_t kMaxParallelSocketCalls = 32;

// Every TPACKET_V3 ring runs a kernel timer that fires once per block timeout,
// traffic or not, and each firing with a frame waiting retires a block and
// wakes the worker. Past a few dozen quiet sources those firings cost more
// CPU than the frames (3.5x per packet at 256 sources and 1 ms; at 1,000
// sources and 8 ms, 70,000 timer softirqs a second took a fifth of this
// 2-core host while nothing was mirrored), so sources whose plan leaves the
// timeout open share a budget of about 32 firings per millisecond: 1 ms up to
// 32 sources, 8 ms at 256, 32 ms at 1,000, at most kLongestMs. That is the
// added latency of a frame that does not fill a block (tcpdump's own is up to
// 1 s).
//
// A ring's timeout is fixed when it is opened, and flows come one by one: so
// the count is the larger of the sources and the interfaces the plan watches
// (the host's ports, registered before their flows), not the sources alone.
uint32_t default_block_timeout_ms(size_t sources) {
  constexpr size_t kFiringsPerMs = 32;
  constexpr size_t kLongestMs = 100;
  return static_cast<uint32_t>(std::clamp<size_t>((sources + kFiringsPerMs - 1) / kFiringsPerMs, 1, kLongestMs));
}

// Runs the jobs on up to kMaxParallelSocketCalls threads, the calling one
// included. Never throws: a thread that cannot be started leaves its share to
// the others, and a job's exception ends that job only (jobs report their
// own errors).
void run_parallel(std::vector<std::function<void()>>& jobs) {
  std::atomic<size_t> next{0};
  auto work = [&] {
    for (size_t i = next++; i < jobs.size(); i = next++) {
      try {
        jobs[i]();
      } catch (...) {
      }
    }
  };
  std::vector<std::thread> threads;
  const size_t helpers = std::min(jobs.size(), kMaxParallelSocketCalls);
  for (size_t t = 1; t < helpers; ++t) {
    try {
      threads.emplace_back(work);
    } catch (...) {
      break;  // no more threads to be had: fewer do the work
    }
  }
  work();
  for (std::thread& thread : threads) thread.join();
}

// A job's exception as a reason (the text is all a caller can act on).
std::string exception_reason(const char* doing) {
  try {
    throw;
  } catch (const std::exception& error) {
    return std::string(doing) + ": " + error.what();
  } catch (...) {
    return std::string(doing) + ": an unknown error";
  }
}

std::string where(const std::string& ifname, const std::string& netns) {
  return "interface '" + ifname + "'" + (netns.empty() ? "" : " in network namespace '" + netns + "'");
}

std::string deleted(const std::string& netns) { return "network namespace '" + netns + "' was deleted"; }

template <typename Stat>
Stat& entry(std::vector<Stat>& list, const std::string& id) {
  list.emplace_back();
  list.back().id = id;
  return list.back();
}

}  // namespace

Engine::Engine(const EngineOptions& options)
    : ring_(options.ring), next_fanout_group_(static_cast<uint16_t>(getpid() * 131)) {
  const std::string ring_error = check_ring(ring_);
  if (!ring_error.empty()) throw std::invalid_argument(ring_error);
  unsigned count = options.workers == 0 ? 1 : options.workers;
  for (unsigned i = 0; i < count; ++i) workers_.push_back(std::make_unique<Worker>(options.priority));
  wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0) throw std::runtime_error(std::string("cannot start the engine: eventfd: ") + std::strerror(errno));
  try {
    health_thread_ = std::thread([this] {
      pthread_setname_np(pthread_self(), "tapas-health");
      health_loop();
    });
  } catch (const std::system_error& error) {
    ::close(wake_fd_);
    throw std::runtime_error(std::string("cannot start the health thread: ") + error.what());
  }
}

Engine::~Engine() {
  // A destructor must not throw: whatever close() meets, the object goes.
  try {
    close();
  } catch (...) {
  }
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

template <typename Slot>
std::unique_ptr<Slot> Engine::new_slot() const {
  auto slot = std::make_unique<Slot>();
  for (size_t w = 0; w < workers_.size(); ++w) slot->lanes.push_back(std::make_unique<typename Slot::Lane>());
  return slot;
}

namespace {

// Opens one endpoint per slot and worker, side by side. A slot is handed to
// the workers only if every one of its lanes opened; otherwise it is marked
// failed, to be retried, and what did open is closed again.
template <typename Slot, typename Endpoint, typename Open, typename HandOver>
void open_lanes(const std::vector<Slot*>& slots, size_t workers, Open open, HandOver hand_over) {
  std::vector<std::unique_ptr<Endpoint>> opened(slots.size() * workers);
  std::vector<std::string> errors(opened.size());
  std::vector<std::function<void()>> jobs;
  for (size_t i = 0; i < opened.size(); ++i) {
    jobs.emplace_back([&, i] {
      try {
        errors[i] = open(*slots[i / workers], i % workers, opened[i]);
      } catch (...) {
        errors[i] = exception_reason("cannot open");
      }
      if (errors[i].empty() && !opened[i]) errors[i] = "cannot open: nothing was opened";
    });
  }
  run_parallel(jobs);

  std::vector<std::function<void()>> closes;
  for (size_t s = 0; s < slots.size(); ++s) {
    Slot& slot = *slots[s];
    std::string error;
    for (size_t w = 0; w < workers && error.empty(); ++w) error = errors[s * workers + w];
    if (!error.empty()) {
      for (size_t w = 0; w < workers; ++w) closes.emplace_back([&endpoint = opened[s * workers + w]] { endpoint.reset(); });
      // Still no namespace of that name: it was deleted, which says more than "does not exist".
      if (!slot.netns_gone || netns_identity(slot.spec.netns).ok) {
        slot.netns_gone = false;
        slot.health.set_failed(error);
      }
      slot.retry_at = Clock::now() + kRetryInterval;
      continue;
    }
    for (size_t w = 0; w < workers; ++w) hand_over(w, *slot.lanes[w], std::move(opened[s * workers + w]));
    slot.open = true;
    slot.netns_gone = false;
    slot.verified = false;  // the next health check reads its link state
    slot.health.set_ok();
  }
  run_parallel(closes);
}

}  // namespace

void Engine::open_sources(const std::vector<SourceSlot*>& slots, Updates& updates) {
  open_lanes<SourceSlot, RxRing>(
      slots, workers_.size(),
      [this](const SourceSlot& slot, size_t, std::unique_ptr<RxRing>& ring) {
        RingSpec spec = ring_;
        spec.block_timeout_ms = slot.block_timeout_ms.load(std::memory_order_relaxed);
        ring = std::make_unique<RxRing>();
        return ring->open(slot.spec, spec, slot.fanout_group);
      },
      [&](size_t worker, SourceLane& lane, std::unique_ptr<RxRing> ring) {
        updates[worker].rings.emplace_back(&lane, std::move(ring));
      });
}

void Engine::open_sinks(const std::vector<SinkSlot*>& slots, Updates& updates) {
  open_lanes<SinkSlot, Sink>(
      slots, workers_.size(),
      [](SinkSlot& slot, size_t worker, std::unique_ptr<Sink>& sink) -> std::string {
        sink = make_sink(slot.spec, slot.lanes[worker]->counters);
        return sink ? sink->open() : std::string("unsupported sink kind");
      },
      [&](size_t worker, SinkLane& lane, std::unique_ptr<Sink> sink) {
        updates[worker].sinks.emplace_back(&lane, std::move(sink));
      });
}

void Engine::unplug_source(SourceSlot& slot, Updates& updates) {
  if (!slot.open) return;
  for (size_t w = 0; w < workers_.size(); ++w) {
    SourceLane& lane = *slot.lanes[w];
    RingStatistics last = lane.ring->take_statistics();
    lane.counters.capture_drops.add(last.drops);
    lane.counters.ring_freezes.add(last.freezes);
    updates[w].rings.emplace_back(&lane, nullptr);
  }
  slot.open = false;
}

void Engine::unplug_sink(SinkSlot& slot, Updates& updates) {
  if (!slot.open) return;
  for (size_t w = 0; w < workers_.size(); ++w) updates[w].sinks.emplace_back(slot.lanes[w].get(), nullptr);
  slot.open = false;
}

void Engine::install(Updates& updates) {
  for (size_t w = 0; w < workers_.size(); ++w) workers_[w]->install(updates[w]);
  std::vector<std::function<void()>> closes;
  for (WorkerUpdate& update : updates) {
    for (auto& [lane, ring] : update.rings) {
      if (ring) closes.emplace_back([&ring = ring] { ring.reset(); });
    }
    for (auto& [lane, sink] : update.sinks) {
      if (sink) closes.emplace_back([&sink = sink] { sink.reset(); });
    }
  }
  run_parallel(closes);
}

std::string Engine::apply(const Plan& plan) {
  std::lock_guard<std::mutex> control(control_mu_);
  if (closed_) return "the engine is closed";
  plan_ = plan;
  verdict_ = check_plan(plan_, identities());
  next_identity_check_ = Clock::now() + kRetryInterval;
  run_plan();
  // The first observation, before apply returns: stats() has them at once.
  interfaces_.watch(plan_.interfaces, verdict_.interfaces);
  // Word of link changes in every namespace the plan names (a new socket's
  // first poll says "anything may have changed": nothing between is missed).
  std::set<std::string> namespaces;
  for (const SourceSpec& spec : plan_.sources) namespaces.insert(spec.netns);
  for (const SinkSpec& spec : plan_.sinks) {
    if (spec.kind == SinkKind::Port) namespaces.insert(spec.netns);
  }
  for (const InterfaceSpec& spec : plan_.interfaces) namespaces.insert(spec.netns);
  link_events_.follow(namespaces);
  return "";
}

void Engine::run_plan() {
  const Plan& plan = plan_;
  const PlanVerdict& verdict = verdict_;
  auto refusal = [](const std::map<std::string, std::string>& refused, const std::string& id) {
    auto it = refused.find(id);
    return it == refused.end() ? std::string() : it->second;
  };

  Updates updates(workers_.size());
  std::map<std::string, std::unique_ptr<SourceSlot>> created_sources;
  std::map<std::string, std::unique_ptr<SinkSlot>> created_sinks;
  std::map<std::string, std::unique_ptr<RuleSlot>> created_rules;
  // stats() reads why a slot is refused while this runs (apply, or the health thread).
  auto set_refused = [this](auto& slot, std::string reason) {
    if (slot.refused == reason) return;
    std::lock_guard<std::mutex> registry(registry_mu_);
    slot.refused = std::move(reason);
  };
  auto find = [](auto& existing, auto& created, const std::string& id, auto make) {
    auto it = existing.find(id);
    if (it != existing.end()) return it->second.get();
    auto& slot = created[id];
    if (!slot) slot = make();
    return slot.get();
  };

  // A refused entry keeps a slot, so that stats() reports it with its
  // reason; it is closed if it ran before, and never opened.
  std::vector<SinkSlot*> sinks_to_open;
  std::map<std::string, SinkSlot*> sink_by_id;
  for (const SinkSpec& spec : plan.sinks) {
    if (sink_by_id.count(spec.id) != 0) continue;  // a duplicate id: refused with the first
    SinkSlot* slot = find(sinks_, created_sinks, spec.id, [&] { return new_slot<SinkSlot>(); });
    sink_by_id[spec.id] = slot;
    set_refused(*slot, refusal(verdict.sinks, spec.id));
    if (!(slot->spec == spec)) slot->netns_gone = false;
    if (!slot->refused.empty()) {
      unplug_sink(*slot, updates);
      slot->spec = spec;
      slot->netns_gone = false;
      slot->health.set_failed(slot->refused);
      continue;
    }
    if (!(slot->spec == spec)) unplug_sink(*slot, updates);
    slot->spec = spec;
    if (!slot->open) sinks_to_open.push_back(slot);
  }
  size_t runnable_sources = 0;
  for (const SourceSpec& spec : plan.sources) runnable_sources += verdict.sources.count(spec.id) == 0 ? 1 : 0;
  const size_t expected_sources = std::max(runnable_sources, plan.interfaces.size());
  std::vector<SourceSlot*> sources_to_open;
  std::map<std::string, SourceSlot*> source_by_id;
  for (const SourceSpec& spec : plan.sources) {
    if (source_by_id.count(spec.id) != 0) continue;
    SourceSlot* slot = find(sources_, created_sources, spec.id, [&] {
      auto made = new_slot<SourceSlot>();
      // With several workers, each opens the source in one fanout group.
      if (workers_.size() > 1) {
        do made->fanout_group = ++next_fanout_group_;
        while (made->fanout_group == 0);
      }
      return made;
    });
    source_by_id[spec.id] = slot;
    set_refused(*slot, refusal(verdict.sources, spec.id));
    if (!(slot->spec == spec)) slot->netns_gone = false;
    if (!slot->refused.empty()) {
      unplug_source(*slot, updates);
      slot->spec = spec;
      slot->netns_gone = false;
      slot->health.set_failed(slot->refused);
      continue;
    }
    if (!(slot->spec == spec)) unplug_source(*slot, updates);
    slot->spec = spec;
    if (!slot->open) {
      // Decided once per opening by apply; a re-open after the interface returns keeps it.
      slot->block_timeout_ms.store(ring_.version == 2             ? 0
                                   : ring_.block_timeout_ms != 0 ? ring_.block_timeout_ms
                                                                 : default_block_timeout_ms(expected_sources),
                                   std::memory_order_relaxed);
      sources_to_open.push_back(slot);
    }
  }
  for (auto& [id, slot] : sources_) {
    if (source_by_id.count(id) == 0) unplug_source(*slot, updates);
  }
  for (auto& [id, slot] : sinks_) {
    if (sink_by_id.count(id) == 0) unplug_sink(*slot, updates);
  }

  // Every source's rule list is replaced, refused sources' with an empty one.
  std::map<SourceSlot*, std::vector<std::vector<RuleLane*>>> rule_lists;
  for (auto& [id, slot] : source_by_id) rule_lists[slot].resize(workers_.size());
  std::map<std::string, RuleSlot*> rule_by_id;
  for (const RuleSpec& spec : plan.rules) {
    if (rule_by_id.count(spec.id) != 0) continue;
    RuleSlot* slot = find(rules_, created_rules, spec.id, [&] { return new_slot<RuleSlot>(); });
    rule_by_id[spec.id] = slot;
    set_refused(*slot, refusal(verdict.rules, spec.id));
    if (!slot->refused.empty()) continue;  // in no source's list: the workers never see it
    SourceSlot* source = source_by_id.at(spec.source_id);
    SinkSlot* sink = sink_by_id.at(spec.sink_id);
    // The plan check compiled it (a rule whose filter does not compile is refused): from the cache.
    std::shared_ptr<const PacketFilter> filter = spec.filter.empty() ? nullptr : compile_filter(spec.filter).filter;
    for (size_t w = 0; w < workers_.size(); ++w) {
      updates[w].rules.push_back({slot->lanes[w].get(), spec, sink->lanes[w].get(), filter});
      rule_lists[source][w].push_back(slot->lanes[w].get());
    }
  }
  for (auto& [source, lists] : rule_lists) {
    for (size_t w = 0; w < workers_.size(); ++w) updates[w].rule_lists.emplace_back(source->lanes[w].get(), std::move(lists[w]));
  }

  open_sinks(sinks_to_open, updates);
  open_sources(sources_to_open, updates);
  install(updates);

  // Workers no longer see anything left out of the plan: swap the maps and let it go.
  std::map<std::string, std::unique_ptr<SourceSlot>> sources;
  std::map<std::string, std::unique_ptr<SinkSlot>> sinks;
  std::map<std::string, std::unique_ptr<RuleSlot>> rules;
  {
    std::lock_guard<std::mutex> registry(registry_mu_);
    auto take = [](auto& existing, auto& created, const std::string& id) {
      auto it = existing.find(id);
      return it != existing.end() ? std::move(it->second) : std::move(created.at(id));
    };
    for (const auto& [id, slot] : source_by_id) sources[id] = take(sources_, created_sources, id);
    for (const auto& [id, slot] : sink_by_id) sinks[id] = take(sinks_, created_sinks, id);
    for (const auto& [id, slot] : rule_by_id) rules[id] = take(rules_, created_rules, id);
    sources_.swap(sources);
    sinks_.swap(sinks);
    rules_.swap(rules);
  }
}

PlanIdentities Engine::identities() const {
  PlanIdentities identities;
  identities.sources.resize(plan_.sources.size());
  identities.sinks.resize(plan_.sinks.size());
  std::vector<std::pair<std::string, std::string>> names;
  std::vector<InterfaceIdentity*> unknown;
  auto known = [](InterfaceIdentity& identity, const std::string& ifname, const std::string& netns,
                  const NetnsIdentity& opened_in, int ifindex) {
    identity.netns = opened_in;
    identity.netns_key = netns_key(netns);
    identity.ifname = ifname;
    identity.ifindex = ifindex;
  };
  for (size_t i = 0; i < plan_.sources.size(); ++i) {
    const SourceSpec& spec = plan_.sources[i];
    auto it = sources_.find(spec.id);
    // Open, it is what it was opened on: the health check closes it once its interface or namespace goes.
    if (it != sources_.end() && it->second->open && it->second->spec == spec) {
      const RxRing& ring = *it->second->lanes[0]->ring;
      known(identities.sources[i], spec.ifname, spec.netns, ring.netns_identity(), ring.ifindex());
      continue;
    }
    names.emplace_back(spec.ifname, spec.netns);
    unknown.push_back(&identities.sources[i]);
  }
  for (size_t i = 0; i < plan_.sinks.size(); ++i) {
    const SinkSpec& spec = plan_.sinks[i];
    if (spec.kind != SinkKind::Port) continue;  // no interface to be
    auto it = sinks_.find(spec.id);
    if (it != sinks_.end() && it->second->open && it->second->spec == spec) {
      const Sink& sink = *it->second->lanes[0]->sink;
      known(identities.sinks[i], spec.ifname, spec.netns, sink.netns_identity(), sink.ifindex());
      continue;
    }
    names.emplace_back(spec.ifname, spec.netns);
    unknown.push_back(&identities.sinks[i]);
  }
  std::vector<InterfaceIdentity> found = resolve_interfaces(names);
  for (size_t k = 0; k < found.size(); ++k) *unknown[k] = std::move(found[k]);
  return identities;
}

void Engine::health_loop() {
  Clock::time_point next_periodic = Clock::now() + kHealthInterval;
  Clock::time_point next_sweep = Clock::now() + kSweepInterval;
  auto milliseconds_until = [](Clock::time_point at) {
    return static_cast<int>(std::max<int64_t>(0, std::chrono::ceil<std::chrono::milliseconds>(at - Clock::now()).count()));
  };
  for (;;) {
    // Asleep until the periodic tick, a link event, or close().
    pollfd waits[2] = {{wake_fd_, POLLIN, 0}, {link_events_.fd(), POLLIN, 0}};
    const int ready = poll(waits, 2, milliseconds_until(next_periodic));
    if (stopping_.load()) return;
    const bool periodic = Clock::now() >= next_periodic;
    if (!periodic) {
      if (ready <= 0 || (waits[1].revents & POLLIN) == 0) continue;
      // A burst of link events (a link going down sends several) is taken together.
      pollfd stop = {wake_fd_, POLLIN, 0};
      poll(&stop, 1, static_cast<int>(kEventDelay.count()));
      if (stopping_.load()) return;
    }
    // An exception must not end the process from this thread: the next tick tries again.
    try {
      health_tick(periodic, next_sweep);
    } catch (...) {
      // Whatever the events said may not have been acted on: look at everything next time.
      next_sweep = Clock::now();
    }
    if (periodic) next_periodic = Clock::now() + kHealthInterval;
  }
}

void Engine::health_tick(bool periodic, Clock::time_point& next_sweep) {
  const LinkChangeSet changes = link_events_.poll();
  // Interfaces first and without control_mu_: a long apply must not make them stale.
  NamespaceLook look;
  const bool sweep = periodic && Clock::now() >= next_sweep;
  // A namespace file that names another namespace now: a new socket, whose first poll says "everything".
  if (periodic) link_events_.check(look);
  interfaces_.refresh(look, sweep ? nullptr : &changes, link_events_);
  if (sweep) next_sweep = Clock::now() + kSweepInterval;
  std::lock_guard<std::mutex> control(control_mu_);
  if (closed_) return;
  check_health(periodic ? &look : nullptr, changes, sweep);
}

bool Engine::look_again(bool verified, const std::string& netns, const NetnsIdentity& identity, int ifindex,
                        const std::string& ifname, const LinkChangeSet& changes, bool sweep,
                        std::map<std::string, NetnsIdentity>& covered) const {
  if (sweep || !verified) return true;
  auto known = covered.find(netns);
  if (known == covered.end()) known = covered.emplace(netns, link_events_.covered(netns)).first;
  if (!identity.ok || !(known->second == identity)) return true;
  auto it = changes.find(netns);
  return it != changes.end() && it->second.touches(ifindex, ifname);
}

void Engine::check_health(NamespaceLook* look, const LinkChangeSet& changes, bool sweep) {
  const auto now = Clock::now();
  // What each namespace file is now (stat only, never blocks), once per tick however many slots name it.
  NamespaceLook own_look;
  NamespaceLook& namespaces = look != nullptr ? *look : own_look;
  auto namespace_now = [&](const std::string& netns) -> const NetnsIdentity& { return look_at(namespaces, netns); };
  // A failed slot is opened again once its retry time has come; one whose
  // namespace was deleted waits for a namespace of that name.
  auto due = [&](auto& slot) {
    if (!slot.refused.empty() || slot.open || now < slot.retry_at) return false;
    if (slot.netns_gone && !namespace_now(slot.spec.netns).ok) {
      slot.retry_at = now + kRetryInterval;
      return false;
    }
    return true;
  };
  std::vector<SourceSlot*> sources_to_open;
  std::vector<SinkSlot*> sinks_to_open;
  for (auto& [id, slot] : sources_) {
    if (due(*slot)) sources_to_open.push_back(slot.get());
  }
  for (auto& [id, slot] : sinks_) {
    if (due(*slot)) sinks_to_open.push_back(slot.get());
  }

  // Before anything is opened again (an interface or namespace came back),
  // and now and then while an entry is refused as the same interface as
  // another, look again at what each entry is: a spelling that named nothing
  // may now name an interface another entry runs on, and a refusal may lift.
  if (!sources_to_open.empty() || !sinks_to_open.empty() || (verdict_.by_identity && now >= next_identity_check_)) {
    next_identity_check_ = now + kRetryInterval;
    PlanVerdict verdict = check_plan(plan_, identities());
    if (!(verdict == verdict_)) {
      verdict_ = std::move(verdict);
      run_plan();  // closes what is refused now, opens what is not
      return;
    }
  }

  Updates updates(workers_.size());
  std::map<std::string, NetnsIdentity> covered;
  std::vector<bool> worker_asleep(workers_.size());
  for (size_t w = 0; w < workers_.size(); ++w) worker_asleep[w] = workers_[w]->asleep();
  for (auto& [id, slot] : sources_) {
    if (!slot->refused.empty() || !slot->open) continue;
    for (size_t w = 0; w < slot->lanes.size(); ++w) {
      auto& lane = slot->lanes[w];
      // The kernel drops a frame (and freezes a V3 queue) only when the ring
      // is full: frames came, so the worker read some since the last look, or
      // it is stuck with the ring full and the block it reads next handed
      // over. That block is looked at on the periodic ticks only, and not
      // while the worker sleeps (then it has read every block it was given):
      // a page of each of a thousand idle rings was most of an idle check.
      const uint64_t packets = lane->counters.packets.get();
      const bool may_hold_frames = look != nullptr && !(w < worker_asleep.size() && worker_asleep[w]) && lane->ring->holds_frames();
      if (!sweep && packets == lane->packets_at_statistics && !may_hold_frames) continue;
      lane->packets_at_statistics = packets;
      RingStatistics stats = lane->ring->take_statistics();
      lane->counters.capture_drops.add(stats.drops);
      lane->counters.ring_freezes.add(stats.freezes);
    }
    // A socket keeps its namespace, and every interface in it, alive: once
    // the namespace file is gone (ip netns del) or names another namespace,
    // let go, so that the kernel can free them. (On the ticks that refresh
    // the interfaces, with what they saw: no stat of its own.)
    if (look != nullptr && !slot->spec.netns.empty()) {
      const NetnsIdentity& current = namespace_now(slot->spec.netns);
      const bool same = current.ok && std::all_of(slot->lanes.begin(), slot->lanes.end(), [&](const auto& lane) {
        return lane->ring->netns_identity() == current;
      });
      if (!same) {
        unplug_source(*slot, updates);
        slot->health.set_failed(deleted(slot->spec.netns));
        slot->netns_gone = true;
        slot->retry_at = now + kRetryInterval;
        continue;
      }
    }
    const RxRing& ring = *slot->lanes[0]->ring;
    if (!look_again(slot->verified, slot->spec.netns, ring.netns_identity(), ring.ifindex(), slot->spec.ifname, changes, sweep,
                    covered)) {
      continue;
    }
    slot->verified = true;
    switch (ring.link_state()) {
      case LinkState::Removed:
        unplug_source(*slot, updates);
        slot->health.set_failed(where(slot->spec.ifname, slot->spec.netns) + " was removed");
        slot->retry_at = now + kRetryInterval;
        break;
      case LinkState::Down:
        // The kernel re-attaches the socket when the link comes back up.
        slot->health.set_failed(where(slot->spec.ifname, slot->spec.netns) + " is down");
        break;
      case LinkState::Up:
        slot->health.set_ok();
        break;
    }
  }
  for (auto& [id, slot] : sinks_) {
    if (!slot->refused.empty() || !slot->open) continue;
    if (look != nullptr && !slot->spec.netns.empty()) {
      const NetnsIdentity& current = namespace_now(slot->spec.netns);
      const bool same = current.ok && std::all_of(slot->lanes.begin(), slot->lanes.end(), [&](const auto& lane) {
        return lane->sink->netns_identity() == current;
      });
      if (!same) {
        unplug_sink(*slot, updates);
        slot->health.set_failed(deleted(slot->spec.netns));
        slot->netns_gone = true;
        slot->retry_at = now + kRetryInterval;
        continue;
      }
    }
    const std::string name = slot->spec.kind == SinkKind::Port   ? where(slot->spec.ifname, slot->spec.netns)
                             : slot->spec.kind == SinkKind::File ? "the file '" + slot->spec.file.path + "'"
                                                                 : "the route to " + slot->spec.remote_ip;
    const Sink& sink = *slot->lanes[0]->sink;
    // A tunnel's state costs nothing to read; a port's is read on word of a change to its interface.
    if (slot->spec.kind == SinkKind::Port &&
        !look_again(slot->verified, slot->spec.netns, sink.netns_identity(), sink.ifindex(), slot->spec.ifname, changes, sweep,
                    covered)) {
      continue;
    }
    slot->verified = true;
    switch (slot->lanes[0]->sink->link_state()) {
      case LinkState::Removed:
        unplug_sink(*slot, updates);
        slot->health.set_failed(name + (slot->spec.kind == SinkKind::Port ? " was removed" : " is gone"));
        slot->retry_at = now + kRetryInterval;
        break;
      case LinkState::Down:
        slot->health.set_failed(name + " is down");
        break;
      case LinkState::Up:
        slot->health.set_ok();
        break;
    }
  }
  open_sinks(sinks_to_open, updates);
  open_sources(sources_to_open, updates);
  bool changed = false;
  for (const WorkerUpdate& update : updates) changed = changed || !update.rings.empty() || !update.sinks.empty();
  if (changed) install(updates);
}

void Engine::collect(EngineStats& stats) const {
  for (const auto& [id, slot] : sources_) {
    SourceStat& stat = entry(stats.sources, id);
    stat.ok = slot->health.ok();
    if (!stat.ok) stat.reason = slot->health.reason();
    PacketSourceStat packet;
    packet.block_timeout_ms = slot->block_timeout_ms.load(std::memory_order_relaxed);
    for (const auto& lane : slot->lanes) {
      stat.packets += lane->counters.packets.get();
      stat.bytes += lane->counters.bytes.get();
      stat.capture_drops += lane->counters.capture_drops.get();
      stat.truncated += lane->counters.truncated.get();
      packet.ring_freezes += lane->counters.ring_freezes.get();
    }
    if (slot->refused.empty()) stat.packet = packet;
  }
  for (const auto& [id, slot] : sinks_) {
    SinkStat& stat = entry(stats.sinks, id);
    stat.file = slot->spec.kind == SinkKind::File;
    stat.ok = slot->health.ok();
    if (!stat.ok) stat.reason = slot->health.reason();
    for (const auto& lane : slot->lanes) {
      stat.packets += lane->counters.packets.get();
      stat.bytes += lane->counters.bytes.get();
      stat.errors += lane->counters.errors.get();
      stat.truncated += lane->counters.truncated.get();
      stat.fragmented += lane->counters.fragmented.get();
      stat.files_opened += lane->counters.files_opened.get();
      stat.files_removed += lane->counters.files_removed.get();
    }
  }
  for (const auto& [id, slot] : rules_) {
    RuleStat& stat = entry(stats.rules, id);
    stat.ok = slot->refused.empty();
    stat.reason = slot->refused;
    for (const auto& lane : slot->lanes) {
      stat.packets += lane->counters.packets.get();
      stat.bytes += lane->counters.bytes.get();
      stat.oversize += lane->counters.oversize.get();
      stat.unavailable += lane->counters.unavailable.get();
      stat.filtered += lane->counters.filtered.get();
      stat.sampled_out += lane->counters.sampled_out.get();
      stat.truncated += lane->counters.truncated.get();
    }
  }
}

EngineStats Engine::stats() const {
  std::lock_guard<std::mutex> registry(registry_mu_);
  if (closed_) return final_stats_;
  EngineStats stats;
  collect(stats);
  stats.interfaces = interfaces_.snapshot();
  return stats;
}

void Engine::close() {
  stopping_.store(true);
  const uint64_t one = 1;
  if (wake_fd_ >= 0 && write(wake_fd_, &one, sizeof one) < 0) {
    // Full (it never is: one write per close) or closed: the thread sees stopping_ within a tick.
  }
  if (health_thread_.joinable()) health_thread_.join();

  std::lock_guard<std::mutex> control(control_mu_);
  if (closed_) return;
  for (auto& worker : workers_) worker->stop();
  Updates updates(workers_.size());
  for (auto& [id, slot] : sources_) unplug_source(*slot, updates);  // reads the last ring statistics
  for (auto& [id, slot] : sinks_) unplug_sink(*slot, updates);
  install(updates);
  std::lock_guard<std::mutex> registry(registry_mu_);
  collect(final_stats_);
  interfaces_.close();
  link_events_.close();
  final_stats_.interfaces = interfaces_.snapshot();
  closed_ = true;
  sources_.clear();
  sinks_.clear();
  rules_.clear();
  workers_.clear();
}

}  // namespace tapas
