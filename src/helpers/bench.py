"""Benchmarks: every stage timed at several city sizes (a 25k-child town to a 500k-child prefecture).

Each stage runs as its own ``python -m helpers <stage>`` subprocess so its wall time, CPU time and
peak memory (``os.wait4`` rusage, plus psutil polling of the process tree) belong to that stage
alone. Sizes are config overrides (``synth.n_children``) written into a per-size copy of the
settings under ``build/bench/<size>/config``; the generated city is cached per size and rebuilt
only when the settings that shape it change. Results merge into ``reports/bench/benchmarks.json``
and a self-contained ``reports/bench/index.html``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import html
import json
import math
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from tqdm import tqdm

from helpers import MimamoriError, benchdoc
from helpers.config import (
    REPO_ROOT,
    Settings,
    config_hash,
    deep_merge,
    reports_dir,
    resolve,
    stable_hash,
)
from helpers.exports import detect_encoding, table_of
from helpers.io import file_sha256, git_commit, package_versions, write_json, write_text
from helpers.microbench import run_micro
from helpers.paths import Paths
from helpers.schema import load_schemas

SIZE_CHILDREN = {"XS": 2_000, "S": 25_000, "M": 100_000, "L": 500_000}
# A fixed, small tuning budget so model-training times compare across sizes.
BENCH_OVERRIDES: dict[str, Any] = {"models": {"tuning": {"n_trials": 4, "time_budget_s": 60}}}
DEFAULT_CACHE_DIR = "build/bench"
CACHE_FILE = "bench_cache.json"
HELPERS_DIR = Path(__file__).resolve().parent
# Settings and code that shape the generated city: a change to any of them regenerates it.
RAW_SECTIONS = ("run", "synth")


# ----------------------------------------------------------------------------- measurement
@dataclass
class Measurement:
    """One child process: wall/CPU seconds and peak memory (MB = 2**20 bytes)."""

    wall_s: float
    cpu_user_s: float
    cpu_sys_s: float
    peak_rss_mb: float
    peak_tree_rss_mb: float
    returncode: int
    timed_out: bool = False

    @property
    def cpu_s(self) -> float:
        return self.cpu_user_s + self.cpu_sys_s

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["cpu_s"] = round(self.cpu_s, 3)
        out["cpu_per_wall"] = round(self.cpu_s / self.wall_s, 3) if self.wall_s > 0 else None
        for key in ("wall_s", "cpu_user_s", "cpu_sys_s", "peak_rss_mb", "peak_tree_rss_mb"):
            out[key] = round(out[key], 3)
        return out


def _tree_rss_bytes(pid: int, include_root: bool = True) -> int:
    """Resident memory of a process and all its descendants right now (0 if it is gone)."""
    import psutil

    try:
        proc = psutil.Process(pid)
        procs = (
            [proc, *proc.children(recursive=True)]
            if include_root
            else proc.children(recursive=True)
        )
    except psutil.Error:
        return 0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            continue
    return total


def _last_progress_line(log_path: Path | None, max_bytes: int = 4096) -> str:
    """The child's latest progress/log line (tqdm redraws with \\r), for the bench's own bar."""
    if log_path is None or not log_path.exists():
        return ""
    try:
        with open(log_path, "rb") as fh:
            fh.seek(max(0, log_path.stat().st_size - max_bytes))
            tail = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    parts = [p.strip() for p in tail.replace("\r", "\n").split("\n") if p.strip()]
    return parts[-1][:70] if parts else ""


# A lean launcher between the bench and each stage. Linux folds the RSS a process had before
# exec() into ru_maxrss, and a forked/vforked child starts with its parent's memory: timed
# directly, every stage would inherit the bench's own peak. The launcher (a bare interpreter,
# ~10 MB) forks the stage, waits for it and writes its rusage as JSON.
_LAUNCHER = """
import json, os, sys, time
argv, out = json.loads(sys.argv[1]), sys.argv[2]
t0 = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(argv[0], argv)
    finally:
        os._exit(127)
_, status, ru = os.wait4(pid, 0)
wall = time.perf_counter() - t0
code = os.waitstatus_to_exitcode(status)
with open(out + ".tmp", "w") as fh:
    json.dump({"wall_s": wall, "user": ru.ru_utime, "sys": ru.ru_stime, "maxrss_kib": ru.ru_maxrss,
               "returncode": code}, fh)
