"""CPU and memory of the stack's processes while a load test runs.

CPU seconds of a process tree = its own user+system time, plus the time of children it has
already reaped (cpu_times().children_*: gunicorn workers, PostgreSQL backends that exited), plus
the live children's own time. Sampled every half second, so a phase's CPU can be cut out of the
series afterwards (the load tester reports its phases in wall-clock time).
"""

from __future__ import annotations

import bisect
import threading
import time

import psutil


def tree_cpu_seconds(proc: psutil.Process) -> float:
    total = 0.0
    try:
        t = proc.cpu_times()
        total += t.user + t.system + t.children_user + t.children_system
        for child in proc.children(recursive=True):
            try:
                c = child.cpu_times()
                total += c.user + c.system
            except psutil.Error:
                pass
    except psutil.Error:
        pass
    return total


def tree_rss_bytes(proc: psutil.Process) -> int:
    total = 0
    try:
        for p in [proc, *proc.children(recursive=True)]:
            try:
                total += p.memory_info().rss
            except psutil.Error:
                pass
    except psutil.Error:
        pass
    return total


def vm_hwm_bytes(pid: int) -> int | None:
    """Peak resident set size of one process (the kernel's high-water mark)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class Sampler:
    def __init__(self, pids: dict[str, int], interval: float = 0.5):
        self.procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.interval = interval
        self.series: dict[str, list[tuple[float, float, int]]] = {name: [] for name in pids}  # (wall, cpu, rss)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="bench-sampler", daemon=True)

    def sample(self) -> None:
        now = time.time()
        for name, proc in self.procs.items():
            self.series[name].append((now, tree_cpu_seconds(proc), tree_rss_bytes(proc)))

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def start(self) -> Sampler:
        self.sample()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sample()

    def cpu_between(self, name: str, start: float, end: float) -> float | None:
        """CPU seconds spent in [start, end] (wall clock), interpolated between samples."""
        points = self.series[name]
        if len(points) < 2 or end <= start:
            return None
        times = [p[0] for p in points]

        def at(t: float) -> float:
            i = bisect.bisect_left(times, t)
            if i <= 0:
                return points[0][1]
            if i >= len(points):
                return points[-1][1]
            (t0, c0, _), (t1, c1, _) = points[i - 1], points[i]
            return c0 + (c1 - c0) * ((t - t0) / (t1 - t0) if t1 > t0 else 0)

        return round(at(end) - at(start), 3)

    def rss_before(self, name: str, t: float) -> int | None:
        """The resident set of the last sample taken at or before `t` (wall clock)."""
        before = [p[2] for p in self.series[name] if p[0] <= t]
        return before[-1] if before else None

    def rss_first_and_peak(self, name: str) -> tuple[int, int]:
        rss = [p[2] for p in self.series[name]]
        return (rss[0], max(rss)) if rss else (0, 0)
