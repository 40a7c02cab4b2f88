"""One target's fit as steps: prepare -> (per origin) tune -> fit final -> calibrate -> score ->
evaluate -> then backtest, diagnose and write (helpers.models.summary / .artefacts).

Everything is measured on the target's **eligible population** (config ``populations``): the
children staff will review. ``prepare`` sets out the rolling-origin design: each of the last
``backtest_years`` labelled years is a test year (an *origin*) for models tuned and trained
only on the years before it; when the panel holds a later, still unlabelled year, a last
origin scores it for the review list without evaluating it. Each step is a function of the
earlier steps' typed results and the ``FitSettings``; none reads the configuration or the disk.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from helpers import MimamoriError
from helpers import oracle as oracle_mod
from helpers.models import distributed, explain
from helpers.models import evaluation as ev
from helpers.models.backtest import YearData
from helpers.models.baselines import ReferenceTree, best_single_variable
from helpers.models.data import (
    INFO_COLUMNS,
    binary_features,
    catalogue_labels,
    check_inputs,
    feature_matrix,
    numeric_column,
)
from helpers.models.families import (
    Calibrator,
    choose_calibration,
    fit_family,
    margin,
    weight_offset,
)
from helpers.models.population import Population, population_for
from helpers.models.scoring import partitioned_margin
from helpers.models.settings import FitSettings
from helpers.models.tuning import FamilyTuning, FoldCache, FoldData, tune_family

ORACLE_MAX_UNCOVERED = 0.01  # share of test child-years the oracle may lack
BASELINES = ("best_single_variable", "yc_rule_score", "reference_tree")


def count_text(n: float, s: FitSettings) -> str:
    """Counts in messages reach reports: small ones as "<10"."""
    return ev.count_text(n, s.small)


# ------------------------------------------------------------------------------ prepare
@dataclass
class Origin:
    """One test year of the backtest: its folds and the years its final model trains on."""

    test_year: int
    folds: list[tuple[list[int], int]]
    train_years: list[int]
    fold_info: list[dict]
    evaluated: bool  # False: the latest year, not labelled yet (scored for the list only)


@dataclass
class Prepared:
    """The panel as arrays, who is eligible and usable, and the rolling-origin design."""

    target: str
    panel: pd.DataFrame
    features: list[str]
    labels_ja: dict[str, str]
    binary: list[str]
    X: np.ndarray  # float32 features of the usable rows (built once, shared by every fold)
    population: Population
    eligible: np.ndarray  # panel rows in the population
    usable: np.ndarray  # eligible and labelled
    years_labelled: list[int]
    origins: list[Origin] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"label_{self.target}"

    @cached_property
    def lab(self) -> pd.DataFrame:
        """The usable rows' year, label, binary and yc_ item features (from ``X``: the values
        are 0/1/small counts, exact in float32; no copy of the whole panel's rows)."""
        items = [f for f in self.features if f.startswith("yc_")]
        cols = list(dict.fromkeys([*self.binary, *items]))
        idx = [self.features.index(c) for c in cols]
        frame = pd.DataFrame(self.X[:, idx], columns=cols)
        frame.insert(0, "fiscal_year", self.year)
        frame[self.label] = self.y.astype(float)
        return frame

    def test_matrix(self, year: int) -> np.ndarray:
        """Features (float32) of the rows eligible in ``year``, built when first asked for; the
        latest year's matrix is kept (calibrate and score ask for the same year)."""
        cache = self.__dict__.setdefault("_test_matrix", {})
        if year not in cache:
            cache.clear()
            cache[year] = feature_matrix(self.panel, self.features, self.test_rows(year))
        return cache[year]

    @cached_property
    def y(self) -> np.ndarray:
        return self.panel[self.label].to_numpy(float)[self.usable].astype(int)

    @cached_property
    def year(self) -> np.ndarray:
        return self.panel["fiscal_year"].to_numpy(int)[self.usable]

    @cached_property
    def child_ids(self) -> np.ndarray:
        return self.panel["child_id"].to_numpy()[self.usable]

    def fit_ids(self, s: FitSettings) -> np.ndarray | None:
        """The usable rows' child ids when LightGBM trains on the dask cluster, else None."""
        return self.child_ids if distributed.enabled(s.run_cfg) else None

    def train_mask(self, origin: Origin) -> np.ndarray:  # among usable rows
        return np.isin(self.year, origin.train_years)

    def test_rows(self, year: int) -> np.ndarray:  # among panel rows: eligible in ``year``
        return self.eligible & (self.panel["fiscal_year"].to_numpy(int) == year)

    @property
    def evaluated_origins(self) -> list[Origin]:
        return [o for o in self.origins if o.evaluated]


