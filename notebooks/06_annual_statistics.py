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
from helpers.reports import annual as st
from helpers.reports.api import (
    close_report,
    open_report,
    rules,
    set_headline,
    show_figure,
    show_table,
)
from helpers.reports.plotting import assessment_timeline, bar_by_year, label

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
R = rules(cfg)
years = cfg["run"]["fiscal_years"]

consultations = st.read_mart(cfg, "consultations")
residents = st.read_mart(cfg, "residents", columns=["resident_code", "birth_date"])
progress = st.read_mart(cfg, "progress_records")
cases = st.consultation_frame(consultations, residents)
cases = cases[cases["fiscal_year"].isin(years)]

# %% [markdown]
# Yearly counts from the consultation system (こども総合相談) in the mart: cases by type,
# referral route, age band and agencies involved, and one child's progress assessments.
# Every count table passes through disclosure control: counts 1–9 are shown as <10, and the
# tables by type, route and age band split the same consultations, so their totals are
# treated as known when hiding further cells ("x").
#
# ## 年度別の相談件数（Consultations per fiscal year）

# %%
summary = st.yearly_summary(cases, years=years)
set_headline(st.headline_text(summary, R), cfg)
show_table(
    summary,
    "年度別の相談件数（consultations per fiscal year）",
    cfg,
    counts=[c for c in summary.columns if c != "年度（fiscal year）"],
)
ax = bar_by_year(
    summary,
    "年度（fiscal year）",
    "相談件数（consultations）",
    R,
    title=label("相談件数", "consultations"),
)
show_figure(ax, "年度別の相談件数（consultations per fiscal year）")

# %% [markdown]
# ## 相談種別（By consultation type）

# %%
by_type = st.count_by_year(
    cases,
    "consultation_type",
    st.enum_labels("consultations", "consultation_type"),
    years,
    category_title="相談種別（type）",
)
show_table(
    by_type,
    "相談種別 × 年度（consultations by type）",
    cfg,
    counts=[c for c in by_type.columns if c.endswith("年度")],
    universe="consultations",
)

# %% [markdown]
# ## 相談経路（By route of referral）

# %%
by_route = st.count_by_year(
    cases,
    "referral_route",
    st.enum_labels("consultations", "referral_route"),
    years,
    category_title="相談経路（referral route）",
)
show_table(
    by_route,
    "相談経路 × 年度（consultations by referral route）",
    cfg,
    counts=[c for c in by_route.columns if c.endswith("年度")],
    universe="consultations",
)

# %% [markdown]
# ## 年齢区分（By age band at receipt）

# %%
by_age = st.count_by_year(
    cases,
    "age_band",
    {b[2]: b[2] for b in st.AGE_BANDS},
    years,
    category_title="受付時の年齢（age at receipt）",
)
show_table(
    by_age,
    "年齢区分 × 年度（consultations by age band）",
    cfg,
    counts=[c for c in by_age.columns if c.endswith("年度")],
    universe="consultations",
)

# %% [markdown]
# ## 関係機関（Agencies involved）
# A consultation may involve several agencies, so the columns do not add up to the number of
# consultations (延べ件数, no total row).

# %%
by_agency = st.count_by_year(
    st.explode_agencies(cases),
    "agency",
    None,
    years,
    category_title="関係機関（agency）",
    total=False,
)
show_table(
    by_agency,
    "関係機関 × 年度（consultations by agency involved, multiple counting）",
    cfg,
    counts=[c for c in by_agency.columns if c.endswith("年度")],
)

# %% [markdown]
# ## 経過評価（Progress assessments）
# All progress records per fiscal year, then the timeline of one child shown only by
# pseudonym and month (not a count table).

# %%
mix = st.assessment_mix(progress, years)
show_table(
    mix,
    "経過評価 × 年度（progress assessments per fiscal year）",
    cfg,
    counts=[c for c in mix.columns if c.endswith("年度")],
    universe="progress records",
)

chosen = child or st.busiest_child(progress)
timeline = st.child_timeline(progress, chosen)
show_table(
    st.timeline_table(timeline),
    f"仮名 {chosen} の経過評価（assessments of pseudonymous child {chosen}）",
    cfg,
    max_rows=60,
)
ax = assessment_timeline(timeline)
show_figure(ax, f"仮名 {chosen} の経過評価の推移（assessment timeline）")

# %%
close_report(
    cfg, inputs=[st.mart_path(cfg, t) for t in ("consultations", "residents", "progress_records")]
)
