"""One target's fit as steps: prepare -> tune -> fit final -> calibrate -> score -> evaluate ->
diagnose -> write.

Each step is a function of the earlier steps' typed results (dataclasses below) and the
``FitSettings``; none reads the configuration or the disk except ``write``. Adding a baseline
means one entry in ``fit_final`` and one in ``ranking_lists``; adding a metric, one line in
``evaluate`` or ``diagnose``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import joblib
import numpy as np
import pandas as pd
from sklearn.tree import DecisionTreeClassifier
from tqdm.auto import tqdm

from helpers import MimamoriError
from helpers import oracle as oracle_mod
from helpers.io import atomic_path, write_csv, write_json, write_parquet, write_text
from helpers.models import evaluation as ev
from helpers.models import explain
from helpers.models.baselines import (
    best_single_variable,
    fit_reference_tree,
    odds_ratios,
    segment_table,
    tree_leaf_rules,
)
from helpers.models.data import (
    INFO_COLUMNS,
    binary_features,
    catalogue_labels,
    check_inputs,
    feature_matrix,
    numeric_column,
)
from helpers.models.families import Calibrator, choose_calibration, fit_family, margin
from helpers.models.settings import FitSettings
from helpers.models.tuning import tune_family
from helpers.paths import ModelPaths

ORACLE_MAX_UNCOVERED = 0.01  # share of test child-years the oracle may lack
BASELINES = ("best_single_variable", "yc_rule_score", "reference_tree")


def count_text(n: float, s: FitSettings) -> str:
    """Counts in messages reach reports: small ones as "<10"."""
    return ev.count_text(n, s.small)


# ------------------------------------------------------------------------------ prepare
@dataclass
class Prepared:
    """The panel as arrays, the temporal design and who is usable (labelled, not known)."""

    target: str
    panel: pd.DataFrame
    features: list[str]
    labels_ja: dict[str, str]
    binary: list[str]
    X_all: np.ndarray
    is_known: np.ndarray
    usable: np.ndarray
    years_labelled: list[int]
    folds: list[tuple[list[int], int]]
    test_year: int
    train_years: list[int]
    fold_info: list[dict]
    warnings: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"label_{self.target}"

    @property
    def known(self) -> str:
        return f"known_{self.target}"

    @cached_property
    def lab(self) -> pd.DataFrame:  # the usable rows of the panel
        return self.panel.loc[self.usable].reset_index(drop=True)

    @cached_property
    def X(self) -> np.ndarray:
        return self.X_all[self.usable]

    @cached_property
    def y(self) -> np.ndarray:
        return self.panel[self.label].to_numpy(float)[self.usable].astype(int)

    @cached_property
    def year(self) -> np.ndarray:
        return self.panel["fiscal_year"].to_numpy(int)[self.usable]

    @cached_property
    def train_mask(self) -> np.ndarray:  # among usable rows
        return np.isin(self.year, self.train_years)


def _fold_info(
    y: np.ndarray, year: np.ndarray, folds: list, min_events: int, s: FitSettings
) -> tuple[list[dict], list[str]]:
    info, warn = [], []
    for tr, v in folds:
        e = int(y[year == v].sum())
        few = e < min_events
        info.append(
            {
                "train_years": tr,
                "valid_year": v,
                "n_train": int(np.isin(year, tr).sum()),
                "train_events": int(y[np.isin(year, tr)].sum()),
                "n_valid": int((year == v).sum()),
                "valid_events": e,
                "few_events_warning": few,
            }
        )
        if few:
            warn.append(
                f"検証年度 {v} の事例は {count_text(e, s)} 件（<{min_events}）: 適合率の推定は"
                f"不安定です (validation year {v} has {count_text(e, s)} events "
                f"< {min_events})"
            )
    return info, warn


def prepare(panel: pd.DataFrame, catalogue: pd.DataFrame, target: str, s: FitSettings) -> Prepared:
    """Check the inputs, build the feature matrix and the rolling-origin design."""
    features = check_inputs(panel, catalogue, target)
    panel = panel.reset_index(drop=True)
    is_known = panel[f"known_{target}"].fillna(0).to_numpy(float) == 1
    usable = panel[f"label_{target}"].notna().to_numpy() & ~is_known
    years = sorted(panel.loc[usable, "fiscal_year"].astype(int).unique().tolist())
    folds, test_year = ev.temporal_splits(years, int(s.models.tuning.n_folds))
    prep = Prepared(
        target,
        panel,
        features,
        catalogue_labels(catalogue),
        binary_features(catalogue, features),
        feature_matrix(panel, features),
        is_known,
        usable,
        years,
        folds,
        test_year,
        ev.final_train_years(years, test_year),
        [],
    )
    y, year = prep.y, prep.year
    if y[prep.train_mask].sum() == 0:
        raise MimamoriError(
            f"panel.parquet: label_{target}: no true cases in training years {prep.train_years}"
        )
    prep.fold_info, prep.warnings = _fold_info(
        y, year, folds, int(s.models.tuning.min_valid_events), s
    )
    return prep


# --------------------------------------------------------------------------------- tune
@dataclass
class Tuned:
    """Every candidate x fold score, the chosen candidate per family and the primary family."""

    tuning: pd.DataFrame
    chosen: dict[str, dict]
    valid_scores: dict[str, list[np.ndarray]]
    primary: str
    warnings: list[str] = field(default_factory=list)


def tune(prep: Prepared, s: FitSettings) -> Tuned:
    """Tune each family on the validation years only; pick the primary model."""
    tables, chosen, valid_scores, warn = [], {}, {}, []
    X, y, year = prep.X, prep.y, prep.year
    for family in s.models.tuning.families:
        res = tune_family(family, X, y, year, prep.folds, s, prep.features)
        tables.append(res.table)
        chosen[family] = info = res.info
        if info["budget_hit"]:
            warn.append(
                f"{family}: 時間制限で候補 {info['n_evaluated']}/{info['n_planned']} 個のみ評価 "
                f"(tuning stopped by time_budget_s after {info['n_evaluated']} of "
                f"{info['n_planned']} candidates; set models.tuning.time_budget_s: null for a "
                "machine-independent result)"
            )
        valid_scores[family] = res.valid_scores
    primary = s.models.primary_model
    if primary == "auto":
        primary = max(chosen, key=lambda f: (chosen[f]["objective"], f == "lightgbm"))
    return Tuned(pd.concat(tables, ignore_index=True), chosen, valid_scores, primary, warn)


# ---------------------------------------------------------------------------- fit final
@dataclass
class Fitted:
    """The final models (every year before the test year) and the baselines beside them."""

    models: dict[str, Any]
    tree: DecisionTreeClassifier
    segments: pd.DataFrame
    single: pd.DataFrame
    best_single: str | None
    base_rate_train: float


def fit_final(prep: Prepared, tuned: Tuned, s: FitSettings) -> Fitted:
    """Refit each chosen candidate on the training years; fit / choose the baselines there."""
    X, y, year, tr = prep.X, prep.y, prep.year, prep.train_mask
    models = {
        family: fit_family(
            family,
            X[tr],
            y[tr],
            info["params"],
            s.seed,
            s.threads,
            s.models.max_bin,
            s.models.logistic_max_iter,
            prep.features,
        )
        for family, info in tuned.chosen.items()
    }
    single = (
        best_single_variable(prep.lab, prep.binary, prep.label, prep.train_years, s.k)
        if prep.binary
        else pd.DataFrame()
    )
    tree = fit_reference_tree(X[tr], y[tr], s.models.reference_tree, s.seed)
    rules = tree_leaf_rules(tree, prep.features, prep.labels_ja, set(prep.binary))
    te = year == prep.test_year
    segments = segment_table(tree, X[tr], y[tr], rules, X[te], y[te])
    best = single["feature"].iloc[0] if len(single) else None
    return Fitted(models, tree, segments, single, best, float(y[tr].mean()))


# ---------------------------------------------------------------------------- calibrate
@dataclass
class Calibration:
    """Per family a calibrator from log-odds to a yearly probability (None: not estimable)."""

    calibrators: dict[str, Calibrator | None]
    method: str
    validation_events: int
    isotonic_min_events: int
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "method": self.method,
            "validation_events": self.validation_events,
            "isotonic_min_events": self.isotonic_min_events,
        }


def calibrate(prep: Prepared, tuned: Tuned, fitted: Fitted, s: FitSettings) -> Calibration:
    """Fit each family's calibrator on the chosen candidate's out-of-time validation scores."""
    y, year = prep.y, prep.year
    valid_y = np.concatenate([y[year == v] for _, v in prep.folds])
    events = int(valid_y.sum())
    iso_min = int(s.models.calibration.isotonic_min_events)
    method = choose_calibration(events, iso_min)
    out: dict[str, Calibrator | None] = {}
    warn = []
    for family in fitted.models:
        if 0 < valid_y.sum() < len(valid_y):
            out[family] = Calibrator(method).fit(
                np.concatenate(tuned.valid_scores[family]), valid_y
            )
        else:
            out[family] = None
            warn.append(f"{family}: 検証年度に事例がなく較正できません (no events to calibrate)")
    return Calibration(out, method, events, iso_min, warn)


# -------------------------------------------------------------------------------- score
@dataclass
class Scored:
    """The test year: every child-year's scores, rank, reasons, baselines and oracle."""

    scores: pd.DataFrame
    test: pd.DataFrame
    test_known: np.ndarray
    explanation: pd.DataFrame | None
    shap_base: float | None
    oracle_available: bool