def fit_rows(family: str, prep: Prepared, rows: np.ndarray, params: dict, s: FitSettings) -> Any:
    """A model of ``family`` with ``params`` fitted on the prepared ``rows`` (a boolean mask)."""
    return fit_family(
        family,
        prep.X[rows],
        prep.y[rows],
        params,
        s.seed,
        s.threads,
        s.models.max_bin,
        s.models.logistic_max_iter,
        prep.features,
    )


def _fold_info(
    y: np.ndarray, year: np.ndarray, folds: list, s: FitSettings
) -> tuple[list[dict], list[str]]:
    min_events = int(s.models.tuning.min_valid_events)
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


def _origin(
    prep: Prepared, test_year: int, evaluated: bool, s: FitSettings
) -> tuple[Origin | None, list[str]]:
    before = [y for y in prep.years_labelled if y < test_year]
    if len(before) < 2:
        return None, []
    folds, _ = ev.temporal_splits([*before, test_year], int(s.models.tuning.n_folds))
    if not prep.y[np.isin(prep.year, before)].sum():
        return None, [
            f"FY{test_year}: 学習年度に事例がないため検証から除外 (no true cases in the "
            f"training years {before}: not a backtest year)"
        ]
    info, warn = _fold_info(prep.y, prep.year, folds, s)
    return Origin(test_year, folds, before, info, evaluated), warn


def _origins(prep: Prepared, s: FitSettings) -> list[str]:
    """Set ``prep.origins``: the last ``backtest_years`` labelled years, then a scoring-only
    origin for a later unlabelled year. Returns the warnings."""
    n = max(1, int(s.models.backtest_years))
    warn: list[str] = []
    for year in prep.years_labelled[-n:]:
        origin, w = _origin(prep, year, True, s)
        warn += w
        if origin is not None:
            prep.origins.append(origin)
    if not prep.origins:
        raise MimamoriError(
            f"panel.parquet: label_{prep.target}: need at least three labelled fiscal years with "
            f"true cases before the test year in the eligible population (have "
            f"{prep.years_labelled})"
        )
    if len(prep.origins) < n:
        warn.append(
            f"検証年度は {len(prep.origins)} 年のみ（設定 {n} 年）(backtest has "
            f"{len(prep.origins)} test year(s), {n} configured)"
        )
    eligible_years = prep.panel.loc[prep.eligible, "fiscal_year"].astype(int)
    latest = int(eligible_years.max())
    if latest > prep.origins[-1].test_year:
        origin, w = _origin(prep, latest, False, s)
        warn += w
        if origin is not None:
            prep.origins.append(origin)
    return warn


def prepare(panel: pd.DataFrame, catalogue: pd.DataFrame, target: str, s: FitSettings) -> Prepared:
    """Check the inputs, apply the eligible population, build the rolling-origin design."""
    features = check_inputs(panel, catalogue, target)
    population = population_for(s.models, target)
    if not panel.index.equals(pd.RangeIndex(len(panel))):  # (reset_index copies the frame)
        panel = panel.reset_index(drop=True)
    eligible = population.mask(panel)
    usable = eligible & panel[f"label_{target}"].notna().to_numpy()
    years = sorted(panel.loc[usable, "fiscal_year"].astype(int).unique().tolist())
    prep = Prepared(
        target,
        panel,
        features,
        catalogue_labels(catalogue),
        binary_features(catalogue, features),
        feature_matrix(panel, features, usable),
        population,
        eligible,
        usable,
        years,
    )
    prep.warnings = _origins(prep, s)
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
    fold_models: dict[str, list[Any]] = field(default_factory=dict)  # chosen, per fold

    @property
    def validation_precision(self) -> float:
        """Mean validation precision@k of the chosen primary candidate (what tuning saw)."""
        return float(self.chosen[self.primary]["mean_precision"])


