// Per-rule packet filters: pcap-filter expressions (tcpdump syntax) compiled
// by libpcap and run on each captured frame with its interpreter. Plain C++;
// addon.cc exposes compile_filter() to the API, which checks an expression
// when a tap flow or tap mirror is created, and the engine compiles a plan's
// filters when it applies it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

struct bpf_insn;

namespace tapas {

// A compiled expression. Immutable once made: workers share it without locks.
class PacketFilter {
 public:
  ~PacketFilter();
  PacketFilter(const PacketFilter&) = delete;
  PacketFilter& operator=(const PacketFilter&) = delete;

  // Whether the frame, as it was on the wire (VLAN tag in place), matches.
  // wire_length: its length on the wire; captured: the bytes at data.
  bool matches(const uint8_t* data, uint32_t captured, uint32_t wire_length) const;
  uint32_t instructions() const { return length_; }

 private:
  friend struct FilterCompiler;
  PacketFilter() = default;
  bpf_insn* program_ = nullptr;
  uint32_t length_ = 0;
};

struct CompiledFilter {
  std::shared_ptr<const PacketFilter> filter;  // null when the expression did not compile
  std::string error;                            // libpcap's message (pcap_geterr) otherwise
};

// Compiles for Ethernet frames (DLT_EN10MB, snaplen 65535), as tcpdump on an
// Ethernet interface would. An empty expression matches every frame. Results
// are cached by expression (the plan check and the engine both ask for the
// same ones on every apply): thread-safe.
CompiledFilter compile_filter(const std::string& expression);

}  // namespace tapas
