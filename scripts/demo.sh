#!/usr/bin/env bash
# The demo: the TaaS workflow on one host. Two VMs on a bridge, a monitor and
# a remote collector, all network namespaces of its own; `tapas serve` with a
# temporary store; the tapas CLI registers the ports, creates a tap service
# and a tap flow (the monitor sees vm1's pings), then a tap mirror that sends
# vm2's traffic in ERSPAN to the collector; `tapas stats` shows the counters.
# Everything is torn down at the end, also on Ctrl-C. Run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

ns=tapas-demo-$$
host=$ns-host vm1=$ns-vm1 vm2=$ns-vm2 mon=$ns-mon col=$ns-col
work=$(mktemp -d)
daemon_pid=
if [[ -t 1 ]]; then bold=$'\033[1m' plain=$'\033[0m'; else bold='' plain=''; fi
step() { printf '\n%s== %s%s\n' "$bold" "$*" "$plain"; }
# Shows a tapas command, then runs it with its output indented.
run() {
  printf '  $ tapas %s\n' "$*"
  ./bin/tapas "$@" | sed 's/^/    /'
}
teardown() {
  # 130: Ctrl-C, seen either by the trap below or (under set -e) as the status of the command it stopped.
  (($? == 130)) && printf '\ninterrupted: tearing down\n'
  for pid in $(jobs -p); do
    [[ "$pid" == "$daemon_pid" ]] || kill "$pid" 2>/dev/null || true
  done
  if [[ -n "$daemon_pid" ]]; then
    kill -TERM "$daemon_pid" 2>/dev/null || true
    wait "$daemon_pid" 2>/dev/null || true
  fi
  for n in "$host" "$vm1" "$vm2" "$mon" "$col"; do ip netns del "$n" 2>/dev/null || true; done
  rm -rf "$work"
}
trap teardown EXIT
trap 'exit 130' INT TERM

# Polls `tapas KIND show NAME` until its status is ACTIVE (10 s at most).
wait_active() {
  local status=
  for _ in $(seq 50); do
    status=$(./bin/tapas "$@" -f value -c Status)
    [[ "$status" == ACTIVE ]] && return 0
    sleep 0.2
  done
  echo "demo FAILED: tapas $* stayed $status" >&2
  ./bin/tapas "$@" >&2
  exit 1
}

# Waits until a file (a background tool's stderr) says the tool is ready (10 s at most).
wait_for() {
  local file=$1 text=$2
  for _ in $(seq 100); do
    grep -q "$text" "$file" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "demo FAILED: no '$text' in $file: $(cat "$file")" >&2
  exit 1
}

# Gives a capture time to catch up with the traffic: until the command prints N lines (5 s at most).
settle() {
  local want=$1
  shift
  for _ in $(seq 50); do
    (($("$@" 2>/dev/null | wc -l) >= want)) && return 0
    sleep 0.1
  done
}

step "Topology: vm1 and vm2 on bridge br0 in a host namespace; a monitor behind port monh; a collector at 198.19.0.2"
for n in "$host" "$vm1" "$vm2" "$mon" "$col"; do
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
ip -n "$host" link add colh type veth peer name eth0 netns "$col"
ip -n "$host" addr add 198.19.0.1/24 dev colh
ip -n "$host" link set colh up
ip -n "$col" addr add 198.19.0.2/24 dev eth0
ip -n "$col" link set eth0 up
cat <<EOF
  vm1 198.18.0.1 --- vm1h --[br0]-- vm2h --- vm2 198.18.0.2
  monitor (tcpdump) --- monh
  collector 198.19.0.2 --- colh 198.19.0.1          (all of it in namespaces $ns-*)
EOF

step "tapas serve: the TaaS API on a free loopback port, its SQLite store in a temporary directory"
./bin/tapas serve --listen 127.0.0.1:0 --state-dir "$work/state" --agent-interval 200 > "$work/daemon.log" 2>&1 &
daemon_pid=$!
for _ in $(seq 100); do
  url=$(grep '"msg":"listening"' "$work/daemon.log" | grep -o '"url":"[^"]*"' | cut -d'"' -f4 || true)
  [[ -n "$url" ]] && break
  kill -0 "$daemon_pid" 2>/dev/null || { cat "$work/daemon.log" >&2; echo "demo FAILED: the daemon exited" >&2; exit 1; }
  sleep 0.1
done
[[ -n "$url" ]] || { cat "$work/daemon.log" >&2; echo "demo FAILED: the daemon did not start" >&2; exit 1; }
export TAPAS_ENDPOINT=$url
echo "  listening on $url (TAPAS_ENDPOINT=$url)"

step "Register each VM's host-side interface, and the monitor's, as a port"
run port create vm1-port --interface vm1h --netns "$host" -f value -c ID
run port create vm2-port --interface vm2h --netns "$host" -f value -c ID
run port create monitor-port --interface monh --netns "$host" -f value -c ID
run port list -c Name -c Interface -c Netns -c Status

step "A tap service on the monitor's port, and a tap flow copying vm1's traffic to it, both ways"
run tap service create --name monitor --port monitor-port
run tap flow create --name vm1-both --port vm1-port --tap-service monitor --direction BOTH
wait_active tap flow show vm1-both
run tap flow list -c Name -c Direction -c Status

