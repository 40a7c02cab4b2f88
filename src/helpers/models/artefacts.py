"""The write step: every artefact of one target, ``metrics.json`` last (the make stamp).

``scores.parquet`` holds only eligible child-years: every backtest year scored by the model
trained before it, and the list year. ``risk_ratio`` is withheld (empty) when the
observed/expected check of the test years rejects the calibration.
"""

from __future__ import annotations

from dataclasses import dataclass

import joblib
import numpy as np
import pandas as pd

from helpers.io import atomic_path, write_csv, write_json, write_parquet, write_text
from helpers.models import explain
from helpers.models.settings import FitSettings
from helpers.models.steps import OriginRun, Prepared, count_text
from helpers.models.summary import Backtest, Diagnostics
from helpers.paths import ModelPaths

WITHHELD_NOTE = (
    "較正の検証で観測/予測比の95%信頼区間が1を含まないため、リスク比は表示しない "
    "(risk ratios withheld: the observed/expected CI of the test years excludes 1)"
)


@dataclass
class Fit:
    """Every step's result for one target (what ``write`` turns into artefacts)."""

    prep: Prepared
    runs: list[OriginRun]
    backtest: Backtest
    diagnostics: Diagnostics

    @property
    def final(self) -> OriginRun:
        """The list year's origin (the latest scored year)."""
        return self.runs[-1]

    @property
    def evaluated(self) -> OriginRun:
        """The latest evaluated origin (headline, diagnostics)."""
        return [r for r in self.runs if r.evaluation is not None][-1]


def scores_frame(fit: Fit) -> pd.DataFrame:
    """Every origin's scores (eligible child-years only), risk ratios withheld if calibration
    failed."""
    scores = pd.concat([r.scored.scores for r in fit.runs], ignore_index=True)
    if not fit.backtest.calibration_ok:
        scores["risk_ratio"] = np.nan
    return scores


def _write_models(fit: Fit, out: ModelPaths) -> None:
    run = fit.final
    models = run.fitted.models
    if "lightgbm" in models:
        write_text(models["lightgbm"].model_to_string(), out.lightgbm_model)
    if "logistic" in models:
        with atomic_path(out.logistic_model) as tmp:
            joblib.dump(models["logistic"], tmp)
    with atomic_path(out.calibrators) as tmp:
        joblib.dump(run.calib.calibrators, tmp)
    with atomic_path(out.reference_tree) as tmp:
        joblib.dump(run.fitted.tree, tmp)


def _write_tables(fit: Fit, out: ModelPaths, s: FitSettings) -> None:
    d, final, evaluated = fit.diagnostics, fit.final, fit.evaluated
    write_parquet(scores_frame(fit), out.scores)
    write_parquet(pd.concat([r.tuned.tuning for r in fit.runs], ignore_index=True), out.tuning)
    prep, tr = fit.prep, fit.prep.train_mask(evaluated.origin)
    nodes = evaluated.fitted.tree.nodes(prep.X[tr], prep.y[tr], s.alpha)
    for frame, path in (
        (evaluated.fitted.segments, out.segment_table),
        (nodes, out.reference_tree_nodes),
        (d.single, out.single_variable),
        (d.crosstab, out.crosstab_topk),
        (d.missed_table, out.missed_vs_caught),
        (d.stability, out.stability),
        (d.fairness, out.fairness),
        (d.subsets, out.subsets),
        (fit.backtest.deciles, out.calibration),
        (d.odds, out.odds_ratios),
        (fit.backtest.per_year, out.backtest),
        (d.year_to_year, out.year_to_year),
        (d.fold_to_fold, out.fold_to_fold),
    ):
        write_csv(frame, path)
    sc = final.scored
    if sc.explanation is not None and sc.explained_rows is not None:
        ids = sc.scores[["child_id", "fiscal_year"]].iloc[sc.explained_rows]
        shap_out = pd.concat(
            [ids.reset_index(drop=True), sc.explanation.astype("float32")], axis=1
        )  # the list and the sample
        write_parquet(shap_out, out.shap_values)
        sample = sc.explanation[sc.explained_sample]  # the year's importance: uniform sample only
        write_csv(explain.global_importance(sample, prep.labels_ja), out.shap_importance)


def explanation_source(run: OriginRun) -> str:
    """Which model's contributions the reasons and SHAP values are, in the chosen weighting."""
    primary = run.tuned.primary
    weighting = run.tuned.chosen[primary]["params"].get("weighting", "none")
    kind = (
        "重みなしモデル（unweighted model）"
        if weighting == "none"
        else f"重み付きモデル（class-weighted model, weighting={weighting}）"
    )
    how = (
        "LightGBM TreeSHAP"
        if primary == "lightgbm"
        else "ロジスティック回帰の係数×標準化値（logistic: coefficient x standardised value, exact "
        "linear SHAP）"
    )
    return f"{how}; {kind}の対数オッズ（log-odds, before calibration）"


def params_record(fit: Fit, s: FitSettings) -> dict:
    """params.json: what was chosen and how (enough to refit the same models)."""
    run = fit.final
    return {
        "target": fit.prep.target,
        "primary_model": run.tuned.primary,
        "chosen": run.tuned.chosen,
        "features": fit.prep.features,
        "calibration": run.calib.as_dict(run.tuned.primary),
        # probability = calibrator(score - offset): the log of the positive-class weight
        "calibration_offsets": run.fitted.offsets,
        "reference_tree": s.models.reference_tree.as_dict(),
        "seed": s.seed,
        "capacity": s.k,
        "num_threads": s.threads,
        "best_single_variable": run.fitted.best_single,
        "population": fit.prep.population.description,
        "scoring_year": run.origin.test_year,
        "train_years": run.origin.train_years,
        "backtest_chosen": {
            str(r.origin.test_year): {f: c["params"] for f, c in r.tuned.chosen.items()}
            for r in fit.runs
        },
        "shap_base_value": run.scored.explanation_base,
        "reason_codes_from": explanation_source(run),
    }


