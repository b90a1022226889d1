"""The bench's server CPU accounting counts a server's whole process group, and nothing else."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from bench.harness import server_cpu

# Burns 0.3 s of CPU in the process and 0.3 s in a forked child, then waits to be stopped.
BURN = r"""
import os, time
pid = os.fork()
start = time.process_time()
while time.process_time() - start < 0.3:
    pass
os.write(1, b"done\n")
time.sleep(60)
"""


def test_server_cpu_counts_the_master_and_its_workers_only() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", BURN], stdout=subprocess.PIPE, start_new_session=True, text=True
    )
    other = subprocess.Popen(
        [sys.executable, "-c", BURN], stdout=subprocess.PIPE, start_new_session=True, text=True
    )
    try:
        for p in (proc, other):
            assert p.stdout is not None
            assert p.stdout.readline() == "done\n"
            assert p.stdout.readline() == "done\n"  # the parent and the child
        time.sleep(0.1)
        used = server_cpu(proc)
        assert 0.55 <= used < 1.2  # its own 0.6 s, not the other group's
    finally:
        for p in (proc, other):
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:  # it failed before the test could stop it
                pass
            p.wait()
            assert p.stdout is not None
            p.stdout.close()
