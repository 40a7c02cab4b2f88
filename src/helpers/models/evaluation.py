"""Honest evaluation of a ranked list at staff capacity k.

Staff review only k children, so every figure here is about the top k of a ranking: precision,
recall and lift at k with explicit tie handling (rare labels + tied scores make a single number
misleading), bootstrap confidence intervals, paired comparisons with the baselines, fairness by
group, list stability, and the temporal splitter that keeps test-year labels out of training.
Pure functions on arrays / DataFrames; the plot helpers take ``ax=None`` and return the Axes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from helpers import MimamoriError
from helpers.reports.disclosure import (
    Rules,
    pr_curve_from,
    precision_curve_from,
    visible_counts,
)
from helpers.reports.plotting import axes, hidden_bars, hidden_legend_handle

Ties = Literal["worst", "best", "mean"]


# --------------------------------------------------------------------------- temporal splits
def temporal_splits(
    years: Sequence[int], n_folds: int = 3, min_train_years: int = 1
) -> tuple[list[tuple[list[int], int]], int]:
    """Rolling-origin folds: train on years <= t-1, validate on t; the latest year is the test.

    Returns ``(folds, test_year)`` where ``folds`` is a list of ``(train_years, valid_year)``.
    The test year is never a validation year nor inside any fold's training years, so no
    test-year label can reach tuning. Fewer folds are returned when the years do not allow
    ``n_folds`` (each fold needs ``min_train_years`` earlier years).
    """
    ys = sorted({int(y) for y in years})
    if len(ys) < min_train_years + 2:
        raise MimamoriError(
            f"temporal_splits: need at least {min_train_years + 2} labelled fiscal years "
            f"(train, validate, test), got {ys}"
        )
    test_year = ys[-1]
    candidates = ys[min_train_years:-1]
    valid_years = candidates[-n_folds:] if n_folds > 0 else []
    folds = [([y for y in ys if y < v], v) for v in valid_years]
    return folds, test_year


def final_train_years(years: Sequence[int], test_year: int) -> list[int]:
    """Years the final model is fitted on: every labelled year before the test year."""
    return sorted({int(y) for y in years if int(y) < test_year})


# --------------------------------------------------------------------------- metrics at k
def _as_arrays(y, score) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=float)
    score = np.asarray(score, dtype=float)
    if y.shape != score.shape:
        raise MimamoriError(f"labels and scores differ in length ({y.shape} vs {score.shape})")
    if np.isnan(score).any():
        raise MimamoriError("scores contain NaN; rank missing scores explicitly before evaluating")
    if np.isnan(y).any():
        raise MimamoriError(
            "labels contain NaN; evaluate only child-years whose outcome is observed"
        )
    return y, score


def hits_at_k(
    y, score, k: int, ties: Ties = "worst", n_orderings: int | None = None, seed: int = 0
) -> float:
    """Number of positives among the k highest scores.

    Ties at the k-th score: ``worst`` puts tied negatives first, ``best`` tied positives first,
    ``mean`` is the average over ``n_orderings`` seeded random orderings of the tied group
    (``n_orderings=None``: its exact expectation, slots x positive share of the tied group).
    k larger than the list is cut to the list length.
    """
    y, score = _as_arrays(y, score)
    n = len(y)
    k = int(min(k, n))
    if k <= 0:
        return 0.0
    kth = np.partition(score, n - k)[n - k]  # k-th largest score
    above = score > kth
    tied = score == kth
    pos_above = float(y[above].sum())
    slots = k - int(above.sum())
    n_tie = int(tied.sum())
    pos_tie = float(y[tied].sum())
    if ties == "worst":
        return pos_above + max(0.0, slots - (n_tie - pos_tie))
    if ties == "best":
        return pos_above + min(float(slots), pos_tie)
    if ties != "mean":
        raise MimamoriError(f"ties must be worst, best or mean, not {ties!r}")
    if n_orderings is None or n_tie == slots:
        return pos_above + slots * pos_tie / n_tie
    rng = np.random.default_rng(seed)
    y_tied = y[tied]
    picks = [y_tied[rng.permutation(n_tie)[:slots]].sum() for _ in range(int(n_orderings))]
    return pos_above + float(np.mean(picks))


def precision_at_k(
    y, score, k: int, ties: Ties = "worst", n_orderings: int | None = None, seed: int = 0
) -> float:
    """Share of the top k that are true cases (k cut to the list length)."""
    n = len(np.asarray(y))
    kk = min(int(k), n)
    if kk <= 0:
        return float("nan")
    return hits_at_k(y, score, k, ties, n_orderings, seed) / kk


def recall_at_k(
    y, score, k: int, ties: Ties = "worst", n_orderings: int | None = None, seed: int = 0
) -> float:
    """Share of all true cases that the top k contains."""
    total = float(np.asarray(y, dtype=float).sum())
    if total == 0:
        return float("nan")
    return hits_at_k(y, score, k, ties, n_orderings, seed) / total


def lift_at_k(
    y, score, k: int, ties: Ties = "worst", n_orderings: int | None = None, seed: int = 0
) -> float:
    """Precision at k divided by the base rate (how many times better than a random list)."""
    base = float(np.asarray(y, dtype=float).mean()) if len(np.asarray(y)) else float("nan")
    if not base:
        return float("nan")
    return precision_at_k(y, score, k, ties, n_orderings, seed) / base


def precision_all_ties(y, score, k: int, n_orderings: int = 50, seed: int = 0) -> dict[str, float]:
    """Precision and recall at k under worst, best and random-ordering tie handling."""
    out = {}
    for ties in ("worst", "best", "mean"):
        h = hits_at_k(y, score, k, ties, n_orderings if ties == "mean" else None, seed)
        kk = min(int(k), len(np.asarray(y)))
        total = float(np.asarray(y, dtype=float).sum())
        out[f"precision_{ties}"] = h / kk if kk else float("nan")
        out[f"recall_{ties}"] = h / total if total else float("nan")
        out[f"hits_{ties}"] = h
    return out


def safe_average_precision(y, score) -> float:
    y = np.asarray(y)
    return float(average_precision_score(y, score)) if 0 < y.sum() < len(y) else float("nan")


def safe_roc_auc(y, score) -> float:
    y = np.asarray(y)
    return float(roc_auc_score(y, score)) if 0 < y.sum() < len(y) else float("nan")


def brier(y, prob) -> float:
    return float(brier_score_loss(np.asarray(y), np.clip(np.asarray(prob, dtype=float), 0, 1)))


def missing_last(score) -> np.ndarray:
    """Scores where a missing value (NaN or -inf) sits just below the lowest known score.

    The one rule for "no score": such child-years rank last, tied with each other, whatever
    the scale of the score (log-odds, a count, a probability). All missing: every value is 0.
    """
    s = np.array(score, dtype=float)
    bad = np.isnan(s) | np.isneginf(s)
    if bad.any():
        known = s[~bad]
        s[bad] = float(np.min(known)) - 1.0 if len(known) else 0.0
    return s


def rank_with_tiebreak(score, seed: int) -> np.ndarray:
    """1-based ranks by descending score, ties broken by a seeded random number (as the reference).

    Missing scores rank last (``missing_last``).
    """
    score = np.asarray(score, dtype=float)
    tb = np.random.default_rng(seed).random(len(score))
    order = np.lexsort((tb, -missing_last(score)))
    ranks = np.empty(len(score), dtype=np.int64)
    ranks[order] = np.arange(1, len(score) + 1)
    return ranks


# --------------------------------------------------------------------------- bootstrap
def bootstrap_ci(
    metric: Callable[..., float],
    arrays: Sequence[np.ndarray],
    n_boot: int = 500,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict[str, float]:
    """Point estimate and percentile bootstrap (1-alpha) CI of ``metric(*arrays)``.

    Child-years are resampled with replacement; all arrays are resampled with the same indices,
    so a metric of several scores (a paired difference) keeps the pairing.
    """
    arrays = [np.asarray(a) for a in arrays]
    n = len(arrays[0])
    point = float(metric(*arrays))
    rng = np.random.default_rng(seed)
    vals = np.empty(int(n_boot))
    for b in range(int(n_boot)):
        idx = rng.integers(0, n, n)
        vals[b] = metric(*[a[idx] for a in arrays])
    vals = vals[~np.isnan(vals)]
    if len(vals) == 0:
        lo = hi = float("nan")
    else:
        lo, hi = (float(v) for v in np.quantile(vals, [alpha / 2, 1 - alpha / 2]))
    return {"value": point, "ci_low": lo, "ci_high": hi, "n_boot": int(n_boot)}


def paired_hits_difference(
    y, score_a, score_b, k: int, n_boot: int = 500, alpha: float = 0.05, seed: int = 0
) -> dict[str, float]:
    """Hits in the top k of ranking a minus ranking b (tie mean), with a paired bootstrap CI:
    both rankings see the same resampled child-years in every replicate."""
    y = np.asarray(y, dtype=float)
    n = len(y)
    ra, rb = SortedRanking(y, score_a), SortedRanking(y, score_b)

    def hits(r, w):
        m = r.metrics(w, k)
        return m["precision_at_k"] * min(k, w.sum())

    def hits_many(r, W):
        return r.precision_many(W, k) * np.minimum(k, W.sum(axis=1))

    ones = np.ones(n)
    rng = np.random.default_rng(seed)
    diffs = [hits_many(ra, W) - hits_many(rb, W) for (W,) in boot_weights(rng, [n], int(n_boot))]
    d = np.concatenate(diffs) if diffs else np.array([])
    lo, hi = np.quantile(d, [alpha / 2, 1 - alpha / 2]) if len(d) else (np.nan, np.nan)
    return {
        "value": float(hits(ra, ones) - hits(rb, ones)),
        "ci_low": float(lo),
        "ci_high": float(hi),
        "n_boot": int(n_boot),
        "hits_a": float(hits(ra, ones)),
        "hits_b": float(hits(rb, ones)),
    }


class SortedRanking:
    """One ranking sorted once, so bootstrap replicates are count-weights, not re-sorts.

    Resampling child-years with replacement equals giving each one a multinomial count; tied
    scores (and bootstrap duplicates) form one group, handled as the mean over orderings.
    """

    def __init__(self, y, score, prob=None):
        y, score = _as_arrays(y, score)
        self.order = np.argsort(-score, kind="stable")
        s = score[self.order]
        self.y = y[self.order]
        self.prob = None if prob is None else np.asarray(prob, dtype=float)[self.order]
        new_group = np.r_[True, s[1:] != s[:-1]] if len(s) else np.array([], bool)
        self.starts = np.flatnonzero(new_group)

    def hits(self, w: np.ndarray, k: int) -> float:
        """Expected hits in the top k (tie mean) for count weights ``w`` (original row order).

        ``y`` may be fractional (a true probability): then this is the expected number of true
        cases in the list, the noise-free counterpart of the realised hits.
        """
        w = np.asarray(w, dtype=float)[self.order]
        gw = np.add.reduceat(w, self.starts)
        pw = np.add.reduceat(w * self.y, self.starts)
        cum_w = np.cumsum(gw)
        kk = min(float(k), float(cum_w[-1]) if len(cum_w) else 0.0)
        if kk <= 0:
            return 0.0
        g = min(int(np.searchsorted(cum_w, kk, side="left")), len(gw) - 1)
        before_w = cum_w[g] - gw[g]
        before_p = float(pw[:g].sum())
        return before_p + (kk - before_w) * (pw[g] / gw[g] if gw[g] else 0.0)

    def metrics(self, w: np.ndarray, k: int) -> dict[str, float]:
        """precision/recall/lift at k (tie mean), AP, ROC AUC and Brier for count weights ``w``
        given in the original row order."""
        w = np.asarray(w, dtype=float)[self.order]
        pw = np.add.reduceat(w * self.y, self.starts)
        nw = np.add.reduceat(w * (1 - self.y), self.starts)
        gw = pw + nw
        P, N, W = pw.sum(), nw.sum(), gw.sum()
        cum_w = np.cumsum(gw)
        cum_p = np.cumsum(pw)
        kk = min(float(k), W)
        g = int(np.searchsorted(cum_w, kk, side="left")) if kk > 0 else 0
        g = min(g, len(gw) - 1)
        before_w = cum_w[g] - gw[g]
        before_p = cum_p[g] - pw[g]
        hits = before_p + (kk - before_w) * (pw[g] / gw[g] if gw[g] else 0.0)
        out = {
            "precision_at_k": hits / kk if kk else np.nan,
            "recall_at_k": hits / P if P else np.nan,
            "lift_at_k": (hits / kk) / (P / W) if P and kk else np.nan,
        }
        if P and N:
            cum_n = np.cumsum(nw)
            n_below = N - cum_n
            out["roc_auc"] = float(np.sum(pw * (n_below + 0.5 * nw)) / (P * N))
            prec = cum_p / np.maximum(cum_w, 1e-300)
            out["average_precision"] = float(np.sum(prec * pw) / P)
        else:
            out["roc_auc"] = out["average_precision"] = np.nan
        if self.prob is not None:
            out["brier"] = float(np.sum(w * (np.clip(self.prob, 0, 1) - self.y) ** 2) / W)
        return out

    def _grouped(
        self, W: np.ndarray, n_groups: int | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per replicate (rows of ``W``, original row order): weights sorted, and the weight
        and positive weight of each tie group (``n_groups``: only the first that many groups,
        each summed exactly as over all of them)."""
        starts = self.starts if n_groups is None else self.starts[:n_groups]
        end = len(self.order) if n_groups is None or n_groups >= len(self.starts) else None
        end = self.starts[n_groups] if end is None else end
        w = np.asarray(W, dtype=float)[:, self.order[:end]]
        gw = np.add.reduceat(w, starts, axis=1)
        pw = np.add.reduceat(w * self.y[:end], starts, axis=1)
        return w, gw, pw

    @staticmethod
    def _cut(cum_w: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Per replicate: the list length (k cut to the total weight) and the tie group holding
        the k-th place (``searchsorted(side="left")`` row by row)."""
        kk = np.minimum(float(k), cum_w[:, -1])
        g = np.minimum((cum_w < kk[:, None]).sum(axis=1), cum_w.shape[1] - 1)
        return kk, g

    def _leading(self, W: np.ndarray, k: int) -> tuple[np.ndarray, ...]:
        """The leading tie groups that hold every replicate's top k: (list length, group of the
        k-th place, group weights, positive weights, cumulative weights).

        Count weights (bootstrap counts, ones) sum exactly, so the list length is ``min(k,
        total weight)`` whatever the order, and the groups after the one holding the k-th place
        never enter the figure: a prefix of the sorted rows (grown until it covers k in every
        replicate) gives the same numbers as all of them, at a fraction of the work."""
        kk = np.minimum(float(k), np.asarray(W, dtype=float).sum(axis=1))
        n_rows, n_all = max(4 * int(k), 256), len(self.starts)
        while True:
            n_groups = int(np.searchsorted(self.starts, n_rows, side="left"))
            n_groups = n_all if n_groups >= n_all else max(n_groups, 1)
            _, gw, pw = self._grouped(W, n_groups)
            cum_w = np.cumsum(gw, axis=1)
            if n_groups == n_all or bool(np.all(cum_w[:, -1] >= kk)):
                break
            n_rows *= 4
        g = np.minimum((cum_w < kk[:, None]).sum(axis=1), n_all - 1)
        return kk, g, gw, pw, cum_w

    def hits_many(self, W: np.ndarray, k: int) -> np.ndarray:
        """``hits`` for every row of a (replicates x rows) count-weight matrix at once."""
        if not len(self.starts):
            return np.zeros(len(W))
        kk, g, gw, pw, cum_w = self._leading(W, k)
        r = np.arange(len(W))
        before_w = cum_w[r, g] - gw[r, g]
        before_p = np.array([float(pw[i, : g[i]].sum()) for i in r])
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.where(gw[r, g] != 0, pw[r, g] / gw[r, g], 0.0)
        return np.where(kk > 0, before_p + (kk - before_w) * share, 0.0)

    def precision_many(self, W: np.ndarray, k: int) -> np.ndarray:
        """``metrics_many(W, k)["precision_at_k"]`` for 0/1 labels and count weights (the same
        numbers: every sum is of whole counts), from the leading tie groups only."""
        if not len(self.starts):
            return np.full(len(W), np.nan)
        kk, g, gw, pw, cum_w = self._leading(W, k)
        g = np.where(kk > 0, g, 0)
        r = np.arange(len(W))
        before_w = cum_w[r, g] - gw[r, g]
        before_p = np.cumsum(pw, axis=1)[r, g] - pw[r, g]
        with np.errstate(invalid="ignore", divide="ignore"):
            hits = before_p + (kk - before_w) * np.where(gw[r, g] != 0, pw[r, g] / gw[r, g], 0.0)
            return np.where(kk != 0, hits / kk, np.nan)

    def metrics_many(self, W: np.ndarray, k: int) -> dict[str, np.ndarray]:
        """``metrics`` for every row of a (replicates x rows) weight matrix at once."""
        w = np.asarray(W, dtype=float)[:, self.order]
        pw = np.add.reduceat(w * self.y, self.starts, axis=1)
        nw = np.add.reduceat(w * (1 - self.y), self.starts, axis=1)
        gw = pw + nw
        P, N, Wt = pw.sum(axis=1), nw.sum(axis=1), gw.sum(axis=1)
        cum_w, cum_p = np.cumsum(gw, axis=1), np.cumsum(pw, axis=1)
        kk, g = self._cut(cum_w, k)
        g = np.where(kk > 0, g, 0)
        r = np.arange(len(W))
        before_w = cum_w[r, g] - gw[r, g]
        before_p = cum_p[r, g] - pw[r, g]
        with np.errstate(invalid="ignore", divide="ignore"):
            hits = before_p + (kk - before_w) * np.where(gw[r, g] != 0, pw[r, g] / gw[r, g], 0.0)
            out = {
                "precision_at_k": np.where(kk != 0, hits / kk, np.nan),
                "recall_at_k": np.where(P != 0, hits / P, np.nan),
                "lift_at_k": np.where((P != 0) & (kk != 0), (hits / kk) / (P / Wt), np.nan),
            }
            both = (P != 0) & (N != 0)
            n_below = N[:, None] - np.cumsum(nw, axis=1)
            auc = np.sum(pw * (n_below + 0.5 * nw), axis=1) / (P * N)
            prec = cum_p / np.maximum(cum_w, 1e-300)
            out["roc_auc"] = np.where(both, auc, np.nan)
            out["average_precision"] = np.where(both, np.sum(prec * pw, axis=1) / P, np.nan)
            if self.prob is not None:
                sq = (np.clip(self.prob, 0, 1) - self.y) ** 2
                # row by row: the same summation order as ``metrics`` (identical figures)
                out["brier"] = np.array([np.sum(row * sq) for row in w]) / Wt
        return out


def boot_weights(
    rng: np.random.Generator, sizes: Sequence[int], n_boot: int, cells: int = 2_000_000
):
    """Bootstrap count weights in blocks of replicates, one (block x n) matrix per size: each
    replicate resamples every size in turn, the same draws as one replicate at a time (so the
    figures do not depend on the block size); blocks bound the memory at prefecture size."""
    per = max(1, cells // max(1, int(sum(sizes))))
    done = 0
    while done < n_boot:
        c = min(per, n_boot - done)
        blocks = [np.empty((c, n)) for n in sizes]
        for b in range(c):
            for block, n in zip(blocks, sizes, strict=True):
                block[b] = np.bincount(rng.integers(0, n, n), minlength=n)
        yield blocks
        done += c


def headline_metrics(
    y,
    score,
    k: int,
    prob=None,
    n_boot: int = 500,
    alpha: float = 0.05,
    seed: int = 0,
    n_orderings: int = 50,
) -> dict:
    """Every headline figure for one ranking, each with a bootstrap CI, plus tie variants.

    Precision/recall/lift use the mean over tie orderings; worst and best cases sit beside them.
    """
    y, score = _as_arrays(y, score)
    n = len(y)
    out: dict = {"n": int(n), "events": int(y.sum()), "k": int(min(k, n))}
    out["base_rate"] = float(y.mean()) if n else float("nan")
    out.update(precision_all_ties(y, score, k, n_orderings, seed))
    ranking = SortedRanking(y, score, prob)
    point = ranking.metrics(np.ones(n), k)
    rng = np.random.default_rng(seed)
    blocks = [ranking.metrics_many(W, k) for (W,) in boot_weights(rng, [n], int(n_boot))]
    for key, value in point.items():
        vals = np.concatenate([blk[key] for blk in blocks]) if blocks else np.array([])
        vals = vals[~np.isnan(vals)]
        lo, hi = np.quantile(vals, [alpha / 2, 1 - alpha / 2]) if len(vals) else (np.nan, np.nan)
        out[key] = {
            "value": float(value),
            "ci_low": float(lo),
            "ci_high": float(hi),
            "n_boot": int(n_boot),
        }
    return out


# --------------------------------------------------------------------------- curves
def precision_curve(y, score, ks: Sequence[int]) -> pd.DataFrame:
    """Precision and recall at each k (mean over tie orderings), for the precision-vs-k plot."""
    rows = [
        {
            "k": int(k),
            "precision": precision_at_k(y, score, k, "mean"),
            "recall": recall_at_k(y, score, k, "mean"),
        }
        for k in ks
    ]
    return pd.DataFrame(rows)


def calibration_table(y, prob, n_bins: int = 10) -> pd.DataFrame:
    """Mean predicted vs observed rate in quantile bins of the predicted probability."""
    df = pd.DataFrame({"y": np.asarray(y, dtype=float), "p": np.asarray(prob, dtype=float)})
    df["bin"] = pd.qcut(df["p"].rank(method="first"), n_bins, labels=False, duplicates="drop")
    out = (
        df.groupby("bin")
        .agg(n=("y", "size"), events=("y", "sum"), predicted=("p", "mean"), observed=("y", "mean"))
        .reset_index()
    )
    out["events"] = out["events"].astype(int)
    return out


# --------------------------------------------------------------------------- comparisons
def topk_mask(score, k: int, seed: int) -> np.ndarray:
    """Boolean mask of the top k by score with a seeded random tie-break."""
    return rank_with_tiebreak(score, seed) <= k


def crosstab_topk(
    frame: pd.DataFrame,
    in_top: np.ndarray,
    columns: Sequence[str],
    labels: dict[str, str] | None = None,
) -> pd.DataFrame:
    """Each feature's mean (prevalence for binary) in the top k vs the rest, with Welch's t-test."""
    in_top = np.asarray(in_top, dtype=bool)
    x = frame[list(columns)].astype(float)
    a, b = x[in_top], x[~in_top]
    ma, mb = a.mean(), b.mean()
    va, vb = a.var(ddof=1), b.var(ddof=1)
    na, nb = a.notna().sum(), b.notna().sum()
    se = np.sqrt(va / na + vb / nb)
    t = (ma - mb) / se
    dof = (va / na + vb / nb) ** 2 / ((va / na) ** 2 / (na - 1) + (vb / nb) ** 2 / (nb - 1))
    p = 2 * stats.t.sf(np.abs(t), dof)
    out = pd.DataFrame(
        {
            "feature": list(columns),
            "label_ja": [(labels or {}).get(c, c) for c in columns],
            "mean_top": ma.values,
            "mean_rest": mb.values,
            "ratio": (ma / mb.replace(0, np.nan)).values,
            "difference": (ma - mb).values,
            "n_top": na.values.astype(int),
            "n_rest": nb.values.astype(int),
            "welch_t": t.values,
            "p_value": p.values if hasattr(p, "values") else p,
        }
    )
    out["q_value"] = benjamini_hochberg(out["p_value"].to_numpy(float))
    out["abs_t"] = out["welch_t"].abs()
    return out.sort_values("abs_t", ascending=False).drop(columns="abs_t").reset_index(drop=True)


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values) over the tests that have a p-value;
    many features compared at once, so a raw p < 0.05 means little on its own."""
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(p, dtype=float)
    q = np.full(len(p), np.nan)
    ok = ~np.isnan(p)
    if ok.any():
        q[ok] = multipletests(p[ok], method="fdr_bh")[1]
    return q


