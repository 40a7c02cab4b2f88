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
child = ""  # child pseudonym for the timeline; empty: the child with most records

# %%
from helpers.reports.annual import AnnualReport
from helpers.reports.api import (
    close_report,
    open_report,
    set_headline,
    show,
    show_figure,
    show_text,
)

cfg = open_report(
    "相談統計（Annual consultation statistics）",
    profile=profile,
    data_dir=data_dir,
    config_dir=config_dir,
    params={
        "profile": profile,
        "data_dir": data_dir,
        "config_dir": config_dir,
        "child": child or "(most records)",
    },
)
rep = AnnualReport.load(cfg, child)
show_text(rep.absent_note(), cfg)

# %% [markdown]
# Yearly counts from the consultation system (こども総合相談) in the mart: cases by type,
# referral route, age band and agencies involved, and one child's progress assessments.
# Every count table passes through disclosure control: counts 1–9 are shown as <10, and the
# tables by type, route and age band split the same consultations, so their totals are
# treated as known when hiding further cells ("x").
#
# ## 年度別の相談件数（Consultations per fiscal year）

# %%
set_headline(rep.headline(), cfg)
show(rep.summary(), cfg)
show_figure(rep.summary_figure(), "年度別の相談件数（consultations per fiscal year）")

# %% [markdown]
# ## 相談種別（By consultation type）

# %%
show(rep.by_type(), cfg)

# %% [markdown]
# ## 相談経路（By route of referral）

# %%
show(rep.by_route(), cfg)

# %% [markdown]
# ## 年齢区分（By age band at receipt）

# %%
show(rep.by_age(), cfg)

# %% [markdown]
# ## 関係機関（Agencies involved）
# A consultation may involve several agencies, so the columns do not add up to the number of
# consultations (延べ件数, no total row).

# %%
show(rep.by_agency(), cfg)

# %% [markdown]
# ## 経過評価（Progress assessments）
# All progress records per fiscal year, then the timeline of one child shown only by
# pseudonym and month (not a count table).

# %%
show(rep.assessments(), cfg)
if rep.child:  # no progress records (no export): no timeline
    show(rep.timeline(), cfg)
    show_figure(rep.timeline_figure(), f"仮名 {rep.child} の経過評価の推移（assessment timeline）")

# %%
close_report(cfg, inputs=rep.inputs)
