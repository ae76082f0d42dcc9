// File sink: copies go into pcap files that rotate (PcapRotation: tcpdump's
// -C, -G and -W), for `tapas mirror -w`. The agent never makes one.
//
// Every worker has its own FileSink (a lane), and all of them write one
// rotation: they share it, with a mutex, through a registry keyed by the
// path. A worker queues frames (pointers into its ring block) and writes
// them under the mutex on flush(), which comes before the block goes back to
// the kernel: one lock per block, not per frame. The files are closed when
// the last lane goes (the engine closes, or the plan drops the sink).
//
// Each record carries the kernel's capture time and the frame as it was on
// the wire: a VLAN tag the kernel moved into metadata is put back. In pcapng
// also the source interface (one IDB per source, IF or IF@NETNS) and the
// direction in epb_flags: inbound = TaaS IN, outbound = OUT (pcapng_writer.h).
#pragma once

#include <memory>
#include <vector>

#include "sink.h"

namespace tapas {

class FileSink final : public Sink {
 public:
  FileSink(const SinkSpec& spec, SinkCounters& counters) : spec_(spec), counters_(counters) {}
  ~FileSink() override;

  // Opens the first file (or joins the lanes that did). "" or why not.
  std::string open() override;
  Enqueued enqueue(const Frame& frame) override;
  void flush() override;
  // A file has no link: Up once open. Write errors are counted as the sink's errors.
  LinkState link_state() override { return LinkState::Up; }

  struct Shared;

 private:
  SinkSpec spec_;
  SinkCounters& counters_;
  std::shared_ptr<Shared> shared_;
  std::vector<Frame> queued_;
};

}  // namespace tapas
