// The only file that knows N-API: converts JavaScript values to the engine's
// plain structs and back. The surface is typed in src/engine/native.ts.
#include <napi.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <optional>
#include <stdexcept>

#include "bpf_loader.h"

#include <arpa/inet.h>
#include "collector.h"
#include "encap.h"
#include "engine.h"
#include "filter.h"
#include "iface.h"

namespace {

using namespace tapas;

// Every entry point runs its body through this. A C++ exception must never
// reach N-API: node-addon-api passes on only Napi::Error, and anything else
// would end the whole process in std::terminate. `doing` starts the message
// ("cannot start the engine: epoll_create1: Too many open files").
template <typename Body>
auto guarded(Napi::Env env, const char* doing, Body&& body) -> decltype(body()) {
  try {
    return body();
  } catch (const Napi::Error&) {
    throw;  // already a JavaScript error (a TypeError about the input, say)
  } catch (const std::exception& error) {
    throw Napi::Error::New(env, std::string(doing) + ": " + error.what());
  } catch (...) {
    throw Napi::Error::New(env, std::string(doing) + ": an unknown C++ exception");
  }
}

// How a wrong value reads in a message: -1, 1.5, NaN, "3" (a string), null.
std::string shown(const Napi::Value& value) {
  if (value.IsNumber()) return value.ToString().Utf8Value();
  if (value.IsString()) return "\"" + value.As<Napi::String>().Utf8Value() + "\" (a string)";
  if (value.IsUndefined()) return "undefined";
  if (value.IsNull()) return "null";
  if (value.IsBoolean()) return value.As<Napi::Boolean>().Value() ? "true" : "false";
  if (value.IsArray()) return "an array";
  return "an object";
}

// Reads the fields of one JavaScript object; every error is a TypeError that
// names the field and where it is ("field 'key' of sinks[2] must be ...").
class Fields {
 public:
  Fields(const Napi::Object& object, std::string where) : object_(object), where_(std::move(where)) {}

  Napi::Value get(const char* name) const { return object_.Get(name); }
  const std::string& where() const { return where_; }
  bool has(const char* name) const { return !get(name).IsUndefined(); }

  Napi::TypeError error(const std::string& name, const std::string& what) const {
    return Napi::TypeError::New(object_.Env(), "field '" + name + "' of " + where_ + " " + what);
  }

  std::string string(const char* name, bool required = true) const {
    Napi::Value value = get(name);
    if (value.IsUndefined() || value.IsNull()) {
      if (required) throw error(name, "is missing");
      return "";
    }
    if (!value.IsString()) throw error(name, "must be a string, not " + shown(value));
    return value.As<Napi::String>().Utf8Value();
  }

  // An integer in [min, max]: a negative, fractional, NaN, infinite or
  // non-numeric value is an error, never wrapped or rounded into range.
  uint32_t integer(const char* name, uint32_t min, uint32_t max, std::optional<uint32_t> fallback = std::nullopt) const {
    Napi::Value value = get(name);
    if (value.IsUndefined() && fallback) return *fallback;
    return integer_value(value, name, min, max);
  }

  uint32_t integer_value(const Napi::Value& value, const std::string& name, uint32_t min, uint32_t max) const {
    const double number = value.IsNumber() ? value.As<Napi::Number>().DoubleValue() : std::nan("");
    if (!(std::isfinite(number) && number >= min && number <= max && std::floor(number) == number)) {
      throw error(name, "must be an integer from " + std::to_string(min) + " to " + std::to_string(max) + ", not " + shown(value));
    }
    return static_cast<uint32_t>(number);
  }

  bool boolean(const char* name) const {
    Napi::Value value = get(name);
    if (value.IsUndefined()) return false;
    if (!value.IsBoolean()) throw error(name, "must be a boolean, not " + shown(value));
    return value.As<Napi::Boolean>().Value();
  }

  Napi::Array array(const char* name) const {
    Napi::Value value = get(name);
    if (value.IsUndefined()) return Napi::Array::New(object_.Env());
    if (!value.IsArray()) throw error(name, "must be an array, not " + shown(value));
    return value.As<Napi::Array>();
  }

  // The rule the API applies too: what the kernel accepts as a name (iface.h).
  std::string interface_name(const char* name, bool required = true) const {
    std::string ifname = string(name, required);
    if (ifname.empty() && !required) return ifname;
    std::string problem = check_interface_name(ifname);
    if (!problem.empty()) throw error(name, "is not an interface name: it " + problem + " ('" + ifname + "')");
    return ifname;
  }

  std::string netns(const char* name) const {
    std::string netns = string(name, false);
    if (netns.find('\0') != std::string::npos) throw error(name, "must not contain a NUL byte");
    return netns;
  }

