"""Hyper-parameters tuned for precision at the list length, over rolling temporal folds.

A list that staff verify needs precision, so candidates are compared by validation
precision@k (mean over folds minus a penalty times its spread), never by AUC.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from sklearn.exceptions import ConvergenceWarning
from sklearn.pipeline import Pipeline
from tqdm.auto import tqdm

from helpers.models import distributed
from helpers.models import evaluation as ev
from helpers.models.families import (
    fit_lgbm,
    lgbm_dataset,
    lr_estimator,
    lr_preprocess,
    margin,
    weight_offset,
)
from helpers.models.settings import FitSettings

# Feature matrices up to this size keep a validation year's preprocessed copy across candidates.
MEMO_MAX_BYTES = 512 * 2**20


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
    fold_models: list[Any] = field(default_factory=list)  # the chosen candidate's, per fold


class FoldCache:
    """Models trained on every labelled year before a year, and their scores on that year.

    A tuning fold (every labelled year before v, v) is the same whatever the test year, and an
    origin's final model (every labelled year before its test year) is the fold model of a
    later origin, so one fit serves tuning, the final fit, the scale transfer and the
    fold-to-fold lists. Keyed by ``(family, str(params), year)``; ``None`` is a model for
    training years without an event (every child ties: zeros).
    """

    def __init__(self) -> None:
        self.models: dict[tuple[str, str, int], Any] = {}
        self.scores: dict[tuple[str, str, int], np.ndarray] = {}

    @staticmethod
    def key(family: str, cand: dict, year: int) -> tuple[str, str, int]:
        return (family, str(cand), int(year))

    def model(
        self,
        family: str,
        cand: dict,
        year: int,
        data: FoldData,
        s: FitSettings,
    ) -> Any:
        """The model of ``cand`` trained on ``data`` (the labelled years before ``year``),
        fitted once."""
        key = self.key(family, cand, year)
        if key not in self.models:
            self.models[key] = _fit_fold(family, data, cand, s)
        return self.models[key]


@dataclass
class FoldData:
    """One fold's training data, built once and shared by every candidate (LightGBM: the binned
    ``Dataset`` with its raw copy freed; logistic: the fitted preprocessing and its output)."""

    y: np.ndarray
    lgb_data: lgb.Dataset | None = None
    pre: Pipeline | None = None
    Xt: np.ndarray | None = None
    cluster: tuple[np.ndarray, np.ndarray, list[str]] | None = None  # (X, child ids, features)

    @classmethod
    def build(
        cls,
        family: str,
        X: np.ndarray,
        y: np.ndarray,
        s: FitSettings,
        features: list[str],
        ids: np.ndarray | None = None,
    ) -> FoldData:
        """``ids`` (the rows' child ids) on the dask engine: LightGBM trains on the cluster
        (``helpers.models.distributed``), so the fold keeps its rows instead of a Dataset."""
        if family == "lightgbm" and ids is not None and distributed.enabled(s.run_cfg):
            return cls(y, cluster=(X, ids, features))
        if family == "lightgbm":
            data = lgbm_dataset(X, y, s.models.max_bin, features, free_raw_data=True)
            return cls(y, lgb_data=data.construct())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            pre = lr_preprocess()
            Xt = pre.fit_transform(X)  # one pass: the scaler works in place on the imputed copy
            return cls(y, pre=pre, Xt=Xt)


def _fit_fold(family: str, data: FoldData, cand: dict, s: FitSettings) -> Any:
    """One candidate fitted on a fold's data; None when the years hold no event (or no
    non-event): nothing to learn, every child ties."""
    if not 0 < data.y.sum() < len(data.y):
        return None
    if data.cluster is not None:
        assert s.run_cfg is not None
        X, ids, features = data.cluster
        return distributed.fit_lgbm_distributed(
            s.run_cfg, X, data.y, ids, cand, s.seed, s.models.max_bin, features
        )
    if data.lgb_data is not None:
        return fit_lgbm(data.lgb_data, cand, s.seed, s.threads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = lr_estimator(cand, data.y, s.seed, s.models.logistic_max_iter)
        est.fit(data.Xt, data.y)
    assert data.pre is not None
    return Pipeline([*data.pre.steps, ("model", est)])


def fold_margin(model: Any, X: np.ndarray) -> np.ndarray:
    """A fold model's scores (zeros for the no-event model)."""
    return np.zeros(len(X)) if model is None else margin(model, X)


