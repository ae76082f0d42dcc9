#!/usr/bin/env python3
"""Sends COUNT frames of SIZE bytes round-robin out of several interfaces at a
paced total RATE (frames per second), then exits. The benchmark's generator
for many source ports at once (trafgen drives one interface per process).

usage: multi-send.py --rate PPS --count N --size BYTES IF [IF ...]
Prints on stdout: SENT <frames> <seconds spent sending>."""
import argparse
import socket
import struct
import time

parser = argparse.ArgumentParser()
parser.add_argument("--rate", type=float, required=True)
parser.add_argument("--count", type=int, required=True)
parser.add_argument("--size", type=int, required=True)
parser.add_argument("ifaces", nargs="+")
args = parser.parse_args()
if args.count > 10_000_000 or args.size < 60 or args.size > 1514:
    raise SystemExit("count at most 10,000,000 and size 60..1514")


def frame(index: int) -> bytes:
    """Unicast to a MAC nobody has, IPv4/UDP in the benchmarking range (RFC 2544)."""
    mac_dst = bytes([0x02, 0, 0, 0, 0, 0x02])
    mac_src = bytes([0x02, 0, 0, 0, index >> 8, index & 0xFF])
    payload = bytes(args.size - 42)
    udp = struct.pack("!HHHH", 1000, 2000, 8 + len(payload), 0)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp) + len(payload), 0, 0, 64, 17, 0,
                     bytes([198, 18, 0, 1]), bytes([198, 19, 0, 1]))
    return mac_dst + mac_src + struct.pack("!H", 0x0800) + ip + udp + payload


sockets = []
for index, name in enumerate(args.ifaces):
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    sock.bind((name, 0))
    sockets.append((sock.send, frame(index)))

n = len(sockets)
batch = max(1, int(args.rate / 2000))  # re-check the clock every half millisecond of traffic
start = time.perf_counter()
sent = 0
deadline = start + args.count / args.rate * 3 + 5  # never run away: a hard stop in time too
while sent < args.count:
    end = min(args.count, sent + batch)
    for i in range(sent, end):
        send, data = sockets[i % n]
        try:
            send(data)
        except BlockingIOError:
            pass
    sent = end
    due = start + sent / args.rate
    now = time.perf_counter()
    if now > deadline:
        break
    if due > now:
        time.sleep(due - now)
print(f"SENT {sent} {time.perf_counter() - start:.6f}")
