"""The city for report 00: from the generator's truth (synthetic city) or, with real exports
that have no truth, from the mart and the panel.

``city_facts(cfg)`` returns the same tables either way (residents by age and sex, children by
household type, item prevalence, outcomes per fiscal year), so the notebook shows one report.
Drawn from real data, prevalences count only child-years where the item is known (an unknown
item is not a "no"), outcomes count only fiscal years whose outcome window the export
completes, and there are no generator targets, planted defects or public sources to compare.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from helpers.config import Settings
from helpers.panel.features import age_on, resident_on
from helpers.paths import paths
from helpers.reports import overview as O
from helpers.reports.api import Table
from helpers.reports.disclosure import Rules
from helpers.reports.plotting import label, population_pyramid

# overview item -> panel column (child-year level) it is read from, real data
PANEL_ITEMS = {
    "single_parent": "hh_single_parent",
    "public_assistance": "hh_public_assistance",
    "child_rearing_allowance": "hh_child_rearing_allowance",
    "school_aid": "yc_school_aid",
    "special_needs_class": "child_special_needs_last_fy",
    "foreign_household": "yc_foreign_member",
    "mental_outpatient": "yc_member_indep_support",
    "member_75plus": "yc_member_75plus",
    "care_need_member": "yc_member_care_need",
    "disability_member": "yc_member_disability_handbook",
    "two_plus_under6": "yc_two_plus_under6",
    "not_in_nursery": "yc_no_nursery",
    "low_birth_weight": "birth_low_weight",
}
OUTCOMES = (
    ("physical_abuse", "身体的虐待（physical abuse）"),
    ("young_carer", "ヤングケアラー（young carer）"),
)
PARENTS = {
    2: "ふたり親（two parents）",
    1: "ひとり親（single parent）",
    0: "親の記録なし（no parent in the household record）",
}


@dataclass
class CityFacts:
    """What report 00 shows, and where it came from."""

    synthetic: bool
    pop: pd.DataFrame  # person-years: fiscal_year, age, sex, is_child
    households: pd.DataFrame
    prevalence: pd.DataFrame
    outcomes: pd.DataFrame
    targets: dict = field(default_factory=dict)
    defects: pd.DataFrame | None = None
    inputs: list[Path] = field(default_factory=list)

    @property
    def years(self) -> list[int]:
        return sorted(int(y) for y in self.pop["fiscal_year"].unique())

    def headline(self, year: int) -> str:
        pop = self.pop[self.pop["fiscal_year"] == year]
        return (
            f"{year}年度: 住民 {len(pop):,} 人（residents）, 児童 {int(pop['is_child'].sum()):,}"
            f" 人（children）, {len(self.years)} 年度（fiscal years）"
        )

    def pyramid(self, year: int, rules: Rules) -> Axes:
        ax = population_pyramid(
            O.pyramid_counts(self.pop, year),
            "age_band",
            "sex",
            "n",
            rules,
            left="男（male）",
            right="女（female）",
            title=label(f"{year}年度 4月1日の年齢・性別", f"age and sex on 1 April FY{year}"),
        )
        ax.set_xlabel(label("人数", "residents"))
        return ax

    def household_table(self) -> Table:
        hh, years = self.households, self.years
        return Table(
            hh[hh["年度"].isin([years[0], years[-1]])],
            "児童の世帯類型（children by household type, first and last fiscal year; real "
            "exports: children whose parents are known）",
            ["児童数（children）"],
            {"割合（share）": "児童数（children）"},
            group_by=["年度"],
            margins={"児童数（children）": "children"},
            formats={"割合（share）": "{:.1%}"},
        )

    def prevalence_table(self) -> Table:
        return Table(
            self.prevalence.drop(columns=["item"]),
            "年度別の項目有病率（item prevalence by fiscal year）",
            ["該当（n）", "分母（denominator）"],
            {"割合（rate）": "該当（n）"},
            fixed=["目標（target）"],
            max_rows=120,
            formats={"割合（rate）": "{:.2%}", "目標（target）": "{:.2%}"},
        )

    def outcome_table(self) -> Table:
        return Table(
            self.outcomes,
            "年度別の目的変数（outcome counts by fiscal year）",
            ["対象児童年（child-years）", "件数（events）"],
            {"発生率（rate）": "件数（events）"},
            fixed=["目標（target）"],
            formats={"発生率（rate）": "{:.3%}", "目標（target）": "{:.3%}"},
        )

    def defect_table(self) -> Table:
        """Planted defects (synthetic city; empty for real exports)."""
        return Table(
            self.defects if self.defects is not None else pd.DataFrame(),
            "テーブル・理由別の既知の不備（planted defects by table and reason）",
            ["行数（rows）"],
            max_rows=150,
        )

    def sources_table(self) -> Table:
        """The generator's targets and their public sources (empty for real exports)."""
        return Table(
            target_sources(self.targets),
            "有病率の目標と公的統計（prevalence targets and public sources）",
            fixed=["目標（target）"],
            formats={"目標（target）": "{:.1%}"},
        )


