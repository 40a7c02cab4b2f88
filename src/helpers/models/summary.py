"""After the origins: pool the backtest, check calibration, and diagnose the list.

``backtest`` turns the per-origin evaluations into the headline (pooled precision@k with its
CI, realised and - on the synthetic city - expected under the true probabilities), a per-year
table with the validation-year figure of the chosen candidate, pooled paired comparisons and
the observed/expected calibration check. ``diagnose`` looks at the list itself: who is in it,
who was missed, how stable it is from year to year and from fold to fold.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from helpers.models import backtest as bt
from helpers.models import evaluation as ev
from helpers.models.baselines import odds_ratios
from helpers.models.data import numeric_column
from helpers.models.families import margin
from helpers.models.settings import FitSettings
from helpers.models.steps import BASELINES, Origin, OriginRun, Prepared, fit_rows


# ----------------------------------------------------------------------------- backtest
@dataclass
class Backtest:
    """The pooled backtest (metrics.json ``backtest``), per-year table and calibration check."""

    record: dict
    per_year: pd.DataFrame
    calibration: dict
    deciles: pd.DataFrame
    warnings: list[str] = field(default_factory=list)

    @property
    def calibration_ok(self) -> bool:
        return bool(self.calibration.get("ok"))


def _year_data(runs: list[OriginRun]) -> list[bt.YearData]:
    """Every evaluated year with the lists all years share (the oracle only if every year
    has it)."""
    years = [r.evaluation.year_data for r in runs if r.evaluation is not None]
    common = [n for n in years[0].scores if all(n in yd.scores for yd in years)]
    truth = all(yd.p_true is not None for yd in years)
    return [
        bt.YearData(
            yd.test_year, yd.y, yd.p_true if truth else None, {n: yd.scores[n] for n in common}
        )
        for yd in years
    ]


def _per_year(
    runs: list[OriginRun], years: list[bt.YearData], pooled: dict, s: FitSettings
) -> pd.DataFrame:
    rows = []
    evaluated = [r for r in runs if r.evaluation is not None]
    for i, (run, yd) in enumerate(zip(evaluated, years, strict=True)):
        places = min(s.k, len(yd.y))
        hits = pooled[f"year{i}:model"]
        row = {
            "test_year": yd.test_year,
            "n_evaluated": len(yd.y),
            "events": int(yd.y.sum()),
            "primary_model": run.tuned.primary,
            "precision_at_k": hits["value"] / places if places else np.nan,
            "precision_ci_low": hits["ci_low"] / places if places else np.nan,
            "precision_ci_high": hits["ci_high"] / places if places else np.nan,
            "validation_precision_at_k": run.tuned.validation_precision,
        }
        if yd.p_true is not None:
            ones = np.ones(len(yd.y))
            row["expected_precision_at_k"] = (
                ev.SortedRanking(yd.p_true, yd.scores["model"]).hits(ones, s.k) / places
            )
            row["oracle_expected_precision_at_k"] = float(
                np.sort(yd.p_true)[::-1][: s.k].sum() / places
            )
            row["true_expected_events"] = float(yd.p_true.sum())
            row["events_poisson_p"] = bt.poisson_p(yd.y.sum(), float(yd.p_true.sum()))
        assert run.evaluation is not None
        prob = run.evaluation.evs["probability"].to_numpy(float)
        if np.isfinite(prob).all():
            check = bt.observed_expected(yd.y, prob, s.alpha)
            row.update(
                {
                    "predicted_events": check["expected"],
                    "oe": check["oe"],
                    "oe_ci_low": check["oe_ci_low"],
                    "oe_ci_high": check["oe_ci_high"],
                }
            )
        rows.append(row)
    return pd.DataFrame(rows)


def _comparisons(pooled: dict, k: int) -> dict:
    out = {}
    for b in BASELINES:
        if f"diff:{b}" not in pooled:
            continue
        d = pooled[f"diff:{b}"]
        rec = {
            "value": d["value"],
            "ci_low": d["ci_low"],
            "ci_high": d["ci_high"],
            "unit": f"hits per list of {k} (mean over test years)",
        }
        if f"expdiff:{b}" in pooled:
            e = pooled[f"expdiff:{b}"]
            rec.update(
                {
                    "expected_value": e["value"],
                    "expected_ci_low": e["ci_low"],
                    "expected_ci_high": e["ci_high"],
                }
            )
        out[f"model_vs_{b}"] = rec
    return out


def _calibration(runs: list[OriginRun], s: FitSettings) -> tuple[dict, pd.DataFrame]:
    """O/E over the pooled test years (and its deciles): is the yearly probability right?"""
    evs = [r.evaluation.evs for r in runs if r.evaluation is not None]
    y = np.concatenate([e["label"].to_numpy(float) for e in evs])
    prob = np.concatenate([e["probability"].to_numpy(float) for e in evs])
    if not np.isfinite(prob).all() or not len(y):
        return {
            "ok": False,
            "test_observed": float(y.sum()),
            "test_expected": None,
            "oe": None,
            "oe_ci_low": None,
            "oe_ci_high": None,
            "note": "確率が推定できないため検証できません (no probabilities to check)",
        }, pd.DataFrame()
    check = bt.observed_expected(y, prob, s.alpha)
    deciles = bt.oe_by_decile(y, prob, s.alpha)
    return {
        "test_observed": check["observed"],
        "test_expected": check["expected"],
        "oe": check["oe"],
        "oe_ci_low": check["oe_ci_low"],
        "oe_ci_high": check["oe_ci_high"],
        "ok": check["ok"],
        "hosmer_lemeshow_p": bt.hosmer_lemeshow(deciles),
        "deciles_outside": int((~deciles["ok"]).sum()) if len(deciles) else 0,
    }, deciles


def backtest(runs: list[OriginRun], s: FitSettings) -> Backtest:
    """Pool the evaluated origins: headline, per-year table, comparisons, calibration."""
    years = _year_data(runs)
    pooled = bt.pooled(years, s.k, BASELINES, s.n_boot, s.alpha, s.seed)
    lists = {
        n: {
            "precision_at_k": pooled[f"precision:{n}"],
            **(
                {"expected_precision_at_k": pooled[f"expected:{n}"]}
                if f"expected:{n}" in pooled
                else {}
            ),
        }
        for n in years[0].scores
    }
    head = {"precision_at_k": pooled["precision:model"], "lists": lists}
    if "expected:model" in pooled:
        head["expected_precision_at_k"] = pooled["expected:model"]
    if "share" in pooled:
        head["oracle_expected_share"] = pooled["share"]
        head["oracle_expected_precision_at_k"] = pooled["expected:oracle"]
    per_year = _per_year(runs, years, pooled, s)
    calibration, deciles = _calibration(runs, s)
    calibration["per_year"] = per_year[
        [
            c
            for c in ("test_year", "events", "predicted_events", "oe", "oe_ci_low", "oe_ci_high")
            if c in per_year.columns
        ]
    ].to_dict("records")
    record = {
        "test_years": [yd.test_year for yd in years],
        "pooled": head,
        "per_year": per_year.to_dict("records"),
        "comparisons": _comparisons(pooled, s.k),
    }
    warn = []
    if not calibration["ok"] and calibration.get("oe") is not None:
        warn.append(
            f"較正の不一致: 検証年度の観測/予測 {calibration['oe']:.2f}"
            f"（95%CI {calibration['oe_ci_low']:.2f}–{calibration['oe_ci_high']:.2f}）は1を"
            "含まない。リスク比は表示しない (calibration fails in the test years: observed/"
            "expected CI excludes 1; risk ratios withheld)"
        )
    return Backtest(record, per_year, calibration, deciles, warn)


# ----------------------------------------------------------------------------- diagnose
@dataclass
class Diagnostics:
    """What the report shows beside the headline: who is in the list and who was missed."""

    single: pd.DataFrame
    crosstab: pd.DataFrame
    missed: dict
    missed_table: pd.DataFrame
    stability: pd.DataFrame
    year_to_year: pd.DataFrame
    fold_to_fold: pd.DataFrame
    fairness: pd.DataFrame
    subsets: pd.DataFrame
    odds: pd.DataFrame
    odds_note: str


def _single_test_precision(
    single: pd.DataFrame, test_eval: pd.DataFrame, y: np.ndarray, k: int
) -> pd.DataFrame:
    """Test-year precision of every single-variable list, for information only."""
    if not len(single):
        return single
    single = single.copy()
    single["test_precision_at_k"] = [
        ev.precision_at_k(y, np.nan_to_num(numeric_column(test_eval, f), nan=0.0), k, "mean")
        for f in single["feature"]
    ]
    return single


def top_k_ids(scores: pd.DataFrame, k: int, seed: int, col: str = "score") -> set:
    return set(scores.loc[ev.topk_mask(scores[col].to_numpy(float), k, seed), "child_id"])


def year_to_year(runs: list[OriginRun], s: FitSettings) -> pd.DataFrame:
    """Overlap of consecutive years' lists, each built by the model trained before its year
    (out of time), among the children eligible in both years."""
    rows = []
    for a, b in itertools.pairwise(runs):
        sa, sb = a.scored.scores, b.scored.scores
        both = set(sa["child_id"]) & set(sb["child_id"])
        top_a = top_k_ids(sa, s.k, s.seed)
        top_b = top_k_ids(sb, s.k, s.seed)
        rows.append(
            {
                "from_year": a.origin.test_year,
                "to_year": b.origin.test_year,
                "eligible_both_years": len(both),
                "overlap": len(top_a & top_b),
                "jaccard": ev.jaccard_sets(top_a, top_b),
                "still_eligible_of_list": len(top_a & both),
            }
        )
    return pd.DataFrame(
        rows,
        columns=[
            "from_year",
            "to_year",
            "eligible_both_years",
            "overlap",
            "jaccard",
            "still_eligible_of_list",
        ],
    )


def fold_to_fold(prep: Prepared, run: OriginRun, s: FitSettings) -> pd.DataFrame:
    """How much the list depends on the training years: the chosen primary candidate refitted
    on each fold's training years (and the final model) ranks the list year; Jaccard of every
    pair of top-k lists."""
    family = run.tuned.primary
    params = run.tuned.chosen[family]["params"]
    Xt, ids = run.scored.Xt, run.scored.scores["child_id"]
    lists = {f"FY{max(tr)}まで（train to FY{max(tr)}）": (tr, None) for tr, _ in run.origin.folds}
    lists[f"最終（final, train to FY{max(run.origin.train_years)}）"] = (
        run.origin.train_years,
        run.fitted.models[family],
    )
    for i, fold_model in enumerate(run.tuned.fold_models.get(family, [])):
        name = list(lists)[i]  # the tuning fit of the chosen candidate on that fold
        lists[name] = (lists[name][0], fold_model)
    tops = {}
    for name, (train_years, model) in lists.items():
        if model is None:
            tr = np.isin(prep.year, train_years)
            if not 0 < prep.y[tr].sum() < tr.sum():
                continue  # no event in these training years: no model to compare
            model = fit_rows(family, prep, tr, params, s)
        frame = pd.DataFrame({"child_id": ids, "score": margin(model, Xt)})
        tops[name] = top_k_ids(frame, s.k, s.seed)
    return pd.DataFrame(
        [
            {
                "list_a": a,
                "list_b": b,
                "overlap": len(tops[a] & tops[b]),
                "jaccard": ev.jaccard_sets(tops[a], tops[b]),
            }
            for a, b in itertools.combinations(tops, 2)
        ],
        columns=["list_a", "list_b", "overlap", "jaccard"],
    )


def _fairness(evs: pd.DataFrame, in_top: np.ndarray, s: FitSettings) -> pd.DataFrame:
    f = s.models.fairness
    tables = [
        ev.fairness_table(evs, g, in_top, f.tolerance, int(f.min_group_events))
        for g in f.groups
        if g in evs.columns
    ]
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()


def _missed(
    prep: Prepared,
    evs: pd.DataFrame,
    evs_feat: pd.DataFrame,
    y: np.ndarray,
    in_top: np.ndarray,
    s: FitSettings,
) -> tuple[dict, pd.DataFrame]:
    pos = y == 1
    missed = ev.missed_cases(
        evs.assign(rank_eval=ev.rank_with_tiebreak(evs["score"].to_numpy(), s.seed)),
        in_top,
        rank_col="rank_eval",
    )
    table = (
        ev.crosstab_topk(
            evs_feat[pos].reset_index(drop=True), ~in_top[pos], prep.features, prep.labels_ja
        )
        if 0 < (pos & ~in_top).sum() < pos.sum()
        else pd.DataFrame()
    )
    return missed, table


def odds(prep: Prepared, origin: Origin, s: FitSettings) -> tuple[pd.DataFrame, str]:
    """The yc_ items' odds ratios on the origin's training years (and a note)."""
    items = [c for c in prep.features if c.startswith("yc_") and c != "yc_rule_score"]
    if not any(c.startswith("yc_") for c in prep.features):
        return pd.DataFrame(), "no yc_ items"
    return odds_ratios(prep.lab[prep.train_mask(origin)], items, prep.label, s.small)


def _subsets(evs: pd.DataFrame, base_cols: list[str], s: FitSettings) -> pd.DataFrame:
    col = s.models.subset_column
    if col not in evs.columns and "school_code" in evs.columns:
        col = "school_code"
    if col not in evs.columns:
        return pd.DataFrame()
    ranked = evs.assign(**{c: ev.missing_last(evs[c]) for c in base_cols})
    return ev.subset_precision(
        ranked,
        col,
        ["score", *base_cols],
        s.k,
        min_events=int(s.models.subset_min_events),
        alpha=s.alpha,
    )


def diagnose(
    prep: Prepared,
    runs: list[OriginRun],
    s: FitSettings,
    odds_table: tuple[pd.DataFrame, str] | None = None,
) -> Diagnostics:
    """Top k vs the rest, missed cases, list stability, fairness, subsets, odds (on the latest
    evaluated year; ``odds_table``: already computed) and the list's stability across years
    and folds."""
    run = [r for r in runs if r.evaluation is not None][-1]
    e = run.evaluation
    assert e is not None
    evs, y, k = e.evs, e.y, s.k
    in_top = ev.topk_mask(evs["score"].to_numpy(float), k, s.seed)
    test_eval = run.scored.test.loc[e.mask]
    evs_feat = pd.concat(
        [evs[["child_id", "fiscal_year"]], test_eval[prep.features].reset_index(drop=True)], axis=1
    )
    missed, missed_table = _missed(prep, evs, evs_feat, y, in_top, s)
    base_cols = [e.lists[n][0] for n in BASELINES if n in e.lists]
    ranked = evs.assign(**{c: ev.missing_last(evs[c]) for c in base_cols})
    odds_frame, odds_note = odds(prep, run.origin, s) if odds_table is None else odds_table
    return Diagnostics(
        single=_single_test_precision(run.fitted.single, test_eval, y, k),
        crosstab=ev.crosstab_topk(evs_feat, in_top, prep.features, prep.labels_ja),
        missed=missed,
        missed_table=missed_table,
        stability=ev.list_stability(ranked, "score", base_cols, k, s.seed),
        year_to_year=year_to_year(runs, s),
        fold_to_fold=fold_to_fold(prep, runs[-1], s),
        fairness=_fairness(evs, in_top, s),
        subsets=_subsets(evs, base_cols, s),
        odds=odds_frame,
        odds_note=odds_note,
    )
