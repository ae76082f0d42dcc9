// A classic pcap file (what `tcpdump -w` writes) of Ethernet frames.
#pragma once

#include <cstdint>
#include <cstdio>
#include <ctime>
#include <string>

namespace tapas {

class PcapWriter {
 public:
  // A piece of one frame: a frame whose VLAN tag the kernel moved into
  // metadata is written as MAC addresses, tag, rest, without a copy.
  struct Piece {
    const uint8_t* data;
    uint32_t length;
  };
  static constexpr uint32_t kFileHeaderLength = 24;
  static constexpr uint32_t kRecordHeaderLength = 16;
  static constexpr uint32_t kSnaplen = 262144;

  PcapWriter() = default;
  ~PcapWriter();
  PcapWriter(const PcapWriter&) = delete;
  PcapWriter& operator=(const PcapWriter&) = delete;

  // Creates or truncates path and writes the file header. "" or why not.
  std::string open(const std::string& path);
  bool is_open() const { return file_ != nullptr; }
  // original_length: the frame's length before any truncation (at least length).
  bool write(const timespec& when, const uint8_t* frame, uint32_t length, uint32_t original_length);
  bool write(const timespec& when, const Piece* pieces, int count, uint32_t original_length);
  // Makes everything written so far visible to readers of the file.
  void flush();
  // Flushes and closes; false when something could not be written.
  bool close();
  // Bytes in the file so far, header included: what -C compares.
  uint64_t size() const { return size_; }
  // What a frame of this captured length adds to the file.
  static uint64_t record_size(uint32_t length) { return kRecordHeaderLength + (length > kSnaplen ? kSnaplen : length); }

 private:
  std::FILE* file_ = nullptr;
  uint64_t size_ = 0;
};

}  // namespace tapas
