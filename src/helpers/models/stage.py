"""Baselines and weighted models for one target, tuned for precision at staff capacity.

Lessons from the reference analyses drive the design (DOMAIN.md sec.5): class weights instead
of resampling (2), tuning for precision@k over rolling temporal folds (3, 5), models that use
every variable beside the strict reference tree (4), continuous scores (6), and the best single
variable chosen on training years as the comparison that matters (7). ``fit_target`` writes
every artifact the report needs, ``metrics.json`` last (the make stamp).
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from pathlib import Path
from typing import Any

# OpenMP threads that spin while waiting make LightGBM many times slower when the 2 cores are
# shared with other work; sleep instead (only effective before the OpenMP runtime loads).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import joblib  # noqa: E402
import lightgbm as lgb  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.exceptions import ConvergenceWarning  # noqa: E402
from sklearn.impute import SimpleImputer  # noqa: E402
from sklearn.isotonic import IsotonicRegression  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.tree import DecisionTreeClassifier  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from helpers import MimamoriError  # noqa: E402
from helpers.models import evaluation as ev  # noqa: E402
from helpers.config import data_dir  # noqa: E402
from helpers.io import append_audit, atomic_path, write_csv, write_json, write_parquet, write_text  # noqa: E402

INFO_COLUMNS = ("age", "school_age", "grade", "school_code", "school_district", "sex",
                "nationality", "single_parent", "history_incomplete")


# --------------------------------------------------------------------------- inputs
def check_inputs(panel: pd.DataFrame, catalogue: pd.DataFrame, target: str) -> list[str]:
    """The feature columns (role == feature), after checking the panel contract for ``target``."""
    for col in ("name", "role"):
        if col not in catalogue.columns:
            raise MimamoriError(f"feature_catalogue.csv: column {col!r} missing")
    for col in ("child_id", "fiscal_year", f"label_{target}", f"known_{target}"):
        if col not in panel.columns:
            raise MimamoriError(f"panel.parquet: column {col!r} missing (target {target!r})")
    features = catalogue.loc[catalogue["role"] == "feature", "name"].tolist()
    missing = [f for f in features if f not in panel.columns]
    if missing:
        raise MimamoriError(f"panel.parquet: feature columns from the catalogue missing: {missing[:5]}")
    if not features:
        raise MimamoriError("feature_catalogue.csv: no rows with role == feature")
    labels = panel[f"label_{target}"]
    bad = labels.notna() & ~labels.isin([0, 1])
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise MimamoriError(f"panel.parquet: row {row}, column label_{target}: not 0/1/NaN "
                            f"({labels[bad].iloc[0]!r})")
    return features


def feature_matrix(panel: pd.DataFrame, features: list[str]) -> np.ndarray:
    """Features as float32 with NaN kept (booleans -> 0/1, nullable -> NaN)."""
    out = np.empty((len(panel), len(features)), dtype=np.float32)
    for j, f in enumerate(features):
        col = panel[f]
        try:
            out[:, j] = col.to_numpy(dtype="float64", na_value=np.nan)
        except (TypeError, ValueError):
            raise MimamoriError(f"panel.parquet: column {f}: not numeric ({col.dtype})") from None
    return out


def catalogue_labels(catalogue: pd.DataFrame) -> dict[str, str]:
    lab = catalogue.get("label_ja", catalogue["name"]).fillna(catalogue["name"])
    return dict(zip(catalogue["name"], lab, strict=True))


def binary_features(catalogue: pd.DataFrame, features: list[str]) -> list[str]:
    if "type" not in catalogue.columns:
        return []
    binary = set(catalogue.loc[catalogue["type"] == "binary", "name"])
    return [f for f in features if f in binary]


# --------------------------------------------------------------------------- baselines
def best_single_variable(
    panel: pd.DataFrame, candidates: list[str], label: str, years: list[int], k: int
) -> pd.DataFrame:
    """Every binary feature as a list on its own: mean precision@k over the given (training) years.

    Children with the feature (1) come first, ties in random order (the expected precision is
    used); unknown (NaN) ranks with 0. Sorted best first; the first row is the chosen baseline.
    """
    rows = []
    sub = panel[panel["fiscal_year"].isin(years)]
    for f in candidates:
        precs, flagged = [], 0
        for _, part in sub.groupby("fiscal_year"):
            y = part[label].to_numpy(float)
            s = part[f].to_numpy(dtype="float64", na_value=np.nan)
            s = np.nan_to_num(s, nan=0.0)
            flagged += int((s > 0).sum())
            precs.append(ev.precision_at_k(y, s, k, "mean"))
        rows.append({"feature": f, "train_precision_at_k": float(np.mean(precs)),
                     "train_flagged": flagged})
    out = pd.DataFrame(rows, columns=["feature", "train_precision_at_k", "train_flagged"])
    return out.sort_values(["train_precision_at_k", "feature"], ascending=[False, True],
                           kind="mergesort").reset_index(drop=True)


def fit_reference_tree(X: np.ndarray, y: np.ndarray, tree_cfg: dict, seed: int) -> DecisionTreeClassifier:
    """The reference municipality's tree (entropy, depth 3, strict leaf sizes), unweighted."""
    tree = DecisionTreeClassifier(
        criterion=tree_cfg.get("criterion", "entropy"), max_depth=int(tree_cfg.get("max_depth", 3)),
        min_samples_leaf=int(tree_cfg.get("min_samples_leaf", 448)),
        min_samples_split=int(tree_cfg.get("min_samples_split", 1642)), random_state=seed)
    return tree.fit(X, y)


