"""Item-by-item explanations: SHAP for the LightGBM model, reason codes for the listed children.

Residents may ask which items put a child on a list (docs/domain.md §6), so every child on the
list (the top k, ties at the k-th score included) comes with its top positive contributions in
Japanese labels. Contributions are computed for the list and a fixed seeded sample of the year
(``models.shap_sample`` child-years: the global importance and the beeswarm), not for every child of
the year. SHAP values are in log-odds of the class-weighted model (before calibration): they
explain the ranking, not the probability.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from helpers.reports.plotting import axes

SHAP_NOTE = "SHAP値は重み付きモデルの対数オッズ（log-odds of the class-weighted model）"


def explained_rows(
    score: np.ndarray, k: int, n_sample: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The rows whose contributions are computed: the list (the top ``k``, every child tied
    with the k-th score included) and a seeded uniform sample of ``n_sample`` rows of the year.
    Returns ``(rows, listed, sampled)``: row indices, and which of them are listed / sampled."""
    score = np.asarray(score, dtype=float)
    n = len(score)
    listed = np.zeros(n, dtype=bool)
    if n and k > 0:
        known = np.where(np.isnan(score), -np.inf, score)
        listed = known >= np.sort(known)[n - min(k, n)]
    sampled = np.zeros(n, dtype=bool)
    sampled[np.random.default_rng(seed).choice(n, min(n_sample, n), replace=False)] = True
    rows = np.flatnonzero(listed | sampled)
    return rows, listed[rows], sampled[rows]


def reason_columns(
    contrib: pd.DataFrame, rows: np.ndarray, n_rows: int, labels: dict[str, str], n: int = 3
) -> dict[str, np.ndarray]:
    """Reason codes of ``contrib`` (the rows ``rows`` of a year of ``n_rows``) as full-length
    columns: null for the rows not explained."""
    reasons = reason_codes(contrib, labels, n)
    out = {}
    for c in reasons.columns:
        blank = np.full(n_rows, np.nan) if c.endswith("_logodds") else np.full(n_rows, None, object)
        blank[rows] = reasons[c].to_numpy()
        out[c] = blank
    return out


def tree_shap(
    booster, X: np.ndarray, features: list[str], method: str = "tree_explainer"
) -> tuple[pd.DataFrame, float]:
    """TreeSHAP values (rows x features) and the base value; rows add up to the raw score.

    ``method="lightgbm"`` uses LightGBM's built-in TreeSHAP (same algorithm, multithreaded).
    """
    if method == "lightgbm":
        contrib = booster.predict(X, pred_contrib=True)
        base = float(contrib[0, -1]) if len(contrib) else 0.0
        return pd.DataFrame(contrib[:, :-1], columns=features), base
    import shap

    explainer = shap.TreeExplainer(booster)
    values = explainer.shap_values(X, check_additivity=False)
    if isinstance(values, list):  # older shap: one array per class
        values = values[-1]
    values = np.asarray(values)
    if values.ndim == 3:
        values = values[:, :, -1]
    base = np.ravel(explainer.expected_value)[-1]
    return pd.DataFrame(values, columns=features), float(base)


def linear_contributions(pipeline, X: np.ndarray, features: list[str]) -> pd.DataFrame:
    """Log-odds contributions of the logistic pipeline, per original feature.

    After scaling every column has training mean 0, so coef x value is the exact linear SHAP
    value; a missing indicator's contribution is added to the feature it belongs to.
    """
    Xt = pipeline[:-1].transform(X)
    coef = pipeline[-1].coef_[0]
    names = pipeline.named_steps["impute"].get_feature_names_out(features)
    contrib = Xt * coef
    out = pd.DataFrame(0.0, index=range(len(X)), columns=features)
    for j, name in enumerate(names):
        base = name.removeprefix("missingindicator_")
        out[base] += contrib[:, j]
    return out


def reason_codes(contrib: pd.DataFrame, labels: dict[str, str], n: int = 3) -> pd.DataFrame:
    """The top ``n`` positive contributions per row as Japanese labels (null when fewer)."""
    values = contrib.to_numpy(float)
    names = np.array([labels.get(c, c) for c in contrib.columns], dtype=object)
    n = min(n, values.shape[1])
    order = np.argsort(-values, axis=1, kind="stable")[:, :n]
    top_vals = np.take_along_axis(values, order, axis=1)
    out = {}
    for i in range(n):
        positive = top_vals[:, i] > 0
        blank = np.full(len(positive), None, dtype=object)
        out[f"reason_{i + 1}"] = np.where(positive, names[order[:, i]], blank)
        out[f"reason_{i + 1}_logodds"] = np.where(positive, top_vals[:, i], np.nan)
    return pd.DataFrame(out)