def tune(prep: Prepared, origin: Origin, s: FitSettings, cache: FoldCache | None = None) -> Tuned:
    """Tune each family on the origin's validation years only; pick the primary model."""
    ids = prep.fit_ids(s)
    results: dict[str, FamilyTuning] = {
        family: tune_family(
            family, prep.X, prep.y, prep.year, origin.folds, s, prep.features, cache, ids
        )
        for family in s.models.tuning.families
    }
    return tuned_from(origin, results, s)


def tuned_from(origin: Origin, results: dict[str, FamilyTuning], s: FitSettings) -> Tuned:
    """The origin's ``Tuned`` from each family's search (in ``s.models.tuning.families``
    order); the primary model is the family with the best objective unless configured."""
    tables: list[pd.DataFrame] = []
    chosen: dict[str, dict] = {}
    valid_scores: dict[str, list[np.ndarray]] = {}
    fold_models: dict[str, list[Any]] = {}
    warn: list[str] = []
    for family in s.models.tuning.families:
        res = results[family]
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
        fold_models[family] = res.fold_models
    primary: str = s.models.primary_model
    if primary == "auto":
        primary = max(chosen, key=lambda f: (chosen[f]["objective"], f == "lightgbm"))
    table = pd.concat(tables, ignore_index=True).assign(test_year=origin.test_year)
    return Tuned(table, chosen, valid_scores, primary, warn, fold_models)


# ---------------------------------------------------------------------------- fit final
@dataclass
class Fitted:
    """The origin's final models (every year before its test year) and the baselines."""

    models: dict[str, Any]
    tree: ReferenceTree
    segments: pd.DataFrame
    single: pd.DataFrame
    best_single: str | None
    base_rate_train: float
    offsets: dict[str, float] = field(default_factory=dict)  # weight_offset per family
    test_margins: dict[str, np.ndarray] = field(default_factory=dict)

    def test_margin(
        self, family: str, Xt: np.ndarray, ids: np.ndarray, s: FitSettings
    ) -> np.ndarray:
        """The final model's scores on the test year's matrix ``Xt`` (rows: child ``ids``),
        computed once, per child partition on the dask engine (the same values)."""
        if family not in self.test_margins:
            model = self.models[family]
            self.test_margins[family] = partitioned_margin(s.run_cfg, model, Xt, ids)
        return self.test_margins[family]


@dataclass
class Baselines:
    """The origin's baselines, fitted / chosen on its training years (no model needed)."""

    tree: ReferenceTree
    segments: pd.DataFrame
    single: pd.DataFrame
    best_single: str | None
    base_rate_train: float


def final_model(
    prep: Prepared, origin: Origin, family: str, cand: dict, s: FitSettings, cache: FoldCache
) -> Any:
    """The candidate fitted on every labelled year before the test year: a later origin's fold
    model (the same fit), so taken from / kept in the cache."""
    key = cache.key(family, cand, origin.test_year)
    if key not in cache.models:
        tr = prep.train_mask(origin)
        ids = prep.fit_ids(s)
        data = FoldData.build(
            family, prep.X[tr], prep.y[tr], s, prep.features, None if ids is None else ids[tr]
        )
        cache.model(family, cand, origin.test_year, data, s)
    return cache.models[key]


def fit_baselines(prep: Prepared, origin: Origin, s: FitSettings) -> Baselines:
    """The reference tree (and its segments on the test year) and the best single variable,
    fitted / chosen on the origin's training years."""
    X, y, year, tr = prep.X, prep.y, prep.year, prep.train_mask(origin)
    single = (
        best_single_variable(prep.lab, prep.binary, prep.label, origin.train_years, s.k)
        if prep.binary
        else pd.DataFrame()
    )
    tree = ReferenceTree.fit_matrix(
        X[tr],
        y[tr],
        prep.features,
        s.models.reference_tree,
        s.seed,
        prep.labels_ja,
        set(prep.binary),
        s.small,
    )
    te = year == origin.test_year
    segments = tree.segments(X[tr], y[tr], X[te], y[te], s.alpha)
    best = single["feature"].iloc[0] if len(single) else None
    return Baselines(tree, segments, single, best, float(y[tr].mean()))


