# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Mimamori (.venv)
#     language: python
#     name: mimamori
# ---

# %% tags=["parameters"]
profile = ""  # config profile; empty: MIMAMORI_PROFILE (make exports it) or none
data_dir = ""  # empty: from config (env MIMAMORI_DATA)
config_dir = ""  # empty: config/
target = "young_carer"  # the one target to refit
feature = ""  # candidate you registered, e.g. "child_absence_10plus_last_fy"; empty: none
base = "latest"  # run to compare with, taken before the rebuild (id, prefix, latest, previous)
rebuild = True  # rebuild the panel and the target's models now (False: compare base and latest)
render = True  # also write reports/07_run_comparison.html

# %%
from helpers.reports.api import close_report, open_report, set_headline, show_figure, show_table
from helpers.runs import experiment as X
from helpers.runs import report as R

cfg = open_report(
    "特徴量を試す（Try a feature）",
    profile=profile,
    data_dir=data_dir,
    config_dir=config_dir,
    params={
        "profile": profile,
        "data_dir": data_dir,
        "config_dir": config_dir,
        "target": target,
        "feature": feature or "(none)",
        "base": base,
        "rebuild": rebuild,
        "render": render,
    },
)

# %% [markdown]
# ## 五つの手順（Five steps）
# Did the list get better, beyond noise? This notebook takes a contractor from an idea for a
# feature to the paired comparison of report 07, in five steps. Steps 1–2 are edits to
# `src/helpers/panel/features.py`; the cells below do steps 3–5.
#
# **Step 1 — registry entry.** Every panel column is declared once in `feature_registry(cfg)`
# (the feature catalogue, the panel's column order and the leakage check come from it), e.g.
# beside `child_absence_30plus_last_fy`:
# ```python
# _spec("child_absence_10plus_last_fy", "欠席10日以上（前年度）[absent 10+ days]",
#       "10 or more absence days in FY t-1", ("school_attendance", "school_register"),
#       "1fy", "binary"),
# ```
# **Step 2 — the function.** Compute it in `child_features` (the child) or `household_state`
# (the household) from records dated *before* the as-of date `on` only; "unknown" stays NaN,
# never a silent 0:
# ```python
# out["child_absence_10plus_last_fy"] = (absence >= 10).astype("float64").where(absence.notna())
# ```
# **Step 3 — leakage test.** The panel stage rebuilds one year from the data cut at its as-of
# date and fails when any feature changes (shown below for the candidate); the property test
# `tests/panel/test_panel.py::test_records_on_or_after_the_as_of_date_change_no_feature` covers
# every registered feature by itself. Add a by-hand test beside `test_child_features_by_hand`:
# ```python
# def test_absence_10plus_by_hand(panel):
#     assert row(panel, "c1")["child_absence_10plus_last_fy"] == 1  # 35 days absent
#     assert np.isnan(row(panel, "c6")["child_absence_10plus_last_fy"])  # not reported
# ```
# and run `.venv/bin/python -m pytest -q tests/panel`.
#
# **Step 4 — rebuild** the panel and the models of one target (the cell below, or
# `make models`); the models stage archives the new run under `data/runs/`.
#
# **Step 5 — compare** with the run before the change: report 07 (`make compare`).

# %%
exp = X.start(cfg, target, feature, base)
if feature:
    t = X.feature_table(exp)
    show_table(t.frame, t.caption, cfg)

# %% [markdown]
# ## 再構築（Step 4: rebuild the panel and the models）

# %%
exp = X.rebuild(exp) if rebuild else X.without_rebuild(exp)
t = X.leakage_table(exp)
show_table(t.frame, t.caption, cfg)

# %% [markdown]
# ## 比較（Step 5: the new run against the run before the change）

# %%
cmp = X.compare(exp)
set_headline(R.headline_text(cmp), cfg)
t = R.headline_table(cmp)
show_table(t.frame, t.caption, cfg, counts=t.counts, rates=t.rates)
show_figure(R.plot_difference(cmp), "的中数の差と95%信頼区間（difference in hits, paired CI）")
print(R.verdict_text(cmp))
t = R.feature_diff(cmp)
show_table(t.frame, t.caption, cfg)
t = R.settings_diff(cmp)
show_table(t.frame, t.caption, cfg)

# %%
report_07 = X.land(cmp, render)
print(f"report 07: {report_07}" if render else "report 07 not rendered (render = False)")

# %%
close_report(cfg, inputs=[cmp.base.paths.scores, cmp.new.paths.scores])