def tree_leaf_rules(tree: DecisionTreeClassifier, features: list[str], labels: dict[str, str],
                    binary: set[str]) -> dict[int, str]:
    """Each leaf's rule as Japanese condition text (where missing values go is stated)."""
    t = tree.tree_
    missing_left = getattr(t, "missing_go_to_left", np.zeros(t.node_count, dtype=bool))
    rules: dict[int, str] = {}

    def walk(node: int, conds: list[str]) -> None:
        left, right = t.children_left[node], t.children_right[node]
        if left == -1:
            rules[node] = " かつ ".join(conds) if conds else "全員（all）"
            return
        f = features[t.feature[node]]
        name, thr = labels.get(f, f), t.threshold[node]
        if f in binary and 0 <= thr < 1:
            lc, rc = f"{name}＝なし", f"{name}＝あり"
        else:
            lc, rc = f"{name} ≤ {thr:.4g}", f"{name} > {thr:.4g}"
        nan_left = bool(missing_left[node])
        lc += "（不明を含む）" if nan_left else ""
        rc += "" if nan_left else "（不明を含む）"
        walk(left, conds + [lc])
        walk(right, conds + [rc])

    walk(0, [])
    return rules


def segment_table(tree: DecisionTreeClassifier, X: np.ndarray, y: np.ndarray, rules: dict[int, str],
                  X_test: np.ndarray | None = None, y_test: np.ndarray | None = None) -> pd.DataFrame:
    """Leaves as segments: child-years, positives, rate and risk ratio vs the base rate.

    Rows sum to the population the tree was fitted on; test-year columns beside it when given.
    """
    leaf = tree.apply(X)
    df = pd.DataFrame({"leaf": leaf, "y": y})
    g = df.groupby("leaf").agg(child_years=("y", "size"), positives=("y", "sum")).reset_index()
    base = float(np.mean(y)) if len(y) else float("nan")
    g["rate"] = g["positives"] / g["child_years"]
    g["risk_ratio"] = g["rate"] / base if base else np.nan
    g["rule"] = g["leaf"].map(rules)
    if X_test is not None and y_test is not None:
        dt = pd.DataFrame({"leaf": tree.apply(X_test), "y": y_test})
        gt = dt.groupby("leaf").agg(test_child_years=("y", "size"), test_positives=("y", "sum"))
        g = g.merge(gt, on="leaf", how="left").fillna({"test_child_years": 0, "test_positives": 0})
        g["test_rate"] = g["test_positives"] / g["test_child_years"].replace(0, np.nan)
    g["positives"] = g["positives"].astype(int)
    g = g.sort_values("risk_ratio", ascending=False).reset_index(drop=True)
    g.insert(0, "segment", np.arange(1, len(g) + 1))
    return g


def odds_ratios(panel: pd.DataFrame, items: list[str], label: str, small: int = 9
                ) -> tuple[pd.DataFrame, str]:
    """statsmodels Logit of the outcome on the young-carer items: odds ratios with 95% CIs."""
    import statsmodels.api as sm

    df = panel[items + [label]].apply(pd.to_numeric, errors="coerce").dropna()
    note = (f"{ev.count_text(len(df), small)} child-years with every item known, "
            f"{ev.count_text(df[label].sum(), small)} events")
    X = df[items].loc[:, df[items].std() > 0]
    if X.shape[1] == 0 or df[label].sum() == 0:
        return pd.DataFrame(columns=["item", "odds_ratio", "ci_low", "ci_high", "p_value"]), note + "; not estimable"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            res = sm.Logit(df[label].astype(float), sm.add_constant(X.astype(float))).fit(disp=0, maxiter=50)
        except Exception as exc:  # noqa: BLE001 - separation etc.: report, don't fail the run
            return pd.DataFrame(columns=["item", "odds_ratio", "ci_low", "ci_high", "p_value"]), f"{note}; fit failed: {exc}"
    ci = np.exp(res.conf_int())
    out = pd.DataFrame({"item": res.params.index, "odds_ratio": np.exp(res.params.values),
                        "ci_low": ci[0].values, "ci_high": ci[1].values, "p_value": res.pvalues.values})
    return out[out["item"] != "const"].reset_index(drop=True), note