def fit_final(
    prep: Prepared,
    origin: Origin,
    tuned: Tuned,
    s: FitSettings,
    cache: FoldCache | None = None,
    baselines: Baselines | None = None,
) -> Fitted:
    """Refit each chosen candidate on the training years; fit / choose the baselines there
    (unless given)."""
    cache = FoldCache() if cache is None else cache
    models = {
        family: final_model(prep, origin, family, info["params"], s, cache)
        for family, info in tuned.chosen.items()
    }
    b = fit_baselines(prep, origin, s) if baselines is None else baselines
    y_tr = prep.y[prep.train_mask(origin)]
    offsets = {f: weight_offset(y_tr, info["params"]) for f, info in tuned.chosen.items()}
    return Fitted(models, b.tree, b.segments, b.single, b.best_single, b.base_rate_train, offsets)


# ---------------------------------------------------------------------------- calibrate
@dataclass
class Calibration:
    """Per family a calibrator from log-odds to a yearly probability (None: not estimable)."""

    calibrators: dict[str, Calibrator | None]
    method: str
    validation_events: int
    isotonic_min_events: int
    recalibrated_on: int | None
    warnings: list[str] = field(default_factory=list)

    def as_dict(self, primary: str) -> dict:
        cal = self.calibrators.get(primary)
        return {
            "method": self.method,
            "validation_events": self.validation_events,
            "isotonic_min_events": self.isotonic_min_events,
            "recalibrated_on": self.recalibrated_on,
            "intercept_shift": cal.shift_ if cal is not None else None,
        }


def calibrate(
    prep: Prepared, origin: Origin, tuned: Tuned, fitted: Fitted, s: FitSettings
) -> Calibration:
    """Fit each family's calibrator on the chosen candidate's out-of-time validation scores,
    then (``recalibrate_intercept``) shift its intercept to the most recent validation year."""
    y, year = prep.y, prep.year
    valid = [y[year == v] for _, v in origin.folds]
    valid_y = np.concatenate(valid)
    events = int(valid_y.sum())
    iso_min = int(s.models.calibration.isotonic_min_events)
    method = choose_calibration(events, iso_min)
    out: dict[str, Calibrator | None] = {}
    warn, latest = [], origin.folds[-1][1]
    for family in fitted.models:
        if not 0 < valid_y.sum() < len(valid_y):
            out[family] = None
            warn.append(f"{family}: 検証年度に事例がなく較正できません (no events to calibrate)")
            continue
        cal = Calibrator(method).fit(np.concatenate(tuned.valid_scores[family]), valid_y)
        if (
            s.models.calibration.recalibrate_intercept
            and cal.recalibrate_intercept(tuned.valid_scores[family][-1], valid[-1]) is None
        ):
            warn.append(
                f"{family}: FY{latest} に事例がなく切片を再較正できません (no events in the "
                "latest validation year: intercept not recalibrated)"
            )
        cal.transfer_ = _scale_transfer(prep, origin, tuned, fitted, family, s)
        out[family] = cal
    recal = latest if s.models.calibration.recalibrate_intercept else None
    return Calibration(out, method, events, iso_min, recal, warn)


def _scale_transfer(
    prep: Prepared, origin: Origin, tuned: Tuned, fitted: Fitted, family: str, s: FitSettings
) -> tuple[np.ndarray, np.ndarray] | None:
    """Quantiles of the final model's and of the latest fold model's scores on the test year
    (None when the latest fold's training years hold no event: nothing to transfer from).

    The calibrator learnt the latest fold model's scale (its out-of-time scores); the final
    model, fitted on one more year, spreads its log-odds differently (less shrinkage, another
    base rate). Matching the two models' score quantiles on the test year - no labels needed -
    carries each final score to the fold model's scale, rank for rank."""
    params = tuned.chosen[family]["params"]
    train_years = origin.folds[-1][0]
    tr = np.isin(prep.year, train_years)
    Xt = prep.test_matrix(origin.test_year)
    if not 0 < prep.y[tr].sum() < tr.sum() or not len(Xt):
        return None
    ref = (tuned.fold_models.get(family) or [None])[-1]  # the same fit, from tuning
    if ref is None:
        ref = fit_rows(family, prep, tr, params, s)
    q = np.linspace(0.0, 1.0, 1001)
    ids = prep.panel.loc[prep.test_rows(origin.test_year), "child_id"].to_numpy()
    final_scores = fitted.test_margin(family, Xt, ids, s)
    final = np.quantile(final_scores - fitted.offsets.get(family, 0.0), q)
    mapped = np.quantile(margin(ref, Xt) - weight_offset(prep.y[tr], params), q)
    return np.maximum.accumulate(final), np.maximum.accumulate(mapped)