os.replace(out + ".tmp", out)
sys.exit(code if 0 <= code < 256 else 1)
"""


def measure_command(
    argv: Sequence[str],
    env: dict[str, str] | None = None,
    cwd: str | Path | None = None,
    log_path: str | Path | None = None,
    timeout_s: float | None = None,
    poll_s: float = 0.1,
    on_poll: Callable[[float, float, str], None] | None = None,
) -> Measurement:
    """Run ``argv`` to completion and measure it.

    Wall, CPU (user+sys) and ``peak_rss_mb`` come from ``wait4`` on the stage process in a lean
    launcher (Linux ``ru_maxrss`` is KiB and folds in grandchildren the stage waited for);
    ``peak_tree_rss_mb`` is the largest sum of RSS over the stage and its live descendants seen
    by polling (papermill kernels run beside the stage, so their memory shows up there).
    Output goes to ``log_path``.
    """
    import tempfile

    log = Path(log_path) if log_path else None
    if log:
        log.parent.mkdir(parents=True, exist_ok=True)
    fd, usage_file = tempfile.mkstemp(prefix="mimamori-bench-", suffix=".json")
    os.close(fd)
    os.unlink(usage_file)
    launcher = [sys.executable, "-S", "-c", _LAUNCHER, json.dumps(list(argv)), usage_file]
    out_fh: Any = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115 - closed below
    start = time.perf_counter()
    try:
        proc = subprocess.Popen(
            launcher,
            env=env,
            cwd=cwd,
            stdout=out_fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    except OSError as exc:
        if log:
            out_fh.close()
        raise MimamoriError(f"bench: cannot start {argv[0]!r}: {exc}") from None
    peak_tree = 0
    timed_out = False
    last_report = 0.0
    try:
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            peak_tree = max(peak_tree, _tree_rss_bytes(proc.pid, include_root=False))
            elapsed = time.perf_counter() - start
            if on_poll and elapsed - last_report >= 1.0:
                last_report = elapsed
                on_poll(elapsed, peak_tree / 2**20, _last_progress_line(log))
            if timeout_s is not None and elapsed > timeout_s:
                timed_out = True
                _kill_group(proc.pid)
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(poll_s)
    except BaseException:
        _kill_group(proc.pid)
        with contextlib.suppress(ChildProcessError):
            os.wait4(proc.pid, 0)
        raise
    finally:
        if log:
            out_fh.close()
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)  # keep Popen from waiting again
    stage = _read_json(Path(usage_file))
    with contextlib.suppress(OSError):
        os.unlink(usage_file)
    if stage:  # the stage itself, without the launcher
        wall, user, system = stage["wall_s"], stage["user"], stage["sys"]
        maxrss_mb, code = stage["maxrss_kib"] / 1024, int(stage["returncode"])
    else:  # killed (timeout) or the launcher failed: the launcher's own figures
        user, system, maxrss_mb = usage.ru_utime, usage.ru_stime, usage.ru_maxrss / 1024
        code = proc.returncode if proc.returncode != 0 or not timed_out else -9
    return Measurement(
        wall_s=wall,
        cpu_user_s=user,
        cpu_sys_s=system,
        peak_rss_mb=maxrss_mb,
        peak_tree_rss_mb=max(peak_tree / 2**20, maxrss_mb),
        returncode=code,
        timed_out=timed_out,
    )


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


# ----------------------------------------------------------------------------- sizes and config
@dataclass(frozen=True)
class BenchSize:
    name: str
    n_children: int

    def overrides(self, base: dict | None = None) -> dict[str, Any]:
        """Config overrides for this size: ``synth.n_children`` plus the fixed tuning budget."""
        return deep_merge(
            deep_merge(base or {}, BENCH_OVERRIDES), {"synth": {"n_children": self.n_children}}
        )


def parse_sizes(text: str) -> list[BenchSize]:
    """``"S,M"`` or ``"S,custom=40000"`` → sizes; names are the keys of SIZE_CHILDREN."""
    sizes: list[BenchSize] = []
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        if "=" in item:
            name, _, n = item.partition("=")
            try:
                n_children = int(n.replace("_", ""))
            except ValueError:
                raise MimamoriError(
                    f"bench --sizes: {item!r}: children count {n!r} is not a whole number"
                ) from None
            if n_children <= 0:
                raise MimamoriError(f"bench --sizes: {item!r}: children count must be positive")
            sizes.append(BenchSize(name.strip(), n_children))
        elif item.upper() in SIZE_CHILDREN:
            sizes.append(BenchSize(item.upper(), SIZE_CHILDREN[item.upper()]))
        else:
            raise MimamoriError(
                f"bench --sizes: unknown size {item!r} (known: {', '.join(SIZE_CHILDREN)}, or NAME=N)"
            )
    if not sizes:
        raise MimamoriError("bench --sizes: no sizes given")
    return sizes


def materialise_config(cfg: Settings, overrides: dict, config_dir: str | Path) -> Path:
    """Write ``cfg`` with ``overrides`` merged as one YAML file per section into ``config_dir``.

    The child stages then load exactly these settings via ``--config-dir`` (no profile: the
    caller's profile is already folded into ``cfg``).
    """
    config_dir = Path(config_dir)
    config_dir.mkdir(parents=True, exist_ok=True)
    merged = cfg.with_overrides(overrides).as_dict()
    for section in merged:
        text = (
            "# Written by helpers.bench from the project settings plus this size's overrides.\n"
            + yaml.safe_dump(merged[section], allow_unicode=True, sort_keys=True)
        )
        write_text(text, config_dir / f"{section}.yaml")
    return config_dir


def _source_hashes(paths: Sequence[Path]) -> dict[str, str]:
    out = {}
    for p in paths:
        files = sorted([*p.glob("*.yaml"), *p.glob("*.py")]) if p.is_dir() else [p]
        for f in files:
            if f.exists():
                out[f.name] = file_sha256(f)
    return out


def raw_cache_key(cfg: Settings) -> str:
    """What the generated city depends on: run+synth settings, the generator and the schemas."""
    from helpers.schema import SCHEMA_DIR

    local = cfg.with_overrides({"run": {"engine": "local"}})  # one city for either engine
    parts = {
        "config": config_hash(local, RAW_SECTIONS),
        "code": _source_hashes([HELPERS_DIR / "synth", SCHEMA_DIR]),
    }
    return stable_hash(parts)


def raw_cache_valid(size_dir: Path, key: str) -> bool:
    """True when ``size_dir`` holds a complete generated city made with the same key."""
    cache = _read_json(size_dir / CACHE_FILE)
    return (
        bool(cache) and cache.get("raw_key") == key and _size_paths(size_dir).raw_complete.exists()
    )


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


# ----------------------------------------------------------------------------- floors and counts
PYARROW_ENCODING = {"utf-8-sig": "utf8", "utf-8": "utf8", "cp932": "cp932"}  # pyarrow skips a BOM


def _csv_encoding(path: Path, encodings: dict[str, str], schemas: dict) -> str:
    """pyarrow's name for the encoding ingest reads this export with (helpers.exports)."""
    tables = table_of(path.name, schemas)
    configured = encodings.get(tables[0]) if tables else None
    return PYARROW_ENCODING.get(detect_encoding(path, configured), "cp932")


def read_raw_floor(raw_dir: str | Path, encodings: dict[str, str] | None = None) -> dict[str, Any]:
    """Time merely reading every raw export: CSV with pyarrow (all columns as text), xlsx with
    openpyxl read-only. The ingest stage cannot be faster than this."""
    import openpyxl
    import pyarrow as pa
    import pyarrow.csv as pacsv

    raw_dir = Path(raw_dir)
    files = sorted(
        p for p in raw_dir.iterdir() if p.is_file() and p.suffix.lower() in (".csv", ".xlsx")
    )
    schemas = load_schemas()
    csv_encoding = {  # decided before the clock starts: ingest knows its encodings too
        p: _csv_encoding(p, encodings or {}, schemas) for p in files if p.suffix.lower() == ".csv"
    }
    start = time.perf_counter()
    rows, nbytes = 0, 0
    for path in files:
        nbytes += path.stat().st_size
        if path.suffix.lower() == ".xlsx":
            wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
            try:
                for ws in wb.worksheets:
                    rows += max(0, sum(1 for _ in ws.iter_rows(values_only=True)) - 1)
            finally:
                wb.close()
            continue
        read_opts = pacsv.ReadOptions(encoding=csv_encoding[path], block_size=1 << 24)
        header = pacsv.open_csv(path, read_options=read_opts).schema.names
        table = pacsv.read_csv(
            path,
            read_options=read_opts,
            parse_options=pacsv.ParseOptions(
                newlines_in_values=True, invalid_row_handler=lambda _row: "skip"
            ),
            convert_options=pacsv.ConvertOptions(column_types=dict.fromkeys(header, pa.string())),
        )
        rows += table.num_rows
    return {
        "seconds": time.perf_counter() - start,
        "files": len(files),
        "rows": rows,
        "bytes": nbytes,
    }


def read_parquet_floor(paths: Sequence[Path]) -> dict[str, Any]:
    """Time merely reading parquet files with pyarrow (the floor under stages that read them)."""
    import pyarrow.parquet as pq

    start = time.perf_counter()
    rows, nbytes = 0, 0
    for path in paths:
        nbytes += path.stat().st_size
        rows += pq.read_table(path).num_rows
    return {
        "seconds": time.perf_counter() - start,
        "files": len(paths),
        "rows": rows,
        "bytes": nbytes,
    }


def _sum_key(obj: Any, key: str) -> int:
    """Sum every ``key`` found in nested dicts (the ingest report's per-table figures)."""
    if isinstance(obj, dict):
        own = obj.get(key)
        total = int(own) if isinstance(own, int | float) and not isinstance(own, bool) else 0
        return total + sum(_sum_key(v, key) for k, v in obj.items() if k != key)
    if isinstance(obj, list):
        return sum(_sum_key(v, key) for v in obj)
    return 0


def _parquet_rows(path: Path) -> int | None:
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).metadata.num_rows if path.exists() else None