def _score_frame(
    prep: Prepared,
    tuned: Tuned,
    fitted: Fitted,
    calib: Calibration,
    test: pd.DataFrame,
    Xt: np.ndarray,
    s: FitSettings,
) -> pd.DataFrame:
    scores = pd.DataFrame(
        {"child_id": test["child_id"].to_numpy(), "fiscal_year": test["fiscal_year"].to_numpy()}
    )
    for family, model in fitted.models.items():
        scores[f"score_{family}"] = margin(model, Xt)
        cal = calib.calibrators[family]
        scores[f"probability_{family}"] = cal.predict(scores[f"score_{family}"]) if cal else np.nan
    scores["score"] = scores[f"score_{tuned.primary}"]
    scores["probability"] = scores[f"probability_{tuned.primary}"]
    scores["risk_ratio"] = scores["probability"] / fitted.base_rate_train
    return scores


def _add_baselines(
    scores: pd.DataFrame, test: pd.DataFrame, fitted: Fitted, Xt: np.ndarray
) -> None:
    if "yc_rule_score" in test.columns:
        scores["yc_rule_score"] = numeric_column(test, "yc_rule_score")
    if fitted.best_single:
        scores["best_single_variable"] = np.nan_to_num(
            numeric_column(test, fitted.best_single), nan=0.0
        )
    scores["tree_score"] = fitted.tree.predict_proba(Xt)[:, 1]
    seg = fitted.segments
    scores["tree_segment"] = (
        pd.Series(fitted.tree.apply(Xt))
        .map(dict(zip(seg["leaf"], seg["segment"], strict=True)))
        .to_numpy()
    )
    for col in INFO_COLUMNS:
        if col in test.columns:
            scores[col] = test[col].to_numpy()


