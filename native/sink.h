// Where mirrored frames go. A sink batches what it is given and sends on flush();
// the worker flushes before a ring block goes back to the kernel, because
// queued frames still point into that block.
#pragma once

#include <memory>
#include <string>

#include "frame.h"
#include "iface.h"
#include "plan.h"
#include "status.h"

namespace tapas {

enum class Enqueued { Queued, Oversize };

class Sink {
 public:
  virtual ~Sink() = default;
  // "" once the sink can send, or why it cannot.
  virtual std::string open() = 0;
  virtual Enqueued enqueue(const Frame& frame) = 0;
  virtual void flush() = 0;
  virtual LinkState link_state() = 0;
  // The namespace the sink's socket was opened in: it keeps that namespace alive.
  const NetnsIdentity& netns_identity() const { return netns_; }
  // The interface a port sink sends out of; 0 for a tunnel.
  virtual int ifindex() const { return 0; }

 protected:
  NetnsIdentity netns_;
};

std::unique_ptr<Sink> make_sink(const SinkSpec& spec, SinkCounters& counters);

}  // namespace tapas
