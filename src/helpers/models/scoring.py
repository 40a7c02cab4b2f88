"""Scoring a year's child-years per stable hash partition of ``child_id`` on the run's engine.

With ``run.engine: dask`` the final model's scores of a test year are computed as one task per
partition (``helpers.engine.child_partition``, ``run.dask.partitions``) on the cluster and put
back in row order. A LightGBM model scores each row on its own (tree by tree in double
precision), so its scores are identical to the local engine's and the list and the metrics
do not depend on the engine. The logistic model stays local: its float32 matrix-vector product
(BLAS) rounds differently in the last bit depending on the block of rows. Locally it is one
call.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import lightgbm as lgb
import numpy as np

from helpers.config import Settings
from helpers.engine import child_partition, run_tasks
from helpers.models.families import margin


def _margin_task(model: Any, X: np.ndarray) -> np.ndarray:
    return margin(model, X)


def partitioned_margin(
    cfg: Settings | None, model: Any, X: np.ndarray, child_ids: np.ndarray
) -> np.ndarray:
    """``margin(model, X)``, per hash partition of ``child_ids`` on the dask engine."""
    if cfg is None or cfg.run.engine == "local" or not len(X) or not isinstance(model, lgb.Booster):
        return margin(model, X)
    part = child_partition(np.asarray(child_ids), int(cfg.run.dask.partitions))
    rows = [np.flatnonzero(part == p) for p in range(int(cfg.run.dask.partitions))]
    rows = [r for r in rows if len(r)]
    results = run_tasks(cfg, partial(_margin_task, model), [X[r] for r in rows], "scoring")
    out = np.empty(len(X), dtype=float)
    for r, values in zip(rows, results, strict=True):
        out[r] = values
    return out
