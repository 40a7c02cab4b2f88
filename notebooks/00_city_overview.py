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
profile = ""      # config profile; empty: MIMAMORI_PROFILE (make exports it) or none
data_dir = ""         # empty: from config (env MIMAMORI_DATA)
config_dir = ""       # empty: config/
pyramid_year = 0      # fiscal year of the population pyramid; 0: the last one

# %%
from helpers.reports import city as C
from helpers.reports import overview as O
from helpers.reports.api import (
    close_report,
    open_report,
    rules,
    set_headline,
    show_figure,
    show_table,
    show_text,
)
from helpers.reports.plotting import label, population_pyramid

cfg = open_report("市の概況（City overview）", profile=profile, data_dir=data_dir,
                  config_dir=config_dir,
                  params={"profile": profile, "data_dir": data_dir, "config_dir": config_dir,
                          "pyramid_year": pyramid_year})
city = C.city_facts(cfg)
pop = city.pop
R = rules(cfg)
years = sorted(pop["fiscal_year"].unique())
year = pyramid_year or years[-1]

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
kids = pop[pop["is_child"]]
set_headline(f"{year}年度: 住民 {int((pop['fiscal_year'] == year).sum()):,} 人（residents）, "
             f"児童 {int((kids['fiscal_year'] == year).sum()):,} 人（children）, "
             f"{len(years)} 年度（fiscal years）", cfg)
counts = O.pyramid_counts(pop, year)
ax = population_pyramid(counts, "age_band", "sex", "n", R, left="男（male）", right="女（female）",
                        title=label(f"{year}年度 4月1日の年齢・性別", f"age and sex on 1 April FY{year}"))
ax.set_xlabel(label("人数", "residents"))
show_figure(ax, "住民の年齢（5歳階級）と性別（residents by 5-year age band and sex）")

# %% [markdown]
# ## 世帯類型（Household types of children）

# %%
hh = city.households
show_table(hh[hh["年度"].isin([years[0], years[-1]])],
           "児童の世帯類型（children by household type, first and last fiscal year）", cfg,
           counts=["児童数（children）"], rates={"割合（share）": "児童数（children）"},
           formats={"割合（share）": "{:.1%}"}, group_by=["年度"],
           margins={"児童数（children）": "children"})

# %% [markdown]
# ## 項目の有病率と目標（Item prevalence against the generator's targets）
# Prevalence is per child-year resident on 1 April; school items use grade 1–9 children.
# Sources of the targets are listed at the end.

# %%
prev = city.prevalence
show_figure(O.plot_prevalence_vs_target(prev, R),
            "全年度平均の有病率（bars）と目標（diamonds）（prevalence pooled over years vs target）")
show_table(prev.drop(columns=["item"]), "年度別の項目有病率（item prevalence by fiscal year）", cfg,
           counts=["該当（n）", "分母（denominator）"], rates={"割合（rate）": "該当（n）"},
           max_rows=120, formats={"割合（rate）": "{:.2%}", "目標（target）": "{:.2%}"},
           fixed=["目標（target）"])

# %% [markdown]
# ## 目的変数（Outcomes by fiscal year）
# Synthetic city: physical abuse for ages 0–15 and young-carer determinations for the school ages
# the generator uses. Real exports: the labels of the panel in each target's review population;
# a year whose outcome window the export does not complete has no child-years. Counts of 1–9
# are suppressed.

# %%
outcomes = city.outcomes
show_figure(O.plot_outcome_rates(outcomes, R),
            "目的変数の発生率（outcome rates per 1,000 child-years; dashed = target）")
show_table(outcomes, "年度別の目的変数（outcome counts by fiscal year）", cfg,
           counts=["対象児童年（child-years）", "件数（events）"],
           rates={"発生率（rate）": "件数（events）"},
           formats={"発生率（rate）": "{:.3%}", "目標（target）": "{:.3%}"}, fixed=["目標（target）"])

# %% [markdown]
# ## 既知の不備（Planted data defects）
# The generator plants known defects (duplicates, impossible dates, unknown codes, orphan keys)
# so the data-quality report can show that ingest rejects exactly these rows.

# (Synthetic city only; for real exports the data-quality report lists every rejected row.)

# %%
if city.synthetic:
    show_table(city.defects, "テーブル・理由別の既知の不備（planted defects by table and reason）",
               cfg, counts=["行数（rows）"], max_rows=150)

# %% [markdown]
# ## 目標の出典（Sources of the targets）
# (Synthetic city only: the public statistics the generator's targets come from.)

# %%
if city.synthetic:
    show_table(C.target_sources(city.targets),
               "有病率の目標と公的統計（prevalence targets and public sources）", cfg,
               formats={"目標（target）": "{:.1%}"}, fixed=["目標（target）"])

# %%
close_report(cfg, inputs=city.inputs)