 private:
  Napi::Object object_;
  std::string where_;
};

// A pcap rotation, `rotation: { size, seconds, files }` (size in millions of
// bytes, as tcpdump's -C), of the collector's options and of a file sink.
// A rotation that can be read but not run (files without size or seconds) is
// the collector's TypeError, and a plan's refused sink (plan.h) when checked is false.
RotationSpec to_rotation(const Fields& owner, const std::string& where, std::string path, bool checked = true) {
  RotationSpec rotation;
  rotation.path = std::move(path);
  rotation.pcapng = owner.boolean("pcapng");
  Napi::Value value = owner.get("rotation");
  if (value.IsUndefined()) return rotation;
  if (!value.IsObject() || value.IsArray()) throw owner.error("rotation", "must be an object, not " + shown(value));
  const Fields fields(value.As<Napi::Object>(), "the rotation of " + where);
  if (fields.has("size")) rotation.max_bytes = uint64_t{fields.integer("size", 1, 1000000)} * 1000000;
  if (fields.has("seconds")) rotation.seconds = fields.integer("seconds", 1, 31622400);
  if (fields.has("files")) rotation.max_files = fields.integer("files", 1, 1000000);
  std::string problem = checked ? check_rotation(rotation) : "";
  if (!problem.empty()) throw Napi::TypeError::New(value.Env(), "the rotation of " + where + ": " + problem);
  return rotation;
}

// Calls each(Fields) for every entry of plan.name, each an object.
template <typename Each>
void for_each_entry(const Fields& plan, const char* name, Each&& each) {
  Napi::Array array = plan.array(name);
  for (uint32_t i = 0; i < array.Length(); ++i) {
    Napi::Value item = array.Get(i);
    const std::string where = std::string(name) + "[" + std::to_string(i) + "]";
    if (!item.IsObject() || item.IsArray()) {
      throw Napi::TypeError::New(array.Env(), where + " must be an object, not " + shown(item));
    }
    each(Fields(item.As<Napi::Object>(), where));
  }
}

Direction to_direction(const Fields& rule) {
  const std::string text = rule.string("direction");
  if (text == "IN") return Direction::In;
  if (text == "OUT") return Direction::Out;
  if (text == "BOTH") return Direction::Both;
  throw rule.error("direction", "must be IN, OUT or BOTH, not '" + text + "'");
}

// Only a plan that cannot be read (wrong types, out-of-range numbers, bad
// interface names) is refused here, as a whole; what can be read but not run
// (duplicate ids, missing references, a sink that is also a source, an
// unknown sink kind) goes to the engine, which runs the rest (plan.h).
Plan to_plan(const Napi::Object& object) {
  Plan plan;
  const Fields fields(object, "the plan");
  for_each_entry(fields, "sources", [&](const Fields& item) {
    SourceSpec source;
    source.id = item.string("id");
    source.ifname = item.interface_name("ifname");
    source.netns = item.netns("netns");
    plan.sources.push_back(std::move(source));
  });
  for_each_entry(fields, "sinks", [&](const Fields& item) {
    SinkSpec sink;
    sink.id = item.string("id");
    sink.kind_name = item.string("kind");
    sink.netns = item.netns("netns");
    if (sink.kind_name == "port") {
      sink.kind = SinkKind::Port;
      sink.ifname = item.interface_name("ifname");
    } else if (sink.kind_name == "gre") {
      sink.kind = SinkKind::Gre;
      sink.remote_ip = item.string("remoteIp");
      sink.key = item.integer("key", 0, 0xffffffffu);
      sink.gre_truncate = item.boolean("truncate");
      sink.gre_sequence = item.boolean("sequence");
    } else if (sink.kind_name == "erspan") {
      sink.kind = SinkKind::Erspan;
      sink.remote_ip = item.string("remoteIp");
      sink.session = static_cast<uint16_t>(item.integer("session", 0, encap::kErspanMaxSession));
      sink.erspan_index = item.has("index") ? item.integer("index", 0, encap::kErspanMaxIndex)
                                            : encap::openstack_erspan_index(sink.session);
    } else if (sink.kind_name == "erspan3") {
      sink.kind = SinkKind::ErspanIII;
      sink.remote_ip = item.string("remoteIp");
      sink.session = static_cast<uint16_t>(item.integer("session", 0, encap::kErspanMaxSession));
      sink.hwid = static_cast<uint8_t>(item.integer("hwid", 0, encap::kErspanMaxHardwareId, 0u));
    } else if (sink.kind_name == "vxlan") {
      sink.kind = SinkKind::Vxlan;
      sink.remote_ip = item.string("remoteIp");
      sink.vni = item.integer("vni", 0, encap::kVxlanMaxVni);
      sink.udp_port = static_cast<uint16_t>(item.integer("port", 1, 65535, encap::kVxlanDefaultPort));
    } else if (sink.kind_name == "file") {
      // Only `tapas mirror -w` makes one; the agent's plans never do.
      sink.kind = SinkKind::File;
      sink.file = to_rotation(item, item.where(), item.string("path"), false);
    } else {
      sink.kind = SinkKind::Unknown;  // refused by the engine, with the kind in the reason
    }
    plan.sinks.push_back(std::move(sink));
  });
  for_each_entry(fields, "rules", [&](const Fields& item) {
    RuleSpec rule;
    rule.id = item.string("id");
    rule.source_id = item.string("sourceId");
    rule.sink_id = item.string("sinkId");
    rule.direction = to_direction(item);
    Napi::Array vlans = item.array("vlans");
    for (uint32_t i = 0; i < vlans.Length(); ++i) {
      Napi::Value range = vlans.Get(i);
      const std::string name = "vlans[" + std::to_string(i) + "]";
      if (!range.IsArray() || range.As<Napi::Array>().Length() != 2) {
        throw item.error(name, "must be a [low, high] pair, not " + shown(range));
      }
      Napi::Array pair = range.As<Napi::Array>();
      rule.vlans.push_back({static_cast<uint16_t>(item.integer_value(pair.Get(0u), name + "[0]", 1, 4094)),
                            static_cast<uint16_t>(item.integer_value(pair.Get(1u), name + "[1]", 1, 4094))});
    }
    rule.filter = item.string("filter", false);
    if (rule.filter.find('\0') != std::string::npos) throw item.error("filter", "must not contain a NUL byte");
    rule.snaplen = item.has("snaplen") ? item.integer("snaplen", kMinSnaplen, kMaxSnaplen) : 0;
    rule.sample_rate = item.integer("sampleRate", 1, 0xffffffffu, 1);
    plan.rules.push_back(std::move(rule));
  });
  for_each_entry(fields, "interfaces", [&](const Fields& item) {
    InterfaceSpec interface;
    interface.id = item.string("id");
    interface.ifname = item.interface_name("ifname");
    interface.netns = item.netns("netns");
    plan.interfaces.push_back(std::move(interface));
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

Napi::Number number(Napi::Env env, uint64_t value) { return Napi::Number::New(env, static_cast<double>(value)); }

void fill(Napi::Env env, Napi::Object& o, const SourceStat& s) {
  put_health(o, s);
  o.Set("packets", number(env, s.packets));
  o.Set("bytes", number(env, s.bytes));
  o.Set("captureDrops", number(env, s.capture_drops));
  o.Set("truncated", number(env, s.truncated));
  if (s.packet) {
    Napi::Object packet = Napi::Object::New(env);
    packet.Set("ringFreezes", number(env, s.packet->ring_freezes));
    packet.Set("blockTimeoutMs", number(env, s.packet->block_timeout_ms));
    o.Set("packet", packet);
  }
}

void fill(Napi::Env env, Napi::Object& o, const SinkStat& s) {
  put_health(o, s);
  o.Set("packets", number(env, s.packets));
  o.Set("bytes", number(env, s.bytes));
  o.Set("errors", number(env, s.errors));
  o.Set("truncated", number(env, s.truncated));
  o.Set("fragmented", number(env, s.fragmented));
  if (s.file) {
    o.Set("filesOpened", number(env, s.files_opened));
    o.Set("filesRemoved", number(env, s.files_removed));
  }
}

void fill(Napi::Env env, Napi::Object& o, const RuleStat& r) {
  put_health(o, r);
  o.Set("packets", number(env, r.packets));
  o.Set("bytes", number(env, r.bytes));
  o.Set("oversize", number(env, r.oversize));
  o.Set("unavailable", number(env, r.unavailable));
  o.Set("filtered", number(env, r.filtered));
  o.Set("sampledOut", number(env, r.sampled_out));
  o.Set("truncated", number(env, r.truncated));
}

void fill(Napi::Env env, Napi::Object& o, const InterfaceStat& i) {
  o.Set("id", i.id);
  o.Set("present", i.present);
  o.Set("up", i.up);
  o.Set("running", i.running);
  o.Set("mac", i.mac);
  o.Set("mtu", number(env, i.mtu));
  o.Set("ifindex", Napi::Number::New(env, i.ifindex));
  if (!i.reason.empty()) o.Set("reason", i.reason);
  if (!i.same_as.empty()) o.Set("sameAs", i.same_as);
}

template <typename Entry>
Napi::Object to_js_entry(Napi::Env env, const Entry& entry) {
  Napi::Object object = Napi::Object::New(env);
  fill(env, object, entry);
  return object;
}

Napi::Object to_js(Napi::Env env, const EngineStats& stats) {
  auto list = [&](const auto& entries) { return to_js_list(env, entries, [&](Napi::Object& o, const auto& e) { fill(env, o, e); }); };
  Napi::Object result = Napi::Object::New(env);
  result.Set("sources", list(stats.sources));
  result.Set("sinks", list(stats.sinks));
  result.Set("rules", list(stats.rules));
  result.Set("interfaces", list(stats.interfaces));
  return result;
}

// A delta as JavaScript reads it: {full: true, ...every list} or {full: false,
// sources: [[position, stat], ...], ...} with only the entries that changed.
Napi::Object to_js(Napi::Env env, const StatsDelta& delta) {
  if (delta.full) {
    Napi::Object result = to_js(env, delta.changed);
    result.Set("full", true);
    return result;
  }
  auto pairs = [&](const auto& entries, const std::vector<uint32_t>& at) {
    Napi::Array list = Napi::Array::New(env, entries.size());
    for (size_t i = 0; i < entries.size(); ++i) {
      Napi::Array pair = Napi::Array::New(env, 2);
      pair.Set(uint32_t{0}, Napi::Number::New(env, at[i]));
      pair.Set(uint32_t{1}, to_js_entry(env, entries[i]));
      list.Set(static_cast<uint32_t>(i), pair);
    }
    return list;
  };
  Napi::Object result = Napi::Object::New(env);
  result.Set("full", false);
  result.Set("sources", pairs(delta.changed.sources, delta.source_at));
  result.Set("sinks", pairs(delta.changed.sinks, delta.sink_at));
  result.Set("rules", pairs(delta.changed.rules, delta.rule_at));
  result.Set("interfaces", pairs(delta.changed.interfaces, delta.interface_at));
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
  // On a thread of libuv's pool: nothing may escape it.
  void Execute() override {
    try {
      std::string error = engine_->apply(plan_);
      if (!error.empty()) SetError(error);
    } catch (const std::exception& error) {
      SetError(std::string("cannot apply the plan: ") + error.what());
    } catch (...) {
      SetError("cannot apply the plan: an unknown C++ exception");
    }
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
                        InstanceMethod("statsChanges", &NativeEngine::Changes),
                        InstanceMethod("close", &NativeEngine::Close)});
  }

  explicit NativeEngine(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeEngine>(info) {
    EngineOptions options = to_options(info);
    engine_ = guarded(info.Env(), "cannot start the engine", [&] { return std::make_shared<Engine>(options); });
  }

 private:
  static EngineOptions to_options(const Napi::CallbackInfo& info) {
    EngineOptions options;
    if (info.Length() == 0 || info[0].IsUndefined()) return options;
    if (!info[0].IsObject() || info[0].IsArray()) {
      throw Napi::TypeError::New(info.Env(), "the engine options must be an object, not " + shown(info[0]));
    }
    const Fields settings(info[0].As<Napi::Object>(), "the engine options");
    options.workers = settings.integer("workers", 1, kMaxWorkers, 1u);
    const std::string priority = settings.string("priority", false);
    if (priority == "normal") options.priority = WorkerPriority::Normal;
    else if (priority == "realtime") options.priority = WorkerPriority::Realtime;
    else if (priority.empty() || priority == "high") options.priority = WorkerPriority::High;
    else throw settings.error("priority", "must be normal, high or realtime, not '" + priority + "'");
    Napi::Value ring = settings.get("ring");
    if (!ring.IsUndefined()) {
      if (!ring.IsObject() || ring.IsArray()) throw settings.error("ring", "must be an object, not " + shown(ring));
      const Fields fields(ring.As<Napi::Object>(), "the engine option 'ring'");
      RingSpec& spec = options.ring;
      spec.version = fields.integer("version", 2, 3, spec.version);
      spec.frame_size = fields.integer("frameSize", 256, kMaxRingBlockSize, spec.frame_size);
      spec.block_size = fields.integer("blockSize", 4096, kMaxRingBlockSize, spec.block_size);
      spec.block_count = fields.integer("blockCount", 2, kMaxRingBlockCount, spec.block_count);
      spec.block_timeout_ms = fields.integer("blockTimeoutMs", 0, kMaxRingBlockTimeoutMs, spec.block_timeout_ms);
      // The combinations the kernel refuses (a block of 64 KiB for V3, powers of two).
      const std::string problem = check_ring(spec);
      if (!problem.empty()) throw Napi::TypeError::New(info.Env(), "the engine option 'ring' is invalid: " + problem);
    }
    return options;
  }

  // More would only contend for the same cores; fanout spreads flows over these.
  static constexpr uint32_t kMaxWorkers = 1024;

  Napi::Value Apply(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsObject() || info[0].IsArray()) {
      throw Napi::TypeError::New(env, "apply(plan) needs a plan object");
    }
    Plan plan = to_plan(info[0].As<Napi::Object>());
    return guarded(env, "cannot apply the plan", [&] {
      auto* work = new ApplyWork(env, engine_, std::move(plan));
      Napi::Promise promise = work->promise();
      work->Queue();
      return promise;
    });
  }
  Napi::Value Stats(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), "cannot read the engine's stats", [&] { return to_js(info.Env(), engine_->stats()); });
  }
  // What changed since the previous call (the first: everything); see StatsDelta.
  Napi::Value Changes(const Napi::CallbackInfo& info) {
    return guarded(info.Env(), "cannot read the engine's stats",
                   [&] { return to_js(info.Env(), changes_.next(engine_->stats())); });
  }
  Napi::Value Close(const Napi::CallbackInfo& info) {
    guarded(info.Env(), "cannot close the engine", [&] { engine_->close(); });
    return info.Env().Undefined();
  }

