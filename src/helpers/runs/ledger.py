"""The ledger of archived models runs (``data/runs/runs.parquet``): one row per run.

A row says when a run was made, for which target, by which code version, how its settings
differ from the previous run of the same target, and its headline (precision@k with its 95%
interval). Rows stay when retention deletes a run's folder (``status`` becomes ``pruned``), so
the history is never lost silently. Run references on the command line are a run id, a unique
prefix of one, ``latest`` or ``previous`` (of one target).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
from collections.abc import Iterator, Mapping
from typing import Any

import pandas as pd

from helpers import MimamoriError
from helpers.config import Settings
from helpers.io import write_parquet
from helpers.paths import Paths

# the settings a models run depends on (reports, review and runs settings do not change it)
MODEL_SECTIONS = ("run", "synth", "ingest", "panel", "models")
PATH_KEYS = ("run.data_dir", "run.reports_dir")

COLUMNS: dict[str, str] = {
    "run_id": "string",
    "created": "string",
    "target": "string",
    "profile": "string",
    "code_version": "string",
    "config_hash": "string",
    "config_diff": "string",
    "config_json": "string",
    "features": "string",
    "features_added": "string",
    "features_removed": "string",
    "n_features": "Int64",
    "panel_sha256": "string",
    "test_year": "Int64",
    "test_years": "string",
    "k": "Int64",
    "n_evaluated": "Int64",
    "events": "Int64",
    "primary_model": "string",
    "precision_at_k": "float64",
    "ci_low": "float64",
    "ci_high": "float64",
    "backtest_precision_at_k": "float64",
    "headline": "string",
    "status": "string",
}
ARCHIVED, PRUNED = "archived", "pruned"


def empty_ledger() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in COLUMNS.items()})


def read_ledger(P: Paths) -> pd.DataFrame:
    """The ledger, oldest run first (empty when no run was archived yet)."""
    if not P.runs_ledger.exists():
        return empty_ledger()
    try:
        df = pd.read_parquet(P.runs_ledger)
    except (OSError, ValueError) as exc:
        raise MimamoriError(f"{P.runs_ledger}: cannot read the run ledger ({exc})") from None
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise MimamoriError(f"{P.runs_ledger}: not a run ledger (columns {missing} missing)")
    return df[list(COLUMNS)].astype(COLUMNS).reset_index(drop=True)


def write_ledger(P: Paths, ledger: pd.DataFrame) -> None:
    write_parquet(ledger[list(COLUMNS)].astype(COLUMNS).reset_index(drop=True), P.runs_ledger)


@contextlib.contextmanager
def locked(P: Paths) -> Iterator[None]:
    """Serialise ledger updates (``make -j`` may archive two targets at once)."""
    P.runs.mkdir(parents=True, exist_ok=True)
    with open(P.runs_lock, "a", encoding="utf-8") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# ----------------------------------------------------------------------------- settings diff
def model_settings(cfg: Settings) -> dict[str, Any]:
    """The settings a models run depends on, as plain data (folders left out)."""
    tree = {s: getattr(cfg, s).as_dict() for s in MODEL_SECTIONS}
    return {
        s: {k: v for k, v in body.items() if f"{s}.{k}" not in PATH_KEYS}
        for s, body in tree.items()
    }


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"models": {"tuning": {"n_trials": 3}}}`` -> ``{"models.tuning.n_trials": "3"}``."""
    out: dict[str, str] = {}
    for key, value in tree.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, name))
        else:
            out[name] = json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)
    return out


def config_diff(old: Mapping[str, str] | None, new: Mapping[str, str]) -> list[str]:
    """Human-readable differences of two flattened settings (``key: old → new``)."""
    if old is None:
        return []
    lines = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        lines.append(
            f"{key}: {a if a is not None else '(none)'} → {b if b is not None else '(none)'}"
        )
    return lines


def flat_config(row: Mapping[str, Any]) -> dict[str, str]:
    text = row.get("config_json")
    return json.loads(text) if isinstance(text, str) and text else {}


# ----------------------------------------------------------------------------- resolving ids
def runs_of(ledger: pd.DataFrame, target: str | None) -> pd.DataFrame:
    return ledger if target is None else ledger[ledger["target"] == target]


def _known(ledger: pd.DataFrame, target: str | None, n: int = 5) -> str:
    runs = runs_of(ledger, target)
    if not len(runs):
        return "no runs archived" + (f" for target {target!r}" if target else "")
    latest = ", ".join(runs["run_id"].tail(n).tolist()[::-1])
    return f"latest: {latest}"


def resolve(ledger: pd.DataFrame, ref: str, target: str | None = None) -> pd.Series:
    """The ledger row of a run reference: an id, a unique id prefix, ``latest`` or ``previous``.

    ``latest``/``previous`` count archived runs of ``target`` only (and need it).
    """
    ref = str(ref).strip()
    if not ref:
        raise MimamoriError(
            "empty run id (give a run id, `latest` or `previous`; "
            "`python -m helpers runs list` shows them)"
        )
    if ref in ("latest", "previous"):
        if target is None:
            raise MimamoriError(f"run {ref!r}: needs --target (the latest run of which target?)")
        live = runs_of(ledger, target)
        live = live[live["status"] == ARCHIVED]
        pos = 1 if ref == "latest" else 2
        if len(live) < pos:
            raise MimamoriError(
                f"run {ref!r} of target {target!r}: only {len(live)} archived "
                "run(s); run `make models` (again) first"
            )
        return live.iloc[-pos]
    exact = ledger[ledger["run_id"] == ref]
    found = exact if len(exact) else ledger[ledger["run_id"].str.startswith(ref)]
    if len(found) == 1:
        return found.iloc[0]
    if len(found) > 1:
        raise MimamoriError(f"run id {ref!r} is ambiguous: {', '.join(found['run_id'])}")
    raise MimamoriError(
        f"unknown run id {ref!r} ({_known(ledger, target)}; "
        "`python -m helpers runs list` shows every run)"
    )
