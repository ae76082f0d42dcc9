// The kernel data path's loader (issue 12, first slice): loads the tc
// program (native/bpf/mirror.bpf.c, compiled by clang at build time into
// build/Release/mirror.bpf.o) with libbpf, attaches it to both hooks of each
// source port, fills its rules map and reads its per-CPU counters. Plain C++:
// no N-API, no exception leaves it (errors are strings and reasons).
#pragma once

#include <cstdint>
#include <map>
#include <condition_variable>
#include <memory>
#include <thread>
#include <tuple>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "netns.h"

struct bpf_object;

namespace tapas::bpf {

struct SourceSpec {
  std::string id;
  std::string ifname;
  std::string netns;  // "" = the process's own
};

struct RuleSpec {
  std::string id;
  std::string source_id;
  // The tap service port: must be in the source's network namespace
  // (bpf_clone_redirect stays in it).
  std::string sink_ifname;
  std::string sink_netns;
  bool in = false;   // frames toward the workload: the port's egress hook
  bool out = false;  // frames from the workload: the port's ingress hook
  std::vector<std::pair<uint16_t, uint16_t>> vlans;
  // Not empty: the sink is a GRE tunnel to this IPv4 collector (key gre_key),
  // written by the kernel path through a veth pair of the rule's own in the
  // source's namespace (sink_ifname unused; sink_netns routes the underlay).
  std::string gre_remote;
  uint32_t gre_key = 0;
  // ERSPAN type II instead of GRE with key (the same veth pair and programs).
  bool erspan = false;
  uint32_t erspan_session = 0;
  uint32_t erspan_index = 0;
};

struct SourceState {
  std::string id;
  bool ok = false;
  std::string reason;
  std::string attach;  // "tcx" or "tc" (cls_bpf on clsact) while attached
  uint64_t packets = 0;  // frames its hooks saw
  uint64_t bytes = 0;
};

struct RuleState {
  std::string id;
  bool ok = false;
  std::string reason;
  uint64_t packets = 0;  // copies made
  uint64_t bytes = 0;
  uint64_t errors = 0;  // copies the kernel could not make or send
  uint64_t oversize = 0;  // frames larger than the tap service port's MTU: not copied
  uint64_t truncated = 0;  // ERSPAN copies cut to the path MTU (in packets too)
  uint64_t fragmented = 0;  // GRE copies the IP stack fragmented (in packets too)
};

// How hooks are attached: tcx links where the kernel has them, else cls_bpf.
enum class AttachMode { Auto, Tcx, Tc };

// cls_bpf fallback: the filter tapas adds on each hook of a clsact qdisc.
// Priority 0xc000 (49152) runs after filters at lower numbers (the ones
// operators usually pick); the handle marks it as tapas's.
constexpr uint32_t kTcHandle = 0x7470;  // "tp"
constexpr uint32_t kTcPriority = 0xc000;

class Loader {
 public:
  Loader() = default;
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;

  // Loads the object file and its programs into the kernel. Returns "" or why
  // BPF cannot be used here (no privileges, a kernel without BPF or tc programs).
  std::string open(const std::string& object_path, AttachMode mode);

  // Attaches to every source (detaching from sources no longer listed or
  // changed), then installs the rules. A hook entry is replaced atomically, so
  // rules that did not change keep copying throughout.
  void apply(const std::vector<SourceSpec>& sources, const std::vector<RuleSpec>& rules);

  // Counters summed over CPUs, read while traffic runs.
  void stats(std::vector<SourceState>& sources, std::vector<RuleState>& rules) const;

  // Detaches everything and unloads the programs.
  void close();