  std::shared_ptr<Engine> engine_;
  // Only the JavaScript thread calls statsChanges.
  tapas::StatsChanges changes_;
};

// Pure helpers over the tunnel formats (no sockets), for tests and tools.

encap::TunnelHeaders to_tunnel_headers(const Fields& options) {
  encap::TunnelHeaders tunnel;
  std::string kind = options.string("kind");
  if (kind == "gre") {
    tunnel.type = encap::TunnelType::Gre;
    tunnel.key = options.integer("key", 0, 0xffffffffu);
    // A GRE sequence number makes it a sequenced tunnel (flags K|S), as between agents.
    tunnel.sequence = options.has("sequence");
  } else if (kind == "erspan") {
    tunnel.type = encap::TunnelType::ErspanII;
    tunnel.session = static_cast<uint16_t>(options.integer("session", 0, encap::kErspanMaxSession));
    tunnel.index = options.has("index") ? options.integer("index", 0, encap::kErspanMaxIndex)
                                        : encap::openstack_erspan_index(tunnel.session);
  } else if (kind == "erspan3") {
    tunnel.type = encap::TunnelType::ErspanIII;
    tunnel.session = static_cast<uint16_t>(options.integer("session", 0, encap::kErspanMaxSession));
    tunnel.hwid = static_cast<uint8_t>(options.integer("hwid", 0, encap::kErspanMaxHardwareId, 0u));
  } else if (kind == "vxlan") {
    tunnel.type = encap::TunnelType::Vxlan;
    tunnel.vni = options.integer("vni", 0, encap::kVxlanMaxVni);
  } else {
    throw options.error("kind", "must be 'gre', 'erspan', 'erspan3' or 'vxlan', not '" + kind + "'");
  }
  return tunnel;
}

