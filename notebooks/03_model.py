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
profile = "tiny"      # config profile; empty: none
data_dir = ""         # empty: from config (env MIMAMORI_DATA)
config_dir = ""       # empty: config/
target = "physical_abuse"  # one of models.targets
top_features = 15     # rows in the feature tables and the importance chart

# %%
import json
from functools import partial

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from helpers.models import evaluation as ev
from helpers.models import explain
from helpers.config import data_dir as cfg_data_dir
from helpers.models.stage import read_model_table
from helpers.reports.api import close_report, open_report, set_headline, show_figure, show_table

cfg = open_report(f"モデルと評価（Models and evaluation）: {target}", profile=profile,
                  data_dir=data_dir, config_dir=config_dir,
                  params={"profile": profile, "data_dir": data_dir, "config_dir": config_dir,
                          "target": target, "top_features": top_features})
model_dir = cfg_data_dir(cfg) / "models" / target
metrics = json.loads((model_dir / "metrics.json").read_text(encoding="utf-8"))
params = json.loads((model_dir / "params.json").read_text(encoding="utf-8"))
scores = pd.read_parquet(model_dir / "scores.parquet")
catalogue = pd.read_csv(cfg_data_dir(cfg) / "panel" / "feature_catalogue.csv")
labels_ja = dict(zip(catalogue["name"], catalogue["label_ja"].fillna(catalogue["name"]), strict=True))
threshold = cfg["reports"]["small_cell_threshold"] if cfg["reports"]["suppress_small_cells"] else None
k = metrics["k"]
read_csv = partial(read_model_table, model_dir)


# %% [markdown]
# ## 要点：上位k人に真の事例が何人入るか（Headline: true cases in the top k）
# Staff can review only **k** children (the capacity). The question: does the model put more
# children who truly need support into those k places than the simple alternatives — the best
# single variable chosen on training years (lesson 7) and the young-carer rule score — and how
# sure are we? The oracle (synthetic city only) ranks by the true probability: the ceiling.

# %%
head = ev.headline_table(metrics)
m = head.set_index("key")
text = (f"上位{k}人の適合率（precision@{k}, FY{metrics['test_year']}）: モデル {m.loc['model', 'value']:.3f} "
        f"[{m.loc['model', 'ci_low']:.3f}–{m.loc['model', 'ci_high']:.3f}]")
if "best_single_variable" in m.index:
    text += (f"; 最良の単一変数 {m.loc['best_single_variable', 'value']:.3f} "
             f"[{m.loc['best_single_variable', 'ci_low']:.3f}–{m.loc['best_single_variable', 'ci_high']:.3f}]")
if "yc_rule_score" in m.index:
    text += f"; 該当数スコア {m.loc['yc_rule_score', 'value']:.3f}"
if "oracle" in m.index:
    text += f"; 理論上限（oracle） {m.loc['oracle', 'value']:.3f}"
set_headline(text, cfg)
show_table(head.drop(columns="key").rename(columns={"value": f"precision@{k}"}),
           f"上位{k}人の適合率と95%信頼区間（precision@{k} with bootstrap 95% CI; "
           "worst/best = ties ordered negatives/positives first）", cfg)
show_figure(ev.plot_headline(head, k), f"precision@{k}（95% CI）")

# %%
test = metrics["test"]
show_table(pd.DataFrame([{
    "test_year": metrics["test_year"], "child_years": test["n_child_years"],
    "known_excluded": test["known_excluded"], "unlabelled_excluded": test["unlabelled_excluded"],
    "evaluated": test["n_evaluated"], "events": test["events"], "base_rate": test["base_rate"]}]),
    "テスト年度の対象（test year population; already-known children excluded from the ranking）",
    cfg, counts=["child_years", "known_excluded", "unlabelled_excluded", "evaluated", "events"],
    rates={"base_rate": "events"})
print("\n".join(metrics["notes"]))
if metrics["warnings"]:
    print("\n注意（warnings）:\n- " + "\n- ".join(metrics["warnings"]))

# %% [markdown]
# ## 時系列による検証（Temporal validation）
# Each fold trains on fiscal years up to t−1 and validates on t; the final model trains on every
# year before the test year, which tuning never saw.

# %%
folds = [(f["train_years"], f["valid_year"]) for f in metrics["folds"]]
show_figure(ev.plot_splits(folds, metrics["test_year"], metrics["years_labelled"]),
            "学習・検証・テスト年度（train / validate / test years）")
fold_table = pd.DataFrame(metrics["folds"]).assign(
    train_years=lambda d: d["train_years"].map(lambda y: f"{min(y)}–{max(y)}"))
