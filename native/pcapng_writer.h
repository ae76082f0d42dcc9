// A pcapng file (what Wireshark and `tcpdump -w` with pcapng write) of
// Ethernet frames, with what classic pcap cannot say: which interface each
// frame came from, and its direction.
//
// One section: a Section Header Block (shb_userappl "tapas"), then an
// Interface Description Block for each interface the first time a frame of
// it is written (pcapng lets an IDB come anywhere before the first packet
// that names it, so that a file lists only the interfaces it holds frames
// of, in order of appearance), and an Enhanced Packet Block per frame:
// interface id, nanosecond timestamp (if_tsresol 9), and epb_flags with the
// direction when one is known.
//
// Direction, as tapas writes it everywhere (the ERSPAN III D bit too): the
// workload's, as TaaS names it. inbound (epb_flags 1) = TaaS IN, traffic into
// the workload, which the host-side interface transmits (PACKET_OUTGOING);
// outbound (2) = TaaS OUT. Each IDB says so in its if_description.
#pragma once

#include <cstdint>
#include <cstdio>
#include <ctime>
#include <map>
#include <string>

#include "pcap_writer.h"

namespace tapas {

// What a pcapng record carries beyond the frame; classic pcap ignores it.
struct RecordMeta {
  enum Direction : uint8_t { Unknown = 0, Inbound = 1, Outbound = 2 };
  const std::string* interface = nullptr;  // null: one interface named "tapas"
  Direction direction = Unknown;
};

class PcapngWriter {
 public:
  PcapngWriter() = default;
  ~PcapngWriter();
  PcapngWriter(const PcapngWriter&) = delete;
  PcapngWriter& operator=(const PcapngWriter&) = delete;

  // Creates or truncates path and writes the section header. "" or why not.
  std::string open(const std::string& path);
  bool is_open() const { return file_ != nullptr; }
  bool write(const timespec& when, const PcapWriter::Piece* pieces, int count, uint32_t original_length, const RecordMeta& meta);
  void flush();
  bool close();
  uint64_t size() const { return size_; }
  // What writing a frame of this length adds to the file: its EPB, and an IDB
  // when its interface is new to the file.
  uint64_t record_size(uint32_t length, const RecordMeta& meta) const;

 private:
  bool write_interface(const std::string& name, uint32_t& id);
  bool put(const void* data, size_t length);

  std::FILE* file_ = nullptr;
  uint64_t size_ = 0;
  std::map<std::string, uint32_t> interfaces_;  // in this file: name -> interface id
};

}  // namespace tapas