// encapsulate({kind, key | session | vni, index?, hwid?, sequence?, maxInner?,
// direction?, timestamp?}, frame): the IP (VXLAN: UDP) payload a tunnel sink
// sends for this frame. direction 'OUT' sets ERSPAN III's D bit.
Napi::Value Encapsulate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 2 || !info[0].IsObject() || !info[1].IsBuffer()) {
    throw Napi::TypeError::New(env, "encapsulate(options, frame: Buffer)");
  }
  const Fields options(info[0].As<Napi::Object>(), "the encapsulate options");
  Napi::Buffer<uint8_t> frame = info[1].As<Napi::Buffer<uint8_t>>();
  encap::TunnelHeaders tunnel = to_tunnel_headers(options);
  uint32_t sequence = options.integer("sequence", 0, 0xffffffffu, 0u);
  size_t inner = frame.Length();
  if (options.has("maxInner")) inner = std::min<size_t>(inner, options.integer("maxInner", 0, 0xffffffffu));
  encap::FrameHeaderFields fields;
  fields.sequence = sequence;
  fields.truncated = inner < frame.Length();
  const std::string direction = options.string("direction", false);
  if (!direction.empty() && direction != "IN" && direction != "OUT") {
    throw options.error("direction", "must be IN or OUT, not '" + direction + "'");
  }
  fields.egress = direction == "OUT";
  fields.timestamp = options.integer("timestamp", 0, 0xffffffffu, 0u);
  return guarded(env, "cannot encapsulate", [&] {
    if (tunnel.is_erspan()) fields.frame_class = encap::classify_frame(frame.Data(), frame.Length());
    Napi::Buffer<uint8_t> out = Napi::Buffer<uint8_t>::New(env, tunnel.length() + inner);
    size_t header = encap::write_tunnel_headers(tunnel, fields, out.Data());
    std::memcpy(out.Data() + header, frame.Data(), inner);
    return out;
  });
}