# --------------------------------------------------------------------------- model families
def pos_weight(y: np.ndarray, weighting: str) -> float:
    """Weight of a positive case: neg/pos (balanced), its square root, or 1 (none)."""
    pos = float(np.sum(y == 1))
    neg = float(np.sum(y == 0))
    ratio = neg / pos if pos else 1.0
    return {"balanced": ratio, "sqrt": float(np.sqrt(ratio)), "none": 1.0}[weighting]


def lgbm_params(cand: dict, y: np.ndarray, seed: int, threads: int) -> dict:
    subsample = float(cand.get("subsample", 1.0))
    return {
        "objective": "binary", "learning_rate": float(cand["learning_rate"]),
        "num_leaves": int(cand["num_leaves"]), "min_data_in_leaf": int(cand["min_child_samples"]),
        "lambda_l2": float(cand["reg_lambda"]), "feature_fraction": float(cand["colsample_bytree"]),
        "bagging_fraction": subsample, "bagging_freq": 1 if subsample < 1 else 0,
        "scale_pos_weight": pos_weight(y, cand["weighting"]),
        "deterministic": True, "force_col_wise": True, "num_threads": int(threads),
        "seed": int(seed), "verbosity": -1,
    }


def lgbm_dataset(X: np.ndarray, y: np.ndarray, max_bin: int, features: list[str]) -> lgb.Dataset:
    return lgb.Dataset(X, label=y, feature_name=features, free_raw_data=False,
                       params={"max_bin": int(max_bin), "feature_pre_filter": False, "verbosity": -1})


def fit_lgbm(data: lgb.Dataset, cand: dict, seed: int, threads: int) -> lgb.Booster:
    params = lgbm_params(cand, data.get_label(), seed, threads)
    return lgb.train(params, data, num_boost_round=int(cand["n_estimators"]))


def lr_preprocess() -> Pipeline:
    """Median imputation with missing indicators, then scaling (missing stays distinguishable)."""
    return Pipeline([("impute", SimpleImputer(strategy="median", add_indicator=True)),
                     ("scale", StandardScaler())])


def lr_estimator(cand: dict, y: np.ndarray, seed: int, max_iter: int) -> LogisticRegression:
    w = cand["weighting"]
    cw = None if w == "none" else "balanced" if w == "balanced" else {0: 1.0, 1: pos_weight(y, "sqrt")}
    return LogisticRegression(C=float(cand["C"]), class_weight=cw, max_iter=int(max_iter),
                              random_state=seed)


def fit_logistic(X: np.ndarray, y: np.ndarray, cand: dict, seed: int, max_iter: int) -> Pipeline:
    pipe = Pipeline(lr_preprocess().steps + [("model", lr_estimator(cand, y, seed, max_iter))])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return pipe.fit(X, y)


def margin(model: Any, X: np.ndarray) -> np.ndarray:
    """The continuous score: log-odds of the weighted model (before calibration)."""
    if isinstance(model, lgb.Booster):
        return model.predict(X, raw_score=True)
    return model.decision_function(X)


# --------------------------------------------------------------------------- calibration
class Calibrator:
    """Maps the weighted model's log-odds to a yearly probability (Platt or isotonic)."""

    def __init__(self, method: str = "platt"):
        self.method = method

    def fit(self, score: np.ndarray, y: np.ndarray) -> Calibrator:
        score = np.asarray(score, dtype=float).reshape(-1, 1)
        if self.method == "isotonic":
            self.model_ = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(score[:, 0], y)
        else:
            self.model_ = LogisticRegression(C=1e6, max_iter=1000).fit(score, y)
        return self

    def predict(self, score: np.ndarray) -> np.ndarray:
        score = np.asarray(score, dtype=float).reshape(-1, 1)
        if self.method == "isotonic":
            return self.model_.predict(score[:, 0])
        return self.model_.predict_proba(score)[:, 1]


def choose_calibration(events: int, isotonic_min_events: int) -> str:
    return "isotonic" if events >= isotonic_min_events else "platt"


# --------------------------------------------------------------------------- tuning
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


