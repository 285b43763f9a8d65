"""Timing shared by the benchmarks: interleaved rounds of latencies, and their median / p90.

The scheduler is the runtime's own (``runtime.cli.timing.timed_rounds``, which `edgeport bench` uses
too); here each call is timed whole.
"""

from __future__ import annotations

import time

from runtime.cli.timing import percentiles
from runtime.cli.timing import timed_rounds as _rounds


def timed_rounds(calls: dict, inputs: list, seconds: float, rounds: int = 5) -> dict:
    """Latency samples (seconds) per name, over ``seconds`` of interleaved rounds (see
    ``runtime.cli.timing.timed_rounds``)."""
    return _rounds({name: _latency(call) for name, call in calls.items()}, inputs,
                   seconds=seconds, rounds=rounds)


def _latency(call):
    def timed(item) -> float:
        started = time.perf_counter()
        call(item)
        return time.perf_counter() - started
    return timed


def summary(samples: list[float]) -> tuple[float, float]:
    """(median, p90) in milliseconds."""
    stats = percentiles(samples)
    return stats["median"] * 1e3, stats["p90"] * 1e3
