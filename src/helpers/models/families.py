"""The two model families (weighted LightGBM and logistic regression) and their calibration.

Extreme imbalance buries the positives, so both families weight the positive class (balanced,
its square root, or none: a tuning choice). Scores are log-odds of the weighted model; a
calibrator fitted on out-of-time validation scores maps them to a yearly probability.
"""

from __future__ import annotations

import warnings
from typing import Any

import lightgbm as lgb
import numpy as np
from scipy.optimize import brentq
from scipy.special import expit, logit
from sklearn.exceptions import ConvergenceWarning
from sklearn.impute import SimpleImputer
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler


def pos_weight(y: np.ndarray, weighting: str) -> float:
    """Weight of a positive case: neg/pos (balanced), its square root, or 1 (none)."""
    pos = float(np.sum(y == 1))
    neg = float(np.sum(y == 0))
    ratio = neg / pos if pos else 1.0
    return {"balanced": ratio, "sqrt": float(np.sqrt(ratio)), "none": 1.0}[weighting]


def weight_offset(y_train: np.ndarray, cand: dict) -> float:
    """log of the positive-class weight the candidate trains with: a class-weighted model's
    log-odds sit about this much above the unweighted ones. Calibration works on
    ``margin - weight_offset`` so models trained on years with different base rates (the folds,
    the final fit) feed the calibrator on one scale."""
    return float(np.log(pos_weight(np.asarray(y_train), cand.get("weighting", "none"))))


def lgbm_params(cand: dict, y: np.ndarray, seed: int, threads: int) -> dict:
    """LightGBM training parameters for one candidate (deterministic with a fixed thread count)."""
    subsample = float(cand.get("subsample", 1.0))
    return {
        "objective": "binary",
        "learning_rate": float(cand["learning_rate"]),
        "num_leaves": int(cand["num_leaves"]),
        "min_data_in_leaf": int(cand["min_child_samples"]),
        "lambda_l2": float(cand["reg_lambda"]),
        "feature_fraction": float(cand["colsample_bytree"]),
        "bagging_fraction": subsample,
        "bagging_freq": 1 if subsample < 1 else 0,
        "scale_pos_weight": pos_weight(y, cand["weighting"]),
        "deterministic": True,
        "force_col_wise": True,
        "num_threads": int(threads),
        "seed": int(seed),
        "verbosity": -1,
    }


def lgbm_dataset(
    X: np.ndarray, y: np.ndarray, max_bin: int, features: list[str], free_raw_data: bool = False
) -> lgb.Dataset:
    """The binned training data (``free_raw_data``: drop the float copy once binned)."""
    return lgb.Dataset(
        X,
        label=y,
        feature_name=features,
        free_raw_data=free_raw_data,
        params={"max_bin": int(max_bin), "feature_pre_filter": False, "verbosity": -1},
    )


def fit_lgbm(data: lgb.Dataset, cand: dict, seed: int, threads: int) -> lgb.Booster:
    params = lgbm_params(cand, np.asarray(data.get_label()), seed, threads)
    return lgb.train(params, data, num_boost_round=int(cand["n_estimators"]))


class MedianImputer(SimpleImputer):
    """``SimpleImputer(strategy="median")`` for NaN with the medians taken column by column by
    ``numpy.nanmedian``: the same values, without numpy.ma's masked sort of a copy of the whole
    matrix (slow, and several copies of the training years at prefecture size)."""

    def _dense_fit(self, X, strategy, missing_values, fill_value):  # noqa: ANN001, ANN202
        if strategy != "median" or not _is_nan(missing_values) or self.keep_empty_features:
            return super()._dense_fit(X, strategy, missing_values, fill_value)
        missing = np.isnan(X)
        super()._fit_indicator(missing)
        out = np.full(X.shape[1], np.nan, dtype=X.dtype)
        for j in range(X.shape[1]):
            known = X[~missing[:, j], j]
            if len(known):
                out[j] = np.median(known)
        return out


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and np.isnan(value)


def lr_preprocess() -> Pipeline:
    """Median imputation with missing indicators, then scaling (missing stays distinguishable)."""
    return Pipeline(
        [
            ("impute", MedianImputer(strategy="median", add_indicator=True)),
            ("scale", StandardScaler(copy=False)),  # scales the imputer's fresh output in place
        ]
    )


