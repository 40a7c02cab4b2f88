"""What report 03 (one target's models) shows, built from the models stage's artefacts.

The notebook only calls these and displays the results: ``ModelReport.load(cfg, target)``
reads the artefacts once; every section is a ``Table`` (frame, caption, which columns are
counts and which rates hang on them, for small-cell suppression), a figure or a sentence.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from helpers.config import Settings
from helpers.models import evaluation as ev
from helpers.models import explain
from helpers.paths import ModelPaths, paths
from helpers.reports.disclosure import Rules

CURVE_COLUMNS = {
    "モデル（model）": "score",
    "単一変数（single variable）": "best_single_variable",
    "該当数（rule score）": "yc_rule_score",
    "決定木（tree）": "tree_score",
    "oracle": "oracle_p",
}


@dataclass
class Table:
    """A table as the report shows it (``show_table(t.frame, t.caption, cfg, counts=t.counts,
    rates=t.rates)``)."""

    frame: pd.DataFrame
    caption: str
    counts: list[str] = field(default_factory=list)
    rates: dict[str, str] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not len(self.frame)


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
    def k(self) -> int:
        return int(self.metrics["k"])

    @property
    def inputs(self) -> list[Path]:
        return [self.out.metrics, self.out.scores, self.out.params]

    def csv(self, name: str) -> pd.DataFrame:
        return read_model_table(self.out.dir, name)

    # ------------------------------------------------------------------------ headline
    def headline_text(self) -> str:
        m = ev.headline_table(self.metrics).set_index("key")
        k = self.k
        text = (
            f"上位{k}人の適合率（precision@{k}, FY{self.metrics['test_year']}）: モデル "
            f"{m.loc['model', 'value']:.3f} [{m.loc['model', 'ci_low']:.3f}–"
            f"{m.loc['model', 'ci_high']:.3f}]"
        )
        if "best_single_variable" in m.index:
            b = m.loc["best_single_variable"]
            text += f"; 最良の単一変数 {b['value']:.3f} [{b['ci_low']:.3f}–{b['ci_high']:.3f}]"
        if "yc_rule_score" in m.index:
            text += f"; 該当数スコア {m.loc['yc_rule_score', 'value']:.3f}"
        if "oracle" in m.index:
            text += f"; 理論上限（oracle） {m.loc['oracle', 'value']:.3f}"
        return text

    def headline(self) -> Table:
        head = ev.headline_table(self.metrics)
        return Table(
            head.drop(columns="key").rename(columns={"value": f"precision@{self.k}"}),
            f"上位{self.k}人の適合率と95%信頼区間（precision@{self.k} with bootstrap 95% "
            "CI; worst/best = ties ordered negatives/positives first）",
        )

    def headline_figure(self) -> Any:
        return ev.plot_headline(ev.headline_table(self.metrics), self.k, Rules.from_cfg(self.cfg))

    def test_population(self) -> Table:
        t = self.metrics["test"]
        frame = pd.DataFrame(
            [
                {
                    "test_year": self.metrics["test_year"],
                    "child_years": t["n_child_years"],
                    "known_excluded": t["known_excluded"],
                    "unlabelled_excluded": t["unlabelled_excluded"],
                    "evaluated": t["n_evaluated"],
                    "events": t["events"],
                    "base_rate": t["base_rate"],
                }
            ]
        )
        return Table(
            frame,
            "テスト年度の対象（test year population; already-known children "
            "excluded from the ranking）",
            ["child_years", "known_excluded", "unlabelled_excluded", "evaluated", "events"],
            {"base_rate": "events"},
        )

    def notes_text(self) -> str:
        text = "\n".join(self.metrics["notes"])
        if self.metrics["warnings"]:
            text += "\n注意（warnings）:\n- " + "\n- ".join(self.metrics["warnings"])
        return text

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
        return ev.plot_tuning(pd.read_parquet(self.out.tuning))

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
            "テスト年度の指標（precision/recall/lift at k "
            "use the mean over tie orderings; worst/best cases beside them）",
        )

    def comparisons(self) -> Table:
        return Table(
            ev.comparison_table(self.metrics),
            f"モデルとベースラインの差（paired bootstrap difference in precision@{self.k}）",
        )

    def oracle_text(self) -> str:
        o = self.metrics.get("oracle")
        if not o:
            return ""
        return (
            f"モデルは理論上限の {o['model_share_of_oracle']:.0%} (model precision@k as a share "
            "of the oracle's)"
        )

    def curves_figure(self) -> Any:
        import matplotlib.pyplot as plt

        rows = self.scores[(self.scores["known"] == 0) & self.scores["label"].notna()]
        y = rows["label"].to_numpy(float)
        cols = {
            n: c for n, c in CURVE_COLUMNS.items() if c in rows.columns and rows[c].notna().all()
        }
        ks = np.unique(
            np.linspace(max(1, self.k // 10), min(len(rows), 5 * self.k), 40).astype(int)
        )
        fig, axes = plt.subplots(1, 2, figsize=(12, 4))
        ev.plot_precision_curve(
            {n: ev.precision_curve(y, rows[c].to_numpy(float), ks) for n, c in cols.items()},
            self.k,
            Rules.from_cfg(self.cfg),
            ax=axes[0],
        )
        ev.plot_pr_curve({n: (y, rows[c].to_numpy(float)) for n, c in cols.items()},
                        Rules.from_cfg(self.cfg), ax=axes[1])
        return fig

    def calibration_figure(self) -> Any | None:
        calib = self.csv("calibration.csv")
        return ev.plot_calibration(calib) if len(calib) else None

    # ------------------------------------------------------------------------ baselines
    def segments(self) -> Table:
        seg = self.csv("segment_table.csv")
        return Table(
            seg.drop(columns=["leaf"]),
            "セグメント表（segment table: training years; test-year columns beside）",
            ["child_years", "positives", "test_child_years", "test_positives"],
            {"rate": "positives", "risk_ratio": "positives", "test_rate": "test_positives"},
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
            "上位k人とそれ以外の特徴量の平均・該当率（Welch t-test）",
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

    def year_to_year_text(self) -> str:
        yy = self.metrics.get("year_to_year")
        if not yy:
            return ""
        return (
            f"前年度（FY{yy['previous_year']}）の上位{self.k}人との重なり: Jaccard "
            f"{yy['jaccard']:.2f} — {yy['note']}"
        )

    def subsets(self) -> Table:
        return Table(
            self.csv("subsets.csv"),
            "地区ごとの適合率（precision within subsets, proportional capacity）",
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
        panel = pd.read_parquet(
            paths(self.cfg).panel, filters=[("fiscal_year", "==", self.metrics["test_year"])]
        )
        X = self.scores[["child_id"]].merge(panel[["child_id"] + feats], on="child_id", how="left")
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

    def reasons_text(self) -> str:
        return (
            f"理由コードの出典（reason codes from the primary model, "
            f"{self.params['primary_model']}）: "
            f"{self.params.get('reason_codes_from', 'SHAP (log-odds)')}"
        )

    def reasons(self) -> Table:
        top = self.scores[self.scores["rank"].notna() & (self.scores["rank"] <= self.k)]
        freq = explain.reason_frequencies(top)
        return Table(
            freq.head(self.top_n),
            f"上位{self.k}人の理由コードの頻度（reason codes in "
            f"the top {self.k}: as the first reason, and among the top three）",
            ["as_first", "any_of_three"],
        )
