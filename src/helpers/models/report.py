"""What report 03 (one target's models) shows, built from the models stage's artefacts.

The notebook only calls these and displays the results: ``ModelReport.load(cfg, target)``
reads the artefacts once; every section is a ``Table`` (frame, caption, which columns are
counts and which rates hang on them, for small-cell suppression), a figure or a sentence.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from helpers.config import Settings
from helpers.models import evaluation as ev
from helpers.models import explain
from helpers.paths import ModelPaths, paths
from helpers.reports.api import Table
from helpers.reports.disclosure import Rules

CURVE_COLUMNS = {
    "モデル（model）": "score",
    "単一変数（single variable）": "best_single_variable",
    "該当数（rule score）": "yc_rule_score",
    "決定木（tree）": "tree_score",
    "oracle": "oracle_p",
}


def _ci(d: dict, pct: bool = False) -> str:
    if pct:
        return f"{d['value']:.0%} [{d['ci_low']:.0%}–{d['ci_high']:.0%}]"
    return f"{d['value']:.3f} [{d['ci_low']:.3f}–{d['ci_high']:.3f}]"


def _judgement(low: float, high: float) -> str:
    return (
        "モデルが上回る（model better）"
        if low > 0
        else "モデルが下回る（model worse）"
        if high < 0
        else "差は不確か（CI includes 0）"
    )


def read_model_table(model_dir: Path, name: str) -> pd.DataFrame:
    """A CSV artefact of the models stage; empty when the stage had nothing to write."""
    path = Path(model_dir) / name
    return pd.read_csv(path) if path.exists() and path.stat().st_size > 1 else pd.DataFrame()


@dataclass
class ModelReport:
    """One target's artefacts, read once."""

    cfg: Settings
    target: str
    out: ModelPaths
    metrics: dict
    params: dict
    scores: pd.DataFrame
    labels_ja: dict[str, str]
    threshold: int | None
    top_n: int = 15

    @classmethod
    def load(cls, cfg: Settings, target: str, top_n: int = 15) -> ModelReport:
        P = paths(cfg)
        out = P.model(target)
        catalogue = pd.read_csv(P.feature_catalogue)
        labels = dict(
            zip(catalogue["name"], catalogue["label_ja"].fillna(catalogue["name"]), strict=True)
        )
        rep = cfg.reports
        return cls(
            cfg,
            target,
            out,
            json.loads(out.metrics.read_text(encoding="utf-8")),
            json.loads(out.params.read_text(encoding="utf-8")),
            pd.read_parquet(out.scores),
            labels,
            int(rep.small_cell_threshold) if rep.suppress_small_cells else None,
            top_n,
        )

    @property
    def rules(self) -> Rules:
        return Rules.from_cfg(self.cfg)

    @property
    def k(self) -> int:
        return int(self.metrics["k"])

    @property
    def inputs(self) -> list[Path]:
        return [self.out.metrics, self.out.scores, self.out.params]

    def csv(self, name: str) -> pd.DataFrame:
        return read_model_table(self.out.dir, name)

    # ------------------------------------------------------------------------ headline
    @property
    def backtest(self) -> dict:
        return self.metrics["backtest"]

    @property
    def years_text(self) -> str:
        years = self.backtest["test_years"]
        return f"FY{years[0]}–FY{years[-1]}" if len(years) > 1 else f"FY{years[0]}"

    def headline_text(self) -> str:
        """Pooled precision@k over the backtest years with its CI; expected hits and the
        oracle share on the synthetic city; the paired gain over the rule / best single
        variable; a calibration warning when the observed/expected check fails."""
        pooled, k = self.backtest["pooled"], self.k
        p = pooled["precision_at_k"]
        text = (
            f"上位{k}人の適合率（precision@{k}）{self.years_text} の{len(self.backtest['test_years'])}"
            f"年を合算: モデル {_ci(p)}"
        )
        # real data has no truth: the expected figures are absent or None
        if (pooled.get("expected_precision_at_k") or {}).get("value") is not None:
            text += f"；真の確率での期待値 {_ci(pooled['expected_precision_at_k'])}"
        if (pooled.get("oracle_expected_share") or {}).get("value") is not None:
            text += f"；理論上限（oracle）に対する期待的中の割合 {_ci(pooled['oracle_expected_share'], pct=True)}"
        comps = self.backtest["comparisons"]
        for key, name in (
            ("model_vs_yc_rule_score", "該当数スコア"),
            ("model_vs_best_single_variable", "最良の単一変数"),
        ):
            if key in comps:
                d = comps[key]
                text += (
                    f"；{name}との差 {d['value']:+.1f}人/リスト "
                    f"[{d['ci_low']:+.1f}, {d['ci_high']:+.1f}]"
                )
                break
        cal = self.metrics["calibration"]
        if not cal.get("ok"):
            text += "；⚠ 較正が検証年度の実績と合わない：リスク比は表示しない (calibration check failed)"
        return text

    def lists(self) -> Table:
        rows = []
        for name, d in self.backtest["pooled"]["lists"].items():
            p, e = d["precision_at_k"], d.get("expected_precision_at_k")
            rows.append(
                {
                    "list": ev.LIST_LABELS.get(name, name),
                    "value": p["value"],
                    "ci_low": p["ci_low"],
                    "ci_high": p["ci_high"],
                    **(
                        {
                            "expected": e["value"],
                            "expected_ci_low": e["ci_low"],
                            "expected_ci_high": e["ci_high"],
                        }
                        if e
                        else {}
                    ),
                }
            )
        if "oracle_expected_precision_at_k" in self.backtest["pooled"]:
            o = self.backtest["pooled"]["oracle_expected_precision_at_k"]
            rows.append(
                {
                    "list": ev.LIST_LABELS["oracle"],
                    "value": np.nan,
                    "ci_low": np.nan,
                    "ci_high": np.nan,
                    "expected": o["value"],
                    "expected_ci_low": o["ci_low"],
                    "expected_ci_high": o["ci_high"],
                }
            )
        frame = pd.DataFrame(rows).rename(columns={"value": f"precision@{self.k}"})
        return Table(
            frame,
            f"{self.years_text} 合算の適合率と95%信頼区間（pooled precision@{self.k}: "
            "realised hits; expected = under the true probabilities, synthetic city "
            "only; bootstrap within each year）",
        )

    def headline_figure(self) -> Any:
        table = self.lists().frame.rename(columns={f"precision@{self.k}": "value"})
        return ev.plot_headline(table.dropna(subset=["value"]), self.k, self.rules)

    def per_year(self) -> Table:
        frame = pd.DataFrame(self.backtest["per_year"])
        keep = [
            c
            for c in (
                "test_year",
                "n_evaluated",
                "events",
                "true_expected_events",
                "events_poisson_p",
                "precision_at_k",
                "precision_ci_low",
                "precision_ci_high",
                "expected_precision_at_k",
                "oracle_expected_precision_at_k",
                "validation_precision_at_k",
                "predicted_events",
                "oe",
                "oe_ci_low",
                "oe_ci_high",
                "primary_model",
            )
            if c in frame.columns
        ]
        return Table(
            frame[keep],
            "年度別（per test year: each year scored by a model tuned and "
            "trained only on the years before it; validation = the chosen candidate's "
            "mean validation precision; true_expected_events = sum of the true "
            "probabilities, with the Poisson p of the observed events）",
            ["n_evaluated", "events"],
        )

    def backtest_figure(self) -> Any:
        return ev.plot_backtest(pd.DataFrame(self.backtest["per_year"]), self.k, self.rules)

    def comparisons(self) -> Table:
        rows = []
        for name, d in self.backtest["comparisons"].items():
            base = name.removeprefix("model_vs_")
            row = {
                "compared_with": ev.LIST_LABELS.get(base, base),
                "hits_difference_per_list": d["value"],
                "ci_low": d["ci_low"],
                "ci_high": d["ci_high"],
            }
            if "expected_value" in d:
                row.update(
                    {
                        "expected_difference": d["expected_value"],
                        "expected_ci_low": d["expected_ci_low"],
                        "expected_ci_high": d["expected_ci_high"],
                    }
                )
            row["judgement"] = _judgement(d["ci_low"], d["ci_high"])
            rows.append(row)
        return Table(
            pd.DataFrame(rows),
            f"モデルとベースラインの差（{self.years_text} 合算、上位{self.k}"
            "人あたりの的中数の差、対応のあるブートストラップ; paired difference in hits "
            "per list, pooled over the test years）",
        )

    def population_text(self) -> str:
        pop, t = self.metrics["population"], self.metrics["test"]
        excluded = "、".join(
            f"{k} {ev.count_text(v, self.threshold)}"
            for k, v in t["population_excluded"].items()
            if v
        )
        return (
            f"対象（eligible population）: {pop['description']}\n"
            f"評価した人年（child-years evaluated over {self.years_text}）: "
            f"{pop['n_evaluated']:,}；FY{self.metrics['test_year']} の対象外: {excluded}"
        )

    def test_population(self) -> Table:
        t = self.metrics["test"]
        frame = pd.DataFrame(
            [
                {
                    "test_year": self.metrics["test_year"],
                    "panel_child_years": t["panel_child_years"],
                    "eligible": t["n_child_years"],
                    "unlabelled_excluded": t["unlabelled_excluded"],
                    "evaluated": t["n_evaluated"],
                    "events": t["events"],
                    "base_rate": t["base_rate"],
                }
            ]
        )
        return Table(
            frame,
            "最新のテスト年度の対象（latest test year: children in the panel, in "
            "the eligible population, evaluated）",
            ["panel_child_years", "eligible", "unlabelled_excluded", "evaluated", "events"],
            {"base_rate": "events"},
        )

    def notes_text(self) -> str:
        text = "\n".join(self.metrics["notes"])
        if self.metrics["warnings"]:
            text += "\n注意（warnings）:\n- " + "\n- ".join(self.metrics["warnings"])
        return text

    # ---------------------------------------------------------------------- calibration
    def calibration_check_text(self) -> str:
        c = self.metrics["calibration"]
        if c.get("oe") is None:
            return c.get("note", "")
        verdict = (
            "1を含む：較正は実績と矛盾しない (consistent with the observed events)"
            if c["ok"]
            else "1を含まない：確率は実績と合わない。リスク比は表示しない "
            "(calibration fails: risk ratios withheld)"
        )
        return (
            f"検証年度（{self.years_text}）の観測 {ev.count_text(c['test_observed'], self.threshold)}"
            f" 件 / 予測 {c['test_expected']:.1f} 件 = O/E {c['oe']:.2f}（95%CI "
            f"{c['oe_ci_low']:.2f}–{c['oe_ci_high']:.2f}、正確Poisson）— {verdict}。"
            f"Hosmer–Lemeshow p = {c['hosmer_lemeshow_p']:.3g}。"
            + (
                f"切片は FY{c['recalibrated_on']} に合わせて再較正（shift {c['intercept_shift']:+.2f} "
                "log-odds）"
                if c.get("recalibrated_on") and c.get("intercept_shift") is not None
                else ""
            )
        )

    def deciles(self) -> Table:
        return Table(
            self.csv("calibration.csv"),
            "予測確率の十分位ごとの観測/予測（observed / "
            "expected by decile of the predicted probability, exact Poisson 95% CI; "
            f"{self.years_text} pooled）",
            ["n", "events"],
        )

    # ------------------------------------------------------------------ temporal design
    def splits_figure(self) -> Any:
        folds = [(f["train_years"], f["valid_year"]) for f in self.metrics["folds"]]
        return ev.plot_splits(folds, self.metrics["test_year"], self.metrics["years_labelled"])

    def folds(self) -> Table:
        frame = pd.DataFrame(self.metrics["folds"]).assign(
            train_years=lambda d: d["train_years"].map(lambda y: f"{min(y)}–{max(y)}")
        )
        return Table(
            frame,
            "各検証年度の事例数（events per fold; warning when < min_valid_events）",
            ["n_train", "train_events", "n_valid", "valid_events"],
        )

    def tuning_figure(self) -> Any:
        tuning = pd.read_parquet(self.out.tuning)
        if "test_year" in tuning.columns:
            tuning = tuning[tuning["test_year"] == self.metrics["test_year"]]
        return ev.plot_tuning(tuning)

    def chosen(self) -> Table:
        frame = pd.DataFrame(
            [
                {
                    "family": f,
                    **{kk: v for kk, v in info.items() if kk != "params"},
                    "params": json.dumps(info["params"], ensure_ascii=False),
                }
                for f, info in self.metrics["tuning"].items()
            ]
        )
        return Table(
            frame,
            f"選ばれた候補（chosen candidates; primary model: {self.metrics['primary_model']}）",
            fixed=list(frame.columns),  # tuning settings and scores, not counts of children
        )

    def calibration_text(self) -> str:
        cal = self.metrics["calibration"]
        return (
            f"較正（calibration）: {cal['method']} — 検証年度の事例 "
            f"{ev.count_text(cal['validation_events'], self.threshold)} 件; isotonic は "
            f"{cal['isotonic_min_events']} 件以上のときのみ (isotonic only with plenty of "
            "events)"
        )

    # ----------------------------------------------------------------- test-year metrics
    def all_metrics(self) -> Table:
        return Table(
            ev.metrics_table(self.metrics),
            f"最新のテスト年度 FY{self.metrics['test_year']}"
            " の指標（precision/recall/lift at k use the mean over tie orderings; "
            "worst/best cases beside them）",
        )

    def year_comparisons(self) -> Table:
        return Table(
            ev.comparison_table(self.metrics),
            f"FY{self.metrics['test_year']} のみの差"
            f"（paired bootstrap difference in precision@{self.k}, latest test year）",
        )

    def oracle_text(self) -> str:
        o = self.metrics.get("oracle")
        if not o:
            return ""
        return (
            f"FY{self.metrics['test_year']}: モデルの期待的中 {o['model_expected_hits']:.1f} 人 / "
            f"理論上限 {o['oracle_expected_hits']:.1f} 人 = {o['model_expected_share']:.0%} "
            "(expected hits under the true probabilities, model vs oracle)"
        )

    def _test_rows(self) -> pd.DataFrame:
        sc = self.scores
        return sc[(sc["fiscal_year"] == self.metrics["test_year"]) & sc["label"].notna()]

    def curves_figure(self) -> Any:
        import matplotlib.pyplot as plt

        rows = self._test_rows()
        y = rows["label"].to_numpy(float)
        cols = {
            n: c for n, c in CURVE_COLUMNS.items() if c in rows.columns and rows[c].notna().all()
        }
        ks = np.unique(
            np.linspace(max(1, self.k // 10), min(len(rows), 5 * self.k), 40).astype(int)
        )
        fig, axes = plt.subplots(1, 2, figsize=(12, 4))
        ev.plot_precision_curve(
            {
                n: ev.precision_curve(y, rows[c].to_numpy(float), ks.tolist())
                for n, c in cols.items()
            },
            self.k,
            self.rules,
            ax=axes[0],
        )
        ev.plot_pr_curve(
            {n: (y, rows[c].to_numpy(float)) for n, c in cols.items()}, self.rules, ax=axes[1]
        )
        return fig

    def calibration_figure(self) -> Any | None:
        calib = self.csv("calibration.csv")
        return ev.plot_calibration(calib) if len(calib) else None

    # ------------------------------------------------------------------------ baselines
    def segments(self) -> Table:
        seg = self.csv("segment_table.csv")
        return Table(
            seg.drop(columns=["leaf"]),
            "セグメント表（segment table: training years, risk "
            "ratio vs their base rate with an exact 95% CI and the risk ratios along the "
            "path; test-year columns beside; notes flag splits chosen on few events or "
            "not significant）",
            ["child_years", "positives", "test_child_years", "test_positives"],
            {
                "rate": "positives",
                "risk_ratio": "positives",
                "rr_ci_low": "positives",
                "rr_ci_high": "positives",
                "test_rate": "test_positives",
            },
        )

    def tree_nodes(self) -> Table:
        nodes = self.csv("reference_tree_nodes.csv")
        keep = [
            c
            for c in (
                "node",
                "depth",
                "condition",
                "rule",
                "child_years",
                "events",
                "risk_ratio",
                "rr_ci_low",
                "rr_ci_high",
                "path_risk_ratios",
                "split_p_value",
                "note",
            )
            if c in nodes.columns
        ]
        return Table(
            nodes[keep] if len(nodes) else nodes,
            "参照決定木の全ノード（every node on "
            "every path of the reference tree, training years）",
            ["child_years", "events"],
            {"risk_ratio": "events", "rr_ci_low": "events", "rr_ci_high": "events"},
        )

    def single_variables(self) -> Table:
        single = self.csv("single_variable.csv")
        if len(single):
            single.insert(1, "label_ja", single["feature"].map(self.labels_ja))
        return Table(
            single.head(self.top_n),
            "単一変数ごとの適合率（chosen by mean precision@k over "
            "training years; the test-year column is shown for information and played "
            "no part in the choice）",
            ["train_flagged"],
        )

    def odds_ratios(self) -> Table:
        odds = self.csv("odds_ratios.csv")
        if len(odds):
            odds.insert(1, "label_ja", odds["item"].map(self.labels_ja))
        return Table(
            odds,
            f"ヤングケアラー項目のオッズ比（statsmodels Logit, 95% CI; "
            f"{self.metrics['odds_ratio_note']}）",
        )

    # ---------------------------------------------------------------------- diagnostics
    def crosstab(self) -> Table:
        return Table(
            self.csv("crosstab_topk.csv").head(self.top_n),
            "上位k人とそれ以外の特徴量の平均・該当率（Welch t-test; q = Benjamini–Hochberg "
            "adjusted over all features compared）",
            ["n_top", "n_rest"],
        )

    def missed(self) -> Table:
        return Table(
            pd.DataFrame([self.metrics["missed"]]),
            "上位k人に入らなかった事例（missed true cases and their ranks）",
            ["events", "caught", "missed"],
        )

    def missed_vs_caught(self) -> Table:
        return Table(
            self.csv("missed_vs_caught.csv").head(self.top_n),
            "見逃した事例と捕捉した事例の違い（missed vs caught; mean_top = missed）",
            ["n_top", "n_rest"],
        )

    def stability(self) -> Table:
        return Table(
            self.csv("stability.csv"),
            "モデルと各ベースラインの上位k人の重なり（Jaccard, Spearman）",
            ["overlap_top_k"],
        )

    def year_to_year(self) -> Table:
        return Table(
            self.csv("year_to_year.csv"),
            f"年度間の上位{self.k}人の重なり（year-to-year "
            "overlap of the lists; each year's list from the model trained before that "
            "year, i.e. out of time）",
            ["eligible_both_years", "overlap", "still_eligible_of_list"],
        )

    def fold_to_fold(self) -> Table:
        return Table(
            self.csv("fold_to_fold.csv"),
            f"学習年度を変えたときの上位{self.k}人の重なり"
            "（fold-to-fold: the chosen model refitted on each fold's training years "
            f"ranks FY{self.metrics['scoring_year']}; Jaccard of the top-k lists）",
            ["overlap"],
        )

    def subsets(self) -> Table:
        return Table(
            self.csv("subsets.csv"),
            "地区ごとの適合率（precision within subsets, proportional capacity; Wilson 95% CI "
            "for the model; subsets with too few true cases are not judged）",
            ["n", "events", "k_group"],
        )

    def fairness(self) -> Table:
        return Table(
            self.csv("fairness.csv"),
            f"公平性（fairness; tolerance {list(self.cfg.models.fairness.tolerance)}）",
            ["n", "events", "selected", "tp", "fp", "fn"],
            {"precision": "tp", "fpr": "fp", "fnr": "fn", "selection_rate": "selected"},
        )

    # ---------------------------------------------------------------------- explanation
    @property
    def has_explanation(self) -> bool:
        return self.out.shap_values.exists()

    def _explanation(self) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
        """(SHAP values, the features they explain, global importance) of the test year."""
        shap_all = pd.read_parquet(self.out.shap_values)
        feats = [c for c in shap_all.columns if c not in ("child_id", "fiscal_year")]
        year = self.metrics["scoring_year"]
        panel = pd.read_parquet(paths(self.cfg).panel, filters=[("fiscal_year", "==", year)])
        X = shap_all[["child_id"]].merge(panel[["child_id"] + feats], on="child_id", how="left")
        return shap_all[feats], X[feats], self.csv("shap_importance.csv")

    def importance_figure(self) -> Any:
        return explain.plot_importance(self.csv("shap_importance.csv"), self.top_n)

    def beeswarm_figure(self) -> Any:
        values, X, _ = self._explanation()
        return explain.plot_beeswarm(values, X, self.labels_ja, seed=int(self.cfg.run.seed))

    def dependence_figure(self) -> Any:
        values, X, imp = self._explanation()
        top = imp["feature"].head(int(self.cfg.models.dependence_top)).tolist()
        return explain.plot_dependence_grid(values, X, top, self.labels_ja)

    def explanation_text(self) -> str:
        return (
            f"説明はリストを作ったモデル（{self.params['primary_model']}）のもの: "
            f"{self.params.get('reason_codes_from', '')} (the contributions shown are of the "
            "model that built the list)"
        )

    def reasons(self) -> Table:
        sc = self.scores[self.scores["fiscal_year"] == self.metrics["scoring_year"]]
        top = sc[sc["rank"].notna() & (sc["rank"] <= self.k)]
        freq = explain.reason_frequencies(top)
        return Table(
            freq.head(self.top_n),
            f"上位{self.k}人の理由コードの頻度（reason codes in "
            f"the top {self.k}: as the first reason, and among the top three）",
            ["as_first", "any_of_three"],
        )