def _size_paths(size_dir: Path) -> Paths:
    """One size's data root is laid out like data/ (its reports beside it)."""
    return Paths(size_dir, size_dir / "reports")


def count_outputs(data_root: str | Path, target: str) -> dict[str, Any]:
    """Row counts read from the stages' outputs (None where an output does not exist yet)."""
    P = _size_paths(Path(data_root))
    report = _read_json(P.ingest_report)
    panel = P.panel
    n_features = None
    catalogue = P.feature_catalogue
    if catalogue.exists():
        import pandas as pd

        cat = pd.read_csv(catalogue)
        if "role" in cat.columns:
            n_features = int((cat["role"] == "feature").sum())
    totals = report.get("totals") if isinstance(report.get("totals"), dict) else None
    per_table = report.get("tables") if isinstance(report.get("tables"), dict) else report

    def rows(key: str) -> int | None:
        if not report:
            return None
        return int(totals[key]) if totals and key in totals else _sum_key(per_table, key)

    return {
        "raw_rows": rows("rows_in"),
        "mart_rows": rows("rows_out"),
        "panel_rows": _parquet_rows(panel),
        "panel_features": n_features,
        "scores_rows": _parquet_rows(P.model(target).scores),
    }


def block_name(size: str, engine: str) -> str:
    """Key of a size's block in benchmarks.json: ``S`` (local engine) or ``S+dask``."""
    return size if engine == "local" else f"{size}+{engine}"


def output_hashes(data_root: str | Path) -> dict[str, str | None]:
    """SHA-256 over the mart's parquet files and of the panel (None where not built): two
    engines that wrote the same bytes show the same hashes."""
    P = _size_paths(Path(data_root))
    mart = sorted(P.mart.glob("*.parquet"))
    return {
        "mart": stable_hash({f.name: file_sha256(f) for f in mart}) if mart else None,
        "panel": file_sha256(P.panel) if P.panel.exists() else None,
    }


# ----------------------------------------------------------------------------- model quality
_QUALITY_WORDS = (
    "precision",
    "oracle",
    "single",
    "baseline",
    "rule",
    "lift",
    "recall",
    "auc",
    "average_precision",
)


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(obj, int | float | str | bool) or obj is None:
        out[prefix] = obj
    return out


def _headline_precision(block: Any) -> dict[str, Any] | None:
    """``{"precision_at_k": {"value", "ci_low", "ci_high"}}`` (models.fit_target) → flat figures."""
    if not isinstance(block, dict):
        return None
    p = block.get("precision_at_k")
    if isinstance(p, dict) and isinstance(p.get("value"), int | float):
        return {"value": p["value"], "ci_low": p.get("ci_low"), "ci_high": p.get("ci_high")}
    if isinstance(p, int | float):
        return {"value": p, "ci_low": None, "ci_high": None}
    return None


def extract_quality(metrics: dict) -> dict[str, Any]:
    """Test-year quality from a ``metrics.json``: precision@k of the model, the best single
    variable and the oracle (with CIs) plus every ranking's headline precision.

    Reads ``headline.<ranking>.precision_at_k.value`` (helpers.models.stage); for another layout it
    falls back to the shortest numeric key path naming the ranking and "precision".
    """
    out: dict[str, Any] = {}
    for key in ("target", "k", "test_year"):
        if key in metrics:
            out[key] = metrics[key]
    test = metrics.get("test")
    if isinstance(test, dict):
        out["test_events"] = test.get("events")
        out["test_child_years"] = test.get("n_child_years")
    headline: dict[str, Any] = (
        metrics["headline"] if isinstance(metrics.get("headline"), dict) else {}
    )
    rankings = {
        name: fig for name, block in headline.items() if (fig := _headline_precision(block))
    }
    flat = _flatten(metrics)
    numeric = {
        k: v for k, v in flat.items() if isinstance(v, int | float) and not isinstance(v, bool)
    }
    for label, ranking in (
        ("model", "model"),
        ("best_single", "best_single_variable"),
        ("oracle", "oracle"),
    ):
        if ranking in rankings:
            fig = rankings[ranking]
            out[f"{label}_precision_at_k"] = fig["value"]
            out[f"{label}_ci"] = [fig["ci_low"], fig["ci_high"]]
            out[f"{label}_key"] = f"headline.{ranking}.precision_at_k.value"
            continue
        words = (ranking.split("_")[0], "precision")
        hits = [
            (k, v)
            for k, v in numeric.items()
            if all(w in k.lower() for w in words)
            and not any(s in k.lower() for s in ("ci_", "low", "high", "std", "share"))
        ]
        if hits:
            key, value = min(hits, key=lambda kv: len(kv[0]))
            out[f"{label}_precision_at_k"] = value
            out[f"{label}_key"] = key
    out["rankings"] = {name: fig["value"] for name, fig in rankings.items()}
    if not rankings:  # unknown layout: keep every quality-looking figure
        out["headline"] = {
            k: v for k, v in numeric.items() if any(w in k.lower() for w in _QUALITY_WORDS)
        }
    return out


# ----------------------------------------------------------------------------- stages
@dataclass
class StageSpec:
    """One timed stage: the command after ``python -m helpers`` and what it reads and writes."""

    name: str
    module: str  # helpers.<module>.py must exist for the stage to run
    args: list[str]
    floor: str | None = None  # "raw" | "mart" | "panel": the input read for the floor ratio
    rows_key: str | None = None
    note: str = ""
    command: list[str] | None = None  # full argv instead of python -m helpers (tests)


