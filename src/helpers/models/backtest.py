"""Pooling a rolling-origin backtest, and checking calibration where it matters.

One test year carries a lot of luck: a year with more events than its true probabilities
imply flatters every list. The backtest makes each of the last N labelled years a test year
for a model trained and tuned only on the years before it; the headline pools those years
(total hits / total list places) with a bootstrap CI that resamples child-years within each
year. On the synthetic city every figure is also computed in **expected hits under the true
probabilities** (noise-free), and the oracle share comes from expected hits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from helpers.models.evaluation import SortedRanking
from helpers.models.evaluation import boot_weights as bt_weights


@dataclass
class YearData:
    """One test year's evaluated child-years: labels, true probabilities, every list's score."""

    test_year: int
    y: np.ndarray
    p_true: np.ndarray | None
    scores: dict[str, np.ndarray]


def _ci(values: np.ndarray, point: float, alpha: float) -> dict[str, float]:
    v = values[~np.isnan(values)]
    lo, hi = np.quantile(v, [alpha / 2, 1 - alpha / 2]) if len(v) else (np.nan, np.nan)
    return {"value": float(point), "ci_low": float(lo), "ci_high": float(hi)}


Rankings = dict[str, list[SortedRanking | None]]


def _rankings(years: list[YearData], truth: bool) -> Rankings:
    """Every list sorted once per year (by its score; hits counted in labels or true p)."""
    out: Rankings = {}
    for name in years[0].scores:
        out[name] = [
            SortedRanking(yd.p_true if truth else yd.y, yd.scores[name])
            if not truth or yd.p_true is not None
            else None
            for yd in years
        ]
    if truth and all(yd.p_true is not None for yd in years):
        out["oracle"] = [SortedRanking(yd.p_true, yd.p_true) for yd in years]
    return out


def _hits(rankings: Rankings, blocks: list[np.ndarray], k: int) -> dict[str, np.ndarray]:
    """Per list, hits (realised, or expected under the truth) in each year's top k: an array
    (years x replicates) for one block of weights per year (replicates x that year's rows)."""
    c = len(blocks[0])
    return {
        name: np.array(
            [
                r.hits_many(W, k) if r is not None else np.full(c, np.nan)
                for r, W in zip(rs, blocks, strict=True)
            ],
            dtype=float,
        )
        for name, rs in rankings.items()
    }


def _summaries(
    hits: dict[str, np.ndarray], exp: dict[str, np.ndarray], places: float, baselines: Sequence[str]
) -> dict[str, np.ndarray]:
    """The figures of a block of replicates (or of the point estimate: one replicate)."""
    out = {f"precision:{n}": h.sum(axis=0) / places for n, h in hits.items()}
    out.update({f"expected:{n}": h.sum(axis=0) / places for n, h in exp.items()})
    for b in baselines:
        if b in hits:
            out[f"diff:{b}"] = (hits["model"] - hits[b]).mean(axis=0)
        if b in exp and "model" in exp:
            out[f"expdiff:{b}"] = (exp["model"] - exp[b]).mean(axis=0)
    if "oracle" in exp:
        total = exp["oracle"].sum(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            out["share"] = np.where(total > 0, exp["model"].sum(axis=0) / total, np.nan)
    for n, h in hits.items():
        for i, v in enumerate(h):
            out[f"year{i}:{n}"] = v
    return out


def pooled(
    years: list[YearData],
    k: int,
    baselines: Sequence[str],
    n_boot: int = 500,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict[str, dict[str, float]]:
    """Pooled precision@k (realised and expected), paired differences and the oracle share,
    each with a bootstrap CI (child-years resampled within each test year, all lists see the
    same replicate). Keys: ``precision:<list>``, ``expected:<list>``, ``diff:<baseline>`` (mean
    hits per list, model minus baseline), ``expdiff:<baseline>``, ``share``,
    ``year<i>:<list>`` (hits in year i)."""
    real, true = _rankings(years, truth=False), _rankings(years, truth=True)
    ones = [np.ones((1, len(yd.y))) for yd in years]
    places = float(sum(min(k, len(yd.y)) for yd in years))
    point = {
        key: float(v[0])
        for key, v in _summaries(
            _hits(real, ones, k), _hits(true, ones, k), places, baselines
        ).items()
    }
    if "share" in point and np.isnan(point["share"]):
        del point["share"]  # no expected hits for the oracle: no share
    rng = np.random.default_rng(seed)
    reps: dict[str, list[np.ndarray]] = {key: [] for key in point}
    for blocks in bt_weights(rng, [len(yd.y) for yd in years], int(n_boot)):
        rep = _summaries(_hits(real, blocks, k), _hits(true, blocks, k), places, baselines)
        for key in reps:
            reps[key].append(rep[key])
    return {
        key: _ci(np.concatenate(reps[key]) if reps[key] else np.array([]), value, alpha)
        for key, value in point.items()
    }


# ------------------------------------------------------------------------- calibration
def poisson_ci(observed: float, alpha: float = 0.05) -> tuple[float, float]:
    """Exact (Garwood) CI for a Poisson count."""
    lo = stats.chi2.ppf(alpha / 2, 2 * observed) / 2 if observed > 0 else 0.0
    hi = stats.chi2.ppf(1 - alpha / 2, 2 * (observed + 1)) / 2
    return float(lo), float(hi)


def poisson_p(observed: float, expected: float) -> float:
    """Two-sided exact Poisson p-value of ``observed`` events when ``expected`` were due."""
    if expected <= 0:
        return float("nan")
    lower = stats.poisson.cdf(observed, expected)
    upper = stats.poisson.sf(observed - 1, expected)
    return float(min(1.0, 2 * min(lower, upper)))


def observed_expected(y: np.ndarray, prob: np.ndarray, alpha: float = 0.05) -> dict:
    """Observed vs expected events (sum of predicted probabilities), O/E with an exact CI;
    ``ok`` is whether the CI includes 1 (calibration not contradicted by the data)."""
    o, e = float(np.sum(y)), float(np.sum(prob))
    lo, hi = poisson_ci(o, alpha)
    oe = o / e if e > 0 else float("nan")
    ci_lo, ci_hi = (lo / e, hi / e) if e > 0 else (float("nan"), float("nan"))
    ok = bool(e > 0 and ci_lo <= 1 <= ci_hi)
    return {
        "observed": o,
        "expected": e,
        "oe": oe,
        "oe_ci_low": ci_lo,
        "oe_ci_high": ci_hi,
        "ok": ok,
    }


def oe_by_decile(
    y: np.ndarray, prob: np.ndarray, alpha: float = 0.05, n_bins: int = 10
) -> pd.DataFrame:
    """Observed/expected per decile of the predicted probability, each with an exact CI."""
    df = pd.DataFrame({"y": np.asarray(y, float), "p": np.asarray(prob, float)})
    if not len(df):
        return pd.DataFrame(
            columns=[
                "decile",
                "n",
                "events",
                "expected",
                "predicted",
                "observed",
                "oe",
                "oe_ci_low",
                "oe_ci_high",
                "ok",
            ]
        )
    df["decile"] = (
        pd.qcut(df["p"].rank(method="first"), n_bins, labels=False, duplicates="drop") + 1
    )
    rows = []
    for d, part in df.groupby("decile"):
        check = observed_expected(part["y"].to_numpy(), part["p"].to_numpy(), alpha)
        rows.append(
            {
                "decile": int(d),
                "n": len(part),
                "events": int(part["y"].sum()),
                "expected": check["expected"],
                "predicted": float(part["p"].mean()),
                "observed": float(part["y"].mean()),
                "oe": check["oe"],
                "oe_ci_low": check["oe_ci_low"],
                "oe_ci_high": check["oe_ci_high"],
                "ok": check["ok"],
            }
        )
    return pd.DataFrame(rows)


def hosmer_lemeshow(table: pd.DataFrame) -> float:
    """Hosmer-Lemeshow p-value from an ``oe_by_decile`` table (groups - 2 degrees of freedom)."""
    if len(table) < 3:
        return float("nan")
    n, o, e = (table[c].to_numpy(float) for c in ("n", "events", "expected"))
    var = e * (1 - np.clip(e / np.maximum(n, 1), 0, 1))
    chi = float(np.sum(np.where(var > 0, (o - e) ** 2 / np.maximum(var, 1e-12), 0.0)))
    return float(stats.chi2.sf(chi, len(table) - 2))
