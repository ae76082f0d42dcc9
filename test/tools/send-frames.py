#!/usr/bin/env python3
"""Sends raw Ethernet frames, one hex string per stdin line, out of an interface.

usage: send-frames.py IFNAME [--gap-us N]

A test generator that shares no code with the engine under test. Tagged frames
are written with their 802.1Q tag in the frame, as a VM would send them.
"""
import socket
import sys
import time


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    ifname = sys.argv[1]
    gap = 0.0
    if len(sys.argv) == 4 and sys.argv[2] == "--gap-us":
        gap = int(sys.argv[3]) / 1e6
    frames = [bytes.fromhex(line.strip()) for line in sys.stdin if line.strip()]
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)
    sock.bind((ifname, 0))
    for frame in frames:
        sock.send(frame)
        if gap:
            time.sleep(gap)
    print(len(frames))
    return 0


if __name__ == "__main__":
    sys.exit(main())
