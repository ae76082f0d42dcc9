#include "pcap_rotation.h"

#include <unistd.h>

#include <cerrno>

#include "netns.h"

namespace tapas {

namespace {
int64_t nanoseconds_between(const timespec& from, const timespec& to) {
  return (int64_t{to.tv_sec} - from.tv_sec) * 1000000000 + (to.tv_nsec - from.tv_nsec);
}
}  // namespace

std::string check_rotation(const RotationSpec& spec) {
  if (spec.path.empty()) return "no file name";
  if (spec.max_files != 0 && spec.max_bytes == 0 && spec.seconds == 0) {
    return "a file count (-W) needs a size (-C) or a time (-G) to rotate by";
  }
  return "";
}

std::string PcapRotation::file_name(uint64_t n) const {
  if (!rotating()) return spec_.path;
  if (spec_.max_files == 0) return spec_.path + std::to_string(n);
  // tcpdump's ring: as many digits as the largest number has.
  const std::string largest = std::to_string(spec_.max_files - 1);
  std::string number = std::to_string(n % spec_.max_files);
  return spec_.path + std::string(largest.size() - number.size(), '0') + number;
}

std::string PcapRotation::open() {
  std::string error = check_rotation(spec_);
  if (!error.empty()) return error;
  return open_next() ? "" : last_error_;
}

bool PcapRotation::open_next() {
  // Closed (flushed) before the next opens: a reader that sees the next file
  // finds this one complete.
  if (is_open() && !(spec_.pcapng ? pcapng_.close() : pcap_.close())) counters_.errors.add(1);
  const uint64_t number = next_number_++;
  const std::string name = file_name(number);
  if (spec_.max_files != 0 && number >= spec_.max_files) {
    // The ring came round: this name holds the oldest file. Removed rather
    // than truncated, so that a reader that has it open keeps what it read.
    if (unlink(name.c_str()) == 0) counters_.files_removed.add(1);
  }
  last_error_ = spec_.pcapng ? pcapng_.open(name) : pcap_.open(name);
  if (!last_error_.empty()) {
    close();
    return false;
  }
  counters_.files_opened.add(1);
  records_in_file_ = false;
  return true;
}

bool PcapRotation::write(const timespec& when, const uint8_t* frame, uint32_t length, uint32_t original_length) {
  const PcapWriter::Piece piece{frame, length};
  return write(when, &piece, 1, original_length);
}

bool PcapRotation::write(const timespec& when, const PcapWriter::Piece* pieces, int count, uint32_t original_length,
                         const RecordMeta& meta) {
  uint32_t length = 0;
  for (int i = 0; i < count; ++i) length += pieces[i].length;
  bool rotate = !is_open();  // the last open failed: try again with this frame
  if (!rotate && records_in_file_) {
    // A file with no frame yet takes the frame whatever its size: else a frame
    // larger than -C would open files without end.
    const uint64_t after = spec_.pcapng ? pcapng_.size() + pcapng_.record_size(length, meta)
                                        : pcap_.size() + PcapWriter::record_size(length);
    rotate = (spec_.max_bytes != 0 && after > spec_.max_bytes) ||
             (spec_.seconds != 0 && nanoseconds_between(first_frame_at_, when) >= int64_t{spec_.seconds} * 1000000000);
  }
  if (rotate && (rotating() || !is_open()) && !open_next()) {
    counters_.errors.add(1);
    return false;
  }
  const bool written = spec_.pcapng ? pcapng_.write(when, pieces, count, original_length, meta)
                                    : pcap_.write(when, pieces, count, original_length);
  if (!written) {
    counters_.errors.add(1);
    return false;
  }
  if (!records_in_file_) first_frame_at_ = when;
  records_in_file_ = true;
  counters_.frames.add(1);
  counters_.bytes.add(length);
  return true;
}

}  // namespace tapas
