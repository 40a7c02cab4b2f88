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

# %%
from helpers.ingest import quality
from helpers.config import data_dir as cfg_data_dir
from helpers.reports.api import close_report, open_report, set_headline, show_table
from helpers.schema import load_schemas

cfg = open_report("データ品質（Data quality）", profile=profile, data_dir=data_dir,
                  config_dir=config_dir,
                  params={"profile": profile, "data_dir": data_dir, "config_dir": config_dir})
mart_dir = cfg_data_dir(cfg) / "mart"
years = cfg["run"]["fiscal_years"]
schemas = load_schemas()
report = quality.load_report(mart_dir)
mart = quality.load_mart(mart_dir, list(schemas))

# %% [markdown]
# ## 取込結果（Rows in, out and rejected）
# Every row read from an export is either in the analysis mart, rejected with a reason
# (kept in `data/mart/_rejects/` for the data owner to fix), or an exact duplicate that was
# dropped and counted. Ingest stops if these do not add up.

# %%
summary = quality.table_summary(report)
totals = report["totals"]
rejected_share = totals["rows_rejected"] / totals["rows_in"] if totals["rows_in"] else 0.0
set_headline(
    f"{len(summary)}表・{totals['rows_in']:,}行を取り込み、{rejected_share:.2%}を理由付きで除外"
    f"（{len(summary)} tables, {totals['rows_in']:,} rows read; {rejected_share:.2%} rejected with a reason）",
    cfg,
)
show_table(summary.assign(removed=summary["rows_in"] - summary["rows_out"]),
           "表ごとの取込件数（rows per table; removed = rejected + duplicates）", cfg,
           counts=["rows_in", "rows_out", "rows_rejected", "duplicates_dropped", "removed"],
           rates={"reject_rate": "rows_rejected"}, max_rows=40, publishes={"removed": "removed"})

# %%
show_table(quality.reason_counts(report), "除外理由（reject reasons per table）", cfg,
           counts=["rows"], max_rows=80, group_by=["table"], margins={"rows": "removed"})

# %% [markdown]
# ## 欠損（Blank cells: unknown, none, or zero）
# A blank is never turned into zero. Where the schema says a blank means *unknown* it is
# information not recorded; where it means *none* it is an open period or no event. Zeros are
# real values and counted separately.

# %%
miss = quality.missingness(mart, schemas)
show_table(miss[(miss["blank_unknown"] + miss["blank_none"] + miss["zero"]) > 0],
           "列ごとの空欄とゼロ（blank and zero cells per column）", cfg,
           counts=["rows", "blank_unknown", "blank_none", "zero"],
           derived={"blank_share": ["blank_unknown", "blank_none"]}, max_rows=200)

# %% [markdown]
# ## 年度ごとの記録（Records per fiscal year）

# %%
coverage = quality.date_coverage(mart, schemas, years)
show_table(coverage, "日付列の年度別件数（records per fiscal year of each date column）", cfg,
           counts=[c for c in coverage.columns if c.startswith("FY")], max_rows=80)

# %% [markdown]
# ## 転入者（In-movers）
# For residents who moved in, earlier records are held by another municipality: their history
# here is incomplete, and a missing checkup is not evidence of a missed checkup.

# %%
if "residents" in mart:
    show_table(quality.in_mover_share(mart["residents"], years),
               "年度別の転入者割合（in-mover share per fiscal year）", cfg,
               counts=["residents", "in_movers"], rates={"in_mover_share": "in_movers"})

# %% [markdown]
# ## 連携率（Linkage to the resident registry）
# Share of each table's records whose person is found in the resident registry (school
# attendance links through the student number in the school register).

# %%
if "residents" in mart:
    show_table(quality.linkage_rate(mart, schemas), "住民記録との連携率（linkage rate）", cfg,
               counts=["records", "key_blank", "linked"], rates={"linkage_rate": "linked"},
               max_rows=40)

# %% [markdown]
# ## マスキング（What masking did）
# Identifiers are keyed pseudonyms, dates are moved to the first of the month (births on
# 1 April to 1 March), names, addresses and free text are dropped, and measurements are clipped
# at the configured percentiles so that a rare value cannot single a child out.

# %%
print(f"仮名化キー（pseudonym key）: {report['key_source']}"
      + ("（デモ用キー：合成データのみ / demo key: synthetic data only）" if report["key_source"] == "demo" else ""))
show_table(quality.masking_summary(report), "トップコーディング（top-coding bounds and values clipped）",
           cfg, counts=["values", "clipped_low", "clipped_high"], max_rows=40)

# %%
close_report(cfg, inputs=[mart_dir / "_ingest_report.json"])
