"""A models run written by hand: the artefacts the models stage leaves in data/models/<target>/
(scores with ranks per test year, metrics with a backtest block, params, catalogue), so the run
history and comparison are tested without fitting anything."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers.config import Settings, load_config
from helpers.io import write_csv, write_json, write_parquet
from helpers.paths import paths

YEARS = (2021, 2022, 2023)
FEATURES = ["f_a", "f_b", "f_c"]


@pytest.fixture
def cfg(tmp_path: Path) -> Settings:
    return load_config(
        profile="tiny",
        overrides={
            "run": {"data_dir": str(tmp_path / "data"), "reports_dir": str(tmp_path / "rep")}
        },
    )


def population(n: int = 400, years=YEARS, prevalence: float = 0.1, seed: int = 0) -> pd.DataFrame:
    """Child-years of the test years: label, known, groups (the same children every year)."""
    rng = np.random.default_rng(seed)
    frames = []
    for year in years:
        frames.append(
            pd.DataFrame(
                {
                    "child_id": [f"{i:016x}" for i in range(n)],
                    "fiscal_year": year,
                    "label": (rng.random(n) < prevalence).astype(float),
                    "known": (rng.random(n) < 0.02).astype(int),
                    "sex": rng.choice(["female", "male"], n),
                    "nationality": rng.choice(["japanese", "foreign"], n, p=[0.9, 0.1]),
                    "single_parent": rng.choice([0.0, 1.0], n, p=[0.8, 0.2]),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def scores_for(pop: pd.DataFrame, signal: float, seed: int) -> pd.DataFrame:
    """Scores = signal x label + noise; rank per year (1 = highest) over not-known rows."""
    rng = np.random.default_rng(seed)
    s = pop.copy()
    s["score"] = signal * s["label"] + rng.normal(size=len(s))
    s["probability"] = 1 / (1 + np.exp(-(s["score"] - 3)))
    rank = pd.Series(np.nan, index=s.index)
    live = s["known"] == 0
    rank[live] = s[live].groupby("fiscal_year")["score"].rank(ascending=False, method="first")
    s["rank"] = pd.array(rank, dtype="Int64")
    s["reason_1"] = np.where(s["score"] > 1, "欠席日数 [absence]", "出生体重 [birth weight]")
    return s


def write_models_run(
    cfg: Settings,
    target: str,
    scores: pd.DataFrame,
    features: list[str] | None = None,
    backtest: bool = True,
) -> None:
    """What the models stage writes for one target (only what the run history reads)."""
    P = paths(cfg)
    out = P.model(target)
    features = FEATURES if features is None else features
    years = sorted(int(y) for y in scores["fiscal_year"].unique())
    k = int(cfg.run.capacity)
    write_parquet(scores, out.scores)
    write_parquet(
        pd.DataFrame({"candidate": [0, 1], "fold": [0, 0], "score": [0.1, 0.2]}), out.tuning
    )
    write_csv(pd.DataFrame({"attribute": ["sex"], "group": ["female"]}), out.fairness)
    write_json(
        {
            "features": features,
            "chosen": {
                "lightgbm": {"params": {"num_leaves": 15}, "n_planned": cfg.models.tuning.n_trials}
            },
        },
        out.params,
    )
    per_year = [
        {"test_year": y, "precision_at_k": 0.2, "expected_precision_at_k": 0.15} for y in years
    ]
    metrics = {
        "target": target,
        "k": k,
        "test_year": years[-1],
        "primary_model": "lightgbm",
        "test": {"n_evaluated": int((scores["fiscal_year"] == years[-1]).sum()), "events": 40},
        "headline": {"model": {"precision_at_k": {"value": 0.2, "ci_low": 0.1, "ci_high": 0.3}}},
        "calibration": {"oe": 1.0, "oe_ci_low": 0.8, "oe_ci_high": 1.2, "ok": True},
    }
    if backtest:
        metrics["backtest"] = {
            "test_years": years,
            "per_year": per_year,
            "pooled": {
                "precision_at_k": {"value": 0.2, "ci_low": 0.15, "ci_high": 0.25},
                "expected_precision_at_k": {"value": 0.15, "ci_low": 0.1, "ci_high": 0.2},
            },
        }
    write_json(metrics, out.metrics)
    catalogue = pd.DataFrame(
        {
            "name": ["child_id", *features],
            "label_ja": ["児童ID", *[f"特徴 {f}" for f in features]],
            "role": ["id", *["feature"] * len(features)],
        }
    )
    write_csv(catalogue, P.feature_catalogue)
    write_parquet(pd.DataFrame({"child_id": ["a"], "fiscal_year": [2021]}), P.panel)