def default_stages(target: str, every_target: bool = False) -> list[StageSpec]:
    """The stages in pipeline order; models fits ``target`` (or, ``every_target``, each of
    run.targets in one process: the peak memory then covers them all)."""
    models_args = ["models"] if every_target else ["models", "--target", target]
    return [
        StageSpec("generate", "synth", ["synth"], rows_key="raw_rows"),
        StageSpec(
            "ingest",
            "ingest",
            ["ingest", "--force"],
            floor="raw",
            rows_key="raw_rows",
            note="ingest + validation + masking (--force: no skip on unchanged inputs)",
        ),
        StageSpec(
            "link",
            "link",
            ["link"],
            floor="raw",
            rows_key="raw_rows",
            note="名寄せ alone: read the registry and the code-less exports, link them",
        ),
        StageSpec("panel", "panel", ["panel"], floor="mart", rows_key="panel_rows"),
        StageSpec(
            "models",
            "models",
            models_args,
            floor="panel",
            rows_key="panel_rows",
            note=("every target" if every_target else f"target {target}")
            + ": backtest, tuning, fit, evaluation and SHAP",
        ),
        StageSpec(
            "review",
            "review",
            ["review", "draw"],
            floor="panel",
            rows_key="scores_rows",
            note="review draw (reads the scores and the panel)",
        ),
        StageSpec(
            "report",
            "reports",
            ["reports", "--only", "03_model", "--target", target],
            note=f"03_model for {target} (papermill + nbconvert)",
        ),
        StageSpec(
            "audit",
            "reports",
            ["check-reports"],
            note="check-reports on the rendered report: identifier scan + disclosure "
            "audit (linprog over every table with hidden cells)",
        ),
        StageSpec("e2e", "synth", ["all"], note=E2E_NOTE),
    ]


E2E_NOTE = (
    "`make all` from an empty data folder with the repository's own settings (config/) and the "
    "Makefile's defaults: generate, ingest, panel, models for every target, review, every "
    "report and check-reports; setup excluded. Measured at the default city's size only."
)


def e2e_argv(size_dir: Path, engine: str) -> list[str]:
    """``make all`` into ``<size_dir>/e2e`` (what a user runs: the default settings)."""
    out = size_dir / "e2e"
    argv = ["make", "--no-print-directory", "all", f"DATA={out}", f"REPORTS={out / 'reports'}"]
    return argv + ([f"ENGINE={engine}"] if engine != "local" else [])


STAGE_NAMES = tuple(s.name for s in default_stages("t"))


def _stage_available(spec: StageSpec) -> bool:
    return spec.command is not None or (HELPERS_DIR / spec.module).exists()


def _child_env(size_dir: Path) -> dict[str, str]:
    # a `make bench` passes its jobserver in MAKEFLAGS; `make all` (e2e) starts its own
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("MIMAMORI_") and k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")
    }
    env["MIMAMORI_DATA"] = str(size_dir)
    env["MIMAMORI_REPORTS"] = str(size_dir / "reports")
    env.setdefault("MPLBACKEND", "Agg")
    return env


def _stage_argv(spec: StageSpec, size_dir: Path) -> list[str]:
    if spec.command is not None:
        return list(spec.command)
    return [
        sys.executable,
        "-m",
        "helpers",
        spec.args[0],
        "--config-dir",
        str(size_dir / "config"),
        "--data-dir",
        str(size_dir),
        "--reports-dir",
        str(size_dir / "reports"),
        *spec.args[1:],
    ]


def _floor(kind: str, size_dir: Path, cfg: Settings) -> dict[str, Any] | None:
    P = _size_paths(size_dir)
    if kind == "raw":
        raw = P.raw
        if not raw.is_dir():
            return None
        return read_raw_floor(raw, cfg.ingest.encoding)
    if kind == "mart":
        files = sorted(P.mart.glob("*.parquet"))
        return read_parquet_floor(files) if files else None
    if kind == "panel":
        path = P.panel
        return read_parquet_floor([path]) if path.exists() else None
    raise ValueError(kind)


def run_size(
    size: BenchSize,
    cfg: Settings,
    cache_dir: str | Path,
    stages: Sequence[StageSpec],
    target: str,
    force: bool = False,
    timeout_s: float | None = None,
    on_progress: Callable[[dict[str, Any]], None] | None = None,
    engine: str = "local",
) -> dict[str, Any]:
    """Benchmark every stage for one size; returns this size's block of benchmarks.json.

    ``engine`` (local | dask) is written into the size's settings (``run.engine``); a dask
    block is keyed ``<size>+dask`` and shares the cached city and data folder with local.
    ``on_progress`` gets the block so far after every stage (main writes it out, so a long L
    run that is stopped keeps the stages it finished)."""
    size_dir = Path(cache_dir) / size.name
    size_dir.mkdir(parents=True, exist_ok=True)
    overrides = size.overrides(
        {
            "run": {
                "data_dir": str(size_dir),
                "reports_dir": str(size_dir / "reports"),
                "engine": engine,
            }
        }
    )
    materialise_config(cfg, overrides, size_dir / "config")
    size_cfg = cfg.with_overrides(overrides)
    key = raw_cache_key(size_cfg)
    run = _SizeRun(
        size,
        size_dir,
        size_cfg,
        list(stages),
        target,
        key,
        _read_json(size_dir / CACHE_FILE),
        not force and raw_cache_valid(size_dir, key),
        timeout_s,
        cfg.synth.n_children,
    )
    bar = tqdm(stages, desc=f"bench {size.name}", unit="stage", file=sys.stderr, dynamic_ncols=True)
    for spec in bar:
        bar.set_description(f"bench {size.name} {spec.name}")
        run.run_stage(spec, bar)
        if on_progress is not None:
            on_progress(run.summarise())
    bar.close()
    return run.summarise()


def _add_ingest_phases(entry: dict[str, Any], size_dir: Path) -> None:
    """Ingest's own phase times (its audit line) and its floor ratio without 名寄せ (which the
    ``link`` stage measures on its own) and without process start-up."""
    log = _size_paths(size_dir).audit_log
    text = log.read_text(encoding="utf-8") if log.exists() else ""
    runs = [json.loads(ln) for ln in text.splitlines() if '"stage": "ingest"' in ln]
    phases = runs[-1].get("seconds") if runs else None
    if not phases:
        return
    entry["phases_s"] = phases
    work = sum(v for k, v in phases.items() if k != "link")
    if entry["floor"]["seconds"] > 0:
        entry["floor_ratio_without_link"] = round(work / entry["floor"]["seconds"], 2)


