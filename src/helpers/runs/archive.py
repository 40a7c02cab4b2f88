"""Archive a models run: ``data/runs/<run_id>/`` plus one ledger row.

The models stage calls :func:`archive_run` after it has written a target's artefacts. The run
folder holds what is needed to compare and reproduce the run: the settings (``config.json``),
the feature catalogue the panel was built with, ``params.json`` (chosen parameters and feature
list), the tuning record, ``metrics.json``, the test-year ``scores.parquet`` and the fairness
and calibration tables, plus ``run.json`` (id, time, code version, panel hash). The id is the
UTC time and a hash of the settings and target (``20240401-093000-1a2b3c4d``). Retention
(``runs.keep_last``) deletes the oldest folders of a target; their ledger rows stay.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from helpers import MimamoriError
from helpers.config import Settings, config_hash, stable_hash
from helpers.io import atomic_path, file_sha256, git_commit, write_json
from helpers.paths import ModelPaths, Paths, RunPaths, paths
from helpers.runs import ledger as L

REQUIRED = ("metrics", "params", "scores")
OPTIONAL = ("tuning", "fairness", "calibration")


def new_run_id(now: datetime, settings_hash: str, taken: set[str]) -> str:
    """``YYYYMMDD-HHMMSS-<hash8>`` (UTC); a suffix ``-2``, ``-3`` ... only on a clash."""
    base = f"{now.astimezone(UTC):%Y%m%d-%H%M%S}-{settings_hash[:8]}"
    run_id, n = base, 1
    while run_id in taken:
        n += 1
        run_id = f"{base}-{n}"
    return run_id


def _check_sources(out: ModelPaths, P: Paths, target: str) -> None:
    for name in REQUIRED:
        path = getattr(out, name)
        if not path.exists():
            raise MimamoriError(
                f"{path}: not found; cannot archive the {target} run "
                f"(run `python -m helpers models --target {target}` first)"
            )
    if not P.feature_catalogue.exists():
        raise MimamoriError(f"{P.feature_catalogue}: not found; cannot archive the {target} run")


def _copy(src: Path, dst: Path, link: bool = False) -> None:
    """Copy (or hard-link: the stages replace files by rename, so a link is a snapshot)."""
    if link:
        try:
            os.link(src, dst)
            return
        except OSError:
            pass
    shutil.copy2(src, dst)


def _headline(metrics: dict[str, Any]) -> dict[str, Any]:
    h = (metrics.get("headline") or {}).get("model", {}).get("precision_at_k") or {}
    bt = metrics.get("backtest") or {}
    pooled = ((bt.get("pooled") or {}).get("precision_at_k") or {}) if isinstance(bt, dict) else {}
    test = metrics.get("test") or {}
    years: list[Any] = list(bt.get("test_years") or []) if isinstance(bt, dict) else []
    years = years or [metrics.get("test_year")]
    return {
        "test_year": metrics.get("test_year"),
        "test_years": json.dumps([int(y) for y in years if y is not None]),
        "k": metrics.get("k"),
        "n_evaluated": test.get("n_evaluated"),
        "events": test.get("events"),
        "primary_model": metrics.get("primary_model"),
        "precision_at_k": h.get("value"),
        "ci_low": h.get("ci_low"),
        "ci_high": h.get("ci_high"),
        "backtest_precision_at_k": pooled.get("value") if isinstance(pooled, dict) else pooled,
    }


def headline_text(row: dict[str, Any]) -> str:
    v, lo, hi = row.get("precision_at_k"), row.get("ci_low"), row.get("ci_high")
    if v is None or pd.isna(v):
        return "precision@k: not available"
    text = f"precision@{row.get('k')} = {v:.3f} [{lo:.3f}, {hi:.3f}] (FY{row.get('test_year')})"
    bt = row.get("backtest_precision_at_k")
    if bt is not None and not pd.isna(bt):
        text += f"; backtest pooled {bt:.3f}"
    return text


def _write_folder(
    cfg: Settings, target: str, run: RunPaths, out: ModelPaths, P: Paths, manifest: dict[str, Any]
) -> None:
    """Fill the run folder in a temporary sibling and rename it into place (all or nothing)."""
    with atomic_path(run.dir) as tmp:
        tmp.mkdir(parents=True)
        staged = RunPaths(tmp)
        for name in REQUIRED + OPTIONAL:
            src = getattr(out, name)
            if src.exists():
                _copy(src, getattr(staged, name))
        _copy(P.feature_catalogue, staged.feature_catalogue)
        if cfg.runs.keep_panel and P.panel.exists():
            _copy(P.panel, staged.panel, link=True)
        write_json(
            {"profile": cfg.profile, "target": target, "settings": cfg.as_dict()}, staged.config
        )
        write_json(manifest, staged.manifest)
        if out.dir.exists():  # as private as data/models: the same permissions
            os.chmod(tmp, stat.S_IMODE(out.dir.stat().st_mode))


def prune(P: Paths, ledger: pd.DataFrame, target: str, keep_last: int) -> pd.DataFrame:
    """Delete the folders of a target's archived runs beyond the newest ``keep_last``."""
    live = ledger.index[(ledger["target"] == target) & (ledger["status"] == L.ARCHIVED)]
    drop = list(live[:-keep_last]) if len(live) > keep_last else []
    for i in drop:
        shutil.rmtree(P.run(str(ledger.at[i, "run_id"])).dir, ignore_errors=True)
        ledger.loc[i, "status"] = L.PRUNED
    return ledger