def city_facts(cfg: Settings) -> CityFacts:
    """The generator's truth when it exists, else the mart's residents and the panel."""
    P = paths(cfg)
    if P.truth_population.exists() and P.truth_targets.exists():
        pop, targets = O.load_truth(P.raw)
        return CityFacts(
            True,
            pop,
            O.household_type_table(pop),
            O.item_prevalence(pop, targets),
            O.outcome_counts(pop, targets),
            targets,
            O.defect_summary(P.raw),
            [P.truth_population, P.truth_targets],
        )
    residents = pd.read_parquet(P.mart_table("residents"))
    panel = pd.read_parquet(P.panel)
    return CityFacts(
        False,
        residents_by_year(residents, list(cfg.run.fiscal_years)),
        household_types(panel),
        panel_prevalence(panel),
        panel_outcomes(panel, cfg),
        inputs=[P.mart_table("residents"), P.panel],
    )


def residents_by_year(
    residents: pd.DataFrame, fiscal_years: list[int], child_age_max: int = 17
) -> pd.DataFrame:
    """Everyone registered on 1 April of each fiscal year: age, sex (masked birth months)."""
    parts = []
    for fy in fiscal_years:
        on = pd.Timestamp(year=fy, month=4, day=1)
        here = residents[resident_on(residents, on)]
        age = age_on(here["birth_date"], on)
        parts.append(
            pd.DataFrame(
                {
                    "fiscal_year": fy,
                    "age": age.astype("int64").to_numpy(),
                    "sex": here["sex"].astype("object").to_numpy(),
                }
            )
        )
    pop = pd.concat(parts, ignore_index=True)
    pop["is_child"] = pop["age"] <= child_age_max
    return pop


def household_types(panel: pd.DataFrame) -> pd.DataFrame:
    """Children by the parents recorded in their household on 1 April (as in the overview).

    Children whose parents are unknown (no household record, or a member without a resident
    row) are left out rather than shown as a row of their own: that row is small, and every
    total of children the report prints would give it away.
    """
    known = panel["hh_parent_count"].notna()
    kind = panel.loc[known, "hh_parent_count"].clip(upper=2).map(PARENTS)
    return O.household_share_table(panel.loc[known, "fiscal_year"], kind)


def _base(panel: pd.DataFrame, rule: str) -> pd.DataFrame:
    if rule == "school":
        return panel[panel["grade"].between(1, 9)]
    if rule == "age3_5":
        return panel[panel["age"].between(3, 5)]
    if rule == "age0":
        return panel[panel["age"] == 0]
    return panel


def panel_prevalence(panel: pd.DataFrame) -> pd.DataFrame:
    """Item x fiscal year: child-years with the item among those where it is known."""
    rows = []
    for item, (ja, rule) in O.ITEMS.items():
        column = PANEL_ITEMS.get(item)
        if column is None or column not in panel:
            continue
        base = _base(panel, rule)
        g = base.groupby("fiscal_year")[column].agg(["sum", "count"]).reset_index()
        known = O.DENOMINATORS[rule] + "（項目が分かる児童年 / known）"
        rows += O.prevalence_rows(g, item, ja, None, known)
    return pd.DataFrame(rows)


def panel_outcomes(panel: pd.DataFrame, cfg: Settings) -> pd.DataFrame:
    """Outcomes per fiscal year from the panel's labels, in each target's review population's
    age range; a year whose outcome window the export does not complete has no child-years."""
    rows = []
    for name, ja in OUTCOMES:
        column = f"label_{name}"
        if column not in panel:
            continue
        populations = cfg.models.populations
        population = populations.get(name)  # a target without a review population: all ages
        lo = population.min_age if population and population.min_age is not None else 0
        hi = population.max_age if population and population.max_age is not None else 99
        age_col = population.age_column if population else "age"
        base = panel[panel[age_col].between(lo, hi)]
        g = base.groupby("fiscal_year")[column].agg(["sum", "count"]).reset_index()
        for fy, n, d in g.itertuples(index=False):
            rows.append(
                {
                    "目的変数（outcome）": ja,
                    "年度": int(fy),
                    "対象児童年（child-years）": int(d),
                    "件数（events）": int(n),
                    "発生率（rate）": n / d if d else np.nan,
                    "目標（target）": np.nan,
                    "年齢（ages）": f"{lo}-{hi}",
                    "観察（window）": "完了（complete）" if d else "未完了（not complete）",
                }
            )
    return pd.DataFrame(rows)


def target_sources(targets: dict) -> pd.DataFrame:
    """The generator's prevalence targets with their public sources (synthetic city)."""
    sources = pd.DataFrame(
        list(targets.get("prevalence", {}).values()),
        columns=["label_ja", "target", "per", "source"],
    )
    return sources.rename(
        columns={
            "label_ja": "項目（item）",
            "target": "目標（target）",
            "per": "単位（per）",
            "source": "出典（source）",
        }
    )


def provenance_note(city: CityFacts) -> str:
    """One line saying where the figures come from."""
    if city.synthetic:
        return (
            "合成データ：生成器の真値（data/raw/_truth/）から作成（synthetic city: from the "
            "generator's truth, which the analysis never reads）"
        )
    return (
        "実データ：マスキング済みの住民記録（4月1日時点）とパネルから作成。生成器の目標値・"
        "既知の不備はありません（real exports: drawn from the masked residents table and the "
        "panel; items counted where known; no generator targets or planted defects）"
    )
