"""A blind that holds: the low-score arm drawn within the high arm's strata, and a check that
nothing on the reviewer sheet tells the arms apart.

Reviewers see pseudonym, school and grade. If the high arm is all 12-year-olds and the low
arm spans every age, the grade on the sheet gives the arm away - and a low arm that cannot be
positive (too young) makes "0 needing support" a fact about age, not about the list. So the
low arm is drawn from the bottom of the same eligible ranking *within the strata of the high
arm* (school x grade by default, configurable), in proportion to the high arm's children per
stratum, and ``arm_predictability`` fits a classifier on the sheet's columns: its
cross-validated AUC must not be distinguishable from 0.5.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd

from helpers import MimamoriError

SHEET_FEATURES = ("school_code", "grade")


def strata_key(
    frame: pd.DataFrame, columns: list[str], grade_bands: list[list[int]] | None = None
) -> pd.Series:
    """One label per child: the values of ``columns`` joined (``grade`` banded if asked)."""
    parts = []
    for col in columns:
        if col not in frame.columns:
            raise MimamoriError(
                f"config review.strata: column {col!r} is not in the ranking "
                f"(have {sorted(frame.columns)[:12]} ...)"
            )
        values = frame[col]
        if col == "grade" and grade_bands:
            g = pd.to_numeric(values, errors="coerce")
            band = pd.Series("?", index=frame.index, dtype=object)
            for lo, hi in grade_bands:
                band[(g >= lo) & (g <= hi)] = f"{lo}-{hi}"
            values = band
        parts.append(values.astype("string").fillna("?"))
    key = parts[0]
    for p in parts[1:]:
        key = key + "|" + p
    return key


def allocate(high_counts: pd.Series, available: pd.Series, n_low: int) -> pd.Series:
    """Low-arm children per stratum: ``n_low`` given out one at a time to the stratum furthest
    below its share of the high arm (ties: the larger stratum, then the key), never more than
    the stratum's low pool holds (a stratum with an empty pool gives its share to the others)."""
    weights = high_counts.astype(float)
    share = weights / weights.sum()
    cap = available.reindex(weights.index).fillna(0).astype(int)
    out = pd.Series(0, index=weights.index, dtype=int)
    for given in range(1, int(n_low) + 1):
        room = [s for s in weights.index if out[s] < cap[s]]
        if not room:
            break
        best = min(room, key=lambda s: (-(share[s] * given - out[s]), -weights[s], str(s)))
        out[best] += 1
    return out


def stratified_low_arm(
    high: pd.DataFrame,
    rest: pd.DataFrame,
    n_low: int,
    columns: list[str],
    grade_bands: list[list[int]] | None,
    low_pool_quantile: float,
    rng: np.random.Generator,
) -> tuple[pd.DataFrame, dict]:
    """Draw ``n_low`` low-score children within the strata of ``high``.

    ``rest`` is the ranking without the high arm (``list_rank`` ascending = best first). Within
    each stratum the low pool is the bottom ``low_pool_quantile`` of that stratum's own ranking:
    a score that puts the oldest grades on top would otherwise leave no low-score child of those
    grades to draw, and the arms would differ in grade again. Children per stratum follow the
    high arm's (``allocate``)."""
    hk = strata_key(high, columns, grade_bands)
    rk = strata_key(rest, columns, grade_bands)
    order = rest["list_rank"].rank(method="first")
    within = order.groupby(rk).rank(method="first")  # 1 = best of the stratum
    size = rk.map(rk.value_counts())
    in_pool = (within > size - np.floor(size * low_pool_quantile)).to_numpy()
    pool, pk = rest.loc[in_pool], rk[in_pool]
    plan = allocate(hk.value_counts().sort_index(), pk.value_counts(), n_low)
    picks = []
    for stratum, n in plan.items():
        if n <= 0:
            continue
        members = np.flatnonzero((pk == stratum).to_numpy())
        picks.append(members[np.sort(rng.choice(len(members), size=int(n), replace=False))])
    idx = np.sort(np.concatenate(picks)) if picks else np.array([], dtype=int)
    info = {
        "strata": list(columns),
        "grade_bands": grade_bands,
        "pool": "bottom of each stratum's own ranking",
        "high_strata": int(hk.nunique()),
        "low_strata": int(plan.gt(0).sum()),
        "shortfall": int(n_low - plan.sum()),
    }
    return pool.iloc[idx], info


def _auc(y: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney statistic (ties count one half)."""
    from scipy.stats import rankdata

    ranks = rankdata(score)
    n_pos = float(y.sum())
    n_neg = len(y) - n_pos
    return float((ranks[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def arm_predictability(
    sheet: pd.DataFrame, arm: pd.Series, seed: int = 0, n_boot: int = 500, alpha: float = 0.05
) -> dict:
    """Can the reviewer-sheet columns tell the arms apart? Cross-validated AUC of a logistic
    regression on school (one-hot) and grade (one-hot and numeric), with a bootstrap CI.

    The folds hold out whole school x grade cells: a model must carry what it learnt about
    schools and grades to children it has not seen, which is what a reviewer guessing the arm
    from the sheet would do. (Holding out single children instead biases a balanced design
    below 0.5: taking a child out shifts its own cell's balance against it.) ``blind`` is True
    when the CI includes 0.5. With a handful of children the CI is wide and says little.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold

    y = (pd.Series(arm).to_numpy() == "high").astype(int)
    grade = pd.to_numeric(sheet["grade"], errors="coerce")
    cells = (
        sheet["school_code"].astype("string").fillna("?") + "|" + grade.astype("string").fillna("?")
    ).to_numpy()
    n_groups = len(set(cells))
    if min(y.sum(), len(y) - y.sum()) < 2 or n_groups < 2:
        return {
            "auc": math.nan,
            "ci_low": math.nan,
            "ci_high": math.nan,
            "blind": True,
            "n": int(len(y)),
            "note": "too few children or cells to test",
        }
    X = (
        pd.concat(
            [
                pd.get_dummies(sheet["school_code"].astype("string").fillna("?"), prefix="school"),
                pd.get_dummies(grade.astype("string").fillna("?"), prefix="grade"),
                grade.fillna(grade.median() if grade.notna().any() else 0).rename("g"),
            ],
            axis=1,
        )
        .astype(float)
        .to_numpy()
    )
    pred = np.full(len(y), y.mean())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for train, test in GroupKFold(n_splits=min(5, n_groups)).split(X, y, cells):
            if 0 < y[train].sum() < len(train):
                model = LogisticRegression(C=1.0, max_iter=1000).fit(X[train], y[train])
                pred[test] = model.predict_proba(X[test])[:, 1]
    auc = _auc(y, pred)
    rng = np.random.default_rng(seed)
    reps = []
    for _ in range(int(n_boot)):
        idx = rng.integers(0, len(y), len(y))
        if 0 < y[idx].sum() < len(idx):
            reps.append(_auc(y[idx], pred[idx]))
    lo, hi = np.quantile(reps, [alpha / 2, 1 - alpha / 2]) if reps else (math.nan, math.nan)
    return {
        "auc": auc,
        "ci_low": float(lo),
        "ci_high": float(hi),
        "blind": bool(lo <= 0.5 <= hi),
        "n": int(len(y)),
    }
