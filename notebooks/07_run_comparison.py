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
profile = ""  # config profile; empty: MIMAMORI_PROFILE (set by make) or none
data_dir = ""  # empty: from config (env MIMAMORI_DATA)
config_dir = ""  # empty: config/
base = ""  # base run id (or prefix, latest, previous); empty: the latest `make compare`
new = ""  # new run id; empty: the latest `make compare`
target = ""  # target of both runs; empty: the latest `make compare`

# %%
from helpers.reports.api import close_report, open_report, set_headline, show_figure, show_table
from helpers.runs import report as R
from helpers.runs.stage import load_comparison

cfg = open_report(
    "実行の比較（Two models runs compared）",
    profile=profile,
    data_dir=data_dir,
    config_dir=config_dir,
    params={
        "profile": profile,
        "data_dir": data_dir,
        "config_dir": config_dir,
        "base": base or "(latest comparison)",
        "new": new or "(latest comparison)",
        "target": target or "(latest comparison)",
    },
)
cmp = load_comparison(cfg, base, new, target)

# %% [markdown]
# ## 要点：リストは良くなったか（Headline: did the list get better, beyond noise?）
# Both runs ranked **the same test child-years** (a comparison of runs with other test
# children, years or list length is refused). For each child-year resampled with replacement,
# both rankings see the same sample: the interval is for the *difference* in true cases found
# in the top k (new − base), so noise shared by both runs cancels. The verdict is "better" or
# "worse" only when that interval excludes 0.

# %%
set_headline(R.headline_text(cmp), cfg)
t = R.headline_table(cmp)
show_table(t.frame, t.caption, cfg, counts=t.counts, rates=t.rates)
show_figure(R.plot_difference(cmp), "的中数の差と95%信頼区間（difference in hits, paired CI）")
print(R.verdict_text(cmp))

# %%
t = R.backtest_table(cmp)
if t is not None:
    show_table(t.frame, t.caption, cfg, counts=t.counts, rates=t.rates)

# %% [markdown]
# ## 何が変わったか（What changed: settings, features, chosen parameters）

# %%
t = R.runs_table(cmp)
show_table(t.frame, t.caption, cfg, counts=t.counts)
t = R.settings_diff(cmp)
show_table(t.frame, t.caption, cfg, counts=t.counts)
t = R.feature_diff(cmp)
show_table(t.frame, t.caption, cfg, counts=t.counts)
t = R.tuning_diff(cmp)
show_table(t.frame, t.caption, cfg, counts=t.counts, max_rows=60)

# %% [markdown]
# ## リストの入れ替わり（Who entered and left the top k）
# The lists staff would receive in the test year (top k by each run's rank). Children who
# entered are grouped by the new run's first reason code, those who left by the base run's.

# %%
t = R.overlap_table(cmp)
show_table(t.frame, t.caption, cfg, counts=t.counts, rates=t.rates)
t = R.movers_by_reason(cmp)
show_table(t.frame, t.caption, cfg, counts=t.counts, rates=t.rates)

# %% [markdown]
# ## 較正と公平性の変化（Calibration and fairness change）

# %%
t = R.calibration_table(cmp)
show_table(t.frame, t.caption, cfg, counts=t.counts)
t = R.fairness_table(cmp)
show_table(t.frame, t.caption, cfg, counts=t.counts, rates=t.rates)

# %%
close_report(
    cfg,
    inputs=[
        cmp.base.paths.scores,
        cmp.new.paths.scores,
        cmp.base.paths.metrics,
        cmp.new.paths.metrics,
    ],
)