def reason_frequencies(frame: pd.DataFrame) -> pd.DataFrame:
    """How often each reason code appears first, and anywhere in reasons 1-3."""
    cols = [c for c in ("reason_1", "reason_2", "reason_3") if c in frame.columns]
    if not cols:
        return pd.DataFrame(columns=["reason", "as_first", "any_of_three"])
    first = frame["reason_1"].dropna().astype(str)
    first = first[first != ""].value_counts()
    anyof = pd.Series(frame.loc[:, cols].to_numpy().ravel()).dropna().astype(str)
    anyof = anyof[anyof != ""].value_counts()
    out = pd.DataFrame({"as_first": first, "any_of_three": anyof}).fillna(0).astype(int)
    out.index.name = "reason"
    return out.sort_values(["any_of_three", "as_first"], ascending=False).reset_index()


def global_importance(shap_values: pd.DataFrame, labels: dict[str, str]) -> pd.DataFrame:
    """Mean |SHAP| per feature, largest first."""
    imp = shap_values.abs().mean()
    out = pd.DataFrame(
        {
            "feature": imp.index,
            "label_ja": [labels.get(c, c) for c in imp.index],
            "mean_abs_shap": imp.values,
        }
    )
    return out.sort_values("mean_abs_shap", ascending=False, kind="mergesort").reset_index(
        drop=True
    )


def plot_importance(importance: pd.DataFrame, top: int = 15, ax=None):
    """Bar chart of mean |SHAP| for the top features."""
    ax = axes(ax, (7, 4))
    part = importance.head(top).iloc[::-1]
    ax.barh(part["label_ja"], part["mean_abs_shap"], color="#4c72b0")
    ax.set_xlabel("平均|SHAP|（mean |SHAP|, log-odds）")
    ax.set_title("特徴量の重要度（global importance）")
    return ax


def plot_beeswarm(
    shap_values: pd.DataFrame,
    X: pd.DataFrame,
    labels: dict[str, str],
    top: int = 12,
    seed: int = 0,
    max_points: int = 3000,
    ax=None,
):
    """SHAP value per child for the top features, coloured by the feature's (ranked) value."""
    ax = axes(ax, (7, 5))
    order = shap_values.abs().mean().sort_values(ascending=False).index[:top]
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(shap_values), min(max_points, len(shap_values)), replace=False)
    for i, f in enumerate(order[::-1]):
        sv = shap_values[f].to_numpy()[idx]
        xv = X[f].to_numpy(float)[idx]
        col = pd.Series(xv).rank(pct=True).to_numpy()
        jitter = rng.uniform(-0.3, 0.3, len(idx))
        ax.scatter(sv, i + jitter, c=np.nan_to_num(col, nan=0.5), cmap="coolwarm", s=4, alpha=0.6)
    ax.set_yticks(range(len(order)), [labels.get(f, f) for f in order[::-1]])
    ax.axvline(0, color="grey", lw=0.8)
    ax.set_xlabel("SHAP値（log-odds; 赤=値が高い red = high value）")
    ax.set_title("SHAP ビースウォーム（beeswarm）")
    return ax


def plot_dependence(
    shap_values: pd.DataFrame, X: pd.DataFrame, feature: str, labels: dict[str, str], ax=None
):
    """SHAP value against the feature's value (missing values drawn at the left edge)."""
    ax = axes(ax, (5, 3.5))
    xv = X[feature].to_numpy(float)
    sv = shap_values[feature].to_numpy(float)
    ok = ~np.isnan(xv)
    ax.scatter(xv[ok], sv[ok], s=4, alpha=0.4, label="値あり（known）")
    if (~ok).any():
        left = np.nanmin(xv) - 1 if ok.any() else 0
        ax.scatter(
            np.full((~ok).sum(), left),
            sv[~ok],
            s=4,
            alpha=0.4,
            color="grey",
            label="不明（missing）",
        )
        ax.legend(fontsize=7)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_xlabel(f"{labels.get(feature, feature)}（{feature}）")
    ax.set_ylabel("SHAP（log-odds）")
    return ax


def plot_dependence_grid(
    shap_values: pd.DataFrame, X: pd.DataFrame, features: list[str], labels: dict[str, str]
):
    """One dependence plot per feature side by side; returns the Figure."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        1, max(len(features), 1), figsize=(4 * max(len(features), 1), 3.2), squeeze=False
    )
    for ax, f in zip(axes[0], features, strict=False):
        plot_dependence(shap_values, X, f, labels, ax=ax)
    return fig
