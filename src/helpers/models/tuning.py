"""Hyper-parameters tuned for precision at the list length, over rolling temporal folds.

A list that staff verify needs precision, so candidates are compared by validation
precision@k (mean over folds minus a penalty times its spread), never by AUC.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning
from tqdm.auto import tqdm

from helpers.models import evaluation as ev
from helpers.models.families import (
    fit_lgbm,
    lgbm_dataset,
    lr_estimator,
    lr_preprocess,
    weight_offset,
)
from helpers.models.settings import FitSettings


def sample_candidates(space: dict, defaults: dict, n: int, seed: int) -> list[dict]:
    """The defaults first, then distinct seeded random draws from the grid (deterministic)."""
    rng = np.random.default_rng(seed)
    out = [dict(defaults)]
    keys = sorted(space)
    size = int(np.prod([len(space[k]) for k in keys]))
    tries = 0
    while len(out) < min(n, size) and tries < 50 * n:
        tries += 1
        cand = {k: space[k][int(rng.integers(len(space[k])))] for k in keys}
        if cand not in out:
            out.append(cand)
    return out[: max(1, n)]


@dataclass
class FamilyTuning:
    """One family's search: every candidate x fold score, the chosen candidate and its scores."""

    table: pd.DataFrame
    info: dict
    valid_scores: list[np.ndarray] = field(default_factory=list)  # minus weight_offset


FoldCache = dict[tuple[str, str, int], np.ndarray]


def _fold_data(
    family: str,
    X: np.ndarray,
    y: np.ndarray,
    year: np.ndarray,
    train_years: list,
    valid_year: int,
    s: FitSettings,
    features: list[str],
) -> tuple:
    """One fold's (training data, validation matrix, training labels)."""
    tr, va = np.isin(year, train_years), year == valid_year
    if family == "lightgbm":
        return lgbm_dataset(X[tr], y[tr], s.models.max_bin, features), X[va], y[tr]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pre = lr_preprocess().fit(X[tr])
        return pre.transform(X[tr]), pre.transform(X[va]), y[tr]


def _validation_score(
    family: str, data, Xva: np.ndarray, ytr: np.ndarray, cand: dict, s: FitSettings
) -> np.ndarray:
    if not 0 < ytr.sum() < len(ytr):  # nothing to learn from: every child ties (no information)
        return np.zeros(len(Xva))
    if family == "lightgbm":
        return np.asarray(fit_lgbm(data, cand, s.seed, s.threads).predict(Xva, raw_score=True))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = lr_estimator(cand, ytr, s.seed, s.models.logistic_max_iter)
        return np.asarray(est.fit(data, ytr).decision_function(Xva))


def _choose(tuning: pd.DataFrame, cands: list[dict], penalty: float) -> tuple[pd.DataFrame, dict]:
    """The candidate with the best mean - penalty x std of validation precision@k (AP breaks ties)."""
    summ = tuning.groupby("candidate").agg(
        mean=("precision_at_k", "mean"),
        std=("precision_at_k", lambda v: float(np.std(v))),
        ap=("average_precision", "mean"),
    )
    summ["objective"] = summ["mean"] - penalty * summ["std"]
    summ = summ.sort_values(
        ["objective", "ap"], ascending=False, kind="mergesort", na_position="last"
    )
    best = int(summ.index[0])
    tuning = tuning.merge(summ[["objective"]], left_on="candidate", right_index=True)
    tuning["chosen"] = tuning["candidate"] == best
    info = {
        "candidate": best,
        "params": cands[best],
        "objective": float(summ.loc[best, "objective"]),
        "mean_precision": float(summ.loc[best, "mean"]),
        "std_precision": float(summ.loc[best, "std"]),
        "mean_average_precision": float(summ.loc[best, "ap"]),
        "n_evaluated": int(len(summ)),
        "n_planned": len(cands),
        "budget_hit": len(summ) < len(cands),
    }
    return tuning, info


def tune_family(
    family: str,
    X: np.ndarray,
    y: np.ndarray,
    year: np.ndarray,
    folds: list,
    s: FitSettings,
    features: list[str],
    cache: FoldCache | None = None,
) -> FamilyTuning:
    """Seeded random search maximising mean precision@k - penalty x std over temporal folds.

    Candidates run in a fixed order; the time budget (off by default) only cuts the list short.
    A fold is (every labelled year before v, v) whatever the test year, so the backtest's
    origins share folds: ``cache`` keeps each (family, candidate, validation year)'s scores.
    """
    t = s.models.tuning
    cache = {} if cache is None else cache
    budget = float(t.time_budget_s or np.inf)  # null: no budget, fully reproducible
    cands = sample_candidates(s.space(family), s.defaults(family), int(t.n_trials), s.seed)
    data: dict[int, tuple] = {}
    rows, valid_scores = [], {}
    start = time.perf_counter()
    for ci, cand in enumerate(tqdm(cands, desc=f"tuning {family}", leave=False)):
        if ci > 0 and time.perf_counter() - start > budget:
            break
        fold_scores = []
        for train_years, vyear in folds:
            key = (family, str(cand), int(vyear))
            if key not in cache:
                if vyear not in data:
                    data[vyear] = _fold_data(family, X, y, year, train_years, vyear, s, features)
                fd = data[vyear]
                cache[key] = _validation_score(family, fd[0], fd[1], fd[2], cand, s)
            score = cache[key]
            yva = y[year == vyear]
            # for the calibrator: on the unweighted log-odds scale (see weight_offset)
            fold_scores.append(score - weight_offset(y[np.isin(year, train_years)], cand))
            rows.append(
                {
                    "family": family,
                    "candidate": ci,
                    "params": str(cand),
                    "valid_year": vyear,
                    "n_valid": len(yva),
                    "events": int(yva.sum()),
                    "precision_at_k": ev.precision_at_k(yva, score, s.k, "mean"),
                    "average_precision": ev.safe_average_precision(yva, score),
                }
            )
        valid_scores[ci] = fold_scores
    tuning, info = _choose(pd.DataFrame(rows), cands, float(t.variance_penalty))
    return FamilyTuning(tuning, info, valid_scores[info["candidate"]])
