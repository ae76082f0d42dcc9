#include "pcapng_writer.h"

#include <cerrno>
#include <cstring>
#include <vector>

#include "netns.h"

namespace tapas {

namespace {
constexpr uint32_t kSectionHeader = 0x0a0d0d0a;
constexpr uint32_t kByteOrderMagic = 0x1a2b3c4d;
constexpr uint32_t kInterfaceDescription = 1;
constexpr uint32_t kEnhancedPacket = 6;
constexpr uint16_t kLinktypeEthernet = 1;
constexpr uint16_t kOptionEnd = 0;
constexpr uint16_t kShbUserApplication = 4;
constexpr uint16_t kIfName = 2;
constexpr uint16_t kIfDescription = 3;
constexpr uint16_t kIfTimestampResolution = 9;
constexpr uint16_t kEpbFlags = 2;
constexpr char kDescription[] =
    "captured by tapas; directions are the workload's (TaaS): inbound = IN (into the workload), outbound = OUT";
const std::string kDefaultInterface = "tapas";

uint32_t padded(size_t length) { return static_cast<uint32_t>((length + 3) & ~size_t{3}); }

// Block body builder: options are code, length, value padded to 32 bits.
struct Block {
  std::vector<uint8_t> bytes;
  void u16(uint16_t value) { append(&value, sizeof value); }
  void u32(uint32_t value) { append(&value, sizeof value); }
  void append(const void* data, size_t length) {
    const auto* p = static_cast<const uint8_t*>(data);
    bytes.insert(bytes.end(), p, p + length);
  }
  void pad() { bytes.resize(padded(bytes.size()), 0); }
  void option(uint16_t code, const void* value, uint16_t length) {
    u16(code);
    u16(length);
    append(value, length);
    pad();
  }
  void end_options() {
    u16(kOptionEnd);
    u16(0);
  }
  // type, total length, body, total length
  std::vector<uint8_t> finish(uint32_t type) const {
    const uint32_t total = static_cast<uint32_t>(12 + bytes.size());
    std::vector<uint8_t> block(total);
    std::memcpy(block.data(), &type, 4);
    std::memcpy(block.data() + 4, &total, 4);
    std::memcpy(block.data() + 8, bytes.data(), bytes.size());
    std::memcpy(block.data() + 8 + bytes.size(), &total, 4);
    return block;
  }
};

uint32_t interface_block_size(const std::string& name) {
  // type, length, linktype, reserved, snaplen, if_name, if_description, if_tsresol, end, length
  return 4 + 4 + 2 + 2 + 4 + 4 + padded(name.size()) + 4 + padded(sizeof kDescription - 1) + 4 + 4 + 4 + 4;
}
}  // namespace

PcapngWriter::~PcapngWriter() { close(); }

bool PcapngWriter::put(const void* data, size_t length) {
  if (std::fwrite(data, 1, length, file_) != length) return false;
  size_ += length;
  return true;
}

std::string PcapngWriter::open(const std::string& path) {
  close();
  size_ = 0;
  interfaces_.clear();
  file_ = std::fopen(path.c_str(), "wb");
  if (file_ == nullptr) return "cannot write '" + path + "': " + errno_text(errno);
  // Host byte order, as the byte-order magic tells readers.
  Block section;
  section.u32(kByteOrderMagic);
  section.u16(1);  // version 1.0
  section.u16(0);
  const int64_t unknown_length = -1;  // the section's length is not known while writing
  section.append(&unknown_length, sizeof unknown_length);
  static constexpr char kApplication[] = "tapas";
  section.option(kShbUserApplication, kApplication, sizeof kApplication - 1);
  section.end_options();
  const std::vector<uint8_t> block = section.finish(kSectionHeader);
  if (!put(block.data(), block.size())) return "cannot write '" + path + "': " + errno_text(errno);
  return "";
}

bool PcapngWriter::write_interface(const std::string& name, uint32_t& id) {
  auto found = interfaces_.find(name);
  if (found != interfaces_.end()) {
    id = found->second;
    return true;
  }
  Block interface;
  interface.u16(kLinktypeEthernet);
  interface.u16(0);
  interface.u32(PcapWriter::kSnaplen);
  interface.option(kIfName, name.data(), static_cast<uint16_t>(name.size()));
  interface.option(kIfDescription, kDescription, sizeof kDescription - 1);
  const uint8_t nanoseconds = 9;
  interface.option(kIfTimestampResolution, &nanoseconds, 1);
  interface.end_options();
  const std::vector<uint8_t> block = interface.finish(kInterfaceDescription);
  if (!put(block.data(), block.size())) return false;
  id = static_cast<uint32_t>(interfaces_.size());
  interfaces_.emplace(name, id);
  return true;
}

uint64_t PcapngWriter::record_size(uint32_t length, const RecordMeta& meta) const {
  const std::string& name = meta.interface != nullptr ? *meta.interface : kDefaultInterface;
  if (length > PcapWriter::kSnaplen) length = PcapWriter::kSnaplen;
  // type, length, interface, timestamp (2), captured, original, data, epb_flags, end, length
  const uint64_t packet = 28 + padded(length) + (meta.direction != RecordMeta::Unknown ? 8 : 0) + 4 + 4;
  return packet + (interfaces_.count(name) ? 0 : interface_block_size(name));
}

bool PcapngWriter::write(const timespec& when, const PcapWriter::Piece* pieces, int count, uint32_t original_length,
                         const RecordMeta& meta) {
  if (file_ == nullptr) return false;
  uint32_t id = 0;
  if (!write_interface(meta.interface != nullptr ? *meta.interface : kDefaultInterface, id)) return false;
  uint32_t length = 0;
  for (int i = 0; i < count; ++i) length += pieces[i].length;
  const uint32_t captured = length > PcapWriter::kSnaplen ? PcapWriter::kSnaplen : length;
  const uint64_t nanoseconds = static_cast<uint64_t>(when.tv_sec) * 1000000000u + static_cast<uint64_t>(when.tv_nsec);
  const bool flags = meta.direction != RecordMeta::Unknown;
  const uint32_t total = 28 + padded(captured) + (flags ? 8 : 0) + 4 + 4;
  const uint32_t header[7] = {kEnhancedPacket, total, id, static_cast<uint32_t>(nanoseconds >> 32), static_cast<uint32_t>(nanoseconds),
                              captured, original_length < length ? length : original_length};
  if (!put(header, sizeof header)) return false;
  uint32_t left = captured;
  for (int i = 0; i < count && left > 0; ++i) {
    const uint32_t take = pieces[i].length < left ? pieces[i].length : left;
    if (!put(pieces[i].data, take)) return false;
    left -= take;
  }
  static constexpr uint8_t kZeros[4] = {};
  if (!put(kZeros, padded(captured) - captured)) return false;
  if (flags) {
    // epb_flags bits 0-1: 01 inbound, 10 outbound.
    const uint16_t option[2] = {kEpbFlags, 4};
    const uint32_t value = meta.direction;
    if (!put(option, sizeof option) || !put(&value, sizeof value)) return false;
  }
  const uint32_t trailer[2] = {0, total};  // opt_endofopt, then the length again
  return put(trailer, sizeof trailer);
}

void PcapngWriter::flush() {
  if (file_ != nullptr) std::fflush(file_);
}

bool PcapngWriter::close() {
  if (file_ == nullptr) return true;
  const bool ok = std::fclose(file_) == 0;
  file_ = nullptr;
  return ok;
}

}  // namespace tapas