def _ledger_row(
    run_id: str,
    created: datetime,
    cfg: Settings,
    target: str,
    flat: dict[str, str],
    features: list[str],
    prev: pd.Series | None,
    metrics: dict[str, Any],
    panel_sha: str,
) -> dict[str, Any]:
    prev_features = json.loads(prev["features"]) if prev is not None and prev["features"] else None
    head = _headline(metrics)
    return {
        "run_id": run_id,
        "created": created.isoformat(timespec="seconds"),
        "target": target,
        "profile": cfg.profile or "",
        "code_version": git_commit(),
        "config_hash": config_hash(cfg, L.MODEL_SECTIONS),
        "config_diff": "; ".join(
            L.config_diff(L.flat_config(prev) if prev is not None else None, flat)
        ),
        "config_json": json.dumps(flat, ensure_ascii=False, sort_keys=True),
        "features": json.dumps(features, ensure_ascii=False),
        "features_added": ", ".join(sorted(set(features) - set(prev_features or features))),
        "features_removed": ", ".join(sorted(set(prev_features or []) - set(features))),
        "n_features": len(features),
        "panel_sha256": panel_sha,
        **head,
        "headline": headline_text(head),
        "status": L.ARCHIVED,
    }


def archive_run(cfg: Settings, target: str, now: datetime | None = None) -> str | None:
    """Archive the current ``data/models/<target>/`` run; return its id (None when
    ``runs.archive`` is off). Called by the models stage after writing a target."""
    if not cfg.runs.archive:
        return None
    P = paths(cfg)
    out = P.model(target)
    _check_sources(out, P, target)
    if cfg.runs.keep_last < 1:
        raise MimamoriError(
            f"config/runs.yaml: key 'keep_last': must be at least 1, got {cfg.runs.keep_last}"
        )
    if cfg.runs.mlflow.enabled:
        from helpers.runs import tracking

        tracking.require_mlflow()
    metrics = json.loads(out.metrics.read_text(encoding="utf-8"))
    params = json.loads(out.params.read_text(encoding="utf-8"))
    features = [str(f) for f in params.get("features", [])]
    settings = L.model_settings(cfg)
    flat = L.flatten(settings)
    created = now or datetime.now(UTC)
    panel_sha = file_sha256(P.panel)[:16] if P.panel.exists() else ""
    with L.locked(P):
        ledger = L.read_ledger(P)
        mine = L.runs_of(ledger, target)
        prev = mine.iloc[-1] if len(mine) else None
        run_id = new_run_id(
            created,
            stable_hash({"settings": settings, "target": target}),
            set(ledger["run_id"]) | {p.name for p in P.runs.glob("*")},
        )
        row = _ledger_row(run_id, created, cfg, target, flat, features, prev, metrics, panel_sha)
        manifest = {
            k: row[k]
            for k in (
                "run_id",
                "created",
                "target",
                "profile",
                "code_version",
                "config_hash",
                "panel_sha256",
                "headline",
            )
        }
        _write_folder(cfg, target, P.run(run_id), out, P, manifest)
        ledger = pd.concat([ledger, pd.DataFrame([row]).astype(L.COLUMNS)], ignore_index=True)
        ledger = prune(P, ledger, target, int(cfg.runs.keep_last))
        L.write_ledger(P, ledger)
    if cfg.runs.mlflow.enabled:
        from helpers.runs import tracking

        tracking.log_run(cfg, row, P.run(run_id))
    print(f"{target}: archived as run {run_id} ({P.run(run_id).dir})")
    return run_id
