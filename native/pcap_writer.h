// A classic pcap file (what `tcpdump -w` writes) of Ethernet frames.
#pragma once

#include <cstdint>
#include <cstdio>
#include <ctime>
#include <string>

namespace tapas {

class PcapWriter {
 public:
  PcapWriter() = default;
  ~PcapWriter();
  PcapWriter(const PcapWriter&) = delete;
  PcapWriter& operator=(const PcapWriter&) = delete;

  // Creates or truncates path and writes the file header. "" or why not.
  std::string open(const std::string& path);
  // original_length: the frame's length before any truncation (at least length).
  bool write(const timespec& when, const uint8_t* frame, uint32_t length, uint32_t original_length);
  // Makes everything written so far visible to readers of the file.
  void flush();

 private:
  std::FILE* file_ = nullptr;
};

}  // namespace tapas