# -------------------------------------------------------------------------------- score
@dataclass
class Scored:
    """The origin's test year: every eligible child-year's scores, rank, baselines, oracle."""

    scores: pd.DataFrame
    test: pd.DataFrame
    Xt: np.ndarray
    explanation: pd.DataFrame | None  # contributions of the explained rows (list + sample)
    explanation_base: float | None
    oracle_available: bool
    explained_rows: np.ndarray | None = None  # rows of ``scores`` in ``explanation``
    explained_sample: np.ndarray | None = None  # which of them are the uniform sample

    def drop_features(self) -> None:
        """Free the test year's panel rows and feature matrix (kept: scores and explanation)."""
        self.test = self.test.iloc[:0]
        self.Xt = self.Xt[:0]


def _score_frame(
    tuned: Tuned,
    fitted: Fitted,
    calib: Calibration,
    test: pd.DataFrame,
    Xt: np.ndarray,
    s: FitSettings,
) -> pd.DataFrame:
    ids = test["child_id"].to_numpy()
    scores = pd.DataFrame({"child_id": ids, "fiscal_year": test["fiscal_year"].to_numpy()})
    for family in fitted.models:
        scores[f"score_{family}"] = fitted.test_margin(family, Xt, ids, s)
        cal = calib.calibrators[family]
        unweighted = scores[f"score_{family}"] - fitted.offsets.get(family, 0.0)
        scores[f"probability_{family}"] = cal.predict(unweighted) if cal else np.nan
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
    scores["tree_score"] = fitted.tree.score_matrix(Xt)
    seg = fitted.segments
    scores["tree_segment"] = (
        pd.Series(fitted.tree.leaf_of(Xt))
        .map(dict(zip(seg["leaf"], seg["segment"], strict=True)))
        .to_numpy()
    )
    for col in INFO_COLUMNS:
        if col in test.columns:
            scores[col] = test[col].to_numpy()


def explain_primary(
    prep: Prepared,
    tuned: Tuned,
    fitted: Fitted,
    Xt: np.ndarray,
    s: FitSettings,
    ids: np.ndarray | None = None,
) -> tuple[pd.DataFrame, float]:
    """Item-by-item log-odds contributions of the model that built the list (TreeSHAP for
    LightGBM, coefficient x standardised value for the logistic model) and their base value.
    On the dask engine LightGBM's TreeSHAP runs per child partition of ``ids`` (the rows'
    child ids; the same values)."""
    model = fitted.models[tuned.primary]
    lgbm_shap = tuned.primary == "lightgbm" and s.models.shap_method == "lightgbm"
    if lgbm_shap and s.run_cfg is not None and ids is not None:
        c = distributed.partitioned_contrib(s.run_cfg, model, Xt, ids)
        return pd.DataFrame(c[:, :-1], columns=prep.features), float(c[0, -1]) if len(c) else 0.0
    if tuned.primary == "lightgbm":
        return explain.tree_shap(model, Xt, prep.features, s.models.shap_method)
    contrib = explain.linear_contributions(model, Xt, prep.features)
    base = float(margin(model, Xt[:1])[0] - contrib.iloc[0].sum()) if len(Xt) else 0.0
    return contrib, base


def _explain_list(
    prep: Prepared,
    tuned: Tuned,
    fitted: Fitted,
    Xt: np.ndarray,
    scores: pd.DataFrame,
    s: FitSettings,
) -> tuple[pd.DataFrame, float, np.ndarray, np.ndarray]:
    """Contributions of the list (its reason codes are added to ``scores``) and of a fixed
    sample of the year: (contributions, base value, their rows in ``scores``, sample mask)."""
    rows, listed, sampled = explain.explained_rows(
        scores["score"].to_numpy(), s.k, int(s.models.shap_sample), s.seed
    )
    ids = scores["child_id"].to_numpy()[rows]
    contrib, base = explain_primary(prep, tuned, fitted, Xt[rows], s, ids)
    reasons = explain.reason_columns(
        contrib[listed], rows[listed], len(scores), prep.labels_ja, int(s.models.reasons)
    )
    for c, values in reasons.items():
        scores[c] = values
    return contrib, base, rows, sampled