def _explain(
    prep: Prepared, tuned: Tuned, fitted: Fitted, Xt: np.ndarray, s: FitSettings
) -> tuple[pd.DataFrame | None, float | None, pd.DataFrame | None]:
    """(LightGBM SHAP values, their base value, reason codes of the primary model)."""
    shap_df, shap_base = None, None
    if "lightgbm" in fitted.models:
        shap_df, shap_base = explain.tree_shap(
            fitted.models["lightgbm"], Xt, prep.features, s.models.shap_method
        )
    contrib = (
        shap_df
        if tuned.primary == "lightgbm" or shap_df is None and tuned.primary != "logistic"
        else explain.linear_contributions(fitted.models["logistic"], Xt, prep.features)
    )
    reasons = (
        explain.reason_codes(contrib, prep.labels_ja, int(s.models.reasons))
        if contrib is not None
        else None
    )
    return shap_df, shap_base, reasons


def score(
    prep: Prepared,
    tuned: Tuned,
    fitted: Fitted,
    calib: Calibration,
    truth: pd.DataFrame | None,
    s: FitSettings,
) -> Scored:
    """Score every child-year of the test year (already-known ones are not ranked)."""
    te_rows = prep.panel["fiscal_year"].to_numpy(int) == prep.test_year
    test = prep.panel.loc[te_rows].reset_index(drop=True)
    Xt = prep.X_all[te_rows]
    test_known = test[prep.known].fillna(0).to_numpy(float) == 1
    scores = _score_frame(prep, tuned, fitted, calib, test, Xt, s)
    rank = np.full(len(test), np.nan)
    rank[~test_known] = ev.rank_with_tiebreak(scores.loc[~test_known, "score"].to_numpy(), s.seed)
    scores["rank"] = pd.array(rank, dtype="Int64")
    scores["label"] = test[prep.label].to_numpy(float)
    scores["known"] = test_known.astype(int)
    _add_baselines(scores, test, fitted, Xt)
    shap_df, shap_base, reasons = _explain(prep, tuned, fitted, Xt, s)
    if reasons is not None:
        for c in reasons.columns:
            scores[c] = reasons[c].to_numpy()
    scores = oracle_mod.attach(scores, truth, prep.target)
    return Scored(scores, test, test_known, shap_df, shap_base, truth is not None)


