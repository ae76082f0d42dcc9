// The only file that knows N-API: converts JavaScript values to the engine's
// plain structs and back. The surface is typed in src/engine/native.ts.
#include <napi.h>

#include <algorithm>
#include <cstring>
#include <memory>

#include "collector.h"
#include "encap.h"
#include "engine.h"
#include "iface.h"

namespace {

using namespace tapas;

std::string string_field(const Napi::Object& object, const char* name, bool required = true) {
  Napi::Value value = object.Get(name);
  if (value.IsUndefined() || value.IsNull()) {
    if (required) throw Napi::TypeError::New(object.Env(), std::string("missing field '") + name + "'");
    return "";
  }
  if (!value.IsString()) throw Napi::TypeError::New(object.Env(), std::string("field '") + name + "' must be a string");
  return value.As<Napi::String>().Utf8Value();
}

uint32_t uint_field(const Napi::Object& object, const char* name, uint32_t fallback) {
  Napi::Value value = object.Get(name);
  if (value.IsUndefined()) return fallback;
  if (!value.IsNumber()) throw Napi::TypeError::New(object.Env(), std::string("field '") + name + "' must be a number");
  return value.As<Napi::Number>().Uint32Value();
}

// An integer in [0, max]; anything else is a TypeError naming the field.
uint32_t required_uint(const Napi::Object& object, const char* name, uint32_t max) {
  Napi::Value value = object.Get(name);
  double number = value.IsNumber() ? value.As<Napi::Number>().DoubleValue() : -1;
  if (!(number >= 0 && number <= max && number == static_cast<double>(static_cast<uint32_t>(number)))) {
    throw Napi::TypeError::New(object.Env(), std::string("field '") + name + "' must be an integer from 0 to " +
                                                 std::to_string(max));
  }
  return static_cast<uint32_t>(number);
}

bool bool_field(const Napi::Object& object, const char* name) {
  Napi::Value value = object.Get(name);
  if (value.IsUndefined()) return false;
  if (!value.IsBoolean()) throw Napi::TypeError::New(object.Env(), std::string("field '") + name + "' must be a boolean");
  return value.As<Napi::Boolean>().Value();
}

Napi::Array array_field(const Napi::Object& object, const char* name) {
  Napi::Value value = object.Get(name);
  if (value.IsUndefined()) return Napi::Array::New(object.Env());
  if (!value.IsArray()) throw Napi::TypeError::New(object.Env(), std::string("field '") + name + "' must be an array");
  return value.As<Napi::Array>();
}

template <typename Each>
void for_each_object(const Napi::Array& array, Each&& each) {
  for (uint32_t i = 0; i < array.Length(); ++i) {
    Napi::Value item = array.Get(i);
    if (!item.IsObject()) throw Napi::TypeError::New(array.Env(), "plan entries must be objects");
    each(item.As<Napi::Object>());
  }
}

Direction to_direction(const Napi::Env& env, const std::string& text) {
  if (text == "IN") return Direction::In;
  if (text == "OUT") return Direction::Out;
  if (text == "BOTH") return Direction::Both;
  throw Napi::TypeError::New(env, "direction must be IN, OUT or BOTH, not '" + text + "'");
}

Plan to_plan(const Napi::Object& object) {
  Plan plan;
  for_each_object(array_field(object, "sources"), [&](const Napi::Object& item) {
    SourceSpec source;
    source.id = string_field(item, "id");
    source.ifname = string_field(item, "ifname");
    source.netns = string_field(item, "netns", false);
    Napi::Value ring = item.Get("ring");
    if (ring.IsObject()) {
      Napi::Object settings = ring.As<Napi::Object>();
      source.ring.block_size = uint_field(settings, "blockSize", source.ring.block_size);
      source.ring.block_count = uint_field(settings, "blockCount", source.ring.block_count);
      source.ring.block_timeout_ms = uint_field(settings, "blockTimeoutMs", source.ring.block_timeout_ms);
      source.ring.version = uint_field(settings, "version", source.ring.version);
      source.ring.frame_size = uint_field(settings, "frameSize", source.ring.frame_size);
    }
    plan.sources.push_back(std::move(source));
  });
  for_each_object(array_field(object, "sinks"), [&](const Napi::Object& item) {
    SinkSpec sink;
    sink.id = string_field(item, "id");
    std::string kind = string_field(item, "kind");
    sink.netns = string_field(item, "netns", false);
    if (kind == "port") {
      sink.kind = SinkKind::Port;
      sink.ifname = string_field(item, "ifname");
    } else if (kind == "gre") {
      sink.kind = SinkKind::Gre;
      sink.remote_ip = string_field(item, "remoteIp");
      sink.key = required_uint(item, "key", 0xffffffffu);
      sink.gre_truncate = bool_field(item, "truncate");
    } else if (kind == "erspan") {
      sink.kind = SinkKind::Erspan;
      sink.remote_ip = string_field(item, "remoteIp");
      sink.session = static_cast<uint16_t>(required_uint(item, "session", encap::kErspanMaxSession));
      sink.erspan_index = item.Get("index").IsUndefined()
                              ? encap::openstack_erspan_index(sink.session)
                              : required_uint(item, "index", encap::kErspanMaxIndex);
    } else {
      throw Napi::TypeError::New(item.Env(), "unknown sink kind '" + kind + "'");
    }
    plan.sinks.push_back(std::move(sink));
  });
  for_each_object(array_field(object, "rules"), [&](const Napi::Object& item) {
    RuleSpec rule;
    rule.id = string_field(item, "id");
    rule.source_id = string_field(item, "sourceId");
    rule.sink_id = string_field(item, "sinkId");
    rule.direction = to_direction(item.Env(), string_field(item, "direction"));
    Napi::Array vlans = array_field(item, "vlans");
    for (uint32_t i = 0; i < vlans.Length(); ++i) {
      Napi::Value range = vlans.Get(i);
      if (!range.IsArray() || range.As<Napi::Array>().Length() != 2) {
        throw Napi::TypeError::New(item.Env(), "vlans must be [low, high] pairs");
      }
      Napi::Array pair = range.As<Napi::Array>();
      rule.vlans.push_back({static_cast<uint16_t>(pair.Get(0u).As<Napi::Number>().Uint32Value()),
                            static_cast<uint16_t>(pair.Get(1u).As<Napi::Number>().Uint32Value())});
    }
    plan.rules.push_back(std::move(rule));
  });
  return plan;
}

void put_health(Napi::Object& object, const EndpointHealth& health) {
  object.Set("id", health.id);
  object.Set("ok", health.ok);
  if (!health.ok) object.Set("reason", health.reason);
}

// One JavaScript object per entry, filled by fill(object, entry).
template <typename Entry, typename Fill>
Napi::Array to_js_list(Napi::Env env, const std::vector<Entry>& entries, Fill&& fill) {
  Napi::Array list = Napi::Array::New(env, entries.size());
  for (size_t i = 0; i < entries.size(); ++i) {
    Napi::Object object = Napi::Object::New(env);
    fill(object, entries[i]);
    list.Set(static_cast<uint32_t>(i), object);
  }
  return list;
}

Napi::Object to_js(Napi::Env env, const EngineStats& stats) {
  auto number = [&](uint64_t value) { return Napi::Number::New(env, static_cast<double>(value)); };
  Napi::Object result = Napi::Object::New(env);
  result.Set("sources", to_js_list(env, stats.sources, [&](Napi::Object& o, const SourceStat& s) {
    put_health(o, s);
    o.Set("packets", number(s.packets));
    o.Set("bytes", number(s.bytes));
    o.Set("ringDrops", number(s.ring_drops));
    o.Set("ringFreezes", number(s.ring_freezes));
    o.Set("truncated", number(s.truncated));
    o.Set("blockTimeoutMs", number(s.block_timeout_ms));
  }));
  result.Set("sinks", to_js_list(env, stats.sinks, [&](Napi::Object& o, const SinkStat& s) {
    put_health(o, s);
    o.Set("packets", number(s.packets));
    o.Set("bytes", number(s.bytes));
    o.Set("errors", number(s.errors));
    o.Set("truncated", number(s.truncated));
    o.Set("fragmented", number(s.fragmented));
  }));
  result.Set("rules", to_js_list(env, stats.rules, [&](Napi::Object& o, const RuleStat& r) {
    o.Set("id", r.id);
    o.Set("packets", number(r.packets));
    o.Set("bytes", number(r.bytes));
    o.Set("oversize", number(r.oversize));
    o.Set("unavailable", number(r.unavailable));
  }));
  return result;
}

// Opening sockets (and entering namespaces) happens off the JavaScript thread.
class ApplyWork : public Napi::AsyncWorker {
 public:
  ApplyWork(Napi::Env env, std::shared_ptr<Engine> engine, Plan plan)
      : Napi::AsyncWorker(env), engine_(std::move(engine)), plan_(std::move(plan)),
        deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    std::string error = engine_->apply(plan_);
    if (!error.empty()) SetError(error);
  }
  void OnOK() override { deferred_.Resolve(Env().Undefined()); }
  void OnError(const Napi::Error& error) override { deferred_.Reject(error.Value()); }

