"""Timing shared by the benchmarks: interleaved rounds and their median / p90."""

from __future__ import annotations

import statistics
import time


def timed_rounds(calls: dict, inputs: list, seconds: float, rounds: int = 5) -> dict:
    """Latency samples per name. Each round runs every callable in turn (in a rotated order) on
    all inputs for an equal share of the time, so machine noise spreads over the variants; in a
    round a callable runs in one block, its first pass untimed: ONNX Runtime's intra-op threads
    spin for a while after a run, and interleaving sessions call by call would time each
    session against the previous one's spinning threads (on 2 cores that doubled fp32's
    median)."""
    share = seconds / rounds / len(calls)
    samples: dict[str, list[float]] = {name: [] for name in calls}
    order = list(calls)
    for round_number in range(rounds):
        shift = round_number % len(order)  # rotate: no variant always runs after the same one
        for name in order[shift:] + order[:shift]:
            call = calls[name]
            for item in inputs:  # untimed pass: warm-up, and lets other sessions go quiet
                call(item)
            deadline = time.perf_counter() + share
            while time.perf_counter() < deadline:
                for item in inputs:
                    started = time.perf_counter()
                    call(item)
                    samples[name].append(time.perf_counter() - started)
    return samples


def summary(samples: list[float]) -> tuple[float, float]:
    values = sorted(samples)
    return statistics.median(values) * 1e3, values[int(0.9 * (len(values) - 1))] * 1e3
