"""Measurement windows: wall time, server CPU (from /proc), load generator CPU."""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Window", "cores_busy_s", "own_cpu_s", "percentile", "rss_kib", "server_cpu_s"]

CLK_TCK = os.sysconf("SC_CLK_TCK")
SATURATED = 0.90  # a load generator above this share of its core is the bottleneck


def server_cpu_s(pid: int) -> float:
    """utime + stime of a whole process (all threads), in seconds; 0 for an unknown pid (0)."""
    if pid <= 0:
        return 0.0
    with open(f"/proc/{pid}/stat") as f:
        # The command name may contain spaces: split after its closing parenthesis.
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # fields 14 and 15 of stat(5)


def rss_kib(pid: int) -> int:
    if pid <= 0:
        raise RuntimeError("memory is read from /proc: give the server's pid (--server-pid)")
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def cores_busy_s(cores: tuple[int, ...] = (0, 1)) -> float:
    """Busy (non-idle, non-iowait) time of the given cores, from /proc/stat."""
    busy = 0
    with open("/proc/stat") as f:
        for line in f:
            name, *ticks = line.split()
            if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cores:
                values = [int(t) for t in ticks]
                busy += sum(values[:8]) - values[3] - values[4]  # minus idle, iowait
    return busy / CLK_TCK


def own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class Window:
    """Brackets the measured part of a workload.

    Server CPU per operation comes from the server's own /proc counters, so it
    stays fair when the load generator, not the server, is the bottleneck.
    """

    server_pid: int
    t0: float = field(default=0.0)
    cpu0: float = field(default=0.0)
    server0: float = field(default=0.0)
    cores0: float = field(default=0.0)
    wall: float = field(default=0.0)
    result: dict[str, Any] = field(default_factory=dict)

    def start(self) -> Window:
        self.server0 = server_cpu_s(self.server_pid)
        self.cores0 = cores_busy_s()
        self.cpu0 = own_cpu_s()
        self.t0 = time.perf_counter()
        return self

    def stop(self, ops: int, end: float | None = None) -> dict[str, Any]:
        """Close the window; ``end`` (a perf_counter value) if the work finished earlier."""
        now = time.perf_counter()
        own = own_cpu_s() - self.cpu0
        server = server_cpu_s(self.server_pid) - self.server0
        others = cores_busy_s() - self.cores0 - server - own
        self.wall = max((end or now) - self.t0, 1e-9)
        span = max(now - self.t0, 1e-9)
        lg_share = own / span
        self.result = {
            "ops": ops,
            "wall_s": round(self.wall, 4),
            "ops_per_s": ops / self.wall,
            "server_cpu_s": round(server, 3),
            "server_cpu_us_per_op": server * 1e6 / ops if ops and self.server_pid > 0 else None,
            "server_cpu_pct": round(100 * server / span, 1),
            "loadgen_cpu_pct": round(100 * lg_share, 1),
            "loadgen_saturated": lg_share > SATURATED,
            # Other processes (and the kernel's softirq work) on cores 0-1, in % of one core:
            # the noise indicator on a shared machine.
            "other_cpu_pct": round(max(0.0, 100 * others / span), 1),
        }
        return self.result


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[index]
