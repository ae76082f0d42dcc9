// A pcap (or pcapng) output that rotates as tcpdump's -C, -G and -W do: one
// implementation for `tapas collect -w` and the engine's file sink
// (`tapas mirror -w`). With pcapng every file is its own section, with the
// interface blocks of the frames it holds.
//
// File names (docs/engine.md, "File sinks and rotation"):
//   - neither max_bytes nor seconds: exactly `path`, one file;
//   - otherwise every file is numbered: `path` followed by its number,
//     counting from 0 (cap.pcap0, cap.pcap1, ...);
//   - with max_files COUNT the numbers go round a ring 0..COUNT-1, written
//     with as many digits as COUNT-1 has (tcpdump's -W: -W 10 gives
//     cap.pcap0..cap.pcap9, -W 100 cap.pcap00..cap.pcap99); the file whose
//     number comes round again is removed first and counted as removed.
//
// Never loses a frame at a rotation: a frame that would take the file past
// max_bytes goes whole into the next one, and the full file is flushed and
// closed first, so every file is a complete pcap with its own header. A
// frame larger than max_bytes on its own is written alone into a file.
// seconds: a new file once the frame to write is that many seconds (by the
// frames' timestamps, to the nanosecond) after the current file's first
// frame. A file's period starts with its first frame, not when it was
// opened: the first file is opened at start, before any traffic, and a file
// is never left empty. As with tcpdump, only a frame starts a file, so a
// quiet period leaves no empty files.
//
// Not thread-safe: the collector writes from its one thread, the file sink
// under its own mutex.
#pragma once

#include <cstdint>
#include <ctime>
#include <string>

#include "pcap_writer.h"
#include "pcapng_writer.h"
#include "status.h"

namespace tapas {

struct RotationSpec {
  std::string path;
  uint64_t max_bytes = 0;  // -C in bytes (the CLI multiplies by 1,000,000); 0: no limit
  uint32_t seconds = 0;    // -G; 0: no limit
  uint32_t max_files = 0;  // -W; 0: keep every file. Needs max_bytes or seconds.
  bool pcapng = false;     // pcapng (interfaces and directions, pcapng_writer.h) instead of classic pcap
  bool operator==(const RotationSpec&) const = default;
};

// "" or why the spec cannot run (before anything is opened).
std::string check_rotation(const RotationSpec& spec);

struct RotationCounters {
  Counter frames, bytes;  // written, in every file
  Counter files_opened;
  Counter files_removed;  // by -W, to keep at most max_files
  Counter errors;         // frames that could not be written (disk full, a file that could not be opened)
};

class PcapRotation {
 public:
  explicit PcapRotation(RotationSpec spec) : spec_(std::move(spec)) {}
  PcapRotation(const PcapRotation&) = delete;
  PcapRotation& operator=(const PcapRotation&) = delete;

  // Opens the first file, so that an unwritable path is told at once. "" or why not.
  std::string open();
  bool write(const timespec& when, const uint8_t* frame, uint32_t length, uint32_t original_length);
  // meta: the interface and direction, which only pcapng keeps.
  bool write(const timespec& when, const PcapWriter::Piece* pieces, int count, uint32_t original_length,
             const RecordMeta& meta = {});
  void flush() { spec_.pcapng ? pcapng_.flush() : pcap_.flush(); }
  void close() { spec_.pcapng ? pcapng_.close() : pcap_.close(); }
  const RotationCounters& counters() const { return counters_; }
  // The name of the n-th file opened (0 first).
  std::string file_name(uint64_t n) const;
  // Why the last file could not be opened, "" when it was.
  const std::string& last_error() const { return last_error_; }

 private:
  bool rotating() const { return spec_.max_bytes != 0 || spec_.seconds != 0; }
  bool is_open() const { return spec_.pcapng ? pcapng_.is_open() : pcap_.is_open(); }
  bool open_next();

  RotationSpec spec_;
  PcapWriter pcap_;      // one of the two, as spec_.pcapng says
  PcapngWriter pcapng_;
  RotationCounters counters_;
  uint64_t next_number_ = 0;
  timespec first_frame_at_{};  // the timestamp of the current file's first frame
  bool records_in_file_ = false;
  std::string last_error_;
};

}  // namespace tapas