 private:
  std::shared_ptr<Engine> engine_;
  Plan plan_;
  Napi::Promise::Deferred deferred_;
};

class NativeEngine : public Napi::ObjectWrap<NativeEngine> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeEngine",
                       {InstanceMethod("apply", &NativeEngine::Apply), InstanceMethod("stats", &NativeEngine::Stats),
                        InstanceMethod("close", &NativeEngine::Close)});
  }

  explicit NativeEngine(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeEngine>(info) {
    EngineOptions options;
    if (info.Length() > 0 && info[0].IsObject()) {
      Napi::Object settings = info[0].As<Napi::Object>();
      options.workers = uint_field(settings, "workers", 1);
      std::string priority = string_field(settings, "priority", false);
      if (priority == "normal") options.priority = WorkerPriority::Normal;
      else if (priority == "realtime") options.priority = WorkerPriority::Realtime;
      else if (priority.empty() || priority == "high") options.priority = WorkerPriority::High;
      else throw Napi::TypeError::New(info.Env(), "priority must be normal, high or realtime, not '" + priority + "'");
    }
    engine_ = std::make_shared<Engine>(options);
  }

 private:
  Napi::Value Apply(const Napi::CallbackInfo& info) {
    if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(info.Env(), "apply(plan) needs a plan object");
    auto* work = new ApplyWork(info.Env(), engine_, to_plan(info[0].As<Napi::Object>()));
    Napi::Promise promise = work->promise();
    work->Queue();
    return promise;
  }
  Napi::Value Stats(const Napi::CallbackInfo& info) { return to_js(info.Env(), engine_->stats()); }
  Napi::Value Close(const Napi::CallbackInfo& info) {
    engine_->close();
    return info.Env().Undefined();
  }

  std::shared_ptr<Engine> engine_;
};