# ----------------------------------------------------------------------------- evaluate
@dataclass
class Evaluation:
    """Test-year figures over the evaluated child-years (labelled, not already known)."""

    mask: np.ndarray
    evs: pd.DataFrame
    y: np.ndarray
    lists: dict[str, tuple[str, str | None]]
    headline: dict[str, dict]
    comparisons: dict[str, dict]
    oracle: dict | None
    warnings: list[str] = field(default_factory=list)


def ranking_lists(
    models: dict[str, Any], evs: pd.DataFrame, best_single: str | None
) -> dict[str, tuple[str, str | None]]:
    """Every ranking evaluated: name -> (score column, probability column or None)."""
    lists: dict[str, tuple[str, str | None]] = {"model": ("score", "probability")}
    for family in models:
        lists[family] = (f"score_{family}", f"probability_{family}")
    if best_single:
        lists["best_single_variable"] = ("best_single_variable", None)
    if "yc_rule_score" in evs.columns:
        lists["yc_rule_score"] = ("yc_rule_score", None)
    lists["reference_tree"] = ("tree_score", None)
    return lists


def _oracle_usable(evs: pd.DataFrame, available: bool, s: FitSettings) -> tuple[bool, list[str]]:
    """A handful of child-years the generator did not score (residence edge cases at month
    precision) are ranked last by the oracle, which can only understate the ceiling."""
    if not available:
        return False, []
    n_missing = int(evs["oracle_p"].isna().sum())
    ok = n_missing <= ORACLE_MAX_UNCOVERED * max(len(evs), 1)
    if not n_missing:
        return ok, []
    return ok, [
        f"oracle: {count_text(n_missing, s)} test child-years without a true probability; "
        + (
            "ranked last by the oracle (its ceiling is a lower bound)"
            if ok
            else "too many: oracle not evaluated"
        )
    ]


def _oracle_summary(headline: dict, evs: pd.DataFrame, k: int) -> dict:
    op = headline["oracle"]["precision_mean"]
    mp = headline["model"]["precision_mean"]
    return {
        "oracle_precision_at_k": op,
        "model_precision_at_k": mp,
        "model_share_of_oracle": mp / op if op else None,
        "oracle_expected_hits": float(
            np.sort(evs["oracle_p"].fillna(0).to_numpy())[::-1][:k].sum()
        ),
    }


def evaluate(prep: Prepared, fitted: Fitted, scored: Scored, s: FitSettings) -> Evaluation:
    """Headline metrics with bootstrap CIs for every ranking, paired comparisons, the oracle."""
    sc = scored.scores
    mask = (~sc["known"].astype(bool) & sc["label"].notna()).to_numpy()
    evs = sc.loc[mask].reset_index(drop=True)
    ye = evs["label"].to_numpy(float)
    lists = ranking_lists(fitted.models, evs, fitted.best_single)
    oracle_ok, warn = _oracle_usable(evs, scored.oracle_available, s)
    if oracle_ok:
        lists["oracle"] = ("oracle_p", "oracle_p")
    headline = {}
    for i, (name, (scol, pcol)) in enumerate(tqdm(lists.items(), desc="bootstrap", leave=False)):
        prob = evs[pcol].to_numpy(float) if pcol and evs[pcol].notna().all() else None
        headline[name] = ev.headline_metrics(
            ye, ev.missing_last(evs[scol]), s.k, prob, s.n_boot, s.alpha, s.seed + i, s.n_orderings
        )
    comparisons = {
        f"model_vs_{name}": ev.paired_hits_difference(
            ye,
            evs["score"].to_numpy(float),
            ev.missing_last(evs[lists[name][0]]),
            s.k,
            s.n_boot,
            s.alpha,
            s.seed,
        )
        for name in BASELINES
        if name in lists
    }
    summary = _oracle_summary(headline, evs, s.k) if oracle_ok else None
    return Evaluation(mask, evs, ye, lists, headline, comparisons, summary, warn)


# ----------------------------------------------------------------------------- diagnose
@dataclass
class Diagnostics:
    """What the report shows beside the headline: who is in the list and who was missed."""

    single: pd.DataFrame
    crosstab: pd.DataFrame
    missed: dict
    missed_table: pd.DataFrame
    stability: pd.DataFrame
    year_to_year: dict | None
    fairness: pd.DataFrame
    subsets: pd.DataFrame
    calibration: pd.DataFrame
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


