"""Compare two archived runs of one target on the same child-years (report 07).

The question a contractor asks after changing a feature, a window or a tuning budget: did the
list get better, beyond noise, and what changed? Both runs' test-year scores are joined on
(child_id, fiscal_year); the difference in hits in the top k (new minus base) gets a *paired*
bootstrap CI: every replicate resamples the same child-years for both rankings (within each
fiscal year when the scores hold several, pooled over them). The verdict reads the CI: above 0
"better", below 0 "worse", otherwise "no detectable difference". Runs of another target, with
other test years, another list length or other test child-years are refused with the reason.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from helpers import MimamoriError
from helpers.config import Settings
from helpers.paths import Paths, RunPaths, paths
from helpers.runs import ledger as L

KEY = ["child_id", "fiscal_year"]
SCORE_COLUMNS = ("child_id", "fiscal_year", "score", "rank", "label", "known")
BETTER, SAME, WORSE = "better", "no detectable difference", "worse"
VERDICT_JA = {
    BETTER: "改善（better）",
    SAME: "差は検出されず（no detectable difference）",
    WORSE: "悪化（worse）",
}


# --------------------------------------------------------------------------------- loading
@dataclass
class RunData:
    """One archived run, read and checked."""

    row: pd.Series
    paths: RunPaths
    metrics: dict[str, Any]
    params: dict[str, Any]
    scores: pd.DataFrame
    catalogue: pd.DataFrame

    @property
    def run_id(self) -> str:
        return str(self.row["run_id"])

    @property
    def k(self) -> int:
        return int(self.metrics["k"])

    @property
    def features(self) -> list[str]:
        return [str(f) for f in self.params.get("features", [])]

    @property
    def test_years(self) -> list[int]:
        bt = self.metrics.get("backtest")
        years = bt.get("test_years") if isinstance(bt, dict) else None
        return sorted(int(y) for y in (years or [self.metrics["test_year"]]))

    def evaluated(self) -> pd.DataFrame:
        """Child-years the headline is measured on: ranked, labelled, not already known
        (and eligible, when the scores say)."""
        s = self.scores
        keep = s["label"].notna() & (s["known"].fillna(0) != 1) & s["rank"].notna()
        if "eligible" in s.columns:
            keep &= s["eligible"].fillna(False).astype(bool)
        return s.loc[keep].reset_index(drop=True)


def _read_json(path: Any, run_id: str) -> dict[str, Any]:
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError) as exc:
        raise MimamoriError(
            f"run {run_id}: archived file {path.name} is unreadable ({exc})"
        ) from None


def load_run(P: Paths, ledger: pd.DataFrame, ref: str, target: str) -> RunData:
    """The archived run ``ref`` of ``target``; a one-line error naming the run and what is
    missing otherwise."""
    row = L.resolve(ledger, ref, target)
    run_id = str(row["run_id"])
    if row["target"] != target:
        raise MimamoriError(f"run {run_id} is a run of target {row['target']!r}, not {target!r}")
    run = P.run(run_id)
    if row["status"] == L.PRUNED:
        raise MimamoriError(
            f"run {run_id}: its folder was deleted by retention (runs.keep_last "
            "in config/runs.yaml); only its ledger row remains"
        )
    if not run.dir.is_dir():
        raise MimamoriError(f"run {run_id}: archived folder {run.dir} is missing")
    for name in ("metrics", "params", "scores", "feature_catalogue"):
        if not getattr(run, name).exists():
            raise MimamoriError(
                f"run {run_id}: archived file {getattr(run, name).name} is "
                f"missing ({getattr(run, name)})"
            )
    scores = pd.read_parquet(run.scores)
    lacking = [c for c in SCORE_COLUMNS if c not in scores.columns]
    if lacking:
        raise MimamoriError(f"run {run_id}: archived scores.parquet lacks column(s) {lacking}")
    return RunData(
        row,
        run,
        _read_json(run.metrics, run_id),
        _read_json(run.params, run_id),
        scores,
        pd.read_csv(run.feature_catalogue),
    )


def _years(years: list[int]) -> str:
    return ", ".join(f"FY{y}" for y in years)


def check_comparable(base: RunData, new: RunData) -> pd.DataFrame:
    """Refuse runs that do not answer the same question; return the joined test child-years."""
    b, n = base.run_id, new.run_id
    if base.row["target"] != new.row["target"]:
        raise MimamoriError(
            f"runs {b} and {n} are of different targets "
            f"({base.row['target']} vs {new.row['target']})"
        )
    if base.test_years != new.test_years:
        raise MimamoriError(
            f"runs {b} and {n} were tested on different years "
            f"({_years(base.test_years)} vs {_years(new.test_years)}); compare "
            "runs with the same test years"
        )
    if base.k != new.k:
        raise MimamoriError(
            f"runs {b} and {n} use different list lengths (k = {base.k} vs "
            f"{new.k}, run.capacity); precision@k is not comparable"
        )
    eb, en = base.evaluated(), new.evaluated()
    joined = eb[KEY + ["label", "score", "rank"]].merge(
        en[KEY + ["label", "score", "rank"]],
        on=KEY,
        how="outer",
        suffixes=("_base", "_new"),
        indicator=True,
    )
    only_b = int((joined["_merge"] == "left_only").sum())
    only_n = int((joined["_merge"] == "right_only").sum())
    if only_b or only_n:
        raise MimamoriError(
            f"runs {b} and {n} have different test populations ({only_b} "
            f"child-years only in {b}, {only_n} only in {n}; a population, "
            "panel or data change): a paired comparison needs the same children"
        )
    differ = int((joined["label_base"] != joined["label_new"]).sum())
    if differ:
        raise MimamoriError(
            f"runs {b} and {n} disagree on the outcome of {differ} test "
            "child-years (the label definition or data changed)"
        )
    joined = joined.drop(columns=["_merge", "label_new"]).rename(columns={"label_base": "label"})
    return joined.sort_values(KEY).reset_index(drop=True)


# ------------------------------------------------------------------------- paired bootstrap
class TopK:
    """One ranking sorted once; hits in the top k for bootstrap count-weights (ties: mean)."""

    def __init__(self, y: np.ndarray, score: np.ndarray):
        score = np.where(np.isnan(score), -np.inf, score)  # missing scores rank last
        self.order = np.argsort(-score, kind="stable")
        s = score[self.order]
        self.y = np.asarray(y, dtype=float)[self.order]
        new_group = np.r_[True, s[1:] != s[:-1]] if len(s) else np.array([], bool)
        self.starts = np.flatnonzero(new_group)

    def hits(self, w: np.ndarray, k: int) -> float:
        """Expected true cases among the first k (a tied group cut by k counts pro rata)."""
        w = np.asarray(w, dtype=float)[self.order]
        if not len(w):
            return 0.0
        gw = np.add.reduceat(w, self.starts)
        pw = np.add.reduceat(w * self.y, self.starts)
        cum_w, cum_p = np.cumsum(gw), np.cumsum(pw)
        kk = min(float(k), float(cum_w[-1]))
        if kk <= 0:
            return 0.0
        g = min(int(np.searchsorted(cum_w, kk, side="left")), len(gw) - 1)
        before_w, before_p = cum_w[g] - gw[g], cum_p[g] - pw[g]
        return float(before_p + (kk - before_w) * (pw[g] / gw[g] if gw[g] else 0.0))


@dataclass
class PairedResult:
    """Hits of both runs and their paired difference (new - base), per year and pooled."""

    per_year: pd.DataFrame
    pooled: dict[str, float]
    replicates: np.ndarray = field(repr=False)


def paired_difference(
    joined: pd.DataFrame, k: int, n_boot: int, alpha: float, seed: int
) -> PairedResult:
    """Paired bootstrap of the difference in hits@k, resampling child-years within each year.

    The top k is each run's list as staff get it (by ``rank``), so the hits are whole numbers.

    Every replicate gives both runs the same multinomial counts, so identical rankings differ
    by exactly 0 in every replicate.
    """
    rng = np.random.default_rng(seed)
    years = sorted(int(y) for y in joined["fiscal_year"].unique())
    rows, reps = [], np.zeros((int(n_boot), len(years)))
    for j, year in enumerate(years):
        part = joined[joined["fiscal_year"] == year]
        y = part["label"].to_numpy(float)
        # the lists staff get: each run's rank (ties already broken by the seeded tie-break)
        rb = TopK(y, -part["rank_base"].to_numpy(float))
        rn = TopK(y, -part["rank_new"].to_numpy(float))
        ones = np.ones(len(part))
        hb, hn = round(rb.hits(ones, k)), round(rn.hits(ones, k))
        for b in range(int(n_boot)):
            w = np.bincount(rng.integers(0, len(part), len(part)), minlength=len(part))
            reps[b, j] = rn.hits(w, k) - rb.hits(w, k)
        lo, hi = np.quantile(reps[:, j], [alpha / 2, 1 - alpha / 2]) if n_boot else (np.nan,) * 2
        kk = min(k, len(part))
        rows.append(
            {
                "fiscal_year": year,
                "n": len(part),
                "events": int(y.sum()),
                "k": kk,
                "hits_base": hb,
                "hits_new": hn,
                "difference": hn - hb,
                "ci_low": float(lo),
                "ci_high": float(hi),
                "precision_base": hb / kk if kk else np.nan,
                "precision_new": hn / kk if kk else np.nan,
            }
        )
    per_year = pd.DataFrame(rows)
    total = reps.sum(axis=1)
    lo, hi = np.quantile(total, [alpha / 2, 1 - alpha / 2]) if n_boot else (np.nan, np.nan)
    k_all = float(per_year["k"].sum())
    pooled = {
        "n": float(per_year["n"].sum()),
        "events": float(per_year["events"].sum()),
        "k": k_all,
        "hits_base": float(per_year["hits_base"].sum()),
        "hits_new": float(per_year["hits_new"].sum()),
        "difference": float(per_year["difference"].sum()),
        "ci_low": float(lo),
        "ci_high": float(hi),
        "n_boot": float(n_boot),
    }
    pooled["precision_base"] = pooled["hits_base"] / k_all if k_all else np.nan
    pooled["precision_new"] = pooled["hits_new"] / k_all if k_all else np.nan
    return PairedResult(per_year, pooled, total)


def verdict(ci_low: float, ci_high: float) -> str:
    """better / worse only when the CI of the difference excludes 0."""
    if ci_low > 0:
        return BETTER
    if ci_high < 0:
        return WORSE
    return SAME


# ------------------------------------------------------------------------------ comparison
@dataclass
class Comparison:
    """Everything report 07 shows about two runs (new compared with base)."""

    cfg: Settings
    target: str
    base: RunData
    new: RunData
    joined: pd.DataFrame
    paired: PairedResult
    verdict: str
    alpha: float

    @property
    def k(self) -> int:
        return self.base.k

    @property
    def test_year(self) -> int:
        return int(self.new.metrics["test_year"])

    def summary(self) -> dict[str, Any]:
        """Plain data for ``data/runs/comparisons/<base>__<new>.json``."""
        return {
            "target": self.target,
            "base": self.base.run_id,
            "new": self.new.run_id,
            "k": self.k,
            "test_years": self.new.test_years,
            "verdict": self.verdict,
            "pooled": self.paired.pooled,
            "per_year": self.paired.per_year.to_dict(orient="records"),
            "alpha": self.alpha,
        }


def default_target(ledger: pd.DataFrame, new: str) -> str:
    """The target of ``new`` when it names a run, else of the newest archived run."""
    if new.strip() in ("latest", "previous"):
        return str(ledger["target"].iloc[-1])
    return str(L.resolve(ledger, new)["target"])


def compare_runs(cfg: Settings, base: str, new: str, target: str | None = None) -> Comparison:
    """Load, check and compare two archived runs of ``target`` (references as in
    :func:`helpers.runs.ledger.resolve`; no target: that of ``new``)."""
    P = paths(cfg)
    ledger = L.read_ledger(P)
    if not len(ledger):
        raise MimamoriError(f"{P.runs_ledger}: no archived runs yet; run `make models` first")
    target = target or default_target(ledger, new)
    if target not in cfg.run.targets:
        raise MimamoriError(f"--target {target!r}: not one of run.targets {list(cfg.run.targets)}")
    rb, rn = load_run(P, ledger, base, target), load_run(P, ledger, new, target)
    joined = check_comparable(rb, rn)
    c = cfg.runs.compare
    paired = paired_difference(joined, rb.k, int(c.n_boot), float(c.alpha), int(cfg.run.seed))
    v = verdict(paired.pooled["ci_low"], paired.pooled["ci_high"])
    return Comparison(cfg, target, rb, rn, joined, paired, v, float(c.alpha))