@dataclass
class _SizeRun:
    """The state of one size's benchmark while its stages run one after another."""

    size: BenchSize
    size_dir: Path
    size_cfg: Settings
    stages: list[StageSpec]
    target: str
    key: str
    cache: dict[str, Any]
    reuse_raw: bool
    timeout_s: float | None
    default_children: int
    results: dict[str, Any] = field(default_factory=dict)
    blocked: str | None = None

    def _argv(self, spec: StageSpec) -> list[str] | str:
        """The stage's command, or why it is not run (``e2e``: the default city only)."""
        if spec.name != "e2e" or spec.command is not None:
            return _stage_argv(spec, self.size_dir)
        if self.size.n_children != self.default_children:
            return f"skipped: make all is measured at the default city's size ({self.default_children:,})"
        subprocess.run(["make", "--no-print-directory", "setup"], cwd=REPO_ROOT, check=True)
        shutil.rmtree(self.size_dir / "e2e", ignore_errors=True)
        return e2e_argv(self.size_dir, self.size_cfg.run.engine)

    def run_stage(self, spec: StageSpec, bar: Any) -> None:
        entry: dict[str, Any] = {
            "command": " ".join(
                ["make" if spec.name == "e2e" else "python -m helpers", *spec.args]
            ),
            "note": spec.note,
        }
        self.results[spec.name] = entry
        if spec.name == "generate" and self.reuse_raw and self.cache.get("generate"):
            entry.update(self.cache["generate"], cached=True, status="cached")
            return
        if self.blocked:
            entry["status"] = f"skipped: {self.blocked}"
            return
        if not _stage_available(spec):
            entry["status"] = f"missing: src/helpers/{spec.module} does not exist yet"
            self.blocked = f"upstream stage {spec.name} missing"
            return

        def on_poll(elapsed: float, rss_mb: float, line: str) -> None:
            bar.set_postfix_str(f"{elapsed:5.0f}s {rss_mb:6.0f}MB | {line}", refresh=True)

        argv = self._argv(spec)
        if isinstance(argv, str):
            entry["status"] = argv
            return
        log = self.size_dir / "logs" / f"{spec.name}.log"
        # other work on the machine slows a stage down: keep the load beside the timing
        entry["load_1m_before"] = round(os.getloadavg()[0], 2)
        m = measure_command(
            argv,
            env=_child_env(self.size_dir),
            cwd=REPO_ROOT,
            log_path=log,
            timeout_s=self.timeout_s,
            on_poll=on_poll,
        )
        entry.update(
            m.to_dict(), log=str(log), cached=False, load_1m_after=round(os.getloadavg()[0], 2)
        )
        if m.returncode != 0:
            entry["status"] = "timed out" if m.timed_out else f"failed (exit {m.returncode})"
            self.blocked = f"upstream stage {spec.name} failed"
            # the log stays in the size dir: a stage's error may quote a raw value, never copy
            # it under reports/
            bar.write(
                f"bench {self.size.name}: {spec.name} {entry['status']}; log {log}:\n{_log_tail(log)}"
            )
        elif spec.name == "ingest" and _read_json(_size_paths(self.size_dir).ingest_report).get(
            "skipped"
        ):
            entry["status"] = "not timed: ingest skipped its unchanged inputs"
        else:
            entry["status"] = "ok"
        if spec.name == "generate" and m.returncode == 0:
            write_json(
                {
                    "raw_key": self.key,
                    "generate": {k: v for k, v in entry.items() if k != "status"},
                    "n_children": self.size.n_children,
                },
                self.size_dir / CACHE_FILE,
            )

    def _add_rates(self, spec: StageSpec, entry: dict[str, Any], counts: dict[str, Any]) -> None:
        rows = counts.get(spec.rows_key) if spec.rows_key else None
        if rows and entry.get("wall_s"):
            entry["rows"] = rows
            entry["rows_per_s"] = round(rows / entry["wall_s"], 1)
        if spec.name == "panel" and counts.get("panel_rows") and counts.get("panel_features"):
            entry["features"] = counts["panel_features"]
            entry["rows_x_features_per_s"] = round(
                counts["panel_rows"] * counts["panel_features"] / entry["wall_s"], 1
            )
        if spec.floor and entry.get("status") == "ok" and "floor" not in entry:
            floor = _floor(spec.floor, self.size_dir, self.size_cfg)
            if floor:
                entry["floor"] = {
                    **floor,
                    "seconds": round(floor["seconds"], 3),
                    "reads": spec.floor,
                }
                if floor["seconds"] > 0:
                    entry["floor_ratio"] = round(entry["wall_s"] / floor["seconds"], 2)
        if spec.name == "ingest" and entry.get("floor"):
            _add_ingest_phases(entry, self.size_dir)

    def summarise(self) -> dict[str, Any]:
        counts = count_outputs(self.size_dir, self.target)
        for spec in self.stages:
            entry = self.results.get(spec.name, {})
            if entry.get("status") in ("ok", "cached"):
                self._add_rates(spec, entry, counts)
        quality = _read_json(_size_paths(self.size_dir).model(self.target).metrics)
        engine = self.size_cfg.run.engine
        return {
            "name": block_name(self.size.name, engine),
            "size": self.size.name,
            "engine": engine,
            "n_children": self.size.n_children,
            "fiscal_years": len(self.size_cfg.run.fiscal_years),
            "target": self.target,
            "overrides": self.size.overrides(),
            "config_hash": config_hash(self.size_cfg),
            "raw_cached": self.reuse_raw,
            "run_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": machine_info(),
            "counts": counts,
            "outputs": output_hashes(self.size_dir),
            "stages": self.results,
            "quality": extract_quality(quality) if quality else None,
            "data_dir": str(self.size_dir),
        }


def _log_tail(log: Path, n: int = 15) -> str:
    try:
        text = log.read_text(encoding="utf-8", errors="replace").replace("\r", "\n")
    except OSError:
        return ""
    return "\n".join([ln for ln in text.splitlines() if ln.strip()][-n:])


# ----------------------------------------------------------------------------- machine and output
def machine_info() -> dict[str, Any]:
    import psutil

    cpu_model = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable: int | None = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "hostname_hash": stable_hash(platform.node())[:8],
        "platform": platform.platform(),
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "cpu_usable": usable,
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "packages": package_versions(),
        "git_commit": git_commit(),
    }


def merge_results(existing: dict, sizes: dict[str, dict]) -> dict[str, Any]:
    """Add or replace the given sizes in an earlier benchmarks.json, keeping the others."""
    out = dict(existing or {})
    merged = dict(out.get("sizes") or {})
    for name, block in sizes.items():
        old = merged.get(name) or {}
        if old.get("config_hash") == block.get("config_hash"):
            # a run of some stages (--stages) keeps the other stages' earlier measurements
            stages = {
                k: v
                for k, v in (old.get("stages") or {}).items()
                if k not in block.get("stages", {})
            }
            block = {**block, "stages": {**stages, **block.get("stages", {})}}
            block["stages"] = {
                k: block["stages"][k] for k in STAGE_NAMES if k in block["stages"]
            } | {k: v for k, v in block["stages"].items() if k not in STAGE_NAMES}
        merged[name] = block
    out["sizes"] = _by_size(merged)
    out["updated"] = datetime.now(UTC).isoformat(timespec="seconds")
    out["machine"] = machine_info()
    out["scaling"] = scaling_table(out["sizes"])
    out["engine_overhead"] = engine_overhead(out["sizes"])
    return out