step "vm1 pings vm2 three times while the monitor listens on its port"
ip netns exec "$mon" tcpdump -i eth0 -Q in -nn -e -l -U icmp > "$work/monitor.txt" 2> "$work/monitor.err" &
tcpdump_pid=$!
wait_for "$work/monitor.err" 'listening on'
ip netns exec "$vm1" ping -c 3 -i 0.3 -W 1 198.18.0.2 | sed 's/^/  /'
settle 6 grep 'ICMP echo' "$work/monitor.txt"
kill "$tcpdump_pid" 2>/dev/null || true
wait "$tcpdump_pid" 2>/dev/null || true
step "What the monitor received (tcpdump on the tap service's port)"
sed 's/^/  /' "$work/monitor.txt"

step "A tap mirror: vm2's traffic in ERSPAN type II to the collector, session 101 into vm2, 102 out of it"
run tap mirror create --name vm2-erspan --port vm2-port --directions IN=101 --directions OUT=102 \
  --remote-ip 198.19.0.2 --mirror-type erspanv1
wait_active tap mirror show vm2-erspan

step "vm2 pings vm1 three times; the collector captures the tunnel, and tapas collect takes the frames out of it"
ip netns exec "$col" tcpdump -i eth0 -Q in -nn -U -w "$work/tunnel.pcap" proto gre 2> "$work/tunnel.err" &
outer_pid=$!
./bin/tapas collect --netns "$col" -w "$work/inner.pcap" > "$work/collect.txt" 2> "$work/collect.err" &
collect_pid=$!
wait_for "$work/tunnel.err" 'listening on'
wait_for "$work/collect.err" 'listening for'
ip netns exec "$vm2" ping -c 3 -i 0.3 -W 1 198.18.0.1 | sed 's/^/  /'
settle 6 tcpdump -r "$work/tunnel.pcap" -nn
sleep 0.5
kill "$collect_pid" "$outer_pid" 2>/dev/null || true
wait "$collect_pid" "$outer_pid" 2>/dev/null || true
step "The tunnel as tshark decodes it at the collector"
printf '  %-11s %-11s %-8s %-8s %-6s %-8s %s\n' from to version session index gre-seq inner
tshark -r "$work/tunnel.pcap" -Y erspan -T fields -E occurrence=f -e ip.src -e ip.dst -e erspan.version -e erspan.spanid \
  -e erspan.index -e gre.sequence_number -e _ws.col.Info 2>/dev/null |
  awk -F'\t' '{ printf "  %-11s %-11s %-8s %-8s 0x%-4x %-8s %s\n", $1, $2, $3, $4, $5, $6, $7 }'
step "The frames inside, from tapas collect"
sed 's/^/  /' "$work/collect.txt"
tcpdump -r "$work/inner.pcap" -nn -e icmp 2>/dev/null | sed 's/^/  /'

step "tapas stats: what each tap flow and tap mirror mirrored"
ip netns exec "$vm1" ping -c 15 -i 0.2 -W 1 198.18.0.2 > /dev/null &
ping1_pid=$!
ip netns exec "$vm2" ping -c 15 -i 0.2 -s 1000 -W 1 198.18.0.1 > /dev/null &
ping2_pid=$!
./bin/tapas stats | tee "$work/stats.txt" | sed 's/^/  /'
./bin/tapas stats -f json --interval 0.1 > "$work/stats.json"
wait "$ping1_pid" "$ping2_pid" || true

step "Cleaning up through the API"
run tap flow delete vm1-both
run tap mirror delete vm2-erspan
run tap service delete monitor
run port delete vm1-port vm2-port monitor-port
run port list

mirrored=$(grep -c 'ICMP echo' "$work/monitor.txt" || true)
tunnelled=$(tshark -r "$work/tunnel.pcap" -Y 'erspan.spanid == 101 || erspan.spanid == 102' 2>/dev/null | wc -l)
decoded=$(tcpdump -r "$work/inner.pcap" -nn icmp 2>/dev/null | grep -c 'ICMP echo' || true)
counted=$(node -e '
  const { resources } = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  console.log(resources.filter((r) => r.packets > 0).length);' "$work/stats.json")
failed=0
if [[ "$mirrored" -lt 6 ]]; then
  echo "demo FAILED: expected 6 mirrored ICMP packets on the monitor (3 requests, 3 replies), saw $mirrored" >&2; failed=1
fi
if [[ "$tunnelled" -lt 6 || "$decoded" -lt 6 ]]; then
  echo "demo FAILED: expected 6 ERSPAN packets at the collector, saw $tunnelled ($decoded decoded)" >&2; failed=1
fi
if [[ "$counted" -lt 2 ]]; then
  echo "demo FAILED: expected non-zero counters for the tap flow and the tap mirror in tapas stats" >&2; failed=1
fi
((failed == 0)) || exit 1
step "Done: $mirrored ICMP packets of vm1 on the monitor, $tunnelled ERSPAN packets of vm2 at the collector; tearing down"