show_table(fold_table, "各検証年度の事例数（events per fold; warning when < min_valid_events）", cfg,
           counts=["n_train", "train_events", "n_valid", "valid_events"])

# %% [markdown]
# ## ハイパーパラメータの選択（Tuning for precision at capacity）
# Objective = mean validation precision@k − penalty × its standard deviation across years, so a
# candidate that is good on average but erratic is not chosen. Average precision beside it.

# %%
tuning = pd.read_parquet(model_dir / "tuning.parquet")
show_figure(ev.plot_tuning(tuning), "候補ごとの平均と年度間のばらつき（every candidate）")
chosen = pd.DataFrame([{"family": f, **{kk: v for kk, v in info.items() if kk != "params"},
                        "params": json.dumps(info["params"], ensure_ascii=False)}
                       for f, info in metrics["tuning"].items()])
show_table(chosen, f"選ばれた候補（chosen candidates; primary model: {metrics['primary_model']}）", cfg)
cal = metrics["calibration"]
print(f"較正（calibration）: {cal['method']} — 検証年度の事例 {ev.count_text(cal['validation_events'], threshold)} 件; "
      f"isotonic は {cal['isotonic_min_events']} 件以上のときのみ (isotonic only with plenty of events)")

# %% [markdown]
# ## テスト年度の全指標（All test-year metrics, 95% bootstrap CI）

# %%
show_table(ev.metrics_table(metrics), "テスト年度の指標（precision/recall/lift at k use the mean over "
           "tie orderings; worst/best cases beside them）", cfg)
show_table(ev.comparison_table(metrics), f"モデルとベースラインの差（paired bootstrap difference in precision@{k}）",
           cfg)
if metrics.get("oracle"):
    o = metrics["oracle"]
    print(f"モデルは理論上限の {o['model_share_of_oracle']:.0%} (model precision@k as a share of the oracle's)")

# %%
ev_rows = scores[(scores["known"] == 0) & scores["label"].notna()]
y_test = ev_rows["label"].to_numpy(float)
curve_cols = {"モデル（model）": "score", "単一変数（single variable）": "best_single_variable",
              "該当数（rule score）": "yc_rule_score", "決定木（tree）": "tree_score",
              "oracle": "oracle_p"}