def engine_overhead(sizes: dict[str, dict]) -> dict[str, Any]:
    """For each size measured on both engines: every stage's dask wall time over its local
    wall time, and whether the two engines wrote the same mart and panel bytes."""
    out: dict[str, Any] = {}
    for name, block in sizes.items():
        local = sizes.get(block.get("size", name)) if block.get("engine") == "dask" else None
        if not local or local is block:
            continue
        stages = {}
        for stage, d in (block.get("stages") or {}).items():
            lo = (local.get("stages") or {}).get(stage) or {}
            if d.get("status") == "ok" and lo.get("status") == "ok" and lo.get("wall_s"):
                stages[stage] = {
                    "local_s": lo["wall_s"],
                    "dask_s": d["wall_s"],
                    "ratio": round(d["wall_s"] / lo["wall_s"], 2),
                    "local_peak_mb": lo.get("peak_tree_rss_mb"),
                    "dask_peak_mb": d.get("peak_tree_rss_mb"),
                }
        same = {
            k: (block.get("outputs") or {}).get(k) == (local.get("outputs") or {}).get(k)
            for k in ("mart", "panel")
            if (block.get("outputs") or {}).get(k)
        }
        out[block.get("size", name)] = {"stages": stages, "identical_outputs": same}
    return out


def _by_size(sizes: dict[str, dict]) -> dict[str, dict]:
    """Sizes smallest city first (benchmarks.json itself is written with sorted keys)."""
    return dict(sorted(sizes.items(), key=lambda kv: (kv[1].get("n_children", 0), kv[0])))


def scaling_table(sizes: dict[str, dict]) -> dict[str, Any]:
    """Per stage: wall and CPU microseconds per child at each size, and the growth exponent b
    between neighbouring sizes (time ∝ children**b; 1.0 = linear). CPU time is the steadier
    measure when other work shares the machine; wall time is what a user waits."""
    ordered = sorted(
        (s for s in sizes.values() if s.get("engine", "local") == "local"),
        key=lambda s: s.get("n_children", 0),
    )
    out: dict[str, Any] = {}
    for stage in STAGE_NAMES:
        runs = [
            (s["name"], s["n_children"], s["stages"][stage])
            for s in ordered
            if (s.get("stages") or {}).get(stage, {}).get("wall_s")
            and s["stages"][stage].get("status") in ("ok", "cached")
        ]
        if not runs:
            continue
        entry: dict[str, Any] = {}
        for measure, label in (("wall_s", ""), ("cpu_s", "cpu_")):
            points = [(name, n, r.get(measure) or 0.0) for name, n, r in runs]
            entry[f"{label}us_per_child"] = {name: round(t / n * 1e6, 1) for name, n, t in points}
            entry[f"{label}growth_exponent"] = {
                f"{a}->{b}": round(math.log(tb / ta) / math.log(nb / na), 2)
                for (a, na, ta), (b, nb, tb) in zip(points, points[1:], strict=False)
                if nb != na and ta > 0 and tb > 0
            }
        out[stage] = entry
    # the whole chain, compared only between sizes where the same stages were measured
    totals = []
    for s in ordered:
        ok = {
            k: r
            for k, r in (s.get("stages") or {}).items()
            if r.get("status") in ("ok", "cached") and r.get("wall_s")
        }
        if ok:
            totals.append(
                (
                    s["name"],
                    s["n_children"],
                    frozenset(ok),
                    sum(r["wall_s"] for r in ok.values()),
                    sum(r.get("cpu_s") or 0 for r in ok.values()),
                )
            )
    if totals:
        entry = {
            "us_per_child": {},
            "cpu_us_per_child": {},
            "growth_exponent": {},
            "cpu_growth_exponent": {},
        }
        for name, n, _, wall, cpu in totals:
            entry["us_per_child"][name] = round(wall / n * 1e6, 1)
            entry["cpu_us_per_child"][name] = round(cpu / n * 1e6, 1)
        for (a, na, sa, wa, ca), (b, nb, sb, wb, cb) in zip(totals, totals[1:], strict=False):
            if sa == sb and nb != na and min(wa, wb, ca, cb) > 0:
                entry["growth_exponent"][f"{a}->{b}"] = round(
                    math.log(wb / wa) / math.log(nb / na), 2
                )
                entry["cpu_growth_exponent"][f"{a}->{b}"] = round(
                    math.log(cb / ca) / math.log(nb / na), 2
                )
        out["total"] = entry
    return out


def _in_stage_order(by_stage: dict[str, Any]) -> dict[str, Any]:
    """Pipeline order (benchmarks.json is written with sorted keys)."""
    rank = {name: i for i, name in enumerate(STAGE_NAMES)}
    return dict(sorted(by_stage.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0])))


def _verdict(exponent: float) -> str:
    if exponent < 0.8:
        return "sub-linear (fixed costs dominate)"
    if exponent <= 1.2:
        return "about linear"
    return "super-linear"


_CSS = """
body{font-family:"Noto Sans CJK JP","Hiragino Sans",sans-serif;margin:2em;max-width:1200px;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:0.9em}
th,td{border:1px solid #bbb;padding:4px 8px;text-align:right}
th{background:#eef} td.l,th.l{text-align:left}
.bad{color:#a00} .note{color:#555;font-size:0.9em}
"""


def _fmt(v: Any, digits: int = 1) -> str:
    if v is None or v == "":
        return "–"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    if isinstance(v, int):
        return f"{v:,}"
    return html.escape(str(v))


