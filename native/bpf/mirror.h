// Shared between the tc program (mirror.bpf.c) and its loader
// (bpf_loader.cc): the layout of the maps. Plain C, fixed-width types only.
#pragma once

#ifndef __BPF__
#include <stdint.h>
typedef uint8_t tapas_u8;
typedef uint16_t tapas_u16;
typedef uint32_t tapas_u32;
typedef uint64_t tapas_u64;
#else
typedef __u8 tapas_u8;
typedef __u16 tapas_u16;
typedef __u32 tapas_u32;
typedef __u64 tapas_u64;
#endif

// Rules of one source and direction the program can hold; a source with more
// runs the rest on the AF_PACKET path.
#define TAPAS_BPF_MAX_TARGETS 8
// VLAN ranges of one rule; a rule with more runs on the AF_PACKET path.
#define TAPAS_BPF_MAX_VLAN_RANGES 4
// Counter slots (sources' hooks and rules share them).
#define TAPAS_BPF_MAX_SLOTS 16384
// Entries of the rules map: sources x 2 directions.
#define TAPAS_BPF_MAX_HOOKS 8192

// Directions from the workload's point of view: the ingress hook of its port
// sees what it sends (OUT), the egress hook what it is sent (IN).
#define TAPAS_BPF_DIR_IN 0
#define TAPAS_BPF_DIR_OUT 1

// The key of the rules map: which hook of which interface. An ifindex is only
// unique within a network namespace, so each namespace gets its own copy of
// the programs and of this map (the counters map is one, shared). The
// namespace cannot come from bpf_get_netns_cookie: for a tc program it is the
// namespace of the skb's socket, and the kernel sends ICMP replies and TCP
// resets from per-CPU sockets of the initial namespace.
struct tapas_hook_key {
  tapas_u32 ifindex;
  tapas_u32 direction;
};

struct tapas_target {
  tapas_u32 ifindex;  // the tap service port, in the source's namespace
  tapas_u32 slot;     // its counters
  tapas_u16 vlan_ranges;  // 0: every frame; else frames of these VLAN ids only
  tapas_u16 tunnel;   // 1: ifindex is a tunnel's encapsulating veth (tapas_tunnels)
  tapas_u16 pad[2];
  tapas_u16 vlan_lo[TAPAS_BPF_MAX_VLAN_RANGES];
  tapas_u16 vlan_hi[TAPAS_BPF_MAX_VLAN_RANGES];
};

struct tapas_hook {
  tapas_u32 slot;     // the hook's own counters: every frame it saw
  tapas_u32 targets;  // entries of target[] in use
  struct tapas_target target[TAPAS_BPF_MAX_TARGETS];
};

// Per-CPU, per slot: summed by the loader, never reset while the slot is in use.
struct tapas_counters {
  tapas_u64 packets;
  tapas_u64 bytes;
  tapas_u64 errors;  // bpf_clone_redirect failed: the copy is lost, the frame goes on
  tapas_u64 oversize;  // larger than the tap service port's MTU: not copied
  tapas_u64 truncated;  // ERSPAN copies cut to the path MTU (T set); sent, and counted in packets too
  tapas_u64 fragmented;  // GRE copies above the path MTU, handed to the IP stack to fragment; likewise
};

// A GRE tunnel the kernel path writes (issue 12): the loader gives each such
// rule a veth pair of its own in the source's namespace. The clone goes out
// of the first end, which has no offloads (a GSO clone leaves it as
// segments); the second end's ingress program (tapas_send) prepends outer
// Ethernet, IPv4 and GRE (key) or ERSPAN II to each and redirects it to the
// underlay's interface (bpf_fib_lookup, bpf_redirect_neigh). Keyed by the
// ifindex of either end.
struct tapas_tunnel {
  tapas_u32 slot;    // the rule's counters
  tapas_u32 local;   // outer source address, network order (resolved by the loader)
  tapas_u32 remote;  // the collector, network order
  tapas_u32 key;     // GRE key, host order
  tapas_u32 erspan;  // 1: ERSPAN type II (GRE flag S, 0x88BE) instead of GRE with key
  tapas_u32 session;   // ERSPAN session id, 0-1023
  tapas_u32 index;     // ERSPAN index, 20 bits
  tapas_u32 sequence;  // ERSPAN: its counter in tapas_sequences (one per remote and session)
  // GRE above the path MTU goes into the first end's ingress, addressed to
  // it, for the IP stack to forward and fragment.
  tapas_u32 ifindex_a;
  tapas_u8 mac_a[6];
  // 0 where the host's strict reverse-path filter (conf/all/rp_filter 1)
  // would drop such a packet on the first end: counted as oversize instead.
  tapas_u8 fragment;
  tapas_u8 pad;
};

#define TAPAS_BPF_MAX_TUNNELS 4096
// skb->mark of tapas's own tunnel packets (kOwnTrafficMark, native/own_traffic.h,
// which the AF_PACKET path's sending sockets set too): never mirrored again.
#define TAPAS_OWN_TRAFFIC_MARK 0x7a9a5000
// Outer Ethernet, IPv4 and GRE with key; or GRE with sequence and ERSPAN II.
#define TAPAS_GRE_OVERHEAD (14 + 20 + 8)
#define TAPAS_ERSPAN_OVERHEAD (14 + 20 + 8 + 8)
