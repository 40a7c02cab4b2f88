"""The local engine's panel on every core: blocks of fiscal years built in forked processes.

The mart is loaded once, here; the worker processes are forked from this one and read it
without copying it (its text columns are Arrow buffers and its keys integers, so a worker
touches no Python object per cell). The fiscal years are cut into contiguous blocks, one
task per block, so each year after a block's first reuses its previous year's household
state as the one-process build does; the leakage check's rebuild from the cut mart is one
more task. A task writes each year as an Arrow file into a scratch folder and announces it
(with its notes and missingness) on a queue; this process writes the years into
panel.parquet in year order as they arrive: the same bytes as the one-process build
(tests/panel/test_parallel.py).
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import tempfile
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from queue import Empty
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from tqdm.auto import tqdm

from helpers import MimamoriError
from helpers.config import Settings
from helpers.panel import features as F
from helpers.panel import stage as S
from helpers.panel.coverage import Coverage
from helpers.paths import Paths

# each process holds one year's frames besides the shared mart (a few GB at L): two at most
_SHARED: dict = {}  # the mart and settings the forked workers read (set before forking)


def process_count(n_years: int, workers: int) -> int:
    """Worker processes for ``n_years`` fiscal years: the usable cores, at most ``workers``
    (``run.local_workers``); 1 (build here, in one process) where fork is not available."""
    if "fork" not in multiprocessing.get_all_start_methods() or n_years < 2:
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(cores or 1, workers, n_years))


def year_blocks(years: list[int], n: int) -> list[list[int]]:
    """``years`` cut into ``n`` contiguous blocks as equal as possible, later ones longer:
    the first to finish takes the leakage check's rebuild (queued last)."""
    sizes = [len(b) for b in np.array_split(np.asarray(years), n) if len(b)][::-1]
    ends = np.cumsum(sizes)
    return [
        [int(y) for y in years[end - size : end]] for size, end in zip(sizes, ends, strict=True)
    ]


def _save(frame: pd.DataFrame, name: str, scratch: str) -> str:
    """One built year as an Arrow file of the panel schema (what panel.parquet gets)."""
    schema = S.arrow_schema(_SHARED["registry"])
    table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
    path = str(Path(scratch) / f"{name}.arrow")
    with pa.OSFile(path, "wb") as sink, pa.ipc.new_file(sink, schema) as writer:
        writer.write_table(table)
    return path


def build_block(years: list[int], scratch: str) -> int:
    """One task: the years of one block, each saved to ``scratch`` and announced on the
    shared queue as soon as it is built (with its notes and its rows of missingness.csv)."""
    cfg, registry = _SHARED["cfg"], _SHARED["registry"]
    catalogue = F.feature_catalogue(cfg)
    cache: dict = {}
    notes: dict[int, dict] = {}
    for fy in years:
        frame = S.build_year(
            _SHARED["mart"],
            fy,
            cfg,
            registry,
            cache,
            _SHARED["decoders"],
            _SHARED["coverage"],
            notes,
        )
        _SHARED["queue"].put(
            {
                "fiscal_year": fy,
                "rows": len(frame),
                "path": _save(frame, f"fy{fy}", scratch),
                "notes": notes.get(fy),
                "missingness": F.missingness_table(frame, catalogue) if len(frame) else None,
            }
        )
        del frame
    return len(years)


def build_cut(fiscal_year: int, scratch: str) -> dict:
    """One task: the leakage check's year rebuilt from the mart cut at its as-of date."""
    cfg = _SHARED["cfg"]
    on = S.as_of_date(fiscal_year, cfg.panel)
    cut_mart, removed = S.truncate_mart(_SHARED["mart"], on, fiscal_year)
    frame = S.build_year(
        cut_mart,
        fiscal_year,
        cfg,
        _SHARED["registry"],
        decoders=_SHARED["decoders"],
        coverage=_SHARED["coverage"],
    )
    del cut_mart
    return {"path": _save(frame, "cut", scratch), "removed": removed}


def _read(path: str) -> pa.Table:
    return pa.ipc.open_file(pa.memory_map(path)).read_all()


def _next_year(queue: Any, tasks: list[Future]) -> dict:
    """The next year a task announces; a task's error is raised here, unchanged."""
    while True:
        try:
            return queue.get(timeout=1.0)
        except Empty:
            pass
        errors = [t.exception() for t in tasks if t.done() and t.exception() is not None]
        if errors:
            raise errors[0]  # type: ignore[misc]
        if all(t.done() for t in tasks) and queue.empty():
            raise MimamoriError("panel: a worker process ended without its fiscal years")


def _years_in_order(
    tasks: list[Future], notes: dict[int, dict], kept: dict, leakage_year: int, years: list[int]
) -> Iterator[tuple[pa.Table, pd.DataFrame]]:
    """The built years as (table, missingness rows) in year order as they come, filling
    ``notes``; the leakage check's year is also left in ``kept`` (its file is kept)."""
    arrived: dict[int, dict] = {}
    for fy in tqdm(years, desc="panel (fiscal years)"):
        while fy not in arrived:
            year = _next_year(_SHARED["queue"], tasks)
            arrived[year["fiscal_year"]] = year
        year = arrived.pop(fy)
        if year["notes"] is not None:
            notes[fy] = year["notes"]
        if fy == leakage_year:
            kept["full"] = year["path"]
        if not year["rows"]:
            continue
        table = _read(year["path"])
        if fy != leakage_year:
            os.remove(year["path"])
        yield table, year["missingness"]
        del table


def parallel_panel(
    mart: dict[str, pd.DataFrame],
    decoders: dict[str, pd.Index],
    coverage: Coverage,
    cfg: Settings,
    P: Paths,
    leakage: bool,
) -> tuple[dict, dict | None]:
    """``write_panel`` and ``leakage_check`` of the local engine, the years built by
    ``process_count`` forked processes; the same files, byte for byte."""
    registry = F.feature_registry(cfg)
    F.check_registry_roles(registry)
    years = [int(y) for y in cfg.run.fiscal_years]
    fy_check = S.leakage_year(cfg)
    P.panel_dir.mkdir(parents=True, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix=".years-", dir=P.panel_dir)
    fork = multiprocessing.get_context("fork")
    _SHARED.update(mart=mart, decoders=decoders, coverage=coverage, cfg=cfg, registry=registry)
    _SHARED["queue"] = fork.Queue()
    try:
        n = process_count(len(years), cfg.run.local_workers)
        with ProcessPoolExecutor(n, mp_context=fork) as pool:
            tasks = [pool.submit(build_block, b, scratch) for b in year_blocks(years, n)]
            cut = pool.submit(build_cut, fy_check, scratch) if leakage else None
            notes: dict[int, dict] = {}
            kept: dict = {}
            years_in_order = _years_in_order(tasks, notes, kept, fy_check, years)
            summary = S.write_tables(years_in_order, cfg, P, coverage, notes)
            check = None
            if cut is not None:
                done = cut.result()
                full, rebuilt = (_read(p).to_pandas() for p in (kept["full"], done["path"]))
                check = S.compare_builds(full, rebuilt, done["removed"], fy_check, cfg)
    finally:
        _SHARED.clear()
        shutil.rmtree(scratch, ignore_errors=True)
    return summary, check
