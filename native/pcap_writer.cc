#include "pcap_writer.h"

#include <cerrno>

#include "netns.h"

namespace tapas {

namespace {
constexpr uint32_t kPcapMagicMicroseconds = 0xa1b2c3d4;
constexpr uint32_t kLinktypeEthernet = 1;

struct FileHeader {
  uint32_t magic = kPcapMagicMicroseconds;
  uint16_t version_major = 2;
  uint16_t version_minor = 4;
  int32_t thiszone = 0;
  uint32_t sigfigs = 0;
  uint32_t snaplen = PcapWriter::kSnaplen;
  uint32_t linktype = kLinktypeEthernet;
};

struct RecordHeader {
  uint32_t seconds;
  uint32_t microseconds;
  uint32_t captured_length;
  uint32_t original_length;
};
static_assert(sizeof(FileHeader) == PcapWriter::kFileHeaderLength);
static_assert(sizeof(RecordHeader) == PcapWriter::kRecordHeaderLength);
}  // namespace

PcapWriter::~PcapWriter() { close(); }

std::string PcapWriter::open(const std::string& path) {
  close();
  size_ = 0;
  file_ = std::fopen(path.c_str(), "wb");
  if (file_ == nullptr) return "cannot write '" + path + "': " + errno_text(errno);
  // Host byte order, as the magic number tells readers.
  FileHeader header;
  if (std::fwrite(&header, sizeof header, 1, file_) != 1) return "cannot write '" + path + "': " + errno_text(errno);
  size_ = sizeof header;
  return "";
}

bool PcapWriter::write(const timespec& when, const uint8_t* frame, uint32_t length, uint32_t original_length) {
  const Piece piece{frame, length};
  return write(when, &piece, 1, original_length);
}

bool PcapWriter::write(const timespec& when, const Piece* pieces, int count, uint32_t original_length) {
  if (file_ == nullptr) return false;
  uint32_t length = 0;
  for (int i = 0; i < count; ++i) length += pieces[i].length;
  // Longer than the snaplen the header announces: cut, as a capture would be.
  uint32_t left = length > kSnaplen ? kSnaplen : length;
  RecordHeader record{static_cast<uint32_t>(when.tv_sec), static_cast<uint32_t>(when.tv_nsec / 1000), left,
                      original_length < length ? length : original_length};
  if (std::fwrite(&record, sizeof record, 1, file_) != 1) return false;
  size_ += sizeof record;
  for (int i = 0; i < count && left > 0; ++i) {
    const uint32_t take = pieces[i].length < left ? pieces[i].length : left;
    if (std::fwrite(pieces[i].data, 1, take, file_) != take) return false;
    size_ += take;
    left -= take;
  }
  return true;
}

void PcapWriter::flush() {
  if (file_ != nullptr) std::fflush(file_);
}

bool PcapWriter::close() {
  if (file_ == nullptr) return true;
  const bool ok = std::fclose(file_) == 0;
  file_ = nullptr;
  return ok;
}

}  // namespace tapas