def jaccard_sets(a: set, b: set) -> float:
    """|a & b| / |a | b| of two lists of children (NaN when both are empty)."""
    union = a | b
    return len(a & b) / len(union) if union else float("nan")


def jaccard(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    union = (a | b).sum()
    return float((a & b).sum() / union) if union else float("nan")


def list_stability(
    scores: pd.DataFrame, model_col: str, baseline_cols: Sequence[str], k: int, seed: int
) -> pd.DataFrame:
    """Jaccard overlap of the top-k lists and Spearman rank correlation, model vs each baseline."""
    top_model = topk_mask(scores[model_col].to_numpy(float), k, seed)
    rows = []
    for col in baseline_cols:
        s = scores[col].to_numpy(float)
        rho = stats.spearmanr(scores[model_col], s, nan_policy="omit").statistic
        rows.append(
            {
                "compared_with": col,
                "jaccard_top_k": jaccard(top_model, topk_mask(s, k, seed)),
                "overlap_top_k": int((top_model & topk_mask(s, k, seed)).sum()),
                "spearman": float(rho),
            }
        )
    return pd.DataFrame(rows)


def year_to_year_overlap(
    prev: pd.DataFrame, curr: pd.DataFrame, score_col: str, k: int, seed: int
) -> dict:
    """How many children of last year's top-k list are on this year's (Jaccard on child_id)."""
    ids_prev = set(prev.loc[topk_mask(prev[score_col].to_numpy(float), k, seed), "child_id"])
    ids_curr = set(curr.loc[topk_mask(curr[score_col].to_numpy(float), k, seed), "child_id"])
    union = ids_prev | ids_curr
    return {
        "overlap": len(ids_prev & ids_curr),
        "jaccard": len(ids_prev & ids_curr) / len(union) if union else float("nan"),
    }


def subset_precision(
    scores: pd.DataFrame,
    group_col: str,
    score_cols: Sequence[str],
    k: int,
    label_col: str = "label",
    min_events: int = 10,
    alpha: float = 0.05,
) -> pd.DataFrame:
    """Precision re-thresholded within each subset, each with its proportional share of
    capacity; the first score column (the model) with a Wilson CI on its hits. Subsets with
    fewer than ``min_events`` true cases are flagged "too few to judge"."""
    from statsmodels.stats.proportion import proportion_confint

    n_all = len(scores)
    rows = []
    for g, part in scores.groupby(group_col, dropna=False, observed=True):
        k_g = max(1, round(k * len(part) / n_all))
        y = part[label_col].to_numpy(float)
        row = {group_col: g, "n": len(part), "events": int(y.sum()), "k_group": k_g}
        for i, col in enumerate(score_cols):
            prec = precision_at_k(y, part[col].to_numpy(float), k_g, "mean")
            row[f"precision_{col}"] = prec
            if i == 0:
                kk = min(k_g, len(part))
                lo, hi = proportion_confint(prec * kk, kk, alpha=alpha, method="wilson")
                row["ci_low"], row["ci_high"] = float(lo), float(hi)
        row["too_few_events"] = row["events"] < min_events
        row["judgement"] = (
            "事例が少なく判定しない（too few to judge）" if row["too_few_events"] else ""
        )
        rows.append(row)
    return pd.DataFrame(rows)


def fairness_table(
    scores: pd.DataFrame,
    group_col: str,
    in_top: np.ndarray,
    tolerance: Sequence[float] = (0.8, 1.25),
    min_group_events: int = 10,
    label_col: str = "label",
) -> pd.DataFrame:
    """Selection rate, precision, FPR and FNR per group, with disparity ratios vs the largest group.

    Groups with fewer than ``min_group_events`` true cases are flagged and not judged: their
    ratios are too noisy to call a disparity.
    """
    df = pd.DataFrame(
        {
            "group": scores[group_col].astype("string").fillna("不明").to_numpy(),
            "y": scores[label_col].to_numpy(float),
            "sel": np.asarray(in_top, bool),
        }
    )
    df["tp"] = df["y"].eq(1) & df["sel"]
    df["fp"] = df["y"].eq(0) & df["sel"]
    df["fn"] = df["y"].eq(1) & ~df["sel"]
    g = df.groupby("group").agg(
        n=("y", "size"),
        events=("y", "sum"),
        selected=("sel", "sum"),
        tp=("tp", "sum"),
        fp=("fp", "sum"),
        fn=("fn", "sum"),
    )
    g["events"] = g["events"].astype(int)
    g["selection_rate"] = g["selected"] / g["n"]
    g["precision"] = g["tp"] / g["selected"].replace(0, np.nan)
    g["fpr"] = g["fp"] / (g["n"] - g["events"]).replace(0, np.nan)
    g["fnr"] = g["fn"] / g["events"].replace(0, np.nan)
    ref = g["n"].idxmax()
    lo, hi = tolerance
    g["too_few_events"] = g["events"] < min_group_events
    verdicts = []
    for metric in ("selection_rate", "precision", "fpr", "fnr"):
        g[f"{metric}_ratio"] = g[metric] / g.loc[ref, metric] if g.loc[ref, metric] else np.nan
    for name, row in g.iterrows():
        if name == ref:
            verdicts.append("基準群（reference）")
        elif row["too_few_events"]:
            verdicts.append("事例が少なく判定しない（too few events）")
        else:
            ratios = row[["selection_rate_ratio", "precision_ratio", "fpr_ratio", "fnr_ratio"]]
            ok = ratios.dropna().between(lo, hi).all()
            verdicts.append(
                "許容範囲内（within tolerance）" if ok else "要確認（outside tolerance）"
            )
    g["verdict"] = verdicts
    g.insert(0, "attribute", group_col)
    return g.reset_index()


def missed_cases(
    scores: pd.DataFrame, in_top: np.ndarray, rank_col: str = "rank", label_col: str = "label"
) -> dict:
    """The true cases left out of the top k: how many, and where they ranked."""
    pos = scores[label_col].to_numpy(float) == 1
    missed = pos & ~np.asarray(in_top, bool)
    ranks = scores.loc[missed, rank_col].to_numpy(float)
    q = np.quantile(ranks, [0.25, 0.5, 0.75]).tolist() if len(ranks) else [np.nan] * 3
    return {
        "events": int(pos.sum()),
        "caught": int((pos & np.asarray(in_top, bool)).sum()),
        "missed": int(missed.sum()),
        "missed_rank_q25": q[0],
        "missed_rank_median": q[1],
        "missed_rank_q75": q[2],
        "n_ranked": int(len(scores)),
    }


# --------------------------------------------------------------------------- plots
def plot_splits(folds: list[tuple[list[int], int]], test_year: int, years: Sequence[int], ax=None):
    """Which years train, validate and test in each fold (and the final fit)."""
    ax = axes(ax, (7, 4))
    years = sorted(years)
    rows = [(f"検証{i + 1}（fold {i + 1}）", tr, v) for i, (tr, v) in enumerate(folds)]
    rows.append(("最終（final）", [y for y in years if y < test_year], test_year))
    colors = {"train": "#4c72b0", "valid": "#dd8452", "test": "#c44e52", "unused": "#dddddd"}
    for i, (name, tr, v) in enumerate(rows):
        for y in years:
            kind = (
                "train"
                if y in tr
                else "test"
                if (y == v and name.startswith("最終"))
                else "valid"
                if y == v
                else "unused"
            )
            ax.barh(i, 0.9, left=y - 0.45, color=colors[kind])
    ax.set_yticks(range(len(rows)), [r[0] for r in rows])
    ax.set_xticks(years)
    ax.invert_yaxis()
    from matplotlib.patches import Patch

    ax.legend(
        [Patch(color=c) for c in colors.values()],
        ["学習（train）", "検証（validate）", "テスト（test）", "未使用（unused）"],
        loc="upper left",
        bbox_to_anchor=(1.0, 1.0),
        fontsize=8,
    )
    ax.set_xlabel("年度（fiscal year）")
    ax.set_title("時系列分割（temporal splits）")
    return ax


def plot_headline(table: pd.DataFrame, k: int, rules: Rules, ax=None):
    """Precision at k with 95% CI for each list (columns: list, value, ci_low, ci_high); a list
    with fewer than T+1 hits in its top k is a grey hatched band (no value, no interval)."""
    ax = axes(ax, (7, 4))
    x = np.arange(len(table))
    v = table["value"].to_numpy(float)
    err = np.vstack([v - table["ci_low"].to_numpy(float), table["ci_high"].to_numpy(float) - v])
    band, small = visible_counts(np.round(v * k), rules)
    ax.bar(x[~small], v[~small], color="#4c72b0")
    hidden_bars(ax, x[small], band[small] / k, 0.8)
    ax.errorbar(
        x[~small],
        v[~small],
        yerr=np.nan_to_num(np.clip(err[:, ~small], 0, None)),
        fmt="none",
        color="black",
        capsize=4,
    )
    if small.any():
        ax.legend(handles=[hidden_legend_handle(rules)], fontsize=8)
    ax.set_xticks(x, table["list"], rotation=15, ha="right")
    ax.set_ylabel(f"上位{k}人の適合率（precision@{k}）")
    ax.set_title("上位k人に含まれる真の事例の割合（95% CI）")
    return ax


def plot_backtest(per_year: pd.DataFrame, k: int, rules: Rules, ax=None):
    """Per test year: realised precision@k with its CI, expected under the true probabilities
    and the oracle's (synthetic city), and the chosen candidate's validation precision. A year
    whose list holds 1..T true cases has no realised point (it would show that count)."""
    ax = axes(ax, (7, 4))
    x = per_year["test_year"].to_numpy(int)
    v = per_year["precision_at_k"].to_numpy(float)
    err = np.vstack(
        [
            v - per_year["precision_ci_low"].to_numpy(float),
            per_year["precision_ci_high"].to_numpy(float) - v,
        ]
    )
    _, small = visible_counts(np.round(v * k), rules)
    ax.errorbar(
        x[~small],
        v[~small],
        yerr=np.clip(np.nan_to_num(err[:, ~small]), 0, None),
        fmt="o",
        capsize=4,
        color="#4c72b0",
        label="実績（realised, 95% CI）",
    )
    for col, style, name in (
        ("expected_precision_at_k", "s--", "期待値（expected, true p）"),
        ("oracle_expected_precision_at_k", "^:", "理論上限（oracle, expected）"),
        ("validation_precision_at_k", "x-.", "検証年度（validation）"),
    ):
        if col in per_year.columns:
            ax.plot(x, per_year[col].to_numpy(float), style, label=name)
    ax.set_xticks(x)
    ax.set_xlabel("テスト年度（test year）")
    ax.set_ylabel(f"上位{k}人の適合率（precision@{k}）")
    ax.set_title("年度別の適合率（backtest: each year out of time）")
    ax.legend(fontsize=8)
    return ax


def plot_precision_curve(curves: dict[str, pd.DataFrame], k: int, rules: Rules, ax=None):
    """Precision vs list length for each ranking, staff capacity marked; each curve starts at
    the first list length whose hits reach T+1 (earlier points would show a count 1..T)."""
    ax = axes(ax, (7, 4))
    for name, c in curves.items():
        c = precision_curve_from(c, rules)
        ax.plot(c["k"], c["precision"], label=name)
    ax.axvline(k, color="grey", ls="--", label=f"対応可能数 k={k}（capacity）")
    ax.set_xlabel("リストの長さ（list length k）")
    ax.set_ylabel("適合率（precision@k）")
    ax.legend(fontsize=8)
    ax.set_title("リスト長と適合率（precision vs k）")
    return ax


def plot_pr_curve(curves: dict[str, tuple[np.ndarray, np.ndarray]], rules: Rules, ax=None):
    """Precision-recall curves: name -> (y, score), each starting after its first T+1 true
    cases (the start of a PR curve tells whether the top-ranked children are true cases)."""
    ax = axes(ax, (7, 4))
    for name, (y, s) in curves.items():
        if 0 < np.sum(y) < len(y):
            p, r = pr_curve_from(y, s, rules)
            ax.plot(r, p, label=name)
    ax.set_xlabel("再現率（recall）")
    ax.set_ylabel("適合率（precision）")
    ax.legend(fontsize=8)
    ax.set_title("適合率-再現率曲線（PR curve）")
    return ax


def plot_calibration(table: pd.DataFrame, ax=None):
    """Observed vs predicted yearly probability per bin (table from calibration_table)."""
    ax = axes(ax, (7, 4))
    ax.plot(table["predicted"], table["observed"], "o-", label="モデル（model）")
    top = float(max(table["predicted"].max(), table["observed"].max()) or 1.0)
    ax.plot([0, top], [0, top], ls="--", color="grey", label="完全な較正（perfect）")
    ax.set_xlabel("予測確率（predicted probability）")
    ax.set_ylabel("観測割合（observed rate）")
    ax.legend(fontsize=8)
    ax.set_title("較正プロット（calibration）")
    return ax


def plot_tuning(tuning: pd.DataFrame, ax=None):
    """Each candidate's mean validation precision@k vs its fold-to-fold std, chosen ones marked."""
    ax = axes(ax, (7, 4))
    summ = (
        tuning.groupby(["family", "candidate"])
        .agg(
            mean=("precision_at_k", "mean"), std=("precision_at_k", "std"), chosen=("chosen", "max")
        )
        .reset_index()
    )
    for fam, part in summ.groupby("family"):
        ax.scatter(part["std"], part["mean"], label=fam, alpha=0.7)
        ch = part[part["chosen"]]
        ax.scatter(ch["std"], ch["mean"], marker="*", s=200, color="red")
    ax.set_xlabel("年度間の標準偏差（std across folds）")
    ax.set_ylabel("平均適合率（mean precision@k）")
    ax.legend(fontsize=8)
    ax.set_title("ハイパーパラメータ候補（tuning candidates; ★ = chosen）")
    return ax


# --------------------------------------------------------------------------- report tables
LIST_LABELS = {
    "model": "モデル（model）",
    "lightgbm": "LightGBM",
    "logistic": "ロジスティック回帰（logistic）",
    "best_single_variable": "最良の単一変数（best single variable）",
    "yc_rule_score": "ヤングケアラー該当数（rule score）",
    "reference_tree": "参照決定木（reference tree）",
    "oracle": "真の確率（oracle, synthetic）",
}


def headline_table(
    metrics: dict,
    names: Sequence[str] = ("model", "best_single_variable", "yc_rule_score", "oracle"),
) -> pd.DataFrame:
    """Precision@k with its 95% CI (and the tie range) for the headline lists, from metrics.json."""
    rows = []
    for name in names:
        h = metrics["headline"].get(name)
        if h is None:
            continue
        p = h["precision_at_k"]
        rows.append(
            {
                "list": LIST_LABELS.get(name, name),
                "key": name,
                "value": p["value"],
                "ci_low": p["ci_low"],
                "ci_high": p["ci_high"],
                "worst_case": h["precision_worst"],
                "best_case": h["precision_best"],
                "lift": h["lift_at_k"]["value"],
            }
        )
    return pd.DataFrame(rows)


def metrics_table(metrics: dict) -> pd.DataFrame:
    """Every list's test-year metrics as 'value [low, high]' strings, one row per list."""

    def fmt(d: dict) -> str:
        return f"{d['value']:.3f} [{d['ci_low']:.3f}, {d['ci_high']:.3f}]"

    rows = []
    for name, h in metrics["headline"].items():
        row = {"list": LIST_LABELS.get(name, name)}
        for key in (
            "precision_at_k",
            "recall_at_k",
            "lift_at_k",
            "average_precision",
            "roc_auc",
            "brier",
        ):
            row[key] = fmt(h[key]) if key in h else ""
        row["precision_worst/best"] = f"{h['precision_worst']:.3f} / {h['precision_best']:.3f}"
        row["recall_worst/best"] = f"{h['recall_worst']:.3f} / {h['recall_best']:.3f}"
        rows.append(row)
    return pd.DataFrame(rows)


def comparison_table(metrics: dict) -> pd.DataFrame:
    """Paired bootstrap differences in precision@k (model minus baseline)."""
    k = metrics["k"]
    rows = []
    for name, d in metrics.get("comparisons", {}).items():
        base = name.removeprefix("model_vs_")
        rows.append(
            {
                "compared_with": LIST_LABELS.get(base, base),
                "precision_difference": d["value"] / k,
                "ci_low": d["ci_low"] / k,
                "ci_high": d["ci_high"] / k,
                "judgement": (
                    "モデルが上回る（model better）"
                    if d["ci_low"] > 0
                    else "モデルが下回る（model worse）"
                    if d["ci_high"] < 0
                    else "差は不確か（CI includes 0）"
                ),
            }
        )
    return pd.DataFrame(rows)


def count_text(n: int | float | None, threshold: int | None) -> str:
    """A count for running text, small counts shown as '<10' like the tables."""
    if n is None or (isinstance(n, float) and np.isnan(n)):
        return "—"
    n = int(round(n))
    if threshold and 0 < n <= threshold:
        return f"<{threshold + 1}"
    return f"{n:,}"
