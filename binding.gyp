{
  "targets": [
    {
      "target_name": "tapas",
      "sources": [
        "native/addon.cc",
        "native/bpf_loader.cc",
        "native/collector.cc",
        "native/encap.cc",
        "native/encap_vxlan.cc",
        "native/filter.cc",
        "native/engine.cc",
        "native/frame.cc",
        "native/iface.cc",
        "native/iface_watch.cc",
        "native/link_events.cc",
        "native/netns.cc",
        "native/plan.cc",
        "native/own_traffic.cc",
        "native/pcap_rotation.cc",
        "native/pcap_writer.cc",
        "native/pcapng_writer.cc",
        "native/ring_rx.cc",
        "native/sink.cc",
        "native/sink_file.cc",
        "native/sink_port.cc",
        "native/sink_tunnel.cc",
        "native/stats.cc",
        "native/worker.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED", "NODE_ADDON_API_CPP_EXCEPTIONS", "NODE_ADDON_API_CPP_EXCEPTIONS_ALL"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17"],
      "cflags_cc": ["-std=c++20", "-fexceptions", "-O2", "-Wall", "-Wextra"],
      "cflags": ["-fexceptions"],
      "libraries": ["-lpcap", "-lbpf", "-lelf", "-lz"],
      "actions": [
        {
          "action_name": "mirror_bpf",
          "message": "clang -target bpf: native/bpf/mirror.bpf.c",
          "inputs": ["native/bpf/build.sh", "native/bpf/mirror.bpf.c", "native/bpf/mirror.h"],
          "outputs": ["<(PRODUCT_DIR)/mirror.bpf.o"],
          "action": ["sh", "native/bpf/build.sh", "<(PRODUCT_DIR)/mirror.bpf.o"]
        }
      ]
    }
  ]
}