def _size_section(name: str, s: dict[str, Any]) -> list[str]:
    """One size: its stage table and the model quality at that size."""
    e = html.escape
    parts: list[str] = []
    parts.append(
        f"<h2>{e(name)}: {_fmt(s.get('n_children'))} children × {_fmt(s.get('fiscal_years'))} fiscal years</h2>"
    )
    sm = s.get("machine") or {}
    parts.append(
        f"<p class='note'>run {e(str(s.get('run_at', '')))}, commit {e(str(sm.get('git_commit', '?')))}, "
        f"target {e(str(s.get('target', '')))}, overrides <code>{e(json.dumps(s.get('overrides'), ensure_ascii=False))}</code>"
        f"{' (generated city reused from cache)' if s.get('raw_cached') else ''}</p>"
    )
    parts.append(
        "<table><tr><th class='l'>stage</th><th class='l'>status</th><th>wall s</th><th>CPU s</th>"
        "<th>CPU/wall</th><th>peak RSS MB</th><th>tree RSS MB</th><th>rows</th><th>rows/s</th>"
        "<th>floor s</th><th>stage/floor</th><th>rows×features/s</th><th>load before/after</th>"
        "<th class='l'>note</th></tr>"
    )
    stages = _in_stage_order(s.get("stages") or {})
    done = [r for r in stages.values() if r.get("status") in ("ok", "cached") and r.get("wall_s")]
    if done:
        stages = {
            **stages,
            "total": {
                "status": f"{len(done)} of {len(stages)} stages",
                "wall_s": sum(r["wall_s"] for r in done),
                "cpu_s": sum(r.get("cpu_s") or 0 for r in done),
                "peak_rss_mb": max(r.get("peak_rss_mb") or 0 for r in done),
                "peak_tree_rss_mb": max(r.get("peak_tree_rss_mb") or 0 for r in done),
                "note": "sum of times, largest peak (the stages run one after another)",
            },
        }
    for stage, r in stages.items():
        status = str(r.get("status", ""))
        cls = "" if status in ("ok", "cached") else " bad"
        floor = r.get("floor") or {}
        parts.append(
            f"<tr><td class='l'>{e(stage)}</td><td class='l{cls}'>{e(status)}</td>"
            f"<td>{_fmt(r.get('wall_s'))}</td><td>{_fmt(r.get('cpu_s'))}</td>"
            f"<td>{_fmt(r.get('cpu_per_wall'), 2)}</td><td>{_fmt(r.get('peak_rss_mb'), 0)}</td>"
            f"<td>{_fmt(r.get('peak_tree_rss_mb'), 0)}</td><td>{_fmt(r.get('rows'))}</td>"
            f"<td>{_fmt(r.get('rows_per_s'), 0)}</td><td>{_fmt(floor.get('seconds'), 2)}</td>"
            f"<td>{_fmt(r.get('floor_ratio'), 1)}</td><td>{_fmt(r.get('rows_x_features_per_s'), 0)}</td>"
            f"<td>{_fmt(r.get('load_1m_before'), 1)} / {_fmt(r.get('load_1m_after'), 1)}</td>"
            f"<td class='l'>{e(str(r.get('note', '')))}</td></tr>"
        )
    parts.append("</table>")
    q = s.get("quality")
    if q:

        def fig(label: str, q=q) -> str:
            ci = q.get(f"{label}_ci") or [None, None]
            ci_txt = f" [{_fmt(ci[0], 3)}, {_fmt(ci[1], 3)}]" if ci[0] is not None else ""
            return f"{_fmt(q.get(f'{label}_precision_at_k'), 3)}{ci_txt}"

        parts.append(
            f"<p>テスト年度 {e(str(q.get('test_year', '?')))} の precision@{e(str(q.get('k', 'k')))} "
            f"(test-year precision at the review capacity, 95% CI; {_fmt(q.get('test_events'))} events): "
            f"model <b>{fig('model')}</b> · best single variable {fig('best_single')} · "
            f"oracle {fig('oracle')}</p>"
        )
    return parts


def _scaling_section(results: dict[str, Any]) -> list[str]:
    """Wall and CPU time per child at each size, and the growth exponents."""
    e = html.escape
    parts: list[str] = []
    scaling = results.get("scaling") or {}
    if not scaling:
        return parts
    names = list(_by_size(results.get("sizes") or {}))
    parts.append(
        "<h2>スケーリング（Scaling）</h2><p>Wall time per child (µs) at each size and the growth "
        "exponent between neighbouring sizes (time ∝ children<sup>b</sup>; b≈1 linear). "
        "Model training has a fixed tuning budget per family, so its growth understates the "
        "cost of an unbounded search.</p>"
    )
    parts.append(
        "<table><tr><th class='l'>stage</th>"
        + "".join(f"<th>{e(n)} µs/child</th>" for n in names)
        + "".join(f"<th>{e(n)} CPU µs/child</th>" for n in names)
        + "<th class='l'>growth (wall)</th><th class='l'>growth (CPU)</th></tr>"
    )
    for stage, sc in _in_stage_order(scaling).items():
        growth = [
            "; ".join(f"{k}: b={v} ({_verdict(v)})" for k, v in (sc.get(g) or {}).items()) or "–"
            for g in ("growth_exponent", "cpu_growth_exponent")
        ]
        parts.append(
            f"<tr><td class='l'>{e(stage)}</td>"
            + "".join(f"<td>{_fmt((sc.get('us_per_child') or {}).get(n))}</td>" for n in names)
            + "".join(f"<td>{_fmt((sc.get('cpu_us_per_child') or {}).get(n))}</td>" for n in names)
            + f"<td class='l'>{e(growth[0])}</td><td class='l'>{e(growth[1])}</td></tr>"
        )
    parts.append("</table>")
    total = scaling.get("total") or {}
    for step, b in (total.get("cpu_growth_exponent") or {}).items():
        wall_b = (total.get("growth_exponent") or {}).get(step)
        parts.append(
            f"<p>Whole chain {e(step)}: CPU time grows as children<sup>{b}</sup> ({_verdict(b)}); "
            f"wall time as children<sup>{wall_b}</sup>.</p>"
        )
    return parts


def _overhead_section(results: dict[str, Any]) -> list[str]:
    """Dask against local, per size: wall-time ratio per stage and identical outputs."""
    e = html.escape
    overhead = results.get("engine_overhead") or {}
    if not overhead:
        return []
    parts = [
        "<h2>Dask エンジンの負担（Dask engine overhead）</h2><p>Same city, same settings; "
        "stages on a dask.distributed LocalCluster against this process. Ratio above 1 = "
        "slower on dask (task shipping and worker start-up on one machine).</p>",
        "<table><tr><th class='l'>size</th><th class='l'>stage</th><th>local s</th>"
        "<th>dask s</th><th>dask ÷ local</th><th>local peak MB</th><th>dask peak MB</th></tr>",
    ]
    for size, o in overhead.items():
        for stage, r in o["stages"].items():
            parts.append(
                f"<tr><td class='l'>{e(size)}</td><td class='l'>{e(stage)}</td>"
                f"<td>{_fmt(r['local_s'])}</td><td>{_fmt(r['dask_s'])}</td>"
                f"<td>{_fmt(r['ratio'], 2)}</td><td>{_fmt(r['local_peak_mb'], 0)}</td>"
                f"<td>{_fmt(r['dask_peak_mb'], 0)}</td></tr>"
            )
    parts.append("</table>")
    for size, o in overhead.items():
        same = ", ".join(
            f"{k}: {'identical' if v else 'DIFFERENT'}" for k, v in o["identical_outputs"].items()
        )
        parts.append(f"<p>{e(size)} outputs, dask against local: {e(same or 'not compared')}</p>")
    return parts