def tune_family(
    family: str, X: np.ndarray, y: np.ndarray, year: np.ndarray, folds: list, k: int,
    mcfg: dict, seed: int, features: list[str],
) -> tuple[pd.DataFrame, dict, dict]:
    """Seeded random search maximising mean precision@k - penalty x std over temporal folds.

    Returns (every candidate x fold score, the chosen candidate, its validation scores per fold
    for calibration). Candidates run in a fixed order; the time budget only cuts the list short.
    """
    tcfg = mcfg.get("tuning", {})
    threads = int(mcfg.get("num_threads", 2))
    n_trials = int(tcfg.get("n_trials", 12))
    budget = float(tcfg.get("time_budget_s") or np.inf)  # null: no budget, fully reproducible
    penalty = float(tcfg.get("variance_penalty", 0.5))
    space = mcfg.get(f"{family}_space") or {}
    defaults = mcfg.get(f"{family}_defaults") or {}
    cands = sample_candidates(space, defaults, n_trials, seed)
    prepared = []
    for train_years, valid_year in folds:
        tr, va = np.isin(year, train_years), year == valid_year
        if family == "lightgbm":
            data = lgbm_dataset(X[tr], y[tr], int(mcfg.get("max_bin", 63)), features)
            prepared.append((data, X[va], y[tr], y[va], valid_year))
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                pre = lr_preprocess().fit(X[tr])
                prepared.append((pre.transform(X[tr]), pre.transform(X[va]), y[tr], y[va], valid_year))
    rows, valid_scores = [], {}
    start = time.perf_counter()
    for ci, cand in enumerate(tqdm(cands, desc=f"tuning {family}", leave=False)):
        if ci > 0 and time.perf_counter() - start > budget:
            break
        fold_scores = []
        for data, Xva, ytr, yva, vyear in prepared:
            if family == "lightgbm":
                s = fit_lgbm(data, cand, seed, threads).predict(Xva, raw_score=True)
            else:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    est = lr_estimator(cand, ytr, seed, int(mcfg.get("logistic_max_iter", 300)))
                    s = est.fit(data, ytr).decision_function(Xva)
            fold_scores.append(s)
            rows.append({"family": family, "candidate": ci, "params": str(cand), "valid_year": vyear,
                         "n_valid": len(yva), "events": int(yva.sum()),
                         "precision_at_k": ev.precision_at_k(yva, s, k, "mean"),
                         "average_precision": ev.safe_average_precision(yva, s)})
        valid_scores[ci] = fold_scores
    tuning = pd.DataFrame(rows)
    summ = tuning.groupby("candidate").agg(mean=("precision_at_k", "mean"),
                                           std=("precision_at_k", lambda v: float(np.std(v))),
                                           ap=("average_precision", "mean"))
    summ["objective"] = summ["mean"] - penalty * summ["std"]
    summ = summ.sort_values(["objective", "ap"], ascending=False, kind="mergesort", na_position="last")
    best = int(summ.index[0])
    tuning = tuning.merge(summ[["objective"]], left_on="candidate", right_index=True)
    tuning["chosen"] = tuning["candidate"] == best
    info = {"candidate": best, "params": cands[best], "objective": float(summ.loc[best, "objective"]),
            "mean_precision": float(summ.loc[best, "mean"]), "std_precision": float(summ.loc[best, "std"]),
            "mean_average_precision": float(summ.loc[best, "ap"]), "n_evaluated": int(len(summ)),
            "n_planned": len(cands), "budget_hit": len(summ) < len(cands)}
    return tuning, info, {"scores": valid_scores[best]}


# --------------------------------------------------------------------------- the whole fit
def _truth_for(truth_probs: pd.DataFrame | None, target: str) -> pd.DataFrame | None:
    if truth_probs is None:
        return None
    t = truth_probs
    if "target" in t.columns:
        t = t[t["target"] == target]
    return t[["child_id", "fiscal_year", "p"]].drop_duplicates(["child_id", "fiscal_year"])


def fit_target(
    panel: pd.DataFrame, catalogue: pd.DataFrame, cfg: dict, target: str, out_dir: str | Path,
    truth_probs: pd.DataFrame | None = None,
) -> dict:
    """Tune, fit, calibrate, evaluate and explain one target; write every artifact to ``out_dir``.

    Already-known children (``known_<target>`` == 1) are excluded from training, validation and
    the test ranking. Returns the metrics dict written to metrics.json.
    """
    # BLAS threads buy nothing for these matrix-vector products and spin badly on busy cores
    with threadpool_limits(limits=1, user_api="blas"), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Skipping features without any observed values")
        warnings.filterwarnings("ignore", category=RuntimeWarning)
        return _fit_target(panel, catalogue, cfg, target, out_dir, truth_probs)


