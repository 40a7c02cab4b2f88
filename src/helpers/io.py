"""I/O at the edges: atomic writes, file hashes, the audit log and the run manifest.

Every stage writes through ``atomic_path`` so a killed run never leaves a half-written file
that make would take as done.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import io
import json
import math
import os
import platform
import re
import subprocess
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from helpers.config import REPO_ROOT, Settings, config_hash
from helpers.paths import audit_log_in

MANIFEST_PACKAGES = (
    "numpy",
    "pandas",
    "pyarrow",
    "duckdb",
    "scipy",
    "scikit-learn",
    "lightgbm",
    "shap",
    "statsmodels",
    "pandera",
    "matplotlib",
    "papermill",
    "nbconvert",
    "jupytext",
)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary sibling path; rename it onto ``path`` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            if tmp.is_dir():
                import shutil

                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink()


def write_parquet(df: pd.DataFrame, path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)
    return Path(path)


def strict_json(obj: Any) -> Any:
    """NaN/inf become null so the files parse with any strict JSON reader."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    if hasattr(obj, "item") and getattr(obj, "ndim", None) == 0:  # numpy scalars
        return strict_json(obj.item())
    return obj


def write_json(obj: Any, path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(
            json.dumps(
                strict_json(obj),
                ensure_ascii=False,
                indent=2,
                sort_keys=True,
                default=str,
                allow_nan=False,
            )
            + "\n",
            encoding="utf-8",
        )
    return Path(path)


def write_text(text: str, path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_csv(df: pd.DataFrame, path: str | Path) -> Path:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False, encoding="utf-8")
    return Path(path)


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def hash_files(paths: list[Path] | list[str], root: Path | None = None) -> dict[str, str]:
    """sha256 of each file (directories are expanded, hidden temp files skipped)."""
    out: dict[str, str] = {}
    for p in paths:
        p = Path(p)
        files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
        for f in files:
            if f.name.startswith(".") and ".tmp-" in f.name:
                continue
            if not f.exists():
                continue
            key = str(f.relative_to(root)) if root and f.is_relative_to(root) else str(f)
            out[key] = file_sha256(f)
    return out


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10
        )
        commit = out.stdout.strip() or "unknown"
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def package_versions(names: tuple[str, ...] = MANIFEST_PACKAGES) -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def run_manifest(cfg: Settings, inputs: list[Path] | None = None, root: Path | None = None) -> dict:
    """What a reviewer needs to reproduce a result: code, settings, versions, input hashes, seed."""
    return {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "profile": cfg.profile,
        "seed": cfg.run.seed,
        "synthetic": cfg.run.synthetic,
        "config_hash": config_hash(cfg),
        "config": cfg.as_dict(),
        "packages": package_versions(),
        "inputs": hash_files(inputs or [], root=root),
    }


def append_audit(
    data_root: Path,
    stage: str,
    cfg: Settings,
    inputs: list[Path] | None = None,
    outputs: list[Path] | None = None,
    rows: dict[str, int] | None = None,
    seconds: dict[str, float] | None = None,
) -> dict:
    """Append one JSON line per stage run to data/audit.log (who, when, what in, what out;
    ``seconds``: wall time of the stage's phases, where a stage measures them)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = os.environ.get("USER", "unknown")
    entry = {
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "user": user,
        "stage": stage,
        "config_hash": config_hash(cfg),
        "inputs": hash_files(inputs or [], root=data_root),
        "outputs": hash_files(outputs or [], root=data_root),
        "rows": rows or {},
    }
    if seconds:
        entry["seconds"] = {k: round(v, 3) for k, v in seconds.items()}
    data_root.mkdir(parents=True, exist_ok=True)
    with open(audit_log_in(data_root), "a", encoding="utf-8") as fh:
        fh.write(json.dumps(entry, ensure_ascii=False, sort_keys=True) + "\n")
    return entry


FIXED_ZIP_TIME = (2024, 4, 1, 0, 0, 0)


def save_workbook(wb: Any, path: str | Path) -> Path:
    """Save an openpyxl workbook atomically with fixed zip and document timestamps.

    openpyxl stamps the save time into the zip entries and docProps/core.xml; fixing both makes
    the same inputs give the same bytes (reproducible outputs, comparable hashes).
    """
    buf = io.BytesIO()
    wb.save(buf)
    src = zipfile.ZipFile(io.BytesIO(buf.getvalue()))
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename == "docProps/core.xml":
                data = re.sub(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", b"2024-04-01T00:00:00Z", data)
            zi = zipfile.ZipInfo(info.filename, FIXED_ZIP_TIME)
            zi.compress_type = zipfile.ZIP_DEFLATED
            dst.writestr(zi, data)
    return Path(path)