def _year_to_year(
    prep: Prepared, tuned: Tuned, fitted: Fitted, scored: Scored, s: FitSettings
) -> dict | None:
    prev_year = prep.test_year - 1
    prev_rows = (prep.panel["fiscal_year"].to_numpy(int) == prev_year) & ~prep.is_known
    if not prev_rows.any():
        return None
    prev = pd.DataFrame(
        {
            "child_id": prep.panel.loc[prev_rows, "child_id"].to_numpy(),
            "score": margin(fitted.models[tuned.primary], prep.X_all[prev_rows]),
        }
    )
    out = ev.year_to_year_overlap(prev, scored.scores.loc[~scored.test_known], "score", s.k, s.seed)
    out.update(
        {
            "previous_year": prev_year,
            "note": "previous year scored by the final "
            "model (in-sample for that year): list stability, not performance",
        }
    )
    return out


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


def _odds(prep: Prepared, s: FitSettings) -> tuple[pd.DataFrame, str]:
    items = [c for c in prep.features if c.startswith("yc_") and c != "yc_rule_score"]
    if not any(c.startswith("yc_") for c in prep.features):
        return pd.DataFrame(), "no yc_ items"
    return odds_ratios(prep.lab[prep.train_mask], items, prep.label, s.small)


def diagnose(
    prep: Prepared,
    tuned: Tuned,
    fitted: Fitted,
    scored: Scored,
    evaluation: Evaluation,
    s: FitSettings,
) -> Diagnostics:
    """Top k vs the rest, missed cases, list stability, fairness, subsets, calibration, odds."""
    evs, y, k = evaluation.evs, evaluation.y, s.k
    in_top = ev.topk_mask(evs["score"].to_numpy(float), k, s.seed)
    test_eval = scored.test.loc[evaluation.mask]
    evs_feat = pd.concat(
        [evs[["child_id", "fiscal_year"]], test_eval[prep.features].reset_index(drop=True)], axis=1
    )
    missed, missed_table = _missed(prep, evs, evs_feat, y, in_top, s)
    base_cols = [evaluation.lists[n][0] for n in BASELINES if n in evaluation.lists]
    ranked = evs.assign(**{c: ev.missing_last(evs[c]) for c in base_cols})
    subset_col = s.models.subset_column
    if subset_col not in evs.columns and "school_code" in evs.columns:
        subset_col = "school_code"
    subsets = (
        ev.subset_precision(ranked, subset_col, ["score"] + base_cols, k)
        if subset_col in evs.columns
        else pd.DataFrame()
    )
    calib = (
        ev.calibration_table(y, evs["probability"].to_numpy(float))
        if evs["probability"].notna().all() and len(evs) >= 10
        else pd.DataFrame()
    )
    odds, odds_note = _odds(prep, s)
    return Diagnostics(
        single=_single_test_precision(fitted.single, test_eval, y, k),
        crosstab=ev.crosstab_topk(evs_feat, in_top, prep.features, prep.labels_ja),
        missed=missed,
        missed_table=missed_table,
        stability=ev.list_stability(ranked, "score", base_cols, k, s.seed),
        year_to_year=_year_to_year(prep, tuned, fitted, scored, s),
        fairness=_fairness(evs, in_top, s),
        subsets=subsets,
        calibration=calib,
        odds=odds,
        odds_note=odds_note,
    )


# -------------------------------------------------------------------------------- write
@dataclass
class Fit:
    """Every step's result for one target (what ``write`` turns into artefacts)."""

    prep: Prepared
    tuned: Tuned
    fitted: Fitted
    calib: Calibration
    scored: Scored
    evaluation: Evaluation
    diagnostics: Diagnostics


def _write_models(fit: Fit, out: ModelPaths) -> None:
    models = fit.fitted.models
    if "lightgbm" in models:
        write_text(models["lightgbm"].model_to_string(), out.lightgbm_model)
    if "logistic" in models:
        with atomic_path(out.logistic_model) as tmp:
            joblib.dump(models["logistic"], tmp)
    with atomic_path(out.calibrators) as tmp:
        joblib.dump(fit.calib.calibrators, tmp)
    with atomic_path(out.reference_tree) as tmp:
        joblib.dump(fit.fitted.tree, tmp)