def _fit_target(panel: pd.DataFrame, catalogue: pd.DataFrame, cfg: dict, target: str,
                out_dir: str | Path, truth_probs: pd.DataFrame | None) -> dict:
    from helpers.models import explain

    out_dir = Path(out_dir)
    mcfg = cfg.get("models", {})
    seed = int(cfg["run"].get("seed", 0))
    k = int(cfg["run"].get("capacity", 100))
    threads = int(mcfg.get("num_threads", 2))
    boot = mcfg.get("bootstrap", {})
    n_boot, alpha = int(boot.get("n", 500)), float(boot.get("alpha", 0.05))
    n_orderings = int(mcfg.get("tie_orderings", 50))
    label, known = f"label_{target}", f"known_{target}"
    features = check_inputs(panel, catalogue, target)
    labels_ja = catalogue_labels(catalogue)
    binary = binary_features(catalogue, features)
    warnings_out: list[str] = []
    small = int(cfg.get("reports", {}).get("small_cell_threshold", 9))

    def count(n: float) -> str:  # counts in messages reach reports: small ones as "<10"
        return ev.count_text(n, small)

    panel = panel.reset_index(drop=True)
    is_known = panel[known].fillna(0).to_numpy(float) == 1
    usable = panel[label].notna().to_numpy() & ~is_known
    years_labelled = sorted(panel.loc[usable, "fiscal_year"].astype(int).unique().tolist())
    tcfg = mcfg.get("tuning", {})
    folds, test_year = ev.temporal_splits(years_labelled, int(tcfg.get("n_folds", 3)))
    train_years = ev.final_train_years(years_labelled, test_year)

    X_all = feature_matrix(panel, features)
    y_all = panel[label].to_numpy(float)
    year_all = panel["fiscal_year"].to_numpy(int)
    lab = panel.loc[usable].reset_index(drop=True)
    X, y, year = X_all[usable], y_all[usable].astype(int), year_all[usable]
    if y[np.isin(year, train_years)].sum() == 0:
        raise MimamoriError(f"panel.parquet: label_{target}: no true cases in training years {train_years}")

    fold_info = []
    min_ev = int(tcfg.get("min_valid_events", 100))
    for tr, v in folds:
        e = int(y[year == v].sum())
        w = e < min_ev
        fold_info.append({"train_years": tr, "valid_year": v, "n_train": int(np.isin(year, tr).sum()),
                          "train_events": int(y[np.isin(year, tr)].sum()),
                          "n_valid": int((year == v).sum()), "valid_events": e, "few_events_warning": w})
        if w:
            warnings_out.append(f"検証年度 {v} の事例は {count(e)} 件（<{min_ev}）: 適合率の推定は不安定です "
                                f"(validation year {v} has {count(e)} events < {min_ev})")

    # ---- tuning (both families), chosen on validation years only
    tunings, chosen, valid_scores = [], {}, {}
    for family in mcfg.get("tuning", {}).get("families", ["lightgbm", "logistic"]):
        tun, info, vs = tune_family(family, X, y, year, folds, k, mcfg, seed, features)
        tunings.append(tun)
        chosen[family] = info
        if info["budget_hit"]:
            warnings_out.append(
                f"{family}: 時間制限で候補 {info['n_evaluated']}/{info['n_planned']} 個のみ評価 "
                f"(tuning stopped by time_budget_s after {info['n_evaluated']} of {info['n_planned']} "
                "candidates; set models.tuning.time_budget_s: null for a machine-independent result)")
        valid_scores[family] = vs["scores"]
    tuning = pd.concat(tunings, ignore_index=True)
    primary = mcfg.get("primary_model", "auto")
    if primary == "auto":
        primary = max(chosen, key=lambda f: (chosen[f]["objective"], f == "lightgbm"))

    # ---- final fits on every year before the test year
    tr_mask = np.isin(year, train_years)
    te_rows = panel["fiscal_year"].to_numpy(int) == test_year
    models: dict[str, Any] = {}
    for family, info in chosen.items():
        if family == "lightgbm":
            data = lgbm_dataset(X[tr_mask], y[tr_mask], int(mcfg.get("max_bin", 63)), features)
            models[family] = fit_lgbm(data, info["params"], seed, threads)
        else:
            models[family] = fit_logistic(X[tr_mask], y[tr_mask], info["params"], seed,
                                          int(mcfg.get("logistic_max_iter", 300)))

    # ---- calibration on the validation years' out-of-time scores of the chosen candidate
    valid_y = np.concatenate([y[year == v] for _, v in folds])
    calib_events = int(valid_y.sum())
    iso_min = int(mcfg.get("calibration", {}).get("isotonic_min_events", 500))
    calib_method = choose_calibration(calib_events, iso_min)
    calibrators = {}
    for family in models:
        s = np.concatenate(valid_scores[family])
        if 0 < valid_y.sum() < len(valid_y):
            calibrators[family] = Calibrator(calib_method).fit(s, valid_y)
        else:
            calibrators[family] = None
            warnings_out.append(f"{family}: 検証年度に事例がなく較正できません (no events to calibrate)")
    base_rate_train = float(y[tr_mask].mean())

    # ---- baselines, fitted / chosen on training years only
    single = best_single_variable(lab, binary, label, train_years, k) if binary else pd.DataFrame()
    best_single = single["feature"].iloc[0] if len(single) else None
    tree = fit_reference_tree(X[tr_mask], y[tr_mask], mcfg.get("reference_tree", {}), seed)
    rules = tree_leaf_rules(tree, features, labels_ja, set(binary))
    te_lab = (year == test_year)
    seg = segment_table(tree, X[tr_mask], y[tr_mask], rules, X[te_lab], y[te_lab])

    # ---- the test-year ranking (every child-year of the test year; known ones not ranked)
    test = panel.loc[te_rows].reset_index(drop=True)
    Xt = X_all[te_rows]
    test_known = test[known].fillna(0).to_numpy(float) == 1
    scores = pd.DataFrame({"child_id": test["child_id"].to_numpy(),
                           "fiscal_year": test["fiscal_year"].to_numpy()})
    for family, m in models.items():
        scores[f"score_{family}"] = margin(m, Xt)
        cal = calibrators[family]
        scores[f"probability_{family}"] = cal.predict(scores[f"score_{family}"]) if cal else np.nan
    scores["score"] = scores[f"score_{primary}"]
    scores["probability"] = scores[f"probability_{primary}"]
    scores["risk_ratio"] = scores["probability"] / base_rate_train
    rank = np.full(len(test), np.nan)
    rank[~test_known] = ev.rank_with_tiebreak(scores.loc[~test_known, "score"].to_numpy(), seed)
    scores["rank"] = pd.array(rank, dtype="Int64")
    scores["label"] = test[label].to_numpy(float)
    scores["known"] = test_known.astype(int)
    if "yc_rule_score" in test.columns:
        scores["yc_rule_score"] = test["yc_rule_score"].to_numpy(dtype="float64", na_value=np.nan)
    if best_single:
        scores["best_single_variable"] = np.nan_to_num(
            test[best_single].to_numpy(dtype="float64", na_value=np.nan), nan=0.0)
    scores["tree_score"] = tree.predict_proba(Xt)[:, 1]
    scores["tree_segment"] = pd.Series(tree.apply(Xt)).map(
        dict(zip(seg["leaf"], seg["segment"], strict=True))).to_numpy()
    for col in INFO_COLUMNS:
        if col in test.columns:
            scores[col] = test[col].to_numpy()

    # ---- explanation: SHAP of the LightGBM model (log-odds of the weighted model)
    n_reasons = int(mcfg.get("reasons", 3))
    shap_df = None
    if "lightgbm" in models:
        shap_df, shap_base = explain.tree_shap(models["lightgbm"], Xt, features,
                                               mcfg.get("shap_method", "lightgbm"))
    contrib = (shap_df if primary == "lightgbm" or shap_df is None and primary != "logistic"
               else explain.linear_contributions(models["logistic"], Xt, features))
    if contrib is not None:
        reasons = explain.reason_codes(contrib, labels_ja, n_reasons)
        for c in reasons.columns:
            scores[c] = reasons[c].to_numpy()

    # ---- oracle (synthetic data only)
    truth = _truth_for(truth_probs, target)
    if truth is not None:
        scores = scores.merge(truth.rename(columns={"p": "oracle_p"}), on=["child_id", "fiscal_year"],
                              how="left")

    # ---- evaluation on the test year: labelled, not already known
    ev_mask = (~scores["known"].astype(bool) & scores["label"].notna()).to_numpy()
    evs = scores.loc[ev_mask].reset_index(drop=True)
    ye = evs["label"].to_numpy(float)
    lists = {"model": ("score", "probability")}
    for family in models:
        lists[family] = (f"score_{family}", f"probability_{family}")
    if best_single:
        lists["best_single_variable"] = ("best_single_variable", None)
    if "yc_rule_score" in evs.columns:
        lists["yc_rule_score"] = ("yc_rule_score", None)
    lists["reference_tree"] = ("tree_score", None)
    # A handful of child-years the generator did not score (residence edge cases at month
    # precision) are ranked last by the oracle, which can only understate the ceiling.
    n_no_truth = int(evs["oracle_p"].isna().sum()) if truth is not None else 0
    oracle_ok = truth is not None and n_no_truth <= ORACLE_MAX_UNCOVERED * max(len(evs), 1)
    if truth is not None and n_no_truth:
        warnings_out.append(
            f"oracle: {count(n_no_truth)} test child-years without a true probability; "
            + ("ranked last by the oracle (its ceiling is a lower bound)" if oracle_ok
               else "too many: oracle not evaluated"))
    if oracle_ok:
        lists["oracle"] = ("oracle_p", "oracle_p")
    headline = {}
    for i, (name, (scol, pcol)) in enumerate(tqdm(lists.items(), desc="bootstrap", leave=False)):
        s = np.nan_to_num(evs[scol].to_numpy(float), nan=-np.inf)
        s = np.where(np.isinf(s), np.nanmin(s[np.isfinite(s)]) - 1 if np.isfinite(s).any() else 0, s)
        prob = evs[pcol].to_numpy(float) if pcol and evs[pcol].notna().all() else None
        headline[name] = ev.headline_metrics(ye, s, k, prob, n_boot, alpha, seed + i, n_orderings)
    comparisons = {}
    for name in ("best_single_variable", "yc_rule_score", "reference_tree"):
        if name in lists:
            comparisons[f"model_vs_{name}"] = ev.paired_hits_difference(
                ye, evs["score"].to_numpy(float),
                np.nan_to_num(evs[lists[name][0]].to_numpy(float), nan=-1e9), k, n_boot, alpha, seed)
    oracle = None
    if oracle_ok:
        op = headline["oracle"]["precision_mean"]
        mp = headline["model"]["precision_mean"]
        oracle = {"oracle_precision_at_k": op, "model_precision_at_k": mp,
                  "model_share_of_oracle": mp / op if op else None,
                  "oracle_expected_hits": float(np.sort(evs["oracle_p"].fillna(0).to_numpy())[::-1][:k].sum())}

    # the top k among the evaluated (labelled, not known) child-years, seeded tie-break
    in_top = ev.topk_mask(evs["score"].to_numpy(float), k, seed)
    if len(single):  # test-year precision of every single-variable list, for information only
        test_feat = test.loc[ev_mask, single["feature"].tolist()]
        single["test_precision_at_k"] = [
            ev.precision_at_k(ye, np.nan_to_num(test_feat[f].to_numpy(dtype="float64", na_value=np.nan),
                                                nan=0.0), k, "mean") for f in single["feature"]]
    evs_feat = pd.concat([evs[["child_id", "fiscal_year"]],
                          test.loc[ev_mask, features].reset_index(drop=True)], axis=1)
    crosstab = ev.crosstab_topk(evs_feat, in_top, features, labels_ja)
    pos = ye == 1
    errors = ev.missed_cases(evs.assign(rank_eval=ev.rank_with_tiebreak(evs["score"].to_numpy(), seed)),
                             in_top, rank_col="rank_eval")
    missed_tab = (ev.crosstab_topk(evs_feat[pos].reset_index(drop=True), ~in_top[pos], features, labels_ja)
                  if 0 < (pos & ~in_top).sum() < pos.sum() else pd.DataFrame())
    stab_cols = [lists[n][0] for n in ("best_single_variable", "yc_rule_score", "reference_tree")
                 if n in lists]
    stability = ev.list_stability(evs.fillna({c: -1e9 for c in stab_cols}), "score", stab_cols, k, seed)
    prev_year = test_year - 1
    prev_rows = (panel["fiscal_year"].to_numpy(int) == prev_year) & ~is_known
    year_overlap = None
    if prev_rows.any():
        prev = pd.DataFrame({"child_id": panel.loc[prev_rows, "child_id"].to_numpy(),
                             "score": margin(models[primary], X_all[prev_rows])})
        year_overlap = ev.year_to_year_overlap(prev, scores.loc[~test_known], "score", k, seed)
        year_overlap.update({"previous_year": prev_year, "note": "previous year scored by the final "
                             "model (in-sample for that year): list stability, not performance"})
    fair = []
    fcfg = mcfg.get("fairness", {})
    for gcol in fcfg.get("groups", []):
        if gcol in evs.columns:
            fair.append(ev.fairness_table(evs, gcol, in_top, fcfg.get("tolerance", (0.8, 1.25)),
                                          int(fcfg.get("min_group_events", 10))))
    fairness = pd.concat(fair, ignore_index=True) if fair else pd.DataFrame()
    subset_col = mcfg.get("subset_column", "school_district")
    if subset_col not in evs.columns and "school_code" in evs.columns:
        subset_col = "school_code"
    subsets = (ev.subset_precision(evs.fillna({c: -1e9 for c in stab_cols}), subset_col,
                                   ["score"] + stab_cols, k) if subset_col in evs.columns else pd.DataFrame())
    calib = (ev.calibration_table(ye, evs["probability"].to_numpy(float))
             if evs["probability"].notna().all() and len(evs) >= 10 else pd.DataFrame())
    odds, odds_note = (odds_ratios(lab[np.isin(year, train_years)],
                                   [c for c in features if c.startswith("yc_") and c != "yc_rule_score"],
                                   label, small) if any(c.startswith("yc_") for c in features)
                       else (pd.DataFrame(), "no yc_ items"))

    # ---- write artifacts (metrics.json last: the make stamp)
    out_dir.mkdir(parents=True, exist_ok=True)
    if "lightgbm" in models:
        write_text(models["lightgbm"].model_to_string(), out_dir / "model_lightgbm.txt")
    if "logistic" in models:
        with atomic_path(out_dir / "model_logistic.joblib") as tmp:
            joblib.dump(models["logistic"], tmp)
    with atomic_path(out_dir / "calibrators.joblib") as tmp:
        joblib.dump(calibrators, tmp)
    with atomic_path(out_dir / "reference_tree.joblib") as tmp:
        joblib.dump(tree, tmp)
    write_parquet(scores, out_dir / "scores.parquet")
    write_parquet(tuning, out_dir / "tuning.parquet")
    write_csv(seg, out_dir / "segment_table.csv")
    write_csv(single, out_dir / "single_variable.csv")
    write_csv(crosstab, out_dir / "crosstab_topk.csv")
    write_csv(missed_tab, out_dir / "missed_vs_caught.csv")
    write_csv(stability, out_dir / "stability.csv")
    write_csv(fairness, out_dir / "fairness.csv")
    write_csv(subsets, out_dir / "subsets.csv")
    write_csv(calib, out_dir / "calibration.csv")
    write_csv(odds, out_dir / "odds_ratios.csv")
    if shap_df is not None:
        shap_out = pd.concat([scores[["child_id", "fiscal_year"]], shap_df.astype("float32")], axis=1)
        write_parquet(shap_out, out_dir / "shap_values.parquet")
        write_csv(explain.global_importance(shap_df, labels_ja), out_dir / "shap_importance.csv")
    params = {"target": target, "primary_model": primary, "chosen": chosen, "features": features,
              "calibration": {"method": calib_method, "validation_events": calib_events,
                              "isotonic_min_events": iso_min},
              "reference_tree": mcfg.get("reference_tree", {}), "seed": seed, "capacity": k,
              "num_threads": threads, "best_single_variable": best_single,
              "shap_base_value": float(shap_base) if shap_df is not None else None,
              "reason_codes_from": ("lightgbm TreeSHAP (log-odds)" if primary == "lightgbm" else
                                    "logistic: coefficient x standardised value (exact linear SHAP, log-odds)")}
    write_json(params, out_dir / "params.json")
    if len(ye) and ye.sum() < 20:
        warnings_out.append(f"テスト年度の事例は {count(ye.sum())} 件のみ: 信頼区間は非常に広くなります "
                            f"(test year has only {count(ye.sum())} events; intervals are wide)")
    metrics = {
        "target": target, "k": k, "test_year": test_year, "train_years": train_years,
        "years_labelled": years_labelled, "folds": fold_info, "primary_model": primary,
        "test": {"n_child_years": int(len(scores)), "known_excluded": int(test_known.sum()),
                 "unlabelled_excluded": int((~test_known & scores["label"].isna()).sum()),
                 "n_evaluated": int(len(evs)), "events": int(ye.sum()),
                 "base_rate": float(ye.mean()) if len(ye) else None,
                 "train_base_rate": base_rate_train},
        "headline": headline, "comparisons": comparisons, "oracle": oracle,
        "tuning": chosen, "calibration": params["calibration"], "missed": errors,
        "year_to_year": year_overlap, "best_single_variable": best_single,
        "best_single_variable_label": labels_ja.get(best_single) if best_single else None,
        "odds_ratio_note": odds_note, "warnings": warnings_out,
        "notes": [f"既知の事例（known_{target} = 1）は学習・検証・テストの順位付けから除外 "
                  "(already-known children excluded from training, validation and the test ranking)",
                  "SHAP値は重み付きモデルの対数オッズ (SHAP values are log-odds of the class-weighted model)",
                  "スコアは判断の補助であり、判断ではありません (scores support, never replace, a human assessment)"],
    }  # no timings here: metrics must be identical for the same inputs, settings and seed
    write_json(metrics, out_dir / "metrics.json")
    return metrics