def render_html(results: dict) -> str:
    """A self-contained page (inline CSS, no scripts, no external links): one table per size."""
    e = html.escape
    parts = [
        "<!DOCTYPE html><html lang='ja'><head><meta charset='utf-8'>",
        "<title>ベンチマーク（Benchmarks）</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>ベンチマーク（Benchmarks）</h1>",
    ]
    m = results.get("machine") or {}
    parts.append(
        "<p class='note'>"
        f"{e(str(m.get('cpu_model', '?')))} — {_fmt(m.get('cpu_usable'))} cores usable, "
        f"{_fmt(m.get('memory_gb'))} GB RAM, Python {e(str(m.get('python', '?')))}, "
        f"commit {e(str(m.get('git_commit', '?')))}; updated {e(str(results.get('updated', '')))}. "
        "Each stage ran as its own process; peak RSS from wait4 (child and the processes it waited for), "
        "tree RSS from polling every 0.1 s. Floor = time to merely read the same inputs with pyarrow/openpyxl. "
        "Load = the machine's 1-minute load average before/after the stage (above the core count, "
        "other work competed and the wall time is inflated).</p>"
    )
    for name, s in _by_size(results.get("sizes") or {}).items():
        parts.extend(_size_section(name, s))
    parts.extend(_scaling_section(results))
    parts.extend(_overhead_section(results))
    parts.append("</body></html>\n")
    return "\n".join(parts)


def write_outputs(out_dir: str | Path, sizes: dict[str, dict]) -> dict[str, Any]:
    """Merge ``sizes`` into ``out_dir/benchmarks.json`` and rewrite ``index.html`` (both atomic)."""
    out_dir = Path(out_dir)
    results = merge_results(_read_json(out_dir / "benchmarks.json"), sizes)
    write_json(results, out_dir / "benchmarks.json")
    write_text(render_html(results), out_dir / "index.html")
    return results


# ----------------------------------------------------------------------------- CLI
def _write_size(out_dir: Path, name: str, block: dict[str, Any]) -> None:
    """Write one size's block so far (a stopped long run keeps the stages it finished)."""
    write_outputs(out_dir, {name: block})


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m helpers bench", description=__doc__.splitlines()[0])
    p.add_argument(
        "--sizes",
        default="S",
        help=f"comma list of {', '.join(SIZE_CHILDREN)} or NAME=N (default S)",
    )
    p.add_argument(
        "--cache-dir", default=DEFAULT_CACHE_DIR, help="per-size data dirs (default build/bench)"
    )
    p.add_argument(
        "--stages",
        default=",".join(STAGE_NAMES),
        help=f"comma list from {', '.join(STAGE_NAMES)} (default all)",
    )
    p.add_argument(
        "--target",
        default=None,
        help="target to train and report (default review.target; all: every run.targets "
        "in the models stage, the first one reported)",
    )
    p.add_argument("--out", default=None, help="output folder (default <reports>/bench)")
    p.add_argument("--force", action="store_true", help="regenerate the city even if cached")
    p.add_argument(
        "--timeout", type=float, default=4 * 3600, help="seconds per stage before it is killed"
    )
    p.add_argument(
        "--no-micro", action="store_true", help="skip the micro-benchmarks of hot helpers"
    )
    p.add_argument(
        "--engine",
        choices=["local", "dask"],
        default="local",
        help="run.engine for the stages (dask: a LocalCluster of run.dask.n_workers workers; "
        "results keyed <size>+dask beside the local ones, with the overhead)",
    )
    p.add_argument(
        "--write-readme",
        action="store_true",
        help="afterwards copy the results to docs/bench/benchmarks.json and rewrite README's "
        "benchmark table from them (--sizes none: only that)",
    )
    return p


def main(cfg: Settings, argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    sizes = [] if args.sizes == "none" and args.write_readme else parse_sizes(args.sizes)
    wanted = [s.strip() for s in args.stages.split(",") if s.strip()]
    unknown = sorted(set(wanted) - set(STAGE_NAMES))
    if unknown:
        raise MimamoriError(f"bench --stages: unknown {unknown} (known: {', '.join(STAGE_NAMES)})")
    every_target = args.target == "all"
    target = cfg.run.targets[0] if every_target else (args.target or cfg.review.target)
    if not target:
        raise MimamoriError(
            "bench: no target (set --target or review.target in config/review.yaml)"
        )
    stages = [s for s in default_stages(target, every_target) if s.name in wanted]
    out_dir = resolve(args.out) if args.out else reports_dir(cfg) / "bench"
    cache_dir = resolve(args.cache_dir)
    for size in sizes:
        print(
            f"bench {size.name}: {size.n_children:,} children in {cache_dir / size.name}",
            file=sys.stderr,
        )
        block = run_size(
            size,
            cfg,
            cache_dir,
            stages,
            target,
            force=args.force,
            timeout_s=args.timeout,
            on_progress=functools.partial(_write_size, out_dir, block_name(size.name, args.engine)),
            engine=args.engine,
        )
        for stage, r in block["stages"].items():
            print(
                f"  {stage:9s} {str(r.get('status', ''))[:24]:24s} wall {_fmt(r.get('wall_s')):>8s}s "
                f"CPU {_fmt(r.get('cpu_s')):>8s}s  RSS {_fmt(r.get('peak_tree_rss_mb'), 0):>7s} MB",
                file=sys.stderr,
            )
    if not args.no_micro and sizes:
        micro = run_micro()
        results = _read_json(out_dir / "benchmarks.json")
        write_json({**results, "micro": micro}, out_dir / "benchmarks.json")
        for name, m in micro.items():
            print(f"  micro {name}: {m['rows_per_s']:,.0f} rows/s", file=sys.stderr)
    print(
        f"bench: wrote {out_dir / 'benchmarks.json'} and {out_dir / 'index.html'}", file=sys.stderr
    )
    failed = [
        f"{b}:{s} ({r.get('status')})"
        for b in (block_name(sz.name, args.engine) for sz in sizes)
        for s, r in _read_json(out_dir / "benchmarks.json")["sizes"][b]["stages"].items()
        if not str(r.get("status", "")).startswith(("ok", "cached"))
    ]
    if failed:
        print(f"bench: not measured: {', '.join(failed)}", file=sys.stderr)
    if args.write_readme:
        benchdoc.update_readme(_read_json(out_dir / "benchmarks.json"))
        print(f"bench: README table rewritten from {benchdoc.DOCS_JSON}", file=sys.stderr)
    return 1 if any("failed" in f or "timed out" in f for f in failed) else 0
