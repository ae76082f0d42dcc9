// The engine under real traffic, built with sanitizers (ASan+UBSan, or TSan):
// inside a private network namespace of its own (needs root), frames flow from
// a generator through a source veth while plans are re-applied, sinks swapped,
// and interfaces deleted and re-created under the workers' feet. Any memory
// error or data race in the hand-over between the engine and its workers is
// reported by the sanitizer; the counters must add up at the end. Meanwhile a
// named namespace with a source and a sink in it is deleted and re-created
// again and again (the engine lets go of it, and opens again by itself), and
// the same interface is also named through /proc/self/root, a second source
// refused while the namespace exists and accepted while it does not: the
// health thread runs the plan anew each time.
//
//   engine_soak [SECONDS]      exits 0 when every check passed
#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "engine.h"

using namespace tapas;
using namespace std::chrono_literals;

namespace {

int failures = 0;

#define CHECK(condition, ...)                                      \
  do {                                                             \
    if (!(condition)) {                                            \
      std::fprintf(stderr, "%s:%d: CHECK(%s) failed: ", __FILE__, __LINE__, #condition); \
      std::fprintf(stderr, __VA_ARGS__);                           \
      std::fprintf(stderr, "\n");                                  \
      ++failures;                                                  \
    }                                                              \
  } while (0)

void sh(const std::string& command) {
  if (std::system(command.c_str()) != 0) {
    std::fprintf(stderr, "command failed: %s\n", command.c_str());
    std::exit(2);
  }
}

void add_veth(const std::string& a, const std::string& b) {
  sh("ip link add " + a + " type veth peer name " + b + " && ip link set " + a + " up && ip link set " + b + " up");
}

int raw_socket(const char* ifname) {
  int fd = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
  sockaddr_ll address{};
  address.sll_family = AF_PACKET;
  address.sll_protocol = htons(ETH_P_ALL);
  address.sll_ifindex = static_cast<int>(if_nametoindex(ifname));
  if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    std::perror(ifname);
    std::exit(2);
  }
  return fd;
}

std::vector<uint8_t> frame(uint32_t sequence, uint16_t vlan) {
  std::vector<uint8_t> f = {0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1};
  if (vlan != 0) f.insert(f.end(), {0x81, 0x00, static_cast<uint8_t>(vlan >> 8), static_cast<uint8_t>(vlan)});
  f.insert(f.end(), {0x88, 0xb5, 's', 'o', 'a', 'k'});
  for (int shift = 24; shift >= 0; shift -= 8) f.push_back(static_cast<uint8_t>(sequence >> shift));
  f.resize(60 + (sequence % 3) * 400, 0xab);
  return f;
}

SinkSpec port_sink(const char* id, const char* ifname) {
  SinkSpec sink;
  sink.id = id;
  sink.ifname = ifname;
  return sink;
}

// A named namespace, its own (not the soak's): nsrc0 in it, its peer ngen0 in the soak's namespace.
std::string soak_netns() { return "tapas-soak-" + std::to_string(getpid()); }

void create_soak_netns() {
  const std::string name = soak_netns();
  sh("ip netns add " + name + " && ip -n " + name + " link add nsrc0 type veth peer name ngen0 netns " +
     std::to_string(getpid()) + " && ip -n " + name + " link set nsrc0 up && ip -n " + name +
     " link set lo up && ip link set ngen0 up");
}

void add_named_entries(Plan& plan) {
  const std::string name = soak_netns();
  plan.sources.push_back({"named", "nsrc0", name});
  plan.sources.push_back({"named-again", "nsrc0", "/proc/self/root/run/netns/" + name});
  SinkSpec sink = port_sink("named-sink", "lo");
  sink.netns = name;
  plan.sinks.push_back(sink);
  plan.rules.push_back({"named-flow", "named", "monitor", Direction::Both, {}});
  plan.rules.push_back({"named-again-flow", "named-again", "named-sink", Direction::Both, {}});
  plan.interfaces.push_back({"port-named", "nsrc0", name});
  plan.interfaces.push_back({"port-named-again", "nsrc0", "/run/netns/./" + name});
}

Plan plan_variant(int variant) {
  Plan plan;
  plan.sources.push_back({"vm", "src0", ""});
  plan.sinks.push_back(port_sink("monitor", "dst0"));
  plan.rules.push_back({"flow", "vm", "monitor", Direction::Out, {}});
  if (variant % 2 == 1) {
    plan.sinks.push_back(port_sink("second", "aux0"));
    plan.rules.push_back({"tagged", "vm", "second", Direction::Both, {{1, 100}}});
  }
  // Observed by the health thread while apply replaces the list and stats() reads it.
  plan.interfaces.push_back({"port-src", "src0", ""});
  if (variant % 2 == 0) plan.interfaces.push_back({"port-dst", "dst0", "/proc/self/ns/net"});
  // A changed spec naming the same namespace another way: the source is re-opened (through setns).
  if (variant % 3 == 2) plan.sources[0].netns = "/proc/self/ns/net";
  add_named_entries(plan);
  return plan;
}

const SourceStat* source(const EngineStats& stats, const char* id) {
  for (const auto& s : stats.sources) if (s.id == id) return &s;
  return nullptr;
}

}  // namespace

