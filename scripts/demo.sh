#!/usr/bin/env bash
# The demo: two VMs on a bridge, a monitor, and tapas mirroring VM 1's port to
# the monitor. Everything lives in network namespaces of its own and is torn
# down at the end, also on Ctrl-C. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

ns=tapas-demo-$$
host=$ns-host vm1=$ns-vm1 vm2=$ns-vm2 mon=$ns-mon
work=$(mktemp -d)
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
teardown() {
  for pid in $(jobs -p); do kill "$pid" 2>/dev/null || true; done
  for n in "$host" "$vm1" "$vm2" "$mon"; do ip netns del "$n" 2>/dev/null || true; done
  rm -rf "$work"
}
trap teardown EXIT
trap 'echo; echo "interrupted: tearing down"; exit 130' INT TERM

step "Topology: vm1 and vm2 on bridge br0 in the host namespace; a monitor behind tap port monh"
for n in "$host" "$vm1" "$vm2" "$mon"; do
  ip netns add "$n"
  ip netns exec "$n" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  ip -n "$n" link set lo up
done
ip -n "$host" link add br0 type bridge
ip -n "$host" link set br0 up
for i in 1 2; do
  vm_ns=$ns-vm$i
  ip -n "$host" link add "vm${i}h" type veth peer name eth0 netns "$vm_ns"
  ip -n "$host" link set "vm${i}h" master br0 up
  ip -n "$vm_ns" addr add "198.18.0.$i/24" dev eth0
  ip -n "$vm_ns" link set eth0 up
done
ip -n "$host" link add monh type veth peer name eth0 netns "$mon"
ip -n "$host" link set monh up
ip -n "$mon" link set eth0 up
echo "  vm1 198.18.0.1 --- vm1h --[br0]-- vm2h --- vm2 198.18.0.2      monh --- monitor (tcpdump)"

step "The monitor listens on its port"
ip netns exec "$mon" tcpdump -i eth0 -Q in -nn -e -l -U -c 12 icmp > "$work/monitor.txt" 2>/dev/null &
tcpdump_pid=$!
sleep 1

step "tapas mirror --source vm1h@host --direction BOTH --to monh@host"
./bin/tapas mirror --source "vm1h@$host" --direction BOTH --to "monh@$host" --duration 5 > "$work/mirror.txt" &
mirror_pid=$!
sleep 1.5

step "vm1 pings vm2 three times"
ip netns exec "$vm1" ping -c 3 -i 0.3 -W 1 198.18.0.2 | sed 's/^/  /'

step "What the monitor received (tcpdump on the tap service port)"
wait "$mirror_pid" || true
kill "$tcpdump_pid" 2>/dev/null || true
wait "$tcpdump_pid" 2>/dev/null || true
sed 's/^/  /' "$work/monitor.txt"

step "tapas's counters"
sed 's/^/  /' "$work/mirror.txt"

mirrored=$(grep -c 'ICMP echo' "$work/monitor.txt" || true)
if [[ "$mirrored" -lt 6 ]]; then
  echo "demo FAILED: expected 6 mirrored ICMP packets (3 requests, 3 replies), saw $mirrored" >&2
  exit 1
fi
step "Done: $mirrored ICMP packets of vm1 mirrored to the monitor; tearing down"