curve_cols = {n: c for n, c in curve_cols.items() if c in ev_rows.columns and ev_rows[c].notna().all()}
ks = np.unique(np.linspace(max(1, k // 10), min(len(ev_rows), 5 * k), 40).astype(int))
fig, axes = plt.subplots(1, 2, figsize=(12, 4))
ev.plot_precision_curve({n: ev.precision_curve(y_test, ev_rows[c].to_numpy(float), ks)
                         for n, c in curve_cols.items()}, k, ax=axes[0])
ev.plot_pr_curve({n: (y_test, ev_rows[c].to_numpy(float)) for n, c in curve_cols.items()}, ax=axes[1])
show_figure(fig, "リスト長ごとの適合率と PR 曲線（precision vs k, capacity marked; PR curve）")
calib = read_csv("calibration.csv")
if len(calib):
    show_figure(ev.plot_calibration(calib), "較正（calibration of the yearly probability, test year）")

# %% [markdown]
# ## 参照決定木のセグメント表（Reference decision tree: segments）
# Depth-3 entropy tree with the reference's strict leaf sizes, fitted on the training years.
# Risk ratio = the segment's rate / the base rate. Its scores are tied within a leaf (lesson 6).

# %%
seg = read_csv("segment_table.csv")
show_table(seg.drop(columns=["leaf"]), "セグメント表（segment table: training years; test-year columns beside）",
           cfg, counts=["child_years", "positives", "test_child_years", "test_positives"],
           rates={"rate": "positives", "risk_ratio": "positives", "test_rate": "test_positives"})

# %% [markdown]
# ## 単一変数リスト（Single-variable lists, chosen on training years）

# %%
single = read_csv("single_variable.csv")
if len(single):
    single.insert(1, "label_ja", single["feature"].map(labels_ja))
    show_table(single.head(top_features), "単一変数ごとの適合率（chosen by mean precision@k over training years; the test-year column is "
               "shown for information and played no part in the choice）",
               cfg, counts=["train_flagged"])

# %%
odds = read_csv("odds_ratios.csv")
if len(odds):
    odds.insert(1, "label_ja", odds["item"].map(labels_ja))
    show_table(odds, f"ヤングケアラー項目のオッズ比（statsmodels Logit, 95% CI; {metrics['odds_ratio_note']}）",
               cfg)

# %% [markdown]
# ## 上位k人とそれ以外の比較（Top k vs the rest）

# %%
cross = read_csv("crosstab_topk.csv")
show_table(cross.head(top_features), "上位k人とそれ以外の特徴量の平均・該当率（Welch t-test）", cfg,
           counts=["n_top", "n_rest"])

# %% [markdown]
# ## 見逃した事例（Error analysis: true cases left out of the top k）

# %%
miss = metrics["missed"]
show_table(pd.DataFrame([miss]), "上位k人に入らなかった事例（missed true cases and their ranks）", cfg,
           counts=["events", "caught", "missed"])
missed_tab = read_csv("missed_vs_caught.csv")
if len(missed_tab):
    show_table(missed_tab.head(top_features), "見逃した事例と捕捉した事例の違い（missed vs caught; "
               "mean_top = missed）", cfg, counts=["n_top", "n_rest"])

# %% [markdown]
# ## リストの安定性（List stability）

# %%
show_table(read_csv("stability.csv"), "モデルと各ベースラインの上位k人の重なり（Jaccard, Spearman）", cfg,
           counts=["overlap_top_k"])
if metrics.get("year_to_year"):
    yy = metrics["year_to_year"]
    print(f"前年度（FY{yy['previous_year']}）の上位{k}人との重なり: Jaccard {yy['jaccard']:.2f} — {yy['note']}")

# %% [markdown]
# ## 地区別・属性別（Subsets and fairness）
# Within each subset the list is re-thresholded with its proportional share of the capacity.
# Fairness: selection rate, precision, FPR and FNR per group against the largest group; groups
# with too few true cases are flagged, not judged.

# %%
subsets = read_csv("subsets.csv")
if len(subsets):
    show_table(subsets, "地区ごとの適合率（precision within subsets, proportional capacity）", cfg,
               counts=["n", "events", "k_group"])
fair = read_csv("fairness.csv")
if len(fair):
    show_table(fair, f"公平性（fairness; tolerance {cfg['models']['fairness']['tolerance']}）", cfg,
               counts=["n", "events", "selected", "tp", "fp", "fn"],
               rates={"precision": "tp", "fpr": "fp", "fnr": "fn", "selection_rate": "selected"})

# %% [markdown]
# ## 説明（SHAP explanations of the LightGBM model）
# SHAP values are in **log-odds of the class-weighted model** (before calibration): they explain
# the ranking, item by item, not the probability. Reason codes are each child's top three
# positive contributions.

# %%
shap_path = model_dir / "shap_values.parquet"
if shap_path.exists():
    shap_all = pd.read_parquet(shap_path)
    feats = [c for c in shap_all.columns if c not in ("child_id", "fiscal_year")]
    imp = read_csv("shap_importance.csv")
    show_figure(explain.plot_importance(imp, top_features), "平均|SHAP|（global importance, log-odds）")
    panel = pd.read_parquet(cfg_data_dir(cfg) / "panel" / "panel.parquet",
                            filters=[("fiscal_year", "==", metrics["test_year"])])
    X_test = scores[["child_id"]].merge(panel[["child_id"] + feats], on="child_id", how="left")
    show_figure(explain.plot_beeswarm(shap_all[feats], X_test[feats], labels_ja,
                                      seed=int(cfg["run"]["seed"])), "SHAP ビースウォーム（beeswarm）")
    top_dep = imp["feature"].head(int(cfg["models"].get("dependence_top", 4))).tolist()
    show_figure(explain.plot_dependence_grid(shap_all[feats], X_test[feats], top_dep, labels_ja),
                "SHAP 依存プロット（dependence plots, top features）")

# %%
print(f"理由コードの出典（reason codes from the primary model, {params['primary_model']}）: "
      f"{params.get('reason_codes_from', 'SHAP (log-odds)')}")
top = scores[scores["rank"].notna() & (scores["rank"] <= k)]
reason_cols = [c for c in ("reason_1", "reason_2", "reason_3") if c in top.columns]
if reason_cols:
    freq = (top[reason_cols].melt(value_name="reason")["reason"].replace("", np.nan).dropna()
            .value_counts().rename_axis("reason").reset_index(name="children"))
    show_table(freq.head(top_features), f"上位{k}人の理由コードの頻度（reason codes in the top {k}）", cfg,
               counts=["children"])

# %%
close_report(cfg, inputs=[model_dir / "metrics.json", model_dir / "scores.parquet",
                          model_dir / "params.json"])
