// tapas's kernel data path: a tc program on both hooks of every mirrored
// port. For each rule of the hook it clones the frame to the egress of the
// tap service port (bpf_clone_redirect), in the kernel, without a copy to
// user space. The frame itself always goes on: the program never drops,
// delays or changes it, whatever happens to the copies.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "mirror.h"

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, TAPAS_BPF_MAX_HOOKS);
  __type(key, struct tapas_hook_key);
  __type(value, struct tapas_hook);
} tapas_hooks SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, TAPAS_BPF_MAX_SLOTS);
  __type(key, __u32);
  __type(value, struct tapas_counters);
} tapas_counters SEC(".maps");

// TC_ACT_UNSPEC is TCX_NEXT: go on with the next program or filter, and
// pass the frame when there is none. Returned on every path.
#define TAPAS_NEXT TC_ACT_UNSPEC

#define COUNT_SENT 0
#define COUNT_ERROR 1
#define COUNT_OVERSIZE 2

static __always_inline void count(__u32 slot, __u64 bytes, int what) {
  struct tapas_counters *c = bpf_map_lookup_elem(&tapas_counters, &slot);
  if (!c) return;
  if (what == COUNT_ERROR) {
    c->errors += 1;
  } else if (what == COUNT_OVERSIZE) {
    c->oversize += 1;
  } else {
    c->packets += 1;
    c->bytes += bytes;
  }
}

// The frame's VLAN id, or -1 when untagged: the offloaded tag (skb metadata,
// where the kernel keeps it on receive) or an 802.1Q header in the data.
static __always_inline int vlan_of(struct __sk_buff *skb) {
  if (skb->vlan_present) return skb->vlan_tci & 0x0fff;
  __be16 proto;
  if (bpf_skb_load_bytes(skb, 12, &proto, sizeof proto) < 0) return -1;
  if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD)) return -1;
  __be16 tci;
  if (bpf_skb_load_bytes(skb, 14, &tci, sizeof tci) < 0) return -1;
  return bpf_ntohs(tci) & 0x0fff;
}

// Whether the frame is too large for the target's MTU (the port would drop
// the copy): bpf_check_mtu compares skb->len, MAC header included, with
// MTU + hard header, and lets GSO frames through when their segments fit.
// An 802.1Q tag in the frame's data may come on top of the MTU, as the
// kernel's own forwarding check allows (is_skb_forwardable).
static __always_inline int too_big(struct __sk_buff *skb, __u32 ifindex) {
  __u32 mtu_len = 0;
  if (bpf_check_mtu(skb, ifindex, &mtu_len, 0, 0) != BPF_MTU_CHK_RET_FRAG_NEEDED) return 0;
  if (skb->vlan_present) return 1;
  __be16 proto;
  if (bpf_skb_load_bytes(skb, 12, &proto, sizeof proto) < 0) return 1;
  if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD)) return 1;
  mtu_len = 0;
  return bpf_check_mtu(skb, ifindex, &mtu_len, -4, 0) == BPF_MTU_CHK_RET_FRAG_NEEDED;
}

static __always_inline int mirror(struct __sk_buff *skb, __u32 direction) {
  struct tapas_hook_key key = {
      .ifindex = skb->ifindex,
      .direction = direction,
  };
  struct tapas_hook *hook = bpf_map_lookup_elem(&tapas_hooks, &key);
  if (!hook) return TAPAS_NEXT;
  // The length on the wire: at both hooks skb->len covers the MAC header,
  // and an offloaded VLAN tag (4 bytes) is on the wire too.
  __u64 bytes = skb->len + (skb->vlan_present ? 4 : 0);
  count(hook->slot, bytes, COUNT_SENT);
  int vlan = -2;  // not read yet
  __u32 n = hook->targets;
  for (__u32 i = 0; i < TAPAS_BPF_MAX_TARGETS; i++) {
    if (i >= n) break;
    struct tapas_target *t = &hook->target[i];
    if (t->vlan_ranges) {
      if (vlan == -2) vlan = vlan_of(skb);
      if (vlan < 0) continue;
      int match = 0;
#pragma unroll
      for (__u32 r = 0; r < TAPAS_BPF_MAX_VLAN_RANGES; r++) {
        if (r < t->vlan_ranges && vlan >= t->vlan_lo[r] && vlan <= t->vlan_hi[r]) match = 1;
      }
      if (!match) continue;
    }
    if (too_big(skb, t->ifindex)) {
      count(t->slot, bytes, COUNT_OVERSIZE);
      continue;
    }
    // Flags 0: the copy goes out of the target's egress, as sent on its wire.
    long err = bpf_clone_redirect(skb, t->ifindex, 0);
    count(t->slot, bytes, err != 0 ? COUNT_ERROR : COUNT_SENT);
  }
  return TAPAS_NEXT;
}

// Frames the workload sends arrive on its port's ingress hook: OUT.
SEC("tc")
int tapas_out(struct __sk_buff *skb) { return mirror(skb, TAPAS_BPF_DIR_OUT); }

// Frames toward the workload leave through its port's egress hook: IN.
SEC("tc")
int tapas_in(struct __sk_buff *skb) { return mirror(skb, TAPAS_BPF_DIR_IN); }

char LICENSE[] SEC("license") = "GPL";