const char* kind_name(encap::TunnelType type) {
  switch (type) {
    case encap::TunnelType::Gre: return "gre";
    case encap::TunnelType::ErspanII: return "erspan";
    case encap::TunnelType::ErspanIII: return "erspan3";
    case encap::TunnelType::Vxlan: return "vxlan";
  }
  return "unknown";
}

// parseTunnelPacket(packet, {ipv4?, vxlan?}): the decoded headers and inner
// frame, or {error}. vxlan: the packet is a UDP payload.
Napi::Value ParseTunnelPacket(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsBuffer()) throw Napi::TypeError::New(env, "parseTunnelPacket(packet: Buffer, options?)");
  Napi::Buffer<uint8_t> data = info[0].As<Napi::Buffer<uint8_t>>();
  bool ipv4 = false;
  bool vxlan = false;
  if (info.Length() > 1 && info[1].IsObject()) {
    const Fields options(info[1].As<Napi::Object>(), "the parse options");
    ipv4 = options.boolean("ipv4");
    vxlan = options.boolean("vxlan");
  }
  return guarded(env, "cannot parse the tunnel packet", [&] {
    encap::TunnelPacket packet;
    encap::ParseStatus status = vxlan ? encap::parse_vxlan_packet(data.Data(), data.Length(), packet)
                                : ipv4 ? encap::parse_ipv4_gre_packet(data.Data(), data.Length(), packet)
                                       : encap::parse_gre_packet(data.Data(), data.Length(), packet);
    Napi::Object result = Napi::Object::New(env);
    if (status != encap::ParseStatus::Ok) {
      result.Set("error", encap::parse_status_name(status));
      return result;
    }
    result.Set("kind", kind_name(packet.type));
    if (packet.type == encap::TunnelType::Vxlan) {
      result.Set("vni", Napi::Number::New(env, packet.vni));
      result.Set("frame", Napi::Buffer<uint8_t>::Copy(env, packet.inner, packet.inner_length));
      return result;
    }
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
    if (packet.type == encap::TunnelType::ErspanIII) {
      const encap::ErspanIIIHeader& e = packet.erspan3;
      Napi::Object erspan = Napi::Object::New(env);
      erspan.Set("vlan", e.vlan);
      erspan.Set("cos", e.cos);
      erspan.Set("bso", e.bso);
      erspan.Set("truncated", e.truncated);
      erspan.Set("session", e.session);
      erspan.Set("timestamp", Napi::Number::New(env, e.timestamp));
      erspan.Set("sgt", e.sgt);
      erspan.Set("p", e.p);
      erspan.Set("ft", e.ft);
      erspan.Set("hwid", e.hwid);
      erspan.Set("direction", e.egress ? "OUT" : "IN");
      erspan.Set("gra", e.gra);
      erspan.Set("optionalSubheader", e.optional_subheader);
      if (e.optional_subheader) erspan.Set("platformId", e.platform_id);
      result.Set("erspan3", erspan);
    }
    result.Set("frame", Napi::Buffer<uint8_t>::Copy(env, packet.inner, packet.inner_length));
    return result;
  });
}

