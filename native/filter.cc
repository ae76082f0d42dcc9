#include "filter.h"

#include <pcap/pcap.h>

#include <cstring>
#include <map>
#include <mutex>

namespace tapas {

namespace {
// What ever compiled, by expression: a plan is checked and then run with the
// same expressions on every apply. Bounded: cleared whole when full (entries
// still in use live on in the rules holding them).
constexpr size_t kMaxCached = 4096;
std::mutex cache_mu;
std::map<std::string, CompiledFilter> cache;
}  // namespace

PacketFilter::~PacketFilter() { delete[] program_; }

bool PacketFilter::matches(const uint8_t* data, uint32_t captured, uint32_t wire_length) const {
  // bpf_filter reads only within `captured` (a load beyond it rejects the frame, as the kernel does).
  return bpf_filter(program_, data, wire_length, captured) != 0;
}

struct FilterCompiler {
  static CompiledFilter compile(const std::string& expression) {
    CompiledFilter result;
    // A dead handle: no capture, only the link type and snaplen the code is generated for.
    pcap_t* handle = pcap_open_dead(DLT_EN10MB, 65535);
    if (handle == nullptr) {
      result.error = "cannot open a libpcap handle";
      return result;
    }
    bpf_program program{};
    // netmask unknown: only `ip broadcast` needs it, and libpcap says so when it is used.
    if (pcap_compile(handle, &program, expression.c_str(), 1, PCAP_NETMASK_UNKNOWN) != 0) {
      result.error = pcap_geterr(handle);
      pcap_close(handle);
      return result;
    }
    // A copy in memory we own, so that the program outlives the handle and pcap_freecode.
    std::shared_ptr<PacketFilter> filter(new PacketFilter());
    filter->length_ = program.bf_len;
    filter->program_ = new bpf_insn[program.bf_len];
    std::memcpy(filter->program_, program.bf_insns, sizeof(bpf_insn) * program.bf_len);
    pcap_freecode(&program);
    pcap_close(handle);
    result.filter = std::move(filter);
    return result;
  }
};

CompiledFilter compile_filter(const std::string& expression) {
  // pcap_compile is thread-safe from libpcap 1.8 on; the lock also guards the cache.
  std::lock_guard<std::mutex> lock(cache_mu);
  auto it = cache.find(expression);
  if (it != cache.end()) return it->second;
  if (cache.size() >= kMaxCached) cache.clear();
  CompiledFilter result = FilterCompiler::compile(expression);
  cache.emplace(expression, result);
  return result;
}

}  // namespace tapas
