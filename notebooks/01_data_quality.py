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

# %%
from helpers.ingest.report import QualityReport
from helpers.link import report as link_report_mod
from helpers.paths import paths
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
    "データ品質（Data quality）",
    profile=profile,
    data_dir=data_dir,
    config_dir=config_dir,
    params={"profile": profile, "data_dir": data_dir, "config_dir": config_dir},
)
rep = QualityReport.load(cfg)
P = paths(cfg)

# %% [markdown]
# ## 取込結果（Rows in, out and rejected）
# Every row read from an export is either in the analysis mart, rejected with a reason
# (kept in `data/mart/_rejects/` for the data owner to fix), or an exact duplicate that was
# dropped and counted. Ingest stops if these do not add up.

# %%
set_headline(rep.headline(), cfg)
show(rep.rows(), cfg)
show(rep.reasons(), cfg)

# %% [markdown]
# ## 空欄にした値（Bad values in optional fields: cell blanked, row kept）
# Only a bad value in a required field, a key or a reference rejects its row. A bad value in
# any other field (a weight of 400 kg, an impossible end date, an unknown result code) is set to
# blank, so the rest of the record still counts; each one is listed with file, row, column,
# value and reason in `data/mart/_warnings/`.

# %%
show(rep.cells_blanked(), cfg)

# %% [markdown]
# ## 対応表にない値（Values that match no code）
# Spellings of a coded field that neither the schema vocabulary (`data_schema/`) nor the
# value map (`value_map` in `config/ingest.yaml`) knows. `python -m helpers ingest --suggest-map`
# writes a starter value map of exactly these values to check and copy into the settings.

# %%
show(rep.unmapped(), cfg)

# %% [markdown]
# ## 読み取らなかった行とファイル（What was not read as records）
# Title lines above the header and totals lines after the records are skipped and listed here,
# as are open-end dates (9999/12/31 ...) read as "still open", optional sources without an
# export, files whose name fits no table and broken links.

# %%
show(rep.file_notes(), cfg)

# %% [markdown]
# ## 欠損（Blank cells: unknown, none, or zero）
# A blank is never turned into zero. Where the schema says a blank means *unknown* it is
# information not recorded; where it means *none* it is an open period or no event. Zeros are
# real values and counted separately.

# %%
show(rep.blanks(), cfg)

# %% [markdown]
# ## 年度ごとの記録（Records per fiscal year）

# %%
show(rep.records_per_year(), cfg)

# %% [markdown]
# ## 転入者（In-movers）
# For residents who moved in, earlier records are held by another municipality: their history
# here is incomplete, and a missing checkup is not evidence of a missed checkup.

# %%
show(rep.in_movers(), cfg)

# %% [markdown]
# ## 連携率（Linkage to the resident registry）
# Share of each table's records whose key is found in the table it refers to (persons in the
# resident registry; school attendance through the student number in the school register;
# household-keyed tables in the household history), counted **before** records with an
# unknown key were rejected as `orphan_key`.

# %%
show(rep.linkage(), cfg)

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
    show_figure(
        link_report_mod.histogram_figure(link_report, rules(cfg)),
        "最良候補の一致重みと2つの閾値（best match weight per record, thresholds）",
        cfg=cfg,
    )

# %% [markdown]
# ## マスキング（What masking did）
# Identifiers are keyed pseudonyms, dates are moved to the first of the month (births on
# 1 April to 1 March), names, addresses and free text are dropped, and measurements are clipped
# at the configured percentiles so that a rare value cannot single a child out.

# %%
show_text(rep.key_text(), cfg)
show(rep.topcoding(), cfg)

# %%
close_report(cfg, inputs=rep.inputs)