Napi::Value ProbeInterface(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "probeInterface(ifname, netns?)");
  std::string netns = info.Length() > 1 && info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "";
  InterfaceInfo interface;
  std::string error = probe_interface(info[0].As<Napi::String>().Utf8Value(), netns, interface);
  if (!error.empty()) throw Napi::Error::New(env, error);
  Napi::Object result = Napi::Object::New(env);
  result.Set("ifindex", interface.ifindex);
  result.Set("mtu", interface.mtu);
  result.Set("mac", interface.mac);
  result.Set("up", interface.up);
  return result;
}

// Pure helpers over the tunnel formats (no sockets), for tests and tools.

encap::TunnelHeaders to_tunnel_headers(const Napi::Object& options) {
  encap::TunnelHeaders tunnel;
  std::string kind = string_field(options, "kind");
  if (kind == "gre") {
    tunnel.type = encap::TunnelType::Gre;
    tunnel.key = required_uint(options, "key", 0xffffffffu);
  } else if (kind == "erspan") {
    tunnel.type = encap::TunnelType::ErspanII;
    tunnel.session = static_cast<uint16_t>(required_uint(options, "session", encap::kErspanMaxSession));
    tunnel.index = options.Get("index").IsUndefined() ? encap::openstack_erspan_index(tunnel.session)
                                                      : required_uint(options, "index", encap::kErspanMaxIndex);
  } else {
    throw Napi::TypeError::New(options.Env(), "kind must be 'gre' or 'erspan', not '" + kind + "'");
  }
  return tunnel;
}

// encapsulate({kind, key | session, index?, sequence?, maxInner?}, frame): the
// IP payload a tunnel sink sends for this frame.
Napi::Value Encapsulate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsObject() || !info[1].IsBuffer()) {
    throw Napi::TypeError::New(env, "encapsulate(options, frame: Buffer)");
  }
  Napi::Object options = info[0].As<Napi::Object>();
  Napi::Buffer<uint8_t> frame = info[1].As<Napi::Buffer<uint8_t>>();
  encap::TunnelHeaders tunnel = to_tunnel_headers(options);
  uint32_t sequence = options.Get("sequence").IsUndefined() ? 0 : required_uint(options, "sequence", 0xffffffffu);
  size_t inner = frame.Length();
  if (!options.Get("maxInner").IsUndefined()) inner = std::min<size_t>(inner, required_uint(options, "maxInner", 0xffffffffu));
  encap::FrameClass frame_class;
  if (tunnel.type == encap::TunnelType::ErspanII) frame_class = encap::classify_frame(frame.Data(), frame.Length());
  Napi::Buffer<uint8_t> out = Napi::Buffer<uint8_t>::New(env, tunnel.length() + inner);
  size_t header = encap::write_tunnel_headers(tunnel, frame_class, sequence, inner < frame.Length(), out.Data());
  std::memcpy(out.Data() + header, frame.Data(), inner);
  return out;
}