def _exclusions(prep: Prepared, year: int) -> dict[str, int]:
    rows = prep.panel[prep.panel["fiscal_year"].to_numpy(int) == year]
    table = prep.population.exclusions(rows)
    return dict(zip(table["exclusion"], table["children"].astype(int), strict=True))


def _test_block(fit: Fit) -> dict:
    run = fit.evaluated
    e, scores = run.evaluation, run.scored.scores
    assert e is not None
    year = run.origin.test_year
    return {
        "n_child_years": int(len(scores)),
        "n_evaluated": int(len(e.evs)),
        "unlabelled_excluded": int(scores["label"].isna().sum()),
        "events": int(e.y.sum()),
        "base_rate": float(e.y.mean()) if len(e.y) else None,
        "train_base_rate": run.fitted.base_rate_train,
        "panel_child_years": int((fit.prep.panel["fiscal_year"] == year).sum()),
        "population_excluded": _exclusions(fit.prep, year),
    }


def _warnings(fit: Fit, s: FitSettings) -> list[str]:
    warn = [*fit.prep.warnings]
    for r in fit.runs:
        warn += r.warnings
    warn += fit.backtest.warnings
    ye = fit.evaluated.evaluation.y if fit.evaluated.evaluation is not None else np.array([])
    if len(ye) and ye.sum() < 20:
        warn.append(
            f"テスト年度の事例は {count_text(ye.sum(), s)} 件のみ: 信頼区間は非常に広くなります "
            f"(test year has only {count_text(ye.sum(), s)} events; intervals are wide)"
        )
    return list(dict.fromkeys(warn))  # each once (origins share validation years)


def _notes(fit: Fit) -> list[str]:
    final = fit.final
    cal = final.calib
    notes = [
        f"対象（eligible population）: {fit.prep.population.description}",
        f"理由コード・SHAP値（reasons and SHAP values）: {explanation_source(final)}",
        f"較正（calibration）: {cal.method}"
        + (
            f"、切片は FY{cal.recalibrated_on} に合わせて再較正 (intercept recalibrated on "
            f"the most recent out-of-time year FY{cal.recalibrated_on})"
            if cal.recalibrated_on
            else ""
        ),
        "スコアは判断の補助であり、判断ではありません (scores support, never replace, a "
        "human assessment)",
    ]
    if not fit.backtest.calibration_ok:
        notes.insert(3, WITHHELD_NOTE)
    return notes


def metrics_record(fit: Fit, s: FitSettings) -> dict:
    """metrics.json: the headline figures with their CIs and everything the report quotes."""
    p, run, d, bt = fit.prep, fit.evaluated, fit.diagnostics, fit.backtest
    e = run.evaluation
    assert e is not None
    n_evaluated = sum(len(r.evaluation.evs) for r in fit.runs if r.evaluation is not None)
    label = p.labels_ja.get(run.fitted.best_single) if run.fitted.best_single else None
    yy = d.year_to_year
    return {
        "target": p.target,
        "k": s.k,
        "test_year": run.origin.test_year,
        "scoring_year": fit.final.origin.test_year,
        "train_years": run.origin.train_years,
        "years_labelled": p.years_labelled,
        "folds": run.origin.fold_info,
        "primary_model": run.tuned.primary,
        "population": p.population.record(n_evaluated),
        "test": _test_block(fit),
        "headline": e.headline,
        "comparisons": e.comparisons,
        "oracle": e.oracle,
        "backtest": bt.record,
        "tuning": run.tuned.chosen,
        "calibration": {
            **run.calib.as_dict(run.tuned.primary),
            **bt.calibration,
            "test_years": bt.record["test_years"],
        },
        "risk_ratio_withheld": not bt.calibration_ok,
        "missed": d.missed,
        "year_to_year": {
            "pairs": yy.to_dict("records"),
            "mean_jaccard": float(yy["jaccard"].mean()) if len(yy) else None,
            "note": "each year's list from the model trained before that year (out of time)",
        },
        "fold_to_fold": {
            "mean_jaccard": float(d.fold_to_fold["jaccard"].mean())
            if len(d.fold_to_fold)
            else None,
            "min_jaccard": float(d.fold_to_fold["jaccard"].min()) if len(d.fold_to_fold) else None,
        },
        "best_single_variable": run.fitted.best_single,
        "best_single_variable_label": label,
        "odds_ratio_note": d.odds_note,
        "warnings": _warnings(fit, s),
        "notes": _notes(fit),
    }  # no timings here: metrics must be identical for the same inputs, settings and seed


def write(fit: Fit, out: ModelPaths, s: FitSettings) -> dict:
    """Write every artefact of one target; metrics.json last (the make stamp). Returns metrics."""
    out.dir.mkdir(parents=True, exist_ok=True)
    _write_models(fit, out)
    _write_tables(fit, out, s)
    write_json(params_record(fit, s), out.params)
    metrics = metrics_record(fit, s)
    write_json(metrics, out.metrics)
    return metrics
