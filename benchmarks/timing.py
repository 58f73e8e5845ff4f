"""The one timing loop the benchmark scripts share."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Hashable, Mapping
from typing import TypeVar

Key = TypeVar("Key", bound=Hashable)


def median_seconds(run: Callable[[], object], repeats: int, warm_up: bool = True) -> float:
    """Median wall time of `run()` over `repeats` calls, after one warm-up call
    (tracing, first-call caches) unless told not to."""
    if warm_up:
        run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def interleaved_median_seconds(runs: Mapping[Key, Callable[[], object]], repeats: int) -> dict[Key, float]:
    """Median wall time of each run over `repeats` rounds that call every run once, in turn.

    On a shared machine the load drifts within minutes: runs timed one after
    the other can see different machines, and their ratio moves with the
    drift (issue 12: qpth took 42 ms in one run and 29 ms in the next, the
    same code). Timed in turn, every run sees the same drift. The order
    rotates each round, so no run always follows the same one.
    """
    names = list(runs)
    for name in names:
        runs[name]()  # warm-up: tracing, first-call caches
    times: dict[Key, list[float]] = {name: [] for name in names}
    for round_index in range(repeats):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            runs[name]()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}
