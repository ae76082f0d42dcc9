#include "bpf_loader.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <errno.h>
#include <net/if.h>
#include <unistd.h>

#include <algorithm>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <set>

extern "C" {
#include "bpf/mirror.h"
}

namespace tapas::bpf {

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
  if (s.ifindex == 0) return "no interface " + describe(s.spec.ifname, s.spec.netns);
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
      {
        NetnsScope scope(spec.sink_netns);
        // A port or namespace that is missing is the sink's trouble (its stats say so): wait for it.
        if (!scope.ok()) r.waiting = true;
        else if (!(scope.identity() == s.ns)) r.reason = "the tap service port is not in the source's network namespace";
        else if ((target = static_cast<int>(if_nametoindex(spec.sink_ifname.c_str()))) == 0) r.waiting = true;
      }
      r.target = target;
      for (const auto& [id, other] : sources_) {
        if (r.reason.empty() && !other.attach.empty() && other.ns == s.ns && other.ifindex == target) {
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

void Loader::read_counters(uint32_t slot, uint64_t& packets, uint64_t& bytes, uint64_t& errors, uint64_t& oversize) const {
  std::vector<tapas_counters> per_cpu(static_cast<size_t>(cpus_));
  packets = bytes = errors = oversize = 0;
  if (bpf_map_lookup_elem(counters_fd_, &slot, per_cpu.data()) != 0) return;
  for (const tapas_counters& c : per_cpu) {
    packets += c.packets;
    bytes += c.bytes;
    errors += c.errors;
    oversize += c.oversize;
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
    uint64_t errors = 0, oversize = 0;
    if (object_ != nullptr) read_counters(s.slot, state.packets, state.bytes, errors, oversize);
    sources.push_back(std::move(state));
  }
  for (const Installed& r : rules_) {
    RuleState state;
    state.id = r.spec.id;
    state.ok = r.reason.empty();
    state.reason = r.reason;
    if (object_ != nullptr) read_counters(r.slot, state.packets, state.bytes, state.errors, state.oversize);
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
  for (auto& [ns, programs] : programs_) bpf_object__close(programs.object);
  programs_.clear();
  bpf_object__close(object_);
  object_ = nullptr;
  counters_fd_ = -1;
}

}  // namespace tapas::bpf
