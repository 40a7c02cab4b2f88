"""Baselines and weighted models for one target, tuned for precision at staff capacity.

Lessons from the reference analyses drive the design (docs/lessons.md): class weights instead
of resampling, tuning for precision@k over rolling temporal folds, models that use every
variable beside the strict reference tree, continuous scores, and the best single variable
chosen on training years as the comparison that matters. ``fit_target`` runs the steps of
``helpers.models.steps`` and writes every artefact the report needs, ``metrics.json`` last
(the make stamp).
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from pathlib import Path

# OpenMP threads that spin while waiting make LightGBM many times slower when the 2 cores are
# shared with other work; sleep instead (only effective before the OpenMP runtime loads).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pandas as pd  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from helpers import MimamoriError, oracle  # noqa: E402
from helpers.config import Settings  # noqa: E402
from helpers.io import append_audit  # noqa: E402
from helpers.models import background, steps  # noqa: E402
from helpers.models.artefacts import Fit, write  # noqa: E402
from helpers.models.settings import FitSettings  # noqa: E402
from helpers.paths import ModelPaths, paths  # noqa: E402
from helpers.runs.archive import archive_run  # noqa: E402


def run_steps(
    panel: pd.DataFrame,
    catalogue: pd.DataFrame,
    target: str,
    truth: pd.DataFrame | None,
    s: FitSettings,
) -> Fit:
    """prepare -> per origin (tune -> fit final -> calibrate -> score -> evaluate) -> backtest
    -> diagnose. Origins share their tuning folds (a fold does not depend on the test year);
    the families tune in background threads beside the rest (``helpers.models.background``)."""
    return background.fit(steps.prepare(panel, catalogue, target, s), truth, s)


def fit_target(
    panel: pd.DataFrame,
    catalogue: pd.DataFrame,
    cfg: Settings,
    target: str,
    out_dir: str | Path,
    truth_probs: pd.DataFrame | None = None,
) -> dict:
    """Backtest, fit, calibrate, evaluate and explain one target on its eligible population
    (``models.populations``); write every artefact to ``out_dir``.

    ``truth_probs`` is the synthetic oracle keyed by pseudonym (``helpers.oracle.load_truth``).
    Returns the metrics dict written to metrics.json.
    """
    s = FitSettings.from_config(cfg)
    # BLAS threads buy nothing for these matrix-vector products and spin badly on busy cores
    with threadpool_limits(limits=1, user_api="blas"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Skipping features without any observed values")
        warnings.filterwarnings("ignore", category=RuntimeWarning)
        fit = run_steps(panel, catalogue, target, truth_probs, s)
        return write(fit, ModelPaths(Path(out_dir)), s)


def main(cfg: Settings, argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers models")
    parser.add_argument(
        "--target",
        action="append",
        default=None,
        help="target to fit (repeatable; default: run.targets)",
    )
    args = parser.parse_args(argv)
    P = paths(cfg)
    for p in (P.panel, P.feature_catalogue):
        if not p.exists():
            raise MimamoriError(f"{p}: not found; run `python -m helpers panel` first")
    # one block per column, arrow buffers released while converting: no second copy at read
    panel = pq.read_table(P.panel).to_pandas(split_blocks=True, self_destruct=True)
    pa.default_memory_pool().release_unused()  # the pool keeps freed buffers (GBs at L) else
    catalogue = pd.read_csv(P.feature_catalogue)
    truth = oracle.load_truth(cfg)
    inputs = [P.panel, P.feature_catalogue] + ([P.truth_probabilities] if truth is not None else [])
    for target in args.target or list(cfg.run.targets):
        out = P.model(target)
        t0 = time.perf_counter()
        metrics = fit_target(panel, catalogue, cfg, target, out.dir, truth)
        elapsed = time.perf_counter() - t0
        h = metrics["backtest"]["pooled"]["precision_at_k"]
        years = metrics["backtest"]["test_years"]
        print(
            f"{target}: pooled precision@{metrics['k']} = {h['value']:.3f} "
            f"[{h['ci_low']:.3f}, {h['ci_high']:.3f}] over FY{years[0]}-FY{years[-1]} "
            f"({metrics['population']['n_evaluated']:,} eligible child-years evaluated, "
            f"{elapsed:.1f} s)"
        )
        append_audit(
            P.data,
            f"models:{target}",
            cfg,
            inputs=inputs,
            outputs=[out.dir],
            rows={"panel": len(panel), "test_child_years": metrics["test"]["n_child_years"]},
        )
        archive_run(cfg, target)  # data/runs/<run_id>/ + the ledger (helpers.runs)
    return 0
