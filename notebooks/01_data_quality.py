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
from helpers.config import data_dir as cfg_data_dir
from helpers.ingest import quality
from helpers.link import report as link_report_mod
from helpers.paths import paths
from helpers.reports.api import (
    close_report,
    open_report,
    rules,
    set_headline,
    show,
    show_figure,
    show_table,
    show_text,
)
from helpers.schema import load_schemas

cfg = open_report("データ品質（Data quality）", profile=profile, data_dir=data_dir,
                  config_dir=config_dir,
                  params={"profile": profile, "data_dir": data_dir, "config_dir": config_dir})
mart_dir = cfg_data_dir(cfg) / "mart"
years = cfg["run"]["fiscal_years"]
schemas = load_schemas()
report = quality.load_report(mart_dir)
mart = quality.load_mart(mart_dir, list(schemas))
P = paths(cfg)

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
           counts=["rows_in", "rows_out", "rows_rejected", "duplicates_dropped", "removed",
                   "cells_blanked"],
           rates={"reject_rate": "rows_rejected"}, max_rows=40, publishes={"removed": "removed"})

# %%
show_table(quality.reason_counts(report), "除外理由（reject reasons per table）", cfg,
           counts=["rows"], max_rows=80, group_by=["table"], margins={"rows": "removed"})

# %% [markdown]
# ## 空欄にした値（Bad values in optional fields: cell blanked, row kept）
# Only a bad value in a required field, a key or a reference rejects its row. A bad value in
# any other field (a weight of 400 kg, an impossible end date, an unknown result code) is set to
# blank, so the rest of the record still counts; each one is listed with file, row, column,
# value and reason in `data/mart/_warnings/`.

# %%
show_table(quality.cell_warning_counts(report),
           "空欄にした不正な値（bad cells blanked, per table, column and reason）", cfg,
           counts=["cells"], max_rows=80)

# %% [markdown]
# ## 対応表にない値（Values that match no code）
# Spellings of a coded field that neither the schema vocabulary (`data_schema/`) nor the
# value map (`value_map` in `config/ingest.yaml`) knows. `python -m helpers ingest --suggest-map`
# writes a starter value map of exactly these values to check and copy into the settings.

# %%
show_table(quality.unmapped_values(report),
           "対応表にない値（unmapped values: table, field, value, rows）", cfg,
           counts=["rows"], max_rows=80)

# %% [markdown]
# ## 読み取らなかった行とファイル（What was not read as records）
# Title lines above the header and totals lines after the records are skipped and listed here,
# as are open-end dates (9999/12/31 ...) read as "still open", optional sources without an
# export, files whose name fits no table and broken links.

# %%
show_table(quality.file_notes(report), "ファイルごとの注記（notes per file）", cfg,
           counts=["title_lines", "footer_lines", "blank_lines"], max_rows=80)

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
# Share of each table's records whose key is found in the table it refers to (persons in the
# resident registry; school attendance through the student number in the school register;
# household-keyed tables in the household history), counted **before** records with an
# unknown key were rejected as `orphan_key`.

# %%
show_table(quality.linkage_rate(report), "住民記録との連携率（linkage rate, before orphans are "
           "rejected）", cfg, counts=["records", "key_blank", "linked", "not_found"],
           rates={"linkage_rate": "linked"}, max_rows=40)

# %% [markdown]
# ## 名寄せの品質（Linkage of exports without a resident code）
# Exports that carry no resident code (校務支援, the NPO's roster) are linked to the resident
# registry by name, kana, birth date, sex, address and guardian before masking. Pairs between
# the two thresholds go to the clerical-review workbook; on real data precision and recall are
# estimates from the model's match probabilities, on the synthetic city they are measured
# against the generator's truth.

# %%
link_report = link_report_mod.load(P)
if link_report:
    show(link_report_mod.summary_table(link_report), cfg)
    show(link_report_mod.quality_table(link_report, cfg.run.synthetic), cfg)
    show_text(link_report_mod.unmatched_text(link_report), cfg)
else:
    print("名寄せの対象となる出力はありません（no export needed linkage）")

# %%
if link_report:
    show_figure(link_report_mod.histogram_figure(link_report, rules(cfg)),
                "最良候補の一致重みと2つの閾値（best match weight per record, thresholds）",
                cfg=cfg)

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