# --------------------------------------------------------------------------- CLI
def read_model_table(model_dir: Path, name: str) -> pd.DataFrame:
    """A CSV artefact of the models stage; empty when the stage had nothing to write."""
    path = Path(model_dir) / name
    return pd.read_csv(path) if path.exists() and path.stat().st_size > 1 else pd.DataFrame()


ORACLE_MAX_UNCOVERED = 0.01  # share of test child-years the oracle may lack


def load_truth(cfg: dict, root: Path) -> pd.DataFrame | None:
    """The synthetic oracle keyed by pseudonym (real resident codes never leave this function)."""
    path = root / "raw" / "_truth" / "true_probabilities.parquet"
    if not cfg["run"].get("synthetic") or not path.exists():
        return None
    from helpers.ingest import masking

    truth = pd.read_parquet(path)
    key, _source = masking.load_key(cfg)
    codes = truth["resident_code"].astype(str)
    uniq = codes.unique()
    mapping = {c: masking.pseudonym(c, key, "resident") for c in uniq}
    truth["child_id"] = codes.map(mapping)
    return truth.drop(columns=["resident_code"])


def main(cfg: dict, argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers models")
    parser.add_argument("--target", action="append", default=None,
                        help="target to fit (repeatable; default: models.targets)")
    args = parser.parse_args(argv)
    root = data_dir(cfg)
    panel_path = root / "panel" / "panel.parquet"
    cat_path = root / "panel" / "feature_catalogue.csv"
    for p in (panel_path, cat_path):
        if not p.exists():
            raise MimamoriError(f"{p}: not found; run `python -m helpers panel` first")
    panel = pd.read_parquet(panel_path)
    catalogue = pd.read_csv(cat_path)
    targets = args.target or cfg.get("models", {}).get("targets", [])
    truth = load_truth(cfg, root)
    inputs = [panel_path, cat_path]
    if truth is not None:
        inputs.append(root / "raw" / "_truth" / "true_probabilities.parquet")
    for target in targets:
        out = root / "models" / target
        t0 = time.perf_counter()
        metrics = fit_target(panel, catalogue, cfg, target, out, truth)
        elapsed = time.perf_counter() - t0
        h = metrics["headline"]["model"]["precision_at_k"]
        print(f"{target}: precision@{metrics['k']} = {h['value']:.3f} "
              f"[{h['ci_low']:.3f}, {h['ci_high']:.3f}] ({metrics['test']['events']} events in "
              f"FY{metrics['test_year']}, {elapsed:.1f} s)")
        append_audit(root, f"models:{target}", cfg, inputs=inputs, outputs=[out],
                     rows={"panel": len(panel), "test_child_years": metrics["test"]["n_child_years"]})
    return 0
