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

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, TAPAS_BPF_MAX_TUNNELS);
  __type(key, __u32);
  __type(value, struct tapas_tunnel);
} tapas_tunnels SEC(".maps");

// ERSPAN sequence numbers: one counter per tunnel (remote, session), from 0.
struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, TAPAS_BPF_MAX_TUNNELS);
  __type(key, __u32);
  __type(value, __u32);
} tapas_sequences SEC(".maps");

// The pid of the tapas that loaded this copy: a cls_bpf filter outlives its
// process, and the next tapas removes those whose owner no longer runs.
struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, __u32);
} tapas_owner SEC(".maps");

// TC_ACT_UNSPEC is TCX_NEXT: go on with the next program or filter, and
// pass the frame when there is none. Returned on every path.
#define TAPAS_NEXT TC_ACT_UNSPEC

#define COUNT_SENT 0
#define COUNT_ERROR 1
#define COUNT_OVERSIZE 2
#define COUNT_TRUNCATED 3
#define COUNT_FRAGMENTED 4

static __always_inline void count(__u32 slot, __u64 bytes, int what) {
  struct tapas_counters *c = bpf_map_lookup_elem(&tapas_counters, &slot);
  if (!c) return;
  if (what == COUNT_ERROR) {
    c->errors += 1;
  } else if (what == COUNT_OVERSIZE) {
    c->oversize += 1;
  } else if (what == COUNT_TRUNCATED) {
    c->truncated += 1;
  } else if (what == COUNT_FRAGMENTED) {
    c->fragmented += 1;
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
  // A tunnel packet of tapas's own (this path's or the AF_PACKET path's) on
  // an underlay that is itself mirrored: copying it would copy its copy
  // again, without end. AF_PACKET rings drop it likewise, uncounted.
  if (skb->mark == TAPAS_OWN_TRAFFIC_MARK) return TAPAS_NEXT;
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
    if (t->tunnel) {
      // Into the tunnel's veth pair; tapas_send writes the headers and checks
      // the MTU. That veth end has no offloads: a GSO frame (one skb for
      // many segments) leaves it as wire-sized segments, each with its
      // checksum, and each is encapsulated on its own.
      if (bpf_clone_redirect(skb, t->ifindex, 0) != 0) count(t->slot, bytes, COUNT_ERROR);
      continue;
    }
    if (too_big(skb, t->ifindex)) {
      count(t->slot, bytes, COUNT_OVERSIZE);
      continue;
    }
    // Flags 0: the copy goes out of the target's egress, as sent on its wire.
    // It carries tapas's mark, as the AF_PACKET path's copies do, so that a
    // tapas watching the tap service port (either path) does not copy it
    // again; the frame itself gets its own mark back.
    __u32 mark = skb->mark;
    skb->mark = TAPAS_OWN_TRAFFIC_MARK;
    long err = bpf_clone_redirect(skb, t->ifindex, 0);
    skb->mark = mark;
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

// The clone of a mirrored frame gets outer Ethernet (a placeholder:
// bpf_redirect_neigh writes the real one), IPv4 and GRE (flags K, protocol
// 0x6558, the key) in front of it, or GRE (flag S, 0x88BE, the tunnel's next
// sequence number) and the ERSPAN II header, as native/encap.cc writes them.
// An offloaded VLAN tag goes back into the inner frame. Returns 0, or -1
// when the copy cannot be made (the caller drops it, never more).
struct outer_ip {
  __u8 eth_dst[6], eth_src[6];
  __be16 eth_type;
  __u8 ver_ihl, tos;
  __be16 tot_len, id, frag;
  __u8 ttl, protocol;
  __u16 check;
  __be32 saddr, daddr;
  __be16 gre_flags, gre_protocol;
  __be32 gre_word;  // the key, or the sequence number
  __be32 erspan[2];  // ERSPAN II only
} __attribute__((packed));

static __always_inline int encapsulate(struct __sk_buff *skb, struct tapas_tunnel *t) {
  int erspan = t->erspan != 0;
  __u32 overhead = erspan ? TAPAS_ERSPAN_OVERHEAD : TAPAS_GRE_OVERHEAD;
  __u32 vlan_tci = skb->vlan_tci;
  __u32 vlan_proto = skb->vlan_proto;
  int tagged = skb->vlan_present;
  if (tagged && bpf_skb_vlan_pop(skb) != 0) return -1;
  __u32 tag = tagged ? 4 : 0;
  __u32 inner = skb->len + tag;
  // ERSPAN's vlan, en and cos, from the frame as on the wire.
  __u32 vlan = 0, en = 0, cos = 0;
  __be16 type = 0;
  if (erspan) {
    __u32 l3 = 14;
    if (bpf_skb_load_bytes(skb, 12, &type, sizeof type) != 0) return -1;
    if (tagged) {
      vlan = vlan_tci & 0x0fff;
      en = 3;
    } else if (type == bpf_htons(ETH_P_8021Q) || type == bpf_htons(ETH_P_8021AD)) {
      __be16 tci;
      if (bpf_skb_load_bytes(skb, 14, &tci, sizeof tci) != 0) return -1;
      vlan = bpf_ntohs(tci) & 0x0fff;
      en = 3;
      if (bpf_skb_load_bytes(skb, 16, &type, sizeof type) != 0) return -1;
      l3 = 18;
    }
    __u8 head[2];
    if (bpf_skb_load_bytes(skb, l3, head, sizeof head) == 0) {
      if (type == bpf_htons(ETH_P_IP) && (head[0] >> 4) == 4) cos = head[1] >> 5;
      if (type == bpf_htons(ETH_P_IPV6) && (head[0] >> 4) == 6) cos = ((head[0] & 0x0f) << 4 | head[1] >> 4) >> 5;
    }
  }
  if (bpf_skb_change_head(skb, overhead + tag, 0) != 0) return -1;
  if (tagged) {
    // The inner MAC addresses move 4 bytes forward, the tag goes after them.
    __u8 macs[12];
    if (bpf_skb_load_bytes(skb, overhead + 4, macs, sizeof macs) != 0) return -1;
    if (bpf_skb_store_bytes(skb, overhead, macs, sizeof macs, 0) != 0) return -1;
    __be16 vlan_header[2] = {(__be16)vlan_proto, bpf_htons((__u16)vlan_tci)};
    if (bpf_skb_store_bytes(skb, overhead + 12, vlan_header, sizeof vlan_header, 0) != 0) return -1;
  }
  struct outer_ip h = {
      // Locally administered unicast: bpf_redirect_neigh refuses multicast.
      .eth_dst = {0x02, 0, 0, 0, 0, 1},
      .eth_src = {0x02, 0, 0, 0, 0, 2},
      .eth_type = bpf_htons(ETH_P_IP),
      .ver_ihl = 0x45,
      .tot_len = bpf_htons((__u16)(overhead - 14 + inner)),
      .frag = bpf_htons(0x4000),  // DF: tapas_send handles what exceeds the path MTU
      .ttl = 64,
      .protocol = 47,
      .saddr = t->local,
      .daddr = t->remote,
      .gre_flags = bpf_htons(0x2000),
      .gre_protocol = bpf_htons(0x6558),
      .gre_word = bpf_htonl(t->key),
  };
  if (erspan) {
    __u32 at = t->sequence;
    __u32 *sequence = bpf_map_lookup_elem(&tapas_sequences, &at);
    if (!sequence) return -1;
    h.gre_flags = bpf_htons(0x1000);
    h.gre_protocol = bpf_htons(0x88be);
    h.gre_word = bpf_htonl(__sync_fetch_and_add(sequence, 1));
    h.erspan[0] = bpf_htonl(1u << 28 | vlan << 16 | cos << 13 | en << 11 | (t->session & 0x3ff));
    h.erspan[1] = bpf_htonl(t->index & 0xfffff);
  }
  __u16 *words = (__u16 *)&h.ver_ihl;
  __u32 sum = 0;
#pragma unroll
  for (int i = 0; i < 10; i++) sum += words[i];
  sum = (sum & 0xffff) + (sum >> 16);
  sum = (sum & 0xffff) + (sum >> 16);
  h.check = (__u16)~sum;
  if (erspan) {
    if (bpf_skb_store_bytes(skb, 0, &h, TAPAS_ERSPAN_OVERHEAD, 0) != 0) return -1;
  } else {
    if (bpf_skb_store_bytes(skb, 0, &h, TAPAS_GRE_OVERHEAD, 0) != 0) return -1;
  }
  // bpf_redirect_neigh sends only what the kernel takes for IPv4 or IPv6
  // (skb->protocol), and that is still the inner frame's type, which no
  // helper sets directly. Popping an 802.1Q tag sets it to the type that
  // follows the tag: push two tags (the second moves the first into the
  // data), pop both, and the protocol is the outer header's, IPv4. An
  // IPv4 inner frame, the usual case, already has it.
  if (skb->protocol == bpf_htons(ETH_P_IP)) return 0;
  if (bpf_skb_vlan_push(skb, bpf_htons(ETH_P_8021Q), 0) != 0) return -1;
  if (bpf_skb_vlan_push(skb, bpf_htons(ETH_P_8021Q), 0) != 0) return -1;
  if (bpf_skb_vlan_pop(skb) != 0) return -1;
  if (bpf_skb_vlan_pop(skb) != 0) return -1;
  return 0;
}

// The ingress of a tunnel's second veth end: the copy, encapsulated here,
// goes to the underlay's interface by the namespace's routes.
SEC("tc")
int tapas_send(struct __sk_buff *skb) {
  __u32 ifindex = skb->ifindex;
  struct tapas_tunnel *t = bpf_map_lookup_elem(&tapas_tunnels, &ifindex);
  if (!t) return TC_ACT_SHOT;
  __u32 slot = t->slot;
  int erspan = t->erspan != 0;
  __u32 overhead = erspan ? TAPAS_ERSPAN_OVERHEAD : TAPAS_GRE_OVERHEAD;
  if (encapsulate(skb, t) != 0) {
    count(slot, 0, COUNT_ERROR);
    return TC_ACT_SHOT;
  }
  __u64 inner = skb->len > overhead ? skb->len - overhead : 0;
  // Marked as tapas's own, as the AF_PACKET path's sockets mark theirs: the
  // mark also routes it (bpf_redirect_neigh looks the route up with it).
  skb->mark = TAPAS_OWN_TRAFFIC_MARK;
  struct bpf_fib_lookup fib = {
      .family = 2,  // AF_INET
      .ipv4_src = t->local,
      .ipv4_dst = t->remote,
      .ifindex = ifindex,
      .tot_len = (__u16)(skb->len - 14),
  };
  long rc = bpf_fib_lookup(skb, &fib, sizeof fib, BPF_FIB_LOOKUP_SKIP_NEIGH);
  int cut = 0;
  if (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED && erspan && fib.mtu_result > overhead - 14) {
    // ERSPAN cuts the copy to the path MTU and sets T, as the AF_PACKET path does.
    __u32 mtu = fib.mtu_result;
    __be16 old_len, new_len = bpf_htons((__u16)mtu);
    if (bpf_skb_load_bytes(skb, 16, &old_len, sizeof old_len) != 0) goto fail;
    if (bpf_skb_change_tail(skb, 14 + mtu, 0) != 0) goto fail;
    if (bpf_skb_store_bytes(skb, 16, &new_len, sizeof new_len, 0) != 0) goto fail;
    if (bpf_l3_csum_replace(skb, 24, old_len, new_len, sizeof new_len) != 0) goto fail;
    __u8 flags;
    if (bpf_skb_load_bytes(skb, 14 + 20 + 8 + 2, &flags, 1) != 0) goto fail;
    flags |= 0x04;  // T
    if (bpf_skb_store_bytes(skb, 14 + 20 + 8 + 2, &flags, 1, 0) != 0) goto fail;
    fib.tot_len = (__u16)mtu;
    rc = bpf_fib_lookup(skb, &fib, sizeof fib, BPF_FIB_LOOKUP_SKIP_NEIGH);
    cut = 1;
  }
  if (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED && !erspan && t->fragment) {
    // GRE above the path MTU: no helper fragments, the IP stack does, as it
    // does for the AF_PACKET path's raw socket. DF goes, the TTL is one
    // more than 64 for the hop the stack forwards it, and the packet enters
    // the first end (no program there), addressed to it: that end forwards
    // and accepts the host's own source address (forwarding, accept_local),
    // and it leaves by the route, in fragments.
    __be16 old_word, new_word;
    if (bpf_skb_load_bytes(skb, 14 + 6, &old_word, sizeof old_word) != 0) goto fail;
    new_word = 0;  // no DF, no fragment offset
    if (bpf_skb_store_bytes(skb, 14 + 6, &new_word, sizeof new_word, 0) != 0) goto fail;
    if (bpf_l3_csum_replace(skb, 24, old_word, new_word, sizeof new_word) != 0) goto fail;
    __be16 old_ttl, new_ttl = bpf_htons(65 << 8 | 47);
    if (bpf_skb_load_bytes(skb, 14 + 8, &old_ttl, sizeof old_ttl) != 0) goto fail;
    if (bpf_skb_store_bytes(skb, 14 + 8, &new_ttl, sizeof new_ttl, 0) != 0) goto fail;
    if (bpf_l3_csum_replace(skb, 24, old_ttl, new_ttl, sizeof new_ttl) != 0) goto fail;
    if (bpf_skb_store_bytes(skb, 0, t->mac_a, 6, 0) != 0) goto fail;
    count(slot, inner, COUNT_SENT);
    count(slot, inner, COUNT_FRAGMENTED);
    return bpf_redirect(t->ifindex_a, BPF_F_INGRESS);
  }
  if (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED) {
    count(slot, inner, COUNT_OVERSIZE);
    return TC_ACT_SHOT;
  }
  if (rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH) {
    count(slot, inner, COUNT_ERROR);
    return TC_ACT_SHOT;
  }
  if (too_big(skb, fib.ifindex)) {
    count(slot, inner, COUNT_OVERSIZE);
    return TC_ACT_SHOT;
  }
  count(slot, inner, COUNT_SENT);
  if (cut) count(slot, inner, COUNT_TRUNCATED);
  return bpf_redirect_neigh(fib.ifindex, 0, 0, 0);
fail:
  count(slot, inner, COUNT_ERROR);
  return TC_ACT_SHOT;
}

char LICENSE[] SEC("license") = "GPL";
