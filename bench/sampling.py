"""CPU time and memory of the processes under test, read with psutil.

psutil rather than parsing /proc by hand: it reads the same files (stat, status,
smaps_rollup) and copes with processes ending while they are read.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

import psutil

MemorySummary = dict[str, dict[str, float | None]]


def cpu_seconds(pid: int) -> float:
    """CPU time a process and its live children (nginx's worker) have used, user and system."""
    process = psutil.Process(pid)
    total = 0.0
    for each in [process, *process.children(recursive=True)]:
        try:
            times = each.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def memory_kib(pid: int) -> tuple[int, int | None]:
    """Resident memory of a process and, when the kernel shows it, its proportional share.

    RSS counts every page the process maps, so pages shared between processes (the Python
    interpreter, libraries) are counted once per process; PSS splits them between sharers.
    """
    process = psutil.Process(pid)
    try:
        full = process.memory_full_info()
    except psutil.AccessDenied:
        return process.memory_info().rss // 1024, None
    pss = getattr(full, "pss", None)
    return full.rss // 1024, None if pss is None else pss // 1024


class CpuMeter:
    """CPU seconds each process spends while a block of code runs (`with CpuMeter(...)`)."""

    def __init__(self, processes: Mapping[str, int]) -> None:
        self.processes = dict(processes)
        self.seconds: dict[str, float] = {}
        self._before: dict[str, float] = {}

    def __enter__(self) -> CpuMeter:
        self._before = {name: cpu_seconds(pid) for name, pid in self.processes.items()}
        return self

    def __exit__(self, *_: object) -> None:
        for name, pid in self.processes.items():
            self.seconds[name] = cpu_seconds(pid) - self._before[name]


class MemoryPeaks:
    """Peak RSS and PSS of each process, and of their sum, while a block of code runs.

    The sum's peak is the highest sum seen at one instant, not the sum of the peaks.
    """

    def __init__(self, processes: Mapping[str, int], interval_s: float = 0.5) -> None:
        self.processes = dict(processes)
        self.interval_s = interval_s
        self.rss_kib: dict[str, int] = {}
        self.pss_kib: dict[str, int | None] = {}
        self._done = threading.Event()
        self._sampler = threading.Thread(target=self._sample_until_done)

    def __enter__(self) -> MemoryPeaks:
        self.sample()
        self._sampler.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._done.set()
        self._sampler.join()

    def _sample_until_done(self) -> None:
        while not self._done.wait(self.interval_s):
            self.sample()

    def sample(self) -> None:
        rss_total, pss_total = 0, 0
        pss_known = True
        for name, pid in self.processes.items():
            try:
                rss, pss = memory_kib(pid)
            except psutil.NoSuchProcess:  # the process has gone: keep what was seen
                continue
            rss_total += rss
            self.rss_kib[name] = max(self.rss_kib.get(name, 0), rss)
            if pss is None:
                pss_known = False
                self.pss_kib[name] = None
            else:
                pss_total += pss
                self.pss_kib[name] = max(self.pss_kib.get(name) or 0, pss)
        self.rss_kib["total"] = max(self.rss_kib.get("total", 0), rss_total)
        self.pss_kib["total"] = (
            max(self.pss_kib.get("total") or 0, pss_total) if pss_known else None
        )

    def summary(self) -> MemorySummary:
        return {
            "rss_mib": {name: round(kib / 1024, 1) for name, kib in self.rss_kib.items()},
            "pss_mib": {
                name: None if kib is None else round(kib / 1024, 1)
                for name, kib in self.pss_kib.items()
            },
        }


def memory_now(processes: Mapping[str, int]) -> MemorySummary:
    """RSS and PSS of each process and their sum, at this instant."""
    peaks = MemoryPeaks(processes)
    peaks.sample()
    return peaks.summary()


def memory_line(memory: MemorySummary) -> str:
    """One line for a person: total RSS, each process's, and the total PSS when known."""
    rss, pss = memory["rss_mib"], memory["pss_mib"]
    processes = ", ".join(
        f"{name} {value:.0f}" for name, value in rss.items() if name != "total" and value
    )
    total_pss = pss.get("total")
    shared = "" if total_pss is None else f", PSS {total_pss:.0f} MiB"
    return f"RSS {rss['total']:.0f} MiB ({processes}){shared}"