Napi::Value ErspanIndexFor(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object arguments = Napi::Object::New(env);
  arguments.Set("tunnelId", info.Length() > 0 ? info[0] : env.Undefined());
  const uint32_t tunnel_id = Fields(arguments, "erspanIndexFor(tunnelId)").integer("tunnelId", 0, 0xffffffffu);
  return Napi::Number::New(env, encap::openstack_erspan_index(tunnel_id));
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
    const Fields options(info[0].As<Napi::Object>(), "the collector options");
    CollectorSpec spec;
    spec.netns = options.netns("netns");
    spec.listen_ip = options.string("listenIp", false);
    if (options.has("key")) spec.key = options.integer("key", 0, 0xffffffffu);
    if (options.has("session")) spec.session = static_cast<uint16_t>(options.integer("session", 0, encap::kErspanMaxSession));
    if (options.has("vni")) spec.vni = options.integer("vni", 0, encap::kVxlanMaxVni);
    if (options.has("udpPort")) spec.udp_port = static_cast<uint16_t>(options.integer("udpPort", 1, 65535));
    spec.pcap_path = options.string("pcapPath", false);
    if (!spec.pcap_path.empty() || options.has("rotation") || options.has("pcapng")) spec.rotation = to_rotation(options, "the collector options", spec.pcap_path);
    spec.to_ifname = options.interface_name("toIfname", false);
    spec.to_netns = options.netns("toNetns");
    guarded(env, "cannot start the collector", [&] {
      std::string error = collector_.start(spec);
      if (!error.empty()) throw Napi::Error::New(env, error);
    });
  }

 private:
  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return guarded(env, "cannot read the collector's stats", [&] {
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
      Napi::Object by_type = Napi::Object::New(env);
      Napi::Object accepted_by_type = Napi::Object::New(env);
      for (size_t i = 0; i < c.malformed_by_type.size(); ++i) {
        const char* name = encap::tunnel_type_name(static_cast<encap::TunnelType>(i + 1));
        by_type.Set(name, number(c.malformed_by_type[i]));
        accepted_by_type.Set(name, number(c.accepted_by_type[i]));
      }
      result.Set("malformedByType", by_type);
      result.Set("acceptedByType", accepted_by_type);
      result.Set("truncated", number(c.truncated));
      result.Set("written", number(c.written));
      result.Set("writtenBytes", number(c.written_bytes));
      result.Set("outputErrors", number(c.output_errors));
      result.Set("oversize", number(c.oversize));
      if (const RotationCounters* files = collector_.rotation_counters()) {
        result.Set("filesOpened", number(files->files_opened));
        result.Set("filesRemoved", number(files->files_removed));
      }
      return result;
    });
  }
  Napi::Value Close(const Napi::CallbackInfo& info) {
    guarded(info.Env(), "cannot stop the collector", [&] { collector_.stop(); });
    return info.Env().Undefined();
  }

  Collector collector_;
};

