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
pyramid_year = 0  # fiscal year of the population pyramid; 0: the last one

# %%
from helpers.reports import city as C
from helpers.reports import overview as O
from helpers.reports.api import (
    close_report,
    open_report,
    rules,
    set_headline,
    show,
    show_figure,
    show_text,
)

cfg = open_report(
    "市の概況（City overview）",
    profile=profile,
    data_dir=data_dir,
    config_dir=config_dir,
    params={
        "profile": profile,
        "data_dir": data_dir,
        "config_dir": config_dir,
        "pyramid_year": pyramid_year,
    },
)
city = C.city_facts(cfg)
R = rules(cfg)
year = pyramid_year or city.years[-1]

# %% [markdown]
# On the **synthetic municipality** (生成された架空の市) every figure comes from the generator's
# own truth (`data/raw/_truth/`), which ingest, the panel and the models never read: the report
# shows that the city looks like a city and that each item and outcome sits at the rate the
# generator was told to produce, with the public statistic each target comes from.
# On **real exports** there is no truth: the city is drawn from the masked mart (residents on
# 1 April) and the panel, an item is counted only where it is known, and there are no targets.

# %%
show_text(C.provenance_note(city), cfg)

# %% [markdown]
# ## 人口ピラミッド（Population pyramid）

# %%
set_headline(city.headline(year), cfg)
show_figure(
    city.pyramid(year, R), "住民の年齢（5歳階級）と性別（residents by 5-year age band and sex）"
)

# %% [markdown]
# ## 世帯類型（Household types of children）

# %%
show(city.household_table(), cfg)

# %% [markdown]
# ## 項目の有病率と目標（Item prevalence against the generator's targets）
# Prevalence is per child-year resident on 1 April; school items use grade 1–9 children.
# Sources of the targets are listed at the end.

# %%
show_figure(
    O.plot_prevalence_vs_target(city.prevalence, R),
    "全年度平均の有病率（bars）と目標（diamonds）（prevalence pooled over years vs target）",
)
show(city.prevalence_table(), cfg)

# %% [markdown]
# ## 目的変数（Outcomes by fiscal year）
# Synthetic city: physical abuse for ages 0–15 and young-carer determinations for the school ages
# the generator uses. Real exports: the labels of the panel in each target's review population;
# a year whose outcome window the export does not complete has no child-years. Counts of 1–9
# are suppressed.

# %%
show_figure(
    O.plot_outcome_rates(city.outcomes, R),
    "目的変数の発生率（outcome rates per 1,000 child-years; dashed = target）",
)
show(city.outcome_table(), cfg)

# %% [markdown]
# ## 既知の不備（Planted data defects）
# The generator plants known defects (duplicates, impossible dates, unknown codes, orphan keys)
# so the data-quality report can show that ingest rejects exactly these rows. (Synthetic city
# only; for real exports the data-quality report lists every rejected row.)

# %%
show(city.defect_table(), cfg)

# %% [markdown]
# ## 目標の出典（Sources of the targets）
# (Synthetic city only: the public statistics the generator's targets come from.)

# %%
show(city.sources_table(), cfg)

# %%
close_report(cfg, inputs=city.inputs)
