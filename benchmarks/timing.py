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


def interleaved_median_seconds(runs: Mapping[Key, Callable[[], object]], repeats: int, rounds: int = 3) -> dict[Key, float]:
    """Median wall time of each run over `repeats` calls, spread over `rounds` rounds that visit every run in turn.

    On a shared machine the load drifts within minutes: runs timed one after
    the other can see different machines, and their ratio moves with the
    drift (issue 12: qpth took 42 ms in one run and 29 ms in the next, the
    same code). Here every run is timed in each round, so each sees the
    run's whole drift. Within a round a run's calls follow each other after
    one untimed call: a call right after another library's runs 15-30%
    slower (measured: the ellipsoid projection after cvxpylayers 0.1.9's
    SCS solve, even after a 0.3 s pause), which would charge one library for
    another's footprint.
    """
    names = list(runs)
    times: dict[Key, list[float]] = {name: [] for name in names}
    rounds = max(1, min(rounds, repeats))
    for round_index in range(rounds):
        calls = len(range(round_index, repeats, rounds))  # the repeats dealt out over the rounds
        for name in names:
            runs[name]()  # untimed: the first call (tracing, caches) or the first after another run's
            for _ in range(calls):
                start = time.perf_counter()
                runs[name]()
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}
