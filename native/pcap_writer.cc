#include "pcap_writer.h"

#include <cerrno>

#include "netns.h"

namespace tapas {

namespace {
constexpr uint32_t kPcapMagicMicroseconds = 0xa1b2c3d4;
constexpr uint32_t kLinktypeEthernet = 1;
constexpr uint32_t kSnaplen = 262144;

struct FileHeader {
  uint32_t magic = kPcapMagicMicroseconds;
  uint16_t version_major = 2;
  uint16_t version_minor = 4;
  int32_t thiszone = 0;
  uint32_t sigfigs = 0;
  uint32_t snaplen = kSnaplen;
  uint32_t linktype = kLinktypeEthernet;
};

struct RecordHeader {
  uint32_t seconds;
  uint32_t microseconds;
  uint32_t captured_length;
  uint32_t original_length;
};
}  // namespace

PcapWriter::~PcapWriter() {
  if (file_ != nullptr) std::fclose(file_);
}

std::string PcapWriter::open(const std::string& path) {
  file_ = std::fopen(path.c_str(), "wb");
  if (file_ == nullptr) return "cannot write '" + path + "': " + errno_text(errno);
  // Host byte order, as the magic number tells readers.
  FileHeader header;
  if (std::fwrite(&header, sizeof header, 1, file_) != 1) return "cannot write '" + path + "': " + errno_text(errno);
  return "";
}

bool PcapWriter::write(const timespec& when, const uint8_t* frame, uint32_t length, uint32_t original_length) {
  if (length > kSnaplen) length = kSnaplen;
  RecordHeader record{static_cast<uint32_t>(when.tv_sec), static_cast<uint32_t>(when.tv_nsec / 1000), length,
                      original_length < length ? length : original_length};
  return std::fwrite(&record, sizeof record, 1, file_) == 1 && std::fwrite(frame, 1, length, file_) == length;
}

void PcapWriter::flush() {
  if (file_ != nullptr) std::fflush(file_);
}

}  // namespace tapas
