"""What reports 04 (the list and the blinded sample) and 05 (the verdicts) show.

The notebooks only call these and display the results. Nothing here shows which arm a child
or a stratum is in: the analyst's copy (``sample_analyst.parquet``, ``arm_balance_analyst.csv``)
never reaches a shared report. On the synthetic city every verdict figure says it is
simulated; before any verdict has come back, report 05 says what was sent, to whom and when.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from helpers.config import Settings
from helpers.models.explain import reason_frequencies
from helpers.reports.api import Table
from helpers.review import report as rr
from helpers.review.stage import age_band, counts_by, review_paths
from helpers.review.stats import percent

POWER_COLUMNS = {
    "scenario": "場面（scenario）",
    "n_high": "高スコア群（n high）",
    "n_low": "低スコア群（n low）",
    "power_fisher": "検出力：Fisher正確検定（power, exact）",
    "normal_n_high": "正規近似の必要数：高（normal approx. n high）",
    "normal_n_low": "正規近似の必要数：低（normal approx. n low）",
    "power_normal": "検出力：正規近似（power, normal approx.）",
    "detectable_high_rate": "検出可能な高スコア群の率（detectable high rate, exact）",
    "detectable_difference": "検出可能な差（detectable difference, exact）",
    "detectable_high_rate_normal": "同・正規近似（detectable high rate, normal approx.）",
}


def _threshold(cfg: Settings) -> int | None:
    rep = cfg.reports
    return int(rep.small_cell_threshold) if rep.suppress_small_cells else None


@dataclass
class ListReport:
    """Report 04: the capacity list, the blinded sample's design and the power analysis."""

    cfg: Settings
    paths: dict[str, Path]
    summary: dict
    capacity: pd.DataFrame
    power: pd.DataFrame
    exclusions: pd.DataFrame

    @classmethod
    def load(cls, cfg: Settings, target: str = "") -> ListReport:
        p = review_paths(cfg, target)
        return cls(
            cfg,
            p,
            json.loads(p["draw_summary"].read_text(encoding="utf-8")),
            pd.read_parquet(p["capacity_list"]),
            pd.read_csv(p["power"]),
            pd.read_csv(p["exclusions"]),
        )

    @property
    def inputs(self) -> list[Path]:
        return [self.paths[k] for k in ("draw_summary", "capacity_list", "power")]

    def headline(self) -> str:
        return rr.list_headline(self.summary)

    def population_text(self) -> str:
        s = self.summary
        return (
            f"対象（eligible population, {s['target']}）: {s['population']}\n"
            f"FY{s['scoring_year']} の児童 {s['panel_children']:,} 人のうち "
            f"{s['eligible']:,} 人が対象 (of the year's children, these are ranked)"
        )

    def scope(self) -> Table:
        s = self.summary
        frame = pd.DataFrame(
            {
                "項目（item）": [
                    "対象（eligible, ranked）",
                    "リスト（capacity list）",
                    "確認標本：高スコア（sample, high）",
                    "確認標本：低スコア（sample, low）",
                ],
                "人数（children）": [s["eligible"], s["capacity_listed"], s["n_high"], s["n_low"]],
            }
        )
        return Table(
            frame,
            f"FY{s['scoring_year']} 対象・リスト・標本（scope, target {s['target']}）",
            ["人数（children）"],
        )

    def exclusions_table(self) -> Table:
        frame = self.exclusions.rename(
            columns={"exclusion": "除外理由（exclusion）", "children": "人数（children）"}
        )
        return Table(
            frame,
            "対象外（outside the eligible population; each child counted under "
            "the first rule that applies）",
            ["人数（children）"],
        )

    def by_school(self) -> Table:
        frame = counts_by(self.capacity, "school_code").rename(
            columns={"school_code": "学校（school）", "children": "人数（children）"}
        )
        return Table(frame, "リスト：学校別（capacity list by school）", ["人数（children）"])

    def by_age(self) -> Table:
        frame = counts_by(
            self.capacity.assign(age_band=age_band(self.capacity["age"])), "age_band"
        ).rename(columns={"age_band": "年齢帯（age band）", "children": "人数（children）"})
        return Table(frame, "リスト：年齢帯別（capacity list by age band）", ["人数（children）"])

    def blind_text(self) -> str:
        st, b = self.summary["strata"], self.summary["blind_check"]
        how = (
            f"低スコア群は高スコア群と同じ層（{' × '.join(st['strata'])}"
            f"{'、学年帯 ' + str(st['grade_bands']) if st.get('grade_bands') else ''}）から、"
            "高スコア群の人数に比例して抽出 (the low arm is drawn within the high arm's strata, "
            "in proportion)"
            if st["strata"]
            else "層別なし：低スコア群は下位から無作為抽出 (no strata: the sheet may reveal the arm)"
        )
        auc = (
            f"盲検の確認：学校・学年から群を当てる分類器の交差検証AUC {b['auc']:.2f}"
            f"（95%CI {b['ci_low']:.2f}–{b['ci_high']:.2f}）— "
            + (
                "0.5（偶然）と区別できない (the sheet does not reveal the arm)"
                if b["blind"]
                else "0.5を含まない：学校・学年から群が推測できる (the sheet reveals the arm)"
            )
        )
        return how + "\n" + auc

    def reasons(self) -> Table:
        frame = reason_frequencies(self.capacity).rename(
            columns={
                "reason": "理由（reason）",
                "as_first": "第1理由（first）",
                "any_of_three": "上位3理由のいずれか（any of 3）",
            }
        )
        return Table(
            frame,
            "理由コードの頻度（reason-code frequencies in the list）",
            ["第1理由（first）", "上位3理由のいずれか（any of 3）"],
        )

    def power_text(self) -> str:
        pw, t = self.summary["power_settings"], self.power.set_index("scenario")
        planned = t.iloc[2]
        needed = t.iloc[1]
        return (
            f"想定：高スコア群 {percent(pw['expected_high_rate'])}、低スコア群 "
            f"{percent(pw['expected_low_rate'])}、α={pw['alpha']}、Fisher の正確検定（結果の"
            f"報告で使う検定）。計画標本（高 {int(planned['n_high'])}：低 {int(planned['n_low'])}）"
            f"の正確な検出力は {planned['power_fisher']:.2f}（正規近似では "
            f"{planned['power_normal']:.2f}）。検出力 {pw['power']:.0%} には計画の配分で 高 "
            f"{int(needed['n_high'])}：低 {int(needed['n_low'])} の確認が必要（正規近似では "
            f"{int(needed['normal_n_high'])}：{int(needed['normal_n_low'])}）。"
            "(exact power of the planned design and the reviews needed for the target power, "
            "normal approximation beside it)"
        )

    def power_table(self) -> Table:
        pw = self.summary["power_settings"]
        frame = self.power.rename(columns=POWER_COLUMNS)
        sizes = [POWER_COLUMNS[c] for c in ("n_high", "n_low", "normal_n_high", "normal_n_low")]
        formats = {c: "{:,.0f}" if c in sizes else "{:.2f}" for c in frame.columns[1:]}
        return Table(
            frame,
            f"検出力（power; expected {pw['expected_high_rate']} vs "
            f"{pw['expected_low_rate']}, α={pw['alpha']}; planned reviews, not "
            "people）",
            fixed=list(frame.columns[1:]),  # planned numbers of reviews, not counts of children
            formats=formats,
        )

    def power_figure(self) -> Any:
        pw, s = self.summary["power_settings"], self.summary
        return rr.plot_power_curve(
            float(pw["expected_low_rate"]),
            s["n_high"],
            s["n_low"],
            float(pw["alpha"]),
            float(pw["power"]),
        )


