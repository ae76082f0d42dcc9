// The only file that knows N-API: converts JavaScript values to the engine's
// plain structs and back. The surface is typed in src/engine/native.ts.
#include <napi.h>

#include <memory>

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
    }
    plan.sources.push_back(std::move(source));
  });
  for_each_object(array_field(object, "sinks"), [&](const Napi::Object& item) {
    SinkSpec sink;
    sink.id = string_field(item, "id");
    std::string kind = string_field(item, "kind");
    if (kind != "port") throw Napi::TypeError::New(item.Env(), "unknown sink kind '" + kind + "'");
    sink.kind = SinkKind::Port;
    sink.ifname = string_field(item, "ifname");
    sink.netns = string_field(item, "netns", false);
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

Napi::Object to_js(Napi::Env env, const EngineStats& stats) {
  auto number = [&](uint64_t value) { return Napi::Number::New(env, static_cast<double>(value)); };
  Napi::Array sources = Napi::Array::New(env, stats.sources.size());
  for (size_t i = 0; i < stats.sources.size(); ++i) {
    const SourceStat& s = stats.sources[i];
    Napi::Object o = Napi::Object::New(env);
    put_health(o, s);
    o.Set("packets", number(s.packets));
    o.Set("bytes", number(s.bytes));
    o.Set("ringDrops", number(s.ring_drops));
    o.Set("ringFreezes", number(s.ring_freezes));
    o.Set("truncated", number(s.truncated));
    sources.Set(static_cast<uint32_t>(i), o);
  }
  Napi::Array sinks = Napi::Array::New(env, stats.sinks.size());
  for (size_t i = 0; i < stats.sinks.size(); ++i) {
    const SinkStat& s = stats.sinks[i];
    Napi::Object o = Napi::Object::New(env);
    put_health(o, s);
    o.Set("packets", number(s.packets));
    o.Set("bytes", number(s.bytes));
    o.Set("errors", number(s.errors));
    sinks.Set(static_cast<uint32_t>(i), o);
  }
  Napi::Array rules = Napi::Array::New(env, stats.rules.size());
  for (size_t i = 0; i < stats.rules.size(); ++i) {
    const RuleStat& r = stats.rules[i];
    Napi::Object o = Napi::Object::New(env);
    o.Set("id", r.id);
    o.Set("packets", number(r.packets));
    o.Set("bytes", number(r.bytes));
    o.Set("oversize", number(r.oversize));
    o.Set("unavailable", number(r.unavailable));
    rules.Set(static_cast<uint32_t>(i), o);
  }
  Napi::Object result = Napi::Object::New(env);
  result.Set("sources", sources);
  result.Set("sinks", sinks);
  result.Set("rules", rules);
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
      options.workers = uint_field(info[0].As<Napi::Object>(), "workers", 1);
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

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("NativeEngine", NativeEngine::Define(env));
  exports.Set("probeInterface", Napi::Function::New(env, ProbeInterface));
  return exports;
}

}  // namespace

NODE_API_MODULE(tapas, Init)