def _write_tables(fit: Fit, out: ModelPaths) -> None:
    d, scored = fit.diagnostics, fit.scored
    write_parquet(scored.scores, out.scores)
    write_parquet(fit.tuned.tuning, out.tuning)
    for frame, path in (
        (fit.fitted.segments, out.segment_table),
        (d.single, out.single_variable),
        (d.crosstab, out.crosstab_topk),
        (d.missed_table, out.missed_vs_caught),
        (d.stability, out.stability),
        (d.fairness, out.fairness),
        (d.subsets, out.subsets),
        (d.calibration, out.calibration),
        (d.odds, out.odds_ratios),
    ):
        write_csv(frame, path)
    if scored.explanation is not None:
        shap_out = pd.concat(
            [scored.scores[["child_id", "fiscal_year"]], scored.explanation.astype("float32")],
            axis=1,
        )
        write_parquet(shap_out, out.shap_values)
        write_csv(
            explain.global_importance(scored.explanation, fit.prep.labels_ja), out.shap_importance
        )


def params_record(fit: Fit, s: FitSettings) -> dict:
    """params.json: what was chosen and how (enough to refit the same models)."""
    primary = fit.tuned.primary
    return {
        "target": fit.prep.target,
        "primary_model": primary,
        "chosen": fit.tuned.chosen,
        "features": fit.prep.features,
        "calibration": fit.calib.as_dict(),
        "reference_tree": s.models.reference_tree.as_dict(),
        "seed": s.seed,
        "capacity": s.k,
        "num_threads": s.threads,
        "best_single_variable": fit.fitted.best_single,
        "shap_base_value": (
            float(fit.scored.shap_base) if fit.scored.explanation is not None else None
        ),
        "reason_codes_from": (
            "lightgbm TreeSHAP (log-odds)"
            if primary == "lightgbm"
            else "logistic: coefficient x standardised value (exact linear SHAP, log-odds)"
        ),
    }


def metrics_record(fit: Fit, s: FitSettings) -> dict:
    """metrics.json: the headline figures with their CIs and everything the report quotes."""
    p, e, d = fit.prep, fit.evaluation, fit.diagnostics
    ye, scores = e.y, fit.scored.scores
    warn = [*p.warnings, *fit.tuned.warnings, *fit.calib.warnings, *e.warnings]
    if len(ye) and ye.sum() < 20:
        warn.append(
            f"テスト年度の事例は {count_text(ye.sum(), s)} 件のみ: 信頼区間は非常に広くなります "
            f"(test year has only {count_text(ye.sum(), s)} events; intervals are wide)"
        )
    test_known = fit.scored.test_known
    label = p.labels_ja.get(fit.fitted.best_single) if fit.fitted.best_single else None
    return {
        "target": p.target,
        "k": s.k,
        "test_year": p.test_year,
        "train_years": p.train_years,
        "years_labelled": p.years_labelled,
        "folds": p.fold_info,
        "primary_model": fit.tuned.primary,
        "test": {
            "n_child_years": int(len(scores)),
            "known_excluded": int(test_known.sum()),
            "unlabelled_excluded": int((~test_known & scores["label"].isna()).sum()),
            "n_evaluated": int(len(e.evs)),
            "events": int(ye.sum()),
            "base_rate": float(ye.mean()) if len(ye) else None,
            "train_base_rate": fit.fitted.base_rate_train,
        },
        "headline": e.headline,
        "comparisons": e.comparisons,
        "oracle": e.oracle,
        "tuning": fit.tuned.chosen,
        "calibration": fit.calib.as_dict(),
        "missed": d.missed,
        "year_to_year": d.year_to_year,
        "best_single_variable": fit.fitted.best_single,
        "best_single_variable_label": label,
        "odds_ratio_note": d.odds_note,
        "warnings": warn,
        "notes": [
            f"既知の事例（known_{p.target} = 1）は学習・検証・テストの順位付けから除外 "
            "(already-known children excluded from training, validation and the test "
            "ranking)",
            "SHAP値は重み付きモデルの対数オッズ (SHAP values are log-odds of the "
            "class-weighted model)",
            "スコアは判断の補助であり、判断ではありません (scores support, never replace, a "
            "human assessment)",
        ],
    }  # no timings here: metrics must be identical for the same inputs, settings and seed


def write(fit: Fit, out: ModelPaths, s: FitSettings) -> dict:
    """Write every artefact of one target; metrics.json last (the make stamp). Returns metrics."""
    out.dir.mkdir(parents=True, exist_ok=True)
    _write_models(fit, out)
    _write_tables(fit, out)
    write_json(params_record(fit, s), out.params)
    metrics = metrics_record(fit, s)
    write_json(metrics, out.metrics)
    return metrics