@dataclass
class ResultsReport:
    """Report 05: the verdicts by arm (simulated on the synthetic city), or what is awaited."""

    cfg: Settings
    paths: dict[str, Path]
    summary: dict
    results: dict | None
    threshold: int | None

    @classmethod
    def load(cls, cfg: Settings, target: str = "") -> ResultsReport:
        p = review_paths(cfg, target)
        results = (
            json.loads(p["results"].read_text(encoding="utf-8")) if p["results"].exists() else None
        )
        return cls(
            cfg,
            p,
            json.loads(p["draw_summary"].read_text(encoding="utf-8")),
            results,
            _threshold(cfg),
        )

    @property
    def awaiting(self) -> bool:
        return self.results is None

    @property
    def simulated(self) -> bool:
        return bool(self.results and self.results.get("simulated", self.cfg.run.synthetic))

    @property
    def inputs(self) -> list[Path]:
        keys = (
            ("draw_summary",)
            if self.awaiting
            else ("results", "arm_rates", "rounds", "item_prevalence")
        )
        return [self.paths[k] for k in keys]

    def label(self, text: str) -> str:
        return rr.simulated_label(text, self.simulated)

    # ------------------------------------------------------------------ awaiting verdicts
    def awaiting_headline(self) -> str:
        s = self.summary
        return (
            f"確認結果待ち（awaiting verdicts）：FY{s['scoring_year']} の確認標本 "
            f"{s['n_high'] + s['n_low']} 人を {s['schools']} 校に送付済み、返送はまだない"
        )

    def sent(self) -> Table:
        """What was sent, to whom and when: one reviewer workbook per school."""
        rows = []
        for path in sorted(self.paths["sheets"].glob("review_*.xlsx")):
            school = path.stem.removeprefix("review_")
            rows.append(
                {
                    "学校（school）": school,
                    "ファイル（workbook）": path.name,
                    "作成日（written）": datetime.fromtimestamp(path.stat().st_mtime).strftime(
                        "%Y-%m-%d"
                    ),
                }
            )
        return Table(
            pd.DataFrame(
                rows, columns=["学校（school）", "ファイル（workbook）", "作成日（written）"]
            ),
            "送付した確認シート（reviewer workbooks sent: one per school, children in a "
            "shuffled order, no score or arm）",
        )

    def awaiting_text(self) -> str:
        return (
            f"返送されたシートを {self.paths['verdicts_in']} に置き、`python -m helpers review "
            "verdicts`（または make review）を実行すると、この報告に結果が表示される "
            "(put the returned sheets there and rerun; the results then appear here)"
        )

    # ---------------------------------------------------------------------------- results
    def _csv(self, key: str) -> pd.DataFrame:
        return pd.read_csv(self.paths[key])

    def headline(self) -> str:
        assert self.results is not None
        return rr.results_headline(
            self._csv("arm_rates"),
            self.results["fisher_p_two_sided"],
            self.threshold,
            self.simulated,
        )

    def simulated_text(self) -> str:
        if not self.simulated:
            return ""
        return (
            f"{rr.SIMULATED}：合成データの市では、学校の回答は模擬回答者（真の確率に基づく）が作成した"
            "もので、実際の確認結果ではない (on the synthetic city the verdicts come from "
            "simulated reviewers, not from schools)"
        )

    def arm_rates(self) -> Table:
        frame = rr.arm_rates_display(self._csv("arm_rates"), self.threshold)
        return Table(
            frame,
            self.label("群別の要支援率（needs-support rate by arm）"),
            list(rr.ARM_COUNTS),
            dict(rr.ARM_RATES),
        )

    def fisher(self) -> Table:
        assert self.results is not None
        rates = self._csv("arm_rates")
        small = self.threshold is not None and any(
            1 <= int(v) <= self.threshold
            for v in rates[["reviewed", "positive"]].to_numpy().ravel()
        )
        r = self.results
        frame = pd.DataFrame(
            {
                "検定（test）": ["両側（two-sided）", "片側：高 > 低（one-sided, high > low）"],
                "p値（p-value）": [
                    "*" if small else f"{r['fisher_p_two_sided']:.3f}",
                    "*" if small else f"{r['fisher_p_greater']:.3f}",
                ],
            }
        )
        return Table(frame, self.label("Fisher の正確検定（high vs low）"))

    def prevalence(self) -> Table:
        prev = self._csv("item_prevalence")
        frame = rr.prevalence_display(prev, self.threshold) if len(prev) else prev
        return Table(
            frame,
            self.label(
                "項目の該当率（share with each item; unknown values left out of the denominator）"
            ),
            list(rr.PREVALENCE_COUNTS),
            dict(rr.PREVALENCE_RATES),
        )

    def rounds(self) -> Table:
        frame = rr.rounds_display(self._csv("rounds"), self.threshold)
        return Table(
            frame,
            self.label(
                "回ごとの要支援率（needs-support rate per round; earlier "
                "rounds are the reference municipality's）"
            ),
            list(rr.ROUND_COUNTS),
            dict(rr.ROUND_RATES),
        )

    def rounds_figure(self) -> Any:
        return rr.plot_hit_rates(self._csv("rounds"), self.threshold, simulated=self.simulated)
