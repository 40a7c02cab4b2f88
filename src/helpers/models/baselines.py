"""The comparisons that matter: the best single variable, the reference tree, the item odds.

Comparing with random selection overstates a model's value, so the model is compared with a
list drawn by the single variable that did best on the training years, with the reference
municipality's strict decision tree, and (young carers) with the rule score.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from sklearn.tree import DecisionTreeClassifier

from helpers.config import ReferenceTreeSettings
from helpers.models import evaluation as ev
from helpers.models.data import numeric_column


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
            s = np.nan_to_num(numeric_column(part, f), nan=0.0)
            flagged += int((s > 0).sum())
            precs.append(ev.precision_at_k(y, s, k, "mean"))
        rows.append(
            {"feature": f, "train_precision_at_k": float(np.mean(precs)), "train_flagged": flagged}
        )
    out = pd.DataFrame(rows, columns=["feature", "train_precision_at_k", "train_flagged"])
    return out.sort_values(
        ["train_precision_at_k", "feature"], ascending=[False, True], kind="mergesort"
    ).reset_index(drop=True)


def fit_reference_tree(
    X: np.ndarray, y: np.ndarray, tree_cfg: ReferenceTreeSettings, seed: int
) -> DecisionTreeClassifier:
    """The reference municipality's tree (entropy, depth 3, strict leaf sizes), unweighted."""
    tree = DecisionTreeClassifier(
        criterion=tree_cfg.criterion,
        max_depth=int(tree_cfg.max_depth),
        min_samples_leaf=int(tree_cfg.min_samples_leaf),
        min_samples_split=int(tree_cfg.min_samples_split),
        random_state=seed,
    )
    return tree.fit(X, y)


def tree_leaf_rules(
    tree: DecisionTreeClassifier, features: list[str], labels: dict[str, str], binary: set[str]
) -> dict[int, str]:
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


def segment_table(
    tree: DecisionTreeClassifier,
    X: np.ndarray,
    y: np.ndarray,
    rules: dict[int, str],
    X_test: np.ndarray | None = None,
    y_test: np.ndarray | None = None,
) -> pd.DataFrame:
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


ODDS_COLUMNS = ["item", "odds_ratio", "ci_low", "ci_high", "p_value"]


def odds_ratios(
    panel: pd.DataFrame, items: list[str], label: str, small: int = 9
) -> tuple[pd.DataFrame, str]:
    """statsmodels Logit of the outcome on the young-carer items: odds ratios with 95% CIs."""
    import statsmodels.api as sm

    df = panel[items + [label]].apply(pd.to_numeric, errors="coerce").dropna()
    note = (
        f"{ev.count_text(len(df), small)} child-years with every item known, "
        f"{ev.count_text(df[label].sum(), small)} events"
    )
    X = df[items].loc[:, df[items].std() > 0]
    if X.shape[1] == 0 or df[label].sum() == 0:
        return pd.DataFrame(columns=ODDS_COLUMNS), note + "; not estimable"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            res = sm.Logit(df[label].astype(float), sm.add_constant(X.astype(float))).fit(
                disp=0, maxiter=50
            )
        except Exception as exc:  # noqa: BLE001 - separation etc.: report, don't fail the run
            return pd.DataFrame(columns=ODDS_COLUMNS), f"{note}; fit failed: {exc}"
    ci = np.exp(res.conf_int())
    out = pd.DataFrame(
        {
            "item": res.params.index,
            "odds_ratio": np.exp(res.params.values),
            "ci_low": ci[0].values,
            "ci_high": ci[1].values,
            "p_value": res.pvalues.values,
        }
    )
    return out[out["item"] != "const"].reset_index(drop=True), note