// parseTunnelPacket(packet, {ipv4?}): the decoded headers and inner frame, or {error}.
Napi::Value ParseTunnelPacket(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsBuffer()) throw Napi::TypeError::New(env, "parseTunnelPacket(packet: Buffer, options?)");
  Napi::Buffer<uint8_t> data = info[0].As<Napi::Buffer<uint8_t>>();
  bool ipv4 = info.Length() > 1 && info[1].IsObject() && bool_field(info[1].As<Napi::Object>(), "ipv4");
  encap::TunnelPacket packet;
  encap::ParseStatus status = ipv4 ? encap::parse_ipv4_gre_packet(data.Data(), data.Length(), packet)
                                   : encap::parse_gre_packet(data.Data(), data.Length(), packet);
  Napi::Object result = Napi::Object::New(env);
  if (status != encap::ParseStatus::Ok) {
    result.Set("error", encap::parse_status_name(status));
    return result;
  }
  result.Set("kind", packet.type == encap::TunnelType::Gre ? "gre" : "erspan");
  result.Set("protocol", packet.gre.protocol);
  if (packet.gre.key) result.Set("key", Napi::Number::New(env, *packet.gre.key));
  if (packet.gre.sequence) result.Set("sequence", Napi::Number::New(env, *packet.gre.sequence));
  if (packet.type == encap::TunnelType::ErspanII) {
    Napi::Object erspan = Napi::Object::New(env);
    erspan.Set("vlan", packet.erspan.vlan);
    erspan.Set("cos", packet.erspan.cos);
    erspan.Set("encap", packet.erspan.encap);
    erspan.Set("truncated", packet.erspan.truncated);
    erspan.Set("session", packet.erspan.session);
    erspan.Set("index", Napi::Number::New(env, packet.erspan.index));
    result.Set("erspan", erspan);
  }
  result.Set("frame", Napi::Buffer<uint8_t>::Copy(env, packet.inner, packet.inner_length));
  return result;
}

Napi::Value ErspanIndexFor(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || !info[0].IsNumber()) throw Napi::TypeError::New(info.Env(), "erspanIndexFor(tunnelId: number)");
  return Napi::Number::New(info.Env(), encap::openstack_erspan_index(info[0].As<Napi::Number>().Uint32Value()));
}

class NativeCollector : public Napi::ObjectWrap<NativeCollector> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeCollector",
                       {InstanceMethod("stats", &NativeCollector::Stats), InstanceMethod("close", &NativeCollector::Close)});
  }

  // Opens its sockets at once (throwing why it cannot) and receives on its own thread.
  explicit NativeCollector(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeCollector>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "new NativeCollector(options)");
    Napi::Object options = info[0].As<Napi::Object>();
    CollectorSpec spec;
    spec.netns = string_field(options, "netns", false);
    spec.listen_ip = string_field(options, "listenIp", false);
    if (!options.Get("key").IsUndefined()) spec.key = required_uint(options, "key", 0xffffffffu);
    if (!options.Get("session").IsUndefined()) {
      spec.session = static_cast<uint16_t>(required_uint(options, "session", encap::kErspanMaxSession));
    }
    spec.pcap_path = string_field(options, "pcapPath", false);
    spec.to_ifname = string_field(options, "toIfname", false);
    spec.to_netns = string_field(options, "toNetns", false);
    std::string error = collector_.start(spec);
    if (!error.empty()) throw Napi::Error::New(env, error);
  }

 private:
  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const CollectorCounters& c = collector_.counters();
    auto number = [&](const Counter& counter) { return Napi::Number::New(env, static_cast<double>(counter.get())); };
    Napi::Object result = Napi::Object::New(env);
    result.Set("received", number(c.received));
    result.Set("accepted", number(c.accepted));
    result.Set("filtered", number(c.filtered));
    result.Set("malformed", number(c.malformed));
    Napi::Object reasons = Napi::Object::New(env);
    for (size_t i = 1; i < c.malformed_by_reason.size(); ++i) {
      reasons.Set(encap::parse_status_name(static_cast<encap::ParseStatus>(i)), number(c.malformed_by_reason[i]));
    }
    result.Set("malformedBy", reasons);
    result.Set("truncated", number(c.truncated));
    result.Set("written", number(c.written));
    result.Set("outputErrors", number(c.output_errors));
    result.Set("oversize", number(c.oversize));
    return result;
  }
  Napi::Value Close(const Napi::CallbackInfo& info) {
    collector_.stop();
    return info.Env().Undefined();
  }

  Collector collector_;
};

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("NativeEngine", NativeEngine::Define(env));
  exports.Set("NativeCollector", NativeCollector::Define(env));
  exports.Set("probeInterface", Napi::Function::New(env, ProbeInterface));
  exports.Set("encapsulate", Napi::Function::New(env, Encapsulate));
  exports.Set("parseTunnelPacket", Napi::Function::New(env, ParseTunnelPacket));
  exports.Set("erspanIndexFor", Napi::Function::New(env, ErspanIndexFor));
  return exports;
}

}  // namespace

NODE_API_MODULE(tapas, Init)
