"""The comparisons that matter: the best single variable, the reference tree, the item odds.

Comparing with random selection overstates a model's value, so the model is compared with a
list drawn by the single variable that did best on the training years, with the reference
municipality's strict decision tree, and (young carers) with the rule score.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.tree import DecisionTreeClassifier

from helpers.config import ReferenceTreeSettings
from helpers.models import evaluation as ev
from helpers.models.data import feature_matrix, numeric_column


def best_single_variable(
    panel: pd.DataFrame, candidates: list[str], label: str, years: list[int], k: int
) -> pd.DataFrame:
    """Every binary feature as a list on its own: mean precision@k over the given (training) years.

    Children with the feature (1) come first, ties in random order (the expected precision is
    used); unknown (NaN) ranks with 0. Sorted best first; the first row is the chosen baseline.
    """
    rows = []
    sub = panel[panel["fiscal_year"].isin(years)]
    parts = [(part, part[label].to_numpy(float)) for _, part in sub.groupby("fiscal_year")]
    for f in candidates:
        precs, flagged = [], 0
        for part, y in parts:
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


def _clopper_pearson(
    events: np.ndarray, n: np.ndarray, alpha: float
) -> tuple[np.ndarray, np.ndarray]:
    """Exact binomial CI of a rate (per element)."""
    events, n = np.asarray(events, float), np.asarray(n, float)
    with np.errstate(invalid="ignore", divide="ignore"):
        lo = np.where(events > 0, stats.beta.ppf(alpha / 2, events, n - events + 1), 0.0)
        hi = np.where(events < n, stats.beta.ppf(1 - alpha / 2, events + 1, n - events), 1.0)
    return np.where(n > 0, lo, np.nan), np.where(n > 0, hi, np.nan)


def _split_p(t, node: int, events: np.ndarray, n: np.ndarray) -> float:
    """Fisher's exact p-value of a split: are its two children's rates different at all?"""
    left, right = t.children_left[node], t.children_right[node]
    table = [[events[left], n[left] - events[left]], [events[right], n[right] - events[right]]]
    return float(stats.fisher_exact(np.asarray(table, dtype=float).round()).pvalue)


@dataclass
class ReferenceTree:
    """The reference municipality's tree (entropy, depth 3, strict leaf sizes, unweighted) as a
    reusable baseline: fit on a DataFrame, score one, and read every node with its risk ratio.

    Risk ratio = a node's rate / the base rate of the data the tree was fitted on, with an exact
    (Clopper-Pearson) CI; ``path_risk_ratios`` shows them along the path (the reference's
    2.75 -> 4.74 -> 4.35). A split chosen with fewer than ``min_split_events`` events below it,
    or whose two sides do not differ (Fisher p >= 0.05), is flagged: such a variable choice is
    noise, however tidy the tree looks.
    """

    tree: DecisionTreeClassifier
    features: list[str]
    labels: dict[str, str]
    binary: set[str]
    base_rate: float
    min_split_events: int = 10
    small: int | None = 9
    with_missing: frozenset[str] = frozenset()

    @classmethod
    def fit(
        cls,
        frame: pd.DataFrame,
        features: list[str],
        label: str,
        settings: ReferenceTreeSettings,
        seed: int = 0,
        labels: dict[str, str] | None = None,
        binary: set[str] | None = None,
        small: int | None = 9,
    ) -> ReferenceTree:
        y = frame[label].to_numpy(float)
        return cls.fit_matrix(
            feature_matrix(frame, features), y, features, settings, seed, labels, binary, small
        )

    @classmethod
    def fit_matrix(
        cls,
        X: np.ndarray,
        y: np.ndarray,
        features: list[str],
        settings: ReferenceTreeSettings,
        seed: int = 0,
        labels: dict[str, str] | None = None,
        binary: set[str] | None = None,
        small: int | None = 9,
    ) -> ReferenceTree:
        tree = DecisionTreeClassifier(
            criterion=settings.criterion,
            max_depth=int(settings.max_depth),
            min_samples_leaf=int(settings.min_samples_leaf),
            min_samples_split=int(settings.min_samples_split),
            random_state=seed,
        )
        tree.fit(X, y)
        missing = frozenset(f for f, m in zip(features, np.isnan(X).any(axis=0), strict=True) if m)
        return cls(
            tree,
            list(features),
            labels or {},
            set(binary or ()),
            float(np.mean(y)) if len(y) else float("nan"),
            int(settings.min_split_events),
            small,
            missing,
        )

    def score(self, frame: pd.DataFrame) -> np.ndarray:
        return self.score_matrix(feature_matrix(frame, self.features))

    def score_matrix(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.tree.predict_proba(X)[:, 1])

    def leaf_of(self, X: np.ndarray) -> np.ndarray:
        return np.asarray(self.tree.apply(X))

    def _conditions(self) -> dict[int, str]:
        """The condition leading into each node (Japanese; where missing values go is stated)."""
        t = self.tree.tree_
        missing_left = getattr(t, "missing_go_to_left", np.zeros(t.node_count, dtype=bool))
        conds: dict[int, str] = {0: "全員（all）"}
        for node in range(t.node_count):
            left, right = t.children_left[node], t.children_right[node]
            if left == -1:
                continue
            f = self.features[t.feature[node]]
            name, thr = self.labels.get(f, f), t.threshold[node]
            if f in self.binary and 0 <= thr < 1:
                lc, rc = f"{name}＝なし", f"{name}＝あり"
            else:
                lc, rc = f"{name} ≤ {thr:.4g}", f"{name} > {thr:.4g}"
            if f in self.with_missing:  # where the unknown values went
                nan_left = bool(missing_left[node])
                lc += "（不明を含む）" if nan_left else ""
                rc += "" if nan_left else "（不明を含む）"
            conds[left], conds[right] = lc, rc
        return conds

    def _parents(self) -> dict[int, int]:
        t = self.tree.tree_
        parents = {}
        for node in range(t.node_count):
            for child in (t.children_left[node], t.children_right[node]):
                if child != -1:
                    parents[int(child)] = node
        return parents

    def path(self, node: int) -> list[int]:
        """Nodes from the root's child down to ``node`` (empty for the root)."""
        parents, out = self._parents(), []
        while node in parents:
            out.append(node)
            node = parents[node]
        return out[::-1]

    def nodes(self, X: np.ndarray, y: np.ndarray, alpha: float = 0.05) -> pd.DataFrame:
        """Every node on every path: child-years, events, rate, risk ratio with its exact CI,
        the risk ratios along its path, and a note on unreliable splits."""
        t = self.tree.tree_
        ind = self.tree.decision_path(X)
        n = np.asarray(ind.sum(axis=0)).ravel().astype(float)
        events = np.asarray(ind.T @ np.asarray(y, float)).ravel()
        rate = np.divide(events, n, out=np.full_like(n, np.nan), where=n > 0)
        lo, hi = _clopper_pearson(events, n, alpha)
        base = self.base_rate
        rr = rate / base if base else np.full_like(rate, np.nan)
        conds, parents = self._conditions(), self._parents()
        rows = []
        for node in range(t.node_count):
            split = t.children_left[node] != -1
            p = _split_p(t, node, events, n) if split else np.nan
            path = self.path(node)
            rows.append(
                {
                    "node": node,
                    "parent": parents.get(node, -1),
                    "depth": len(path),
                    "leaf": not split,
                    "condition": conds[node],
                    "rule": " かつ ".join(conds[i] for i in path) or conds[0],
                    "child_years": int(n[node]),
                    "events": int(events[node]),
                    "rate": rate[node],
                    "risk_ratio": rr[node],
                    "rr_ci_low": lo[node] / base if base else np.nan,
                    "rr_ci_high": hi[node] / base if base else np.nan,
                    "path_risk_ratios": " → ".join(f"{rr[i]:.2f}" for i in path),
                    "split_p_value": p,
                    "note": self._note(split, events[node], p),
                }
            )
        return pd.DataFrame(rows)

    def _note(self, split: bool, events: float, p: float) -> str:
        if not split:
            return ""
        notes = []
        if events < self.min_split_events:
            notes.append(
                f"分岐は事例 {ev.count_text(events, self.small)} 件で選ばれた（split chosen "
                f"with fewer than {self.min_split_events} events below it: unreliable）"
            )
        if not p < 0.05:
            notes.append(
                f"分岐の両側の率に差が見られない（Fisher p = {p:.2f}: the split may be noise）"
            )
        return "；".join(notes)

    def _path_notes(self, nodes: pd.DataFrame, leaf: int) -> str:
        """The notes of every split above ``leaf`` (root first), each once."""
        splits = [int(nodes.loc[i, "parent"]) for i in self.path(leaf)]
        notes = [str(nodes.loc[i, "note"]) for i in splits if nodes.loc[i, "note"]]
        return "；".join(dict.fromkeys(notes))

    def segments(
        self,
        X: np.ndarray,
        y: np.ndarray,
        X_test: np.ndarray | None = None,
        y_test: np.ndarray | None = None,
        alpha: float = 0.05,
    ) -> pd.DataFrame:
        """Leaves as segments (fitted data; test-year columns beside), best risk ratio first,
        each with its path, exact CI and any note from the splits above it."""
        nodes = self.nodes(X, y, alpha).set_index("node")
        leaves = nodes[nodes["leaf"]].copy()
        leaves["note"] = [self._path_notes(nodes, int(node)) for node in leaves.index]
        g = leaves.drop(columns="leaf").reset_index()
        g = g.rename(columns={"node": "leaf", "events": "positives"})
        g = g[
            [
                "leaf",
                "child_years",
                "positives",
                "rate",
                "risk_ratio",
                "rr_ci_low",
                "rr_ci_high",
                "path_risk_ratios",
                "rule",
                "note",
            ]
        ]
        if X_test is not None and y_test is not None:
            test = pd.DataFrame({"leaf": self.leaf_of(X_test), "y": y_test})
            gt = test.groupby("leaf").agg(
                test_child_years=("y", "size"), test_positives=("y", "sum")
            )
            g = g.merge(gt, on="leaf", how="left").fillna(
                {"test_child_years": 0, "test_positives": 0}
            )
            g["test_rate"] = g["test_positives"] / g["test_child_years"].replace(0, np.nan)
        g = g.sort_values(["risk_ratio", "leaf"], ascending=[False, True]).reset_index(drop=True)
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
