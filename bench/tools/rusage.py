#!/usr/bin/env python3
"""Runs a command and prints its CPU time (user, system, in seconds with
microsecond resolution, from wait4's rusage) on stderr as the last line:
RUSAGE <user> <system>. The exit status is the command's."""
import os
import sys

pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
_, status, usage = os.wait4(pid, 0)
sys.stderr.write(f"RUSAGE {usage.ru_utime:.6f} {usage.ru_stime:.6f}\n")
sys.exit(os.waitstatus_to_exitcode(status))
