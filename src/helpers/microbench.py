"""Micro-benchmarks of hot helpers, run by ``make bench`` (speed is measured, never tested).

Each entry times one helper on a fixed synthetic input and reports rows per second; the
results go to ``benchmarks.json`` under ``micro`` beside the per-stage figures.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pandas as pd

from helpers.dates import parse_dates


def _era_dates(repeat: int) -> pd.Series:
    days = [f"R{y}.{m}.{d}" for y in range(1, 6) for m in range(1, 13) for d in range(1, 29)]
    return pd.Series(days * repeat)


def _time(func: Callable[[], Any], rows: int, repeats: int = 3) -> dict[str, float]:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        func()
        best = min(best, time.perf_counter() - t0)
    return {"rows": rows, "best_s": round(best, 4), "rows_per_s": round(rows / best, 1)}


def run_micro(repeat: int = 200) -> dict[str, dict[str, float]]:
    """Every micro-benchmark: ``{name: {rows, best_s, rows_per_s}}`` (best of three runs)."""
    era = _era_dates(repeat)
    return {"parse_dates_era": _time(lambda: parse_dates(era), len(era))}
