#include "sink_file.h"

#include <map>
#include <mutex>
#include <string>

#include "pcap_rotation.h"

namespace tapas {

struct FileSink::Shared {
  explicit Shared(const RotationSpec& spec) : rotation(spec), spec(spec) {}
  std::mutex mu;
  PcapRotation rotation;
  RotationSpec spec;
};

namespace {

std::mutex registry_mu;
// path -> the rotation every lane of that file sink writes. Weak: the last
// lane to go closes the files.
std::map<std::string, std::weak_ptr<FileSink::Shared>>& registry() {
  static std::map<std::string, std::weak_ptr<FileSink::Shared>> files;
  return files;
}

timespec now_realtime() {
  timespec now{};
  clock_gettime(CLOCK_REALTIME, &now);
  return now;
}

}  // namespace

FileSink::~FileSink() {
  // What is queued points into a ring block that may be gone: never written here.
  queued_.clear();
  std::shared_ptr<Shared> shared = std::move(shared_);
  if (!shared) return;
  std::lock_guard<std::mutex> lock(registry_mu);
  shared.reset();  // the files close here when this was the last lane
  auto it = registry().find(spec_.file.path);
  if (it != registry().end() && it->second.expired()) registry().erase(it);
}

std::string FileSink::open() {
  std::lock_guard<std::mutex> lock(registry_mu);
  std::weak_ptr<Shared>& slot = registry()[spec_.file.path];
  std::shared_ptr<Shared> shared = slot.lock();
  if (shared) {
    // Another sink (of an earlier plan, not yet closed) writes this file with
    // other settings: two rotations would tear each other's files.
    if (!(shared->spec == spec_.file)) return "the file '" + spec_.file.path + "' is written by another sink";
  } else {
    shared = std::make_shared<Shared>(spec_.file);
    std::string error = shared->rotation.open();
    if (!error.empty()) return error;
    counters_.files_opened.add(1);
    slot = shared;
  }
  shared_ = std::move(shared);
  queued_.reserve(256);
  return "";
}

Enqueued FileSink::enqueue(const Frame& frame) {
  queued_.push_back(frame);
  return Enqueued::Queued;
}

void FileSink::flush() {
  if (queued_.empty() || !shared_) return;
  std::lock_guard<std::mutex> lock(shared_->mu);
  PcapRotation& rotation = shared_->rotation;
  const uint64_t opened_before = rotation.counters().files_opened.get();
  const uint64_t removed_before = rotation.counters().files_removed.get();
  for (const Frame& frame : queued_) {
    const timespec when = frame.timestamp.tv_sec != 0 ? frame.timestamp : now_realtime();
    PcapWriter::Piece pieces[3];
    int count = 0;
    uint8_t tag[kVlanTagLength];
    if (frame.has_stripped_tag && frame.captured_length >= kMacAddressesLength) {
      tag[0] = static_cast<uint8_t>(frame.stripped_tpid >> 8);
      tag[1] = static_cast<uint8_t>(frame.stripped_tpid);
      tag[2] = static_cast<uint8_t>(frame.stripped_tci >> 8);
      tag[3] = static_cast<uint8_t>(frame.stripped_tci);
      pieces[count++] = {frame.data, kMacAddressesLength};
      pieces[count++] = {tag, kVlanTagLength};
      pieces[count++] = {frame.data + kMacAddressesLength, frame.captured_length - kMacAddressesLength};
    } else {
      pieces[count++] = {frame.data, frame.captured_length};
    }
    const uint32_t length = frame.captured_length + (count == 3 ? kVlanTagLength : 0);
    const uint32_t original = frame.wire_length + (count == 3 ? kVlanTagLength : 0);
    // The workload's direction (pcapng_writer.h): the host side transmits what goes into the workload (IN).
    const RecordMeta meta{frame.interface, frame.outgoing ? RecordMeta::Inbound : RecordMeta::Outbound};
    if (rotation.write(when, pieces, count, original, meta)) {
      counters_.packets.add(1);
      counters_.bytes.add(length);
    } else {
      counters_.errors.add(1);
    }
  }
  queued_.clear();
  // Readers (tcpdump -r on a growing file) see every block as it is written.
  rotation.flush();
  // The lane that rotated counts the files, so that the lanes add up.
  counters_.files_opened.add(rotation.counters().files_opened.get() - opened_before);
  counters_.files_removed.add(rotation.counters().files_removed.get() - removed_before);
}

}  // namespace tapas
