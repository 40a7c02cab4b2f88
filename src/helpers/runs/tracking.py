"""Optional: log each archived run to MLflow's local tracking store (``runs.mlflow``).

MLflow is not part of the pinned environment (README "Iterating on models" gives the measured
weight and the reason); with ``runs.mlflow.enabled: true`` and ``mlflow`` installed, every
archived run is also logged to a SQLite store under the data root, one experiment per target
(``mimamori/<target>``), and ``mlflow ui --backend-store-uri sqlite:///<store>`` browses the
history. Artefacts go to a folder beside the store, never to ``./mlruns``: they include test-year
scores and are as private as ``data/models``. No server is started.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from helpers import MimamoriError
from helpers.config import Settings
from helpers.paths import RunPaths, paths

MLFLOW_HINT = (
    "`.venv/bin/pip install mlflow` (not pinned by the project), or set "
    "`mlflow: {enabled: false}` in config/runs.yaml"
)
METRIC_KEYS = (
    "precision_at_k",
    "ci_low",
    "ci_high",
    "backtest_precision_at_k",
    "events",
    "n_evaluated",
)


def require_mlflow() -> None:
    """Fail with one line before anything is archived when MLflow logging cannot work."""
    if importlib.util.find_spec("mlflow") is None:
        raise MimamoriError(
            f"config/runs.yaml: mlflow.enabled is true but the mlflow package "
            f"is not installed: {MLFLOW_HINT}"
        )


def store_uri(cfg: Settings) -> tuple[str, Path]:
    """(tracking URI, artefact folder) of the configured store."""
    store = paths(cfg).mlflow_store(cfg.runs.mlflow.tracking_store)
    store.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{store.resolve()}", store.parent / "artifacts"


def log_run(cfg: Settings, row: dict[str, Any], run: RunPaths) -> str:
    """Log one archived run (settings as params, headline as metrics, the folder as artefacts);
    return the MLflow run id."""
    require_mlflow()
    import mlflow
    from mlflow.tracking import MlflowClient

    uri, artifacts = store_uri(cfg)
    client = MlflowClient(tracking_uri=uri)
    name = f"mimamori/{row['target']}"
    exp = client.get_experiment_by_name(name)
    exp_id = (
        exp.experiment_id
        if exp
        else client.create_experiment(
            name, artifact_location=(artifacts / str(row["target"])).resolve().as_uri()
        )
    )
    params = {k: v[:500] for k, v in _flat(row).items()}
    tags = {
        k: str(row[k])
        for k in (
            "run_id",
            "target",
            "profile",
            "code_version",
            "config_hash",
            "panel_sha256",
            "headline",
        )
    }
    tags["config_diff"] = str(row.get("config_diff") or "")[:5000]
    mr = client.create_run(exp_id, run_name=str(row["run_id"]), tags=tags)
    rid = mr.info.run_id
    for key in METRIC_KEYS:
        value = row.get(key)
        if value is not None and value == value:  # not NaN
            client.log_metric(rid, key, float(value))
    for i in range(0, len(params), 100):  # the store takes at most 100 params per batch
        chunk = list(params.items())[i : i + 100]
        client.log_batch(rid, params=[mlflow.entities.Param(k, v) for k, v in chunk])
    client.log_artifacts(rid, str(run.dir))
    client.set_terminated(rid)
    return str(rid)


def _flat(row: dict[str, Any]) -> dict[str, str]:
    return dict(json.loads(str(row["config_json"])))
