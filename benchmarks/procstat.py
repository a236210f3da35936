"""
CPU and memory of a process, read from /proc, as the benchmarks report them.

CPU is read from /proc/PID/stat (utime + stime, in clock ticks) at two
moments: the server's CPU share over a measurement window is the tick
difference over the wall-clock difference (1.0 = one core busy).  RSS is
VmRSS from /proc/PID/status.  A L{Sampler} thread keeps reading RSS so a
run can report its peak and whether it stayed flat.  The machine's busy
time (/proc/stat) over the same window tells how much CPU others (the
generator, other people's test runs on a shared machine) took.
"""

from __future__ import annotations

import os
import threading
import time

TICKS = os.sysconf("SC_CLK_TCK")


def cpuSeconds(pid: int) -> float:
    """
    User plus system CPU seconds the process has used so far.
    """
    with open(f"/proc/{pid}/stat", "rb") as f:
        data = f.read()
    # The command name (field 2) may hold spaces: split after its ')'.
    fields = data[data.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def rssKiB(pid: int) -> int:
    """
    Resident set size of the process in KiB.
    """
    with open(f"/proc/{pid}/status", "rb") as f:
        for line in f:
            if line.startswith(b"VmRSS:"):
                return int(line.split()[1])
    return 0


class CPUMark:
    """
    A point in time and the CPU a process had used by then.
    """

    __slots__ = ("wall", "cpu", "machine")

    def __init__(self, pid: int) -> None:
        self.wall = time.monotonic()
        self.cpu = cpuSeconds(pid)
        self.machine = machineBusy()

    def share(self, later: CPUMark) -> float:
        """
        CPU used between this mark and C{later}, as a share of one core.
        """
        elapsed = later.wall - self.wall
        return (later.cpu - self.cpu) / elapsed if elapsed > 0 else 0.0

    def machineShare(self, later: CPUMark) -> float:
        """
        Cores the whole machine kept busy between this mark and C{later}.
        """
        elapsed = later.wall - self.wall
        return (later.machine - self.machine) / elapsed if elapsed > 0 else 0.0


class Sampler(threading.Thread):
    """
    Samples a process's RSS every C{interval} seconds until stopped.

    @ivar samples: C{(monotonic time, RSS KiB)} pairs.
    """

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            try:
                self.samples.append((time.monotonic(), rssKiB(self.pid)))
            except OSError:
                return
            self._halt.wait(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join(2)

    def between(self, start: float, end: float) -> list[int]:
        """
        The RSS samples taken between two monotonic times.
        """
        return [kib for when, kib in self.samples if start <= when <= end]


def machineBusy() -> float:
    """
    CPU seconds all cores of the machine have spent busy so far (everything
    in /proc/stat's first line but idle and iowait).
    """
    with open("/proc/stat", "rb") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    busy = sum(fields[:8]) - idle  # guest time is already in user
    return busy / TICKS