def score(
    prep: Prepared,
    origin: Origin,
    tuned: Tuned,
    fitted: Fitted,
    calib: Calibration,
    truth: pd.DataFrame | None,
    s: FitSettings,
    explain_list: bool = False,
) -> Scored:
    """Score every eligible child-year of the origin's test year, rank them (seeded tie-break)
    and, for the list year, explain every score item by item (reason codes)."""
    rows = prep.test_rows(origin.test_year)
    test = prep.panel.loc[rows].reset_index(drop=True)
    Xt = prep.test_matrix(origin.test_year)
    scores = _score_frame(tuned, fitted, calib, test, Xt, s)
    scores["rank"] = pd.array(
        ev.rank_with_tiebreak(scores["score"].to_numpy(), s.seed), dtype="Int64"
    )
    scores["label"] = test[prep.label].to_numpy(float)
    scores["known"] = 0  # the population excludes already-known children
    _add_baselines(scores, test, fitted, Xt)
    explained = _explain_list(prep, tuned, fitted, Xt, scores, s) if explain_list else None
    scores = oracle_mod.attach(scores, truth, prep.target)
    if explained is None:
        return Scored(scores, test, Xt, None, None, truth is not None)
    contrib, base, rows, sampled = explained
    return Scored(scores, test, Xt, contrib, base, truth is not None, rows, sampled)


# ----------------------------------------------------------------------------- evaluate
@dataclass
class Evaluation:
    """Test-year figures over the evaluated child-years (eligible and labelled)."""

    mask: np.ndarray
    evs: pd.DataFrame
    y: np.ndarray
    lists: dict[str, tuple[str, str | None]]
    year_data: YearData
    headline: dict[str, dict] = field(default_factory=dict)
    comparisons: dict[str, dict] = field(default_factory=dict)
    oracle: dict | None = None
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


def _oracle_usable(
    evs: pd.DataFrame, available: bool, year: int, s: FitSettings
) -> tuple[bool, list[str]]:
    """A handful of child-years the generator did not score (residence edge cases at month
    precision) count as 0 for the oracle, which can only understate the ceiling."""
    if not available:
        return False, []
    n_missing = int(evs["oracle_p"].isna().sum())
    ok = n_missing <= ORACLE_MAX_UNCOVERED * max(len(evs), 1)
    if not n_missing:
        return ok, []
    return ok, [
        f"oracle FY{year}: {count_text(n_missing, s)} test child-years without a true "
        "probability; "
        + (
            "counted as 0 (the oracle's ceiling is a lower bound)"
            if ok
            else "too many: oracle not evaluated"
        )
    ]


def _oracle_summary(headline: dict, n: int, yd: YearData, k: int) -> dict:
    op = headline["oracle"]["precision_mean"]
    mp = headline["model"]["precision_mean"]
    p = yd.p_true if yd.p_true is not None else np.zeros(n)
    model_exp = ev.SortedRanking(p, yd.scores["model"]).hits(np.ones(len(p)), k)
    oracle_exp = float(np.sort(p)[::-1][:k].sum())
    return {
        "oracle_precision_at_k": op,
        "model_precision_at_k": mp,
        "model_share_of_oracle": mp / op if op else None,
        "oracle_expected_hits": oracle_exp,
        "model_expected_hits": model_exp,
        "model_expected_share": model_exp / oracle_exp if oracle_exp else None,
    }