// compileFilter(expression): null when libpcap compiles it, else libpcap's message.
Napi::Value CompileFilter(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsString()) throw Napi::TypeError::New(env, "compileFilter(expression: string)");
  return guarded(env, "cannot compile the filter", [&]() -> Napi::Value {
    const std::string expression = info[0].As<Napi::String>().Utf8Value();
    if (expression.find('\0') != std::string::npos) return Napi::String::New(env, "the expression contains a NUL byte");
    CompiledFilter compiled = compile_filter(expression);
    if (compiled.filter) return env.Null();
    return Napi::String::New(env, compiled.error);
  });
}
// The kernel data path's loader (native/bpf_loader.h); only conversions here.
class BpfApplyWork : public Napi::AsyncWorker {
 public:
  BpfApplyWork(Napi::Env env, std::shared_ptr<bpf::Loader> loader, std::vector<bpf::SourceSpec> sources,
               std::vector<bpf::RuleSpec> rules)
      : Napi::AsyncWorker(env), loader_(std::move(loader)), sources_(std::move(sources)), rules_(std::move(rules)),
        deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise promise() { return deferred_.Promise(); }

 protected:
  // On a thread of libuv's pool (it enters namespaces): nothing may escape it.
  void Execute() override {
    try {
      loader_->apply(sources_, rules_);
    } catch (const std::exception& error) {
      SetError(std::string("cannot apply the bpf plan: ") + error.what());
    } catch (...) {
      SetError("cannot apply the bpf plan: an unknown C++ exception");
    }
  }
  void OnOK() override { deferred_.Resolve(Env().Undefined()); }
  void OnError(const Napi::Error& error) override { deferred_.Reject(error.Value()); }

 private:
  std::shared_ptr<bpf::Loader> loader_;
  std::vector<bpf::SourceSpec> sources_;
  std::vector<bpf::RuleSpec> rules_;
  Napi::Promise::Deferred deferred_;
};

