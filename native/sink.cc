#include "sink.h"

#include "sink_port.h"
#include "sink_tunnel.h"

namespace tapas {

std::unique_ptr<Sink> make_sink(const SinkSpec& spec, SinkCounters& counters) {
  switch (spec.kind) {
    case SinkKind::Port:
      return std::make_unique<PortSink>(spec, counters);
    case SinkKind::Gre:
    case SinkKind::Erspan:
    case SinkKind::ErspanIII:
    case SinkKind::Vxlan:
      return std::make_unique<TunnelSink>(spec, counters);
    case SinkKind::Unknown:
      break;  // refused by the plan check; never opened
  }
  return nullptr;
}

}  // namespace tapas