int main(int argc, char** argv) {
  const int seconds = argc > 1 ? std::atoi(argv[1]) : 5;
  if (unshare(CLONE_NEWNET) != 0) {
    std::perror("unshare(CLONE_NEWNET) (run as root)");
    return 2;
  }
  // No IPv6: its neighbour discovery would add frames of its own to the count.
  sh("sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 && ip link set lo up");
  add_veth("src0", "gen0");
  add_veth("dst0", "mon0");
  add_veth("aux0", "aux1");
  create_soak_netns();

  EngineOptions options;
  options.workers = 2;
  Engine engine(options);
  std::string error = engine.apply(plan_variant(0));
  CHECK(error.empty(), "%s", error.c_str());
  {
    // A loop (a sink that is also a source) is refused, the rest of the plan runs.
    Plan loop = plan_variant(0);
    loop.sinks.push_back(port_sink("y", "src0"));
    loop.rules.push_back({"loop", "vm", "y", Direction::Both, {}});
    error = engine.apply(loop);
    CHECK(error.empty(), "%s", error.c_str());
    EngineStats stats = engine.stats();
    for (const auto& rule : stats.rules) {
      if (rule.id == "loop") {
        CHECK(!rule.ok && rule.reason.find("is also a mirrored source") != std::string::npos, "a loop was accepted: '%s'",
              rule.reason.c_str());
      } else if (rule.id == "named-again-flow") {
        CHECK(!rule.ok && rule.reason.find("the same interface as source 'named'") == 0, "a second source of nsrc0 ran: '%s'",
              rule.reason.c_str());
      } else {
        CHECK(rule.ok, "rule '%s' was refused: %s", rule.id.c_str(), rule.reason.c_str());
      }
    }
  }

  std::atomic<bool> running{true};
  std::atomic<uint64_t> sent{0};
  std::thread generator([&] {
    int fd = raw_socket("gen0");
    for (uint32_t sequence = 0; running; ++sequence) {
      std::vector<uint8_t> f = frame(sequence, sequence % 5 == 0 ? 7 : 0);
      if (send(fd, f.data(), f.size(), 0) == static_cast<ssize_t>(f.size())) ++sent;
      if (sequence % 64 == 0) std::this_thread::sleep_for(200us);
    }
    close(fd);
  });

  // Deletes and re-creates the named namespace while plans are applied and frames flow.
  std::atomic<int> deletions{0}, released{0};
  std::thread toggler([&] {
    while (running) {
      std::this_thread::sleep_for(300ms);
      sh("ip netns del " + soak_netns());
      ++deletions;
      // Once the engine let go, nothing keeps the namespace: its veth pair goes.
      for (int i = 0; i < 40 && if_nametoindex("ngen0") != 0; ++i) std::this_thread::sleep_for(50ms);
      if (if_nametoindex("ngen0") == 0) {
        ++released;
      } else {
        sh("ip link del ngen0");  // counted as kept alive; make room for the next round
      }
      std::this_thread::sleep_for(100ms);
      create_soak_netns();
    }
  });

  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  int round = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    ++round;
    error = engine.apply(plan_variant(round));
    CHECK(error.empty(), "%s", error.c_str());
    EngineStats stats = engine.stats();  // read while traffic flows
    (void)stats;
    if (round % 7 == 0) {
      // The sink and then the source vanish and come back while frames flow.
      sh("ip link del dst0");
      std::this_thread::sleep_for(300ms);
      add_veth("dst0", "mon0");
      sh("ip link del src0");
      std::this_thread::sleep_for(300ms);
      add_veth("src0", "gen0");
    }
    std::this_thread::sleep_for(20ms);
  }
  running = false;
  generator.join();
  toggler.join();
  CHECK(deletions > 0 && released == deletions, "the engine kept %d of %d deleted namespaces alive",
        deletions.load() - released.load(), deletions.load());

  // Both interfaces are back: the engine must have re-opened them by itself.
  bool recovered = false;
  for (int i = 0; i < 50 && !recovered; ++i) {
    EngineStats stats = engine.stats();
    const SourceStat* vm = source(stats, "vm");
    const SourceStat* named = source(stats, "named");
    const SourceStat* again = source(stats, "named-again");
    const InterfaceStat* watched_again = nullptr;
    for (const auto& entry : stats.interfaces) if (entry.id == "port-named-again") watched_again = &entry;
    recovered = vm != nullptr && vm->ok && !stats.sinks.empty() && stats.sinks[0].ok && !stats.interfaces.empty() &&
                stats.interfaces[0].present && named != nullptr && named->ok && again != nullptr &&
                again->reason.find("the same interface as source 'named'") == 0 && watched_again != nullptr &&
                watched_again->present && watched_again->same_as == "port-named";
    std::this_thread::sleep_for(100ms);
  }
  CHECK(recovered, "the engine did not recover the deleted interfaces and namespace");

  engine.close();
  EngineStats final_stats = engine.stats();
  const SourceStat* vm = source(final_stats, "vm");
  CHECK(vm != nullptr && vm->packets > 0, "no packets captured");
  uint64_t mirrored = 0;
  for (const auto& rule : final_stats.rules) {
    if (rule.id == "flow") mirrored = rule.packets + rule.unavailable + rule.oversize;
  }
  CHECK(vm != nullptr && mirrored == vm->packets, "rule 'flow' accounted for %llu of %llu captured frames",
        static_cast<unsigned long long>(mirrored), static_cast<unsigned long long>(vm ? vm->packets : 0));
  std::printf("engine soak: %d plan changes, %llu frames sent, %llu captured, %llu mirrored by 'flow'\n", round,
              static_cast<unsigned long long>(sent.load()), static_cast<unsigned long long>(vm ? vm->packets : 0),
              static_cast<unsigned long long>(mirrored));
  std::printf("engine soak: the named namespace deleted %d times, let go of (its veth gone) %d times\n", deletions.load(),
              released.load());
  sh("ip netns del " + soak_netns());
  if (failures == 0) std::printf("engine soak passed\n");
  return failures == 0 ? 0 : 1;
}