def evaluate(
    prep: Prepared,
    origin: Origin,
    fitted: Fitted,
    scored: Scored,
    s: FitSettings,
    full: bool = False,
) -> Evaluation:
    """The year's rankings over its evaluated child-years (for the pooled backtest); ``full``:
    headline metrics with bootstrap CIs for every ranking, paired comparisons, the oracle."""
    sc = scored.scores
    mask = sc["label"].notna().to_numpy()
    evs = sc.loc[mask].reset_index(drop=True)
    ye = evs["label"].to_numpy(float)
    lists = ranking_lists(fitted.models, evs, fitted.best_single)
    oracle_ok, warn = _oracle_usable(evs, scored.oracle_available, origin.test_year, s)
    p_true = evs["oracle_p"].fillna(0).to_numpy(float) if oracle_ok else None
    yd = YearData(
        origin.test_year,
        ye,
        p_true,
        {name: ev.missing_last(evs[col]) for name, (col, _) in lists.items()},
    )
    out = Evaluation(mask, evs, ye, lists, yd, warnings=warn)
    if full:
        complete_evaluation(out, *headline_inputs(out), s)
    return out


Rankings = dict[str, tuple[np.ndarray, np.ndarray | None]]


def headline_inputs(e: Evaluation) -> tuple[Rankings, np.ndarray]:
    """Every ranking's score (missing last) and probability (None unless known for every
    child-year), the oracle's too when usable; and the model's score (as arrays: the
    bootstrap then reads no frame)."""
    evs, lists = e.evs, e.lists
    if e.year_data.p_true is not None:
        lists["oracle"] = ("oracle_p", "oracle_p")
    rankings: Rankings = {}
    for name, (scol, pcol) in lists.items():
        prob = evs[pcol].to_numpy(float) if pcol and evs[pcol].notna().all() else None
        rankings[name] = (ev.missing_last(evs[scol]), prob)
    return rankings, evs["score"].to_numpy(float)


def complete_evaluation(
    e: Evaluation, rankings: Rankings, model_score: np.ndarray, s: FitSettings
) -> None:
    """Headline metrics with bootstrap CIs for every ranking, the paired comparisons with the
    baselines and the oracle's share (from arrays only: safe in a background thread)."""
    for i, (name, (score, prob)) in enumerate(
        tqdm(rankings.items(), desc="bootstrap", leave=False)
    ):
        e.headline[name] = ev.headline_metrics(
            e.y, score, s.k, prob, s.n_boot, s.alpha, s.seed + i, s.n_orderings
        )
    e.comparisons = {
        f"model_vs_{name}": ev.paired_hits_difference(
            e.y, model_score, rankings[name][0], s.k, s.n_boot, s.alpha, s.seed
        )
        for name in BASELINES
        if name in rankings
    }
    oracle_ok = e.year_data.p_true is not None
    e.oracle = _oracle_summary(e.headline, len(e.y), e.year_data, s.k) if oracle_ok else None


# ------------------------------------------------------------------------- one origin
@dataclass
class OriginRun:
    """Every step's result for one origin of the backtest."""

    origin: Origin
    tuned: Tuned
    fitted: Fitted
    calib: Calibration
    scored: Scored
    evaluation: Evaluation | None

    @property
    def warnings(self) -> list[str]:
        ev_warn = self.evaluation.warnings if self.evaluation is not None else []
        return [*self.tuned.warnings, *self.calib.warnings, *ev_warn]


def run_origin(
    prep: Prepared,
    origin: Origin,
    truth: pd.DataFrame | None,
    s: FitSettings,
    cache: FoldCache,
    explain_list: bool = False,
    full: bool = False,
) -> OriginRun:
    """tune -> fit final -> calibrate -> score -> evaluate for one test year."""
    tuned = tune(prep, origin, s, cache)
    return finish_origin(prep, origin, tuned, truth, s, cache, None, explain_list, full)


def finish_origin(
    prep: Prepared,
    origin: Origin,
    tuned: Tuned,
    truth: pd.DataFrame | None,
    s: FitSettings,
    cache: FoldCache,
    baselines: Baselines | None = None,
    explain_list: bool = False,
    full: bool = False,
) -> OriginRun:
    """fit final -> calibrate -> score -> evaluate for one test year, once it is tuned."""
    fitted = fit_final(prep, origin, tuned, s, cache, baselines)
    calib = calibrate(prep, origin, tuned, fitted, s)
    scored = score(prep, origin, tuned, fitted, calib, truth, s, explain_list)
    evaluation = evaluate(prep, origin, fitted, scored, s, full) if origin.evaluated else None
    return OriginRun(origin, tuned, fitted, calib, scored, evaluation)