class NativeBpf : public Napi::ObjectWrap<NativeBpf> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeBpf",
                       {InstanceMethod("apply", &NativeBpf::Apply), InstanceMethod("stats", &NativeBpf::Stats),
                        InstanceMethod("close", &NativeBpf::Close)});
  }

  // Loads the programs at once: throws why BPF cannot be used here.
  explicit NativeBpf(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NativeBpf>(info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "new NativeBpf(options)");
    const Fields options(info[0].As<Napi::Object>(), "the bpf options");
    const std::string object_path = options.string("objectPath");
    const std::string attach = options.string("attach", false);
    bpf::AttachMode mode = bpf::AttachMode::Auto;
    if (attach == "tcx") mode = bpf::AttachMode::Tcx;
    else if (attach == "tc") mode = bpf::AttachMode::Tc;
    else if (!attach.empty() && attach != "auto") throw options.error("attach", "must be auto, tcx or tc, not '" + attach + "'");
    guarded(env, "cannot start the bpf data path", [&] {
      loader_ = std::make_shared<bpf::Loader>();
      std::string error = loader_->open(object_path, mode);
      if (!error.empty()) throw Napi::Error::New(env, error);
    });
  }

 private:
  Napi::Value Apply(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() < 1 || !info[0].IsObject()) throw Napi::TypeError::New(env, "apply({sources, rules})");
    const Fields plan(info[0].As<Napi::Object>(), "the bpf plan");
    std::vector<bpf::SourceSpec> sources;
    std::vector<bpf::RuleSpec> rules;
    for_each_entry(plan, "sources", [&](const Fields& item) {
      sources.push_back({item.string("id"), item.interface_name("ifname"), item.netns("netns")});
    });
    for_each_entry(plan, "rules", [&](const Fields& item) {
      bpf::RuleSpec rule;
      rule.id = item.string("id");
      rule.source_id = item.string("sourceId");
      rule.sink_netns = item.netns("sinkNetns");
      if (item.has("tunnelRemote")) {
        // A GRE (key) or ERSPAN II tunnel written by the kernel path: IPv4 collectors only.
        rule.gre_remote = item.string("tunnelRemote");
        in_addr address{};
        if (inet_pton(AF_INET, rule.gre_remote.c_str(), &address) != 1) throw item.error("tunnelRemote", "must be an IPv4 address");
        if (item.has("erspanSession")) {
          rule.erspan = true;
          rule.erspan_session = item.integer("erspanSession", 0, encap::kErspanMaxSession);
          rule.erspan_index = item.has("erspanIndex") ? item.integer("erspanIndex", 0, encap::kErspanMaxIndex)
                                                      : encap::openstack_erspan_index(rule.erspan_session);
        } else {
          rule.gre_key = item.integer("greKey", 0, 0xffffffffu);
        }
      } else {
        rule.sink_ifname = item.interface_name("sinkIfname");
      }
      const Direction direction = to_direction(item);
      rule.in = direction != Direction::Out;
      rule.out = direction != Direction::In;
      Napi::Array vlans = item.array("vlans");
      for (uint32_t i = 0; i < vlans.Length(); ++i) {
        Napi::Value range = vlans.Get(i);
        if (!range.IsArray() || range.As<Napi::Array>().Length() != 2) throw item.error("vlans", "must be [low, high] pairs");
        const uint32_t low = item.integer_value(range.As<Napi::Array>().Get(uint32_t{0}), "vlans", 1, 4094);
        const uint32_t high = item.integer_value(range.As<Napi::Array>().Get(uint32_t{1}), "vlans", low, 4094);
        rule.vlans.emplace_back(static_cast<uint16_t>(low), static_cast<uint16_t>(high));
      }
      rules.push_back(std::move(rule));
    });
    return guarded(env, "cannot apply the bpf plan", [&] {
      auto* work = new BpfApplyWork(env, loader_, std::move(sources), std::move(rules));
      Napi::Promise promise = work->promise();
      work->Queue();
      return promise;
    });
  }

  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return guarded(env, "cannot read the bpf data path's stats", [&] {
      std::vector<bpf::SourceState> sources;
      std::vector<bpf::RuleState> rules;
      loader_->stats(sources, rules);
      auto number = [&](uint64_t value) { return Napi::Number::New(env, static_cast<double>(value)); };
      Napi::Array source_list = Napi::Array::New(env, sources.size());
      for (size_t i = 0; i < sources.size(); ++i) {
        Napi::Object entry = Napi::Object::New(env);
        entry.Set("id", sources[i].id);
        entry.Set("ok", sources[i].ok);
        if (!sources[i].reason.empty()) entry.Set("reason", sources[i].reason);
        if (!sources[i].attach.empty()) entry.Set("attach", sources[i].attach);
        entry.Set("packets", number(sources[i].packets));
        entry.Set("bytes", number(sources[i].bytes));
        source_list.Set(static_cast<uint32_t>(i), entry);
      }
      Napi::Array rule_list = Napi::Array::New(env, rules.size());
      for (size_t i = 0; i < rules.size(); ++i) {
        Napi::Object entry = Napi::Object::New(env);
        entry.Set("id", rules[i].id);
        entry.Set("ok", rules[i].ok);
        if (!rules[i].reason.empty()) entry.Set("reason", rules[i].reason);
        entry.Set("packets", number(rules[i].packets));
        entry.Set("bytes", number(rules[i].bytes));
        entry.Set("errors", number(rules[i].errors));
        entry.Set("oversize", number(rules[i].oversize));
        entry.Set("truncated", number(rules[i].truncated));
        entry.Set("fragmented", number(rules[i].fragmented));
        rule_list.Set(static_cast<uint32_t>(i), entry);
      }
      Napi::Object result = Napi::Object::New(env);
      result.Set("sources", source_list);
      result.Set("rules", rule_list);
      return result;
    });
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    guarded(info.Env(), "cannot close the bpf data path", [&] { loader_->close(); });
    return info.Env().Undefined();
  }

  std::shared_ptr<bpf::Loader> loader_;
};

Napi::Object define_exports(Napi::Env env, Napi::Object exports) {
  exports.Set("compileFilter", Napi::Function::New(env, CompileFilter));
  exports.Set("NativeEngine", NativeEngine::Define(env));
  exports.Set("NativeCollector", NativeCollector::Define(env));
  exports.Set("NativeBpf", NativeBpf::Define(env));
  exports.Set("encapsulate", Napi::Function::New(env, Encapsulate));
  exports.Set("parseTunnelPacket", Napi::Function::New(env, ParseTunnelPacket));
  exports.Set("erspanIndexFor", Napi::Function::New(env, ErspanIndexFor));
  return exports;
}

// Runs on require(): nothing here allocates beyond N-API's own objects, but
// it goes through the same guard as every other entry point.
Napi::Object Init(Napi::Env env, Napi::Object exports) {
  return guarded(env, "cannot load the tapas addon", [&] { return define_exports(env, exports); });
}

}  // namespace

NODE_API_MODULE(tapas, Init)