def lr_estimator(cand: dict, y: np.ndarray, seed: int, max_iter: int) -> LogisticRegression:
    w = cand["weighting"]
    cw: Any = (
        None
        if w == "none"
        else "balanced"
        if w == "balanced"
        else {0: 1.0, 1: pos_weight(y, "sqrt")}
    )
    return LogisticRegression(
        C=float(cand["C"]), class_weight=cw, max_iter=int(max_iter), random_state=seed
    )


def fit_logistic(X: np.ndarray, y: np.ndarray, cand: dict, seed: int, max_iter: int) -> Pipeline:
    pipe = Pipeline(lr_preprocess().steps + [("model", lr_estimator(cand, y, seed, max_iter))])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return pipe.fit(X, y)


def fit_family(
    family: str,
    X: np.ndarray,
    y: np.ndarray,
    cand: dict,
    seed: int,
    threads: int,
    max_bin: int,
    max_iter: int,
    features: list[str],
) -> Any:
    """One fitted model of ``family`` with the candidate's parameters."""
    if family == "lightgbm":
        return fit_lgbm(lgbm_dataset(X, y, max_bin, features), cand, seed, threads)
    return fit_logistic(X, y, cand, seed, max_iter)


def margin(model: Any, X: np.ndarray) -> np.ndarray:
    """The continuous score: log-odds of the weighted model (before calibration)."""
    if isinstance(model, lgb.Booster):
        return np.asarray(model.predict(X, raw_score=True))
    return np.asarray(model.decision_function(X))


class Calibrator:
    """Maps the weighted model's log-odds to a yearly probability (Platt or isotonic), then
    shifts the intercept (on the log-odds scale) to the most recent out-of-time year.

    The map is fitted on every validation year's out-of-time scores; a yearly rate that drifts
    makes the pooled map too low or too high for next year, so ``recalibrate_intercept`` sets
    the shift that makes the expected events of the latest validation year equal its observed
    events (the maximum-likelihood intercept with the map's slope held fixed).
    """

    def __init__(self, method: str = "platt"):
        self.method = method
        self.shift_ = 0.0
        self.transfer_: tuple[np.ndarray, np.ndarray] | None = None  # see steps._scale_transfer

    def fit(self, score: np.ndarray, y: np.ndarray) -> Calibrator:
        score = np.asarray(score, dtype=float).reshape(-1, 1)
        self.model_: Any
        if self.method == "isotonic":
            self.model_ = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(
                score[:, 0], y
            )
        else:
            self.model_ = LogisticRegression(C=1e6, max_iter=1000).fit(score, y)
        return self

    def _base(self, score: np.ndarray) -> np.ndarray:
        score = np.asarray(score, dtype=float).reshape(-1, 1)
        if self.method == "isotonic":
            return np.asarray(self.model_.predict(score[:, 0]))
        return np.asarray(self.model_.predict_proba(score)[:, 1])

    def predict(self, score: np.ndarray) -> np.ndarray:
        """The yearly probability of a final-model score (carried to the calibrated model's
        scale first when a transfer is set)."""
        if self.transfer_ is not None:
            score = np.interp(np.asarray(score, dtype=float), *self.transfer_)
        p = self._base(score)
        return p if self.shift_ == 0.0 else _shifted(p, self.shift_)

    def recalibrate_intercept(self, score: np.ndarray, y: np.ndarray) -> float | None:
        """Set the log-odds shift so that sum(p) = sum(y) on (score, y); None (no shift) when
        the year holds no events or no non-events."""
        y = np.asarray(y, dtype=float)
        if not 0 < y.sum() < len(y):
            return None
        p = self._base(score)
        target = float(y.sum())

        def gap(shift: float) -> float:
            return float(_shifted(p, shift).sum()) - target

        self.shift_ = float(brentq(gap, -20.0, 20.0)) if gap(-20) < 0 < gap(20) else 0.0
        return self.shift_


def _shifted(p: np.ndarray, shift: float) -> np.ndarray:
    q = np.clip(p, 1e-9, 1 - 1e-9)
    return np.asarray(expit(logit(q) + shift))


def choose_calibration(events: int, isotonic_min_events: int) -> str:
    return "isotonic" if events >= isotonic_min_events else "platt"