def _valid_margin(model: Any, X: np.ndarray, memo: dict[int, np.ndarray] | None) -> np.ndarray:
    """``fold_margin`` on a validation year: the fold's logistic candidates share one fitted
    preprocessing (``FoldData``), so the year is imputed and scaled once for all of them
    (``memo``; None: once per candidate, nothing kept beside the fits)."""
    if memo is None or not isinstance(model, Pipeline):
        return fold_margin(model, X)
    pre = model.steps[:-1]
    key = id(pre[0][1])
    if key not in memo:
        for _, step in pre:  # as Pipeline.decision_function transforms
            X = step.transform(X)
        memo[key] = X
    return np.asarray(model.steps[-1][1].decision_function(memo[key]))


def _fill_fold(
    family: str,
    cands: list[dict],
    X: np.ndarray,
    y: np.ndarray,
    year: np.ndarray,
    vyear: int,
    s: FitSettings,
    features: list[str],
    cache: FoldCache,
    deadline: float,
    ids: np.ndarray | None = None,
) -> int:
    """Score every candidate on the validation year ``vyear`` (fitted on the labelled years
    before it, the fold's data built once and freed after). Returns how many candidates (a
    prefix of the list) were scored before the deadline."""
    Xva = X[year == vyear]
    data: FoldData | None = None
    # a prefecture's validation year, preprocessed, is large: kept only for a smaller panel
    memo: dict[int, np.ndarray] | None = {} if X.nbytes <= MEMO_MAX_BYTES else None
    for ci, cand in enumerate(cands):
        key = cache.key(family, cand, vyear)
        if key in cache.scores:
            continue
        if ci > 0 and time.perf_counter() > deadline:
            return ci
        if key not in cache.models and data is None:
            tr = year < vyear
            data = FoldData.build(family, X[tr], y[tr], s, features, _rows(ids, tr))
        model = cache.models[key] if data is None else cache.model(family, cand, vyear, data, s)
        cache.scores[key] = _valid_margin(model, Xva, memo)
    return len(cands)


def fill_year(
    family: str,
    X: np.ndarray,
    y: np.ndarray,
    year: np.ndarray,
    vyear: int,
    s: FitSettings,
    features: list[str],
    cache: FoldCache,
    ids: np.ndarray | None = None,
    deadline: float = np.inf,
) -> None:
    """The candidates of ``family`` fitted on the labelled years before ``vyear`` and scored
    on it, into ``cache``, in order until ``deadline`` (``time.perf_counter``): what
    ``tune_family`` does for that fold (it then finds them there)."""
    cands = sample_candidates(
        s.space(family), s.defaults(family), int(s.models.tuning.n_trials), s.seed
    )
    _fill_fold(family, cands, X, y, year, vyear, s, features, cache, deadline, ids)


def _rows(ids: np.ndarray | None, rows: np.ndarray) -> np.ndarray | None:
    return None if ids is None else ids[rows]


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
    ids: np.ndarray | None = None,
) -> FamilyTuning:
    """Seeded random search maximising mean precision@k - penalty x std over temporal folds.

    Candidates run in a fixed order, fold by fold (one fold's data in memory at a time); the
    time budget (off by default) only cuts the list short: the candidates kept are a prefix
    of the list, each scored on every fold. ``cache`` keeps each (family, candidate, year)'s
    model and validation scores (the backtest's origins share folds). ``ids``: the rows'
    child ids, for LightGBM on the dask cluster (``FoldData.build``).
    """
    t = s.models.tuning
    cache = FoldCache() if cache is None else cache
    budget = float(t.time_budget_s or np.inf)  # null: no budget, fully reproducible
    cands = sample_candidates(s.space(family), s.defaults(family), int(t.n_trials), s.seed)
    deadline = time.perf_counter() + budget
    n = len(cands)
    for _, vyear in tqdm(folds, desc=f"tuning {family}", leave=False):
        n = _fill_fold(family, cands[:n], X, y, year, vyear, s, features, cache, deadline, ids)
    rows, valid_scores = [], {}
    for ci, cand in enumerate(cands[:n]):
        fold_scores = []
        for train_years, vyear in folds:
            score = cache.scores[cache.key(family, cand, vyear)]
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
    best = cands[info["candidate"]]
    models = [cache.models.get(cache.key(family, best, v)) for _, v in folds]
    return FamilyTuning(tuning, info, valid_scores[info["candidate"]], models)