 private:
  struct Attached {
    SourceSpec spec;
    NetnsIdentity ns;
    int ifindex = 0;
    std::string attach;  // "tcx" or "tc"
    int link_in = -1, link_out = -1;  // tcx links
    uint32_t slot = 0;
    std::string reason;  // when not attached
    std::string same_as;  // refused: the same interface as this earlier source (by id)
  };
  struct Installed {
    RuleSpec spec;
    uint32_t slot = 0;
    std::string reason;  // refused: ok false
    // Not installed for now (its source or its tap service port is missing,
    // down or in a namespace that is gone): ok, counts nothing, and the
    // health thread tries again.
    bool waiting = false;
    int target = 0;  // the tap service port's ifindex, when installed
  };
  // A GRE rule's veth pair (see mirror.h, tapas_tunnel): a, the clone's
  // target, without offloads; b with tapas_send on its ingress.
  struct Tunnel {
    std::string netns;
    NetnsIdentity ns;
    std::string name_a, name_b;
    int ifindex_a = 0, ifindex_b = 0;
    int link_b = -1;  // tapas_send on the second end's ingress
    std::string remote;
    uint32_t key = 0;
    bool erspan = false;
    uint32_t session = 0, index = 0;
    uint32_t slot = 0;
    int tunnels_fd = -1;
  };
  // Creates (or keeps) the rule's veth pair; returns "" or why not.
  std::string tunnel_for(const Installed& rule, const NetnsIdentity& ns, int& ifindex);
  void drop_tunnel(Tunnel& tunnel);
  std::map<std::string, Tunnel> tunnels_;  // by rule id
  // ERSPAN sequence counters: one per namespace, remote and session, never reused.
  std::map<std::tuple<std::pair<uint64_t, uint64_t>, std::string, uint32_t>, uint32_t> sequences_;
  uint32_t next_tunnel_ = 0;

  // The programs and rules map of one network namespace (see mirror.h).
  struct Programs {
    bpf_object* object = nullptr;
    int prog_in = -1, prog_out = -1, hooks_fd = -1;
    int prog_send = -1, tunnels_fd = -1, sequences_fd = -1;
    bool swept = false;  // veth pairs a killed tapas left in this namespace removed
    std::vector<std::string> keys;  // hook keys in its map (raw bytes), to delete stale ones
  };
  using NsKey = std::pair<uint64_t, uint64_t>;  // the namespace's nsfs dev and inode
  static NsKey key_of(const NetnsIdentity& ns) { return {static_cast<uint64_t>(ns.dev), static_cast<uint64_t>(ns.ino)}; }
  std::string load(Programs& into);

  void apply_locked(const std::vector<SourceSpec>& sources, const std::vector<RuleSpec>& rules);
  // Whether an interface is gone, came back or was replaced since apply.
  bool stale() const;
  void health();

  // peers: the sources attached before it in this plan (one interface, one entry).
  std::string attach(Attached& source, const std::map<std::string, Attached>& peers);
  void detach(Attached& source);
  static constexpr uint32_t kNoSlot = 0xffffffffu;
  uint32_t take_slot();  // kNoSlot when every slot is taken
  void free_slot(uint32_t slot);
  void read(std::vector<SourceState>& sources, std::vector<RuleState>& rules) const;
  // The slot's per-CPU counters, summed into the counting fields of into.
  void read_counters(uint32_t slot, RuleState& into) const;

  mutable std::mutex mutex_;  // apply (a libuv pool thread), stats and close (the JavaScript thread)
  std::vector<SourceSpec> last_sources_;
  std::vector<RuleSpec> last_rules_;
  std::thread health_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::vector<SourceState> final_sources_;
  std::vector<RuleState> final_rules_;
  std::string object_path_;
  bpf_object* object_ = nullptr;  // the first copy: owns the counters map every copy shares
  int counters_fd_ = -1;
  std::map<NsKey, Programs> programs_;
  int cpus_ = 1;
  AttachMode mode_ = AttachMode::Auto;
  std::map<std::string, Attached> sources_;  // by source id
  std::vector<Installed> rules_;
  std::vector<uint32_t> free_slots_;
  uint32_t next_slot_ = 0;
};

}  // namespace tapas::bpf
