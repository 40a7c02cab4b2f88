"""City overview: aggregates and plots of the (synthetic) city's truth for report 00.

Why: before anyone trusts a model, the analyst should see that the city looks like a city
(age pyramid, household types) and that each item's prevalence and each outcome's base rate
sit where the generator was told to put them. Inputs are the generator's truth files
(``helpers.paths``: ``truth_population``, ``truth_targets``, ``truth_defects``); outputs
are small tables with count columns (suppressed by ``helpers.reports.api.show_table``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from helpers import MimamoriError
from helpers.paths import Paths
from helpers.reports.disclosure import Rules, small_mask
from helpers.reports.plotting import PALETTE, axes, label

HOUSEHOLD_LABELS = {
    "two_parent": "ふたり親（two parents）",
    "single_mother": "母子（single mother）",
    "single_father": "父子（single father）",
    "three_generation": "三世代（three generations）",
}
# item -> (Japanese label, denominator rule)
ITEMS: dict[str, tuple[str, str]] = {
    "single_parent": ("ひとり親", "children"),
    "public_assistance": ("生活保護", "children"),
    "child_rearing_allowance": ("児童扶養手当", "children"),
    "school_aid": ("就学援助", "school"),
    "special_needs_class": ("特別支援学級", "school"),
    "foreign_household": ("外国籍世帯", "children"),
    "mental_outpatient": ("自立支援医療（精神通院）の親", "children"),
    "member_75plus": ("75歳以上の同居者", "children"),
    "care_need_member": ("要介護者の同居", "children"),
    "disability_member": ("障害者手帳の同居者", "children"),
    "two_plus_under6": ("5歳以下の子が2人以上", "children"),
    "not_in_nursery": ("3-5歳の未就園", "age3_5"),
    "low_birth_weight": ("低出生体重", "age0"),
}
DENOMINATORS = {
    "children": "児童（children）",
    "school": "学齢児（grade 1-9）",
    "age3_5": "3-5歳（aged 3-5）",
    "age0": "0歳（aged 0）",
}


def _truth(raw_dir: str | Path) -> Paths:
    """The artefact catalogue of the data root holding ``raw_dir`` (data/raw)."""
    return Paths(Path(raw_dir).parent, Path(raw_dir).parent)


def load_truth(raw_dir: str | Path) -> tuple[pd.DataFrame, dict]:
    """The generator's population and targets next to ``raw_dir`` (synthetic runs only)."""
    P = _truth(raw_dir)
    pop_path, tgt_path = P.truth_population, P.truth_targets
    for p in (pop_path, tgt_path):
        if not p.exists():
            raise MimamoriError(
                f"{p}: not found; the city overview needs the synthetic city's truth "
                f"(run `python -m helpers synth`; real data has no generator truth)"
            )
    return pd.read_parquet(pop_path), json.loads(tgt_path.read_text(encoding="utf-8"))


def age_band(age: pd.Series, width: int = 5, top: int = 85) -> pd.Categorical:
    """Ordered age bands '0-4', '5-9', ..., '85+'."""
    starts = np.minimum((age.to_numpy() // width) * width, top)
    labels = [f"{s}-{s + width - 1}" for s in range(0, top, width)] + [f"{top}+"]
    codes = [labels[min(s // width, len(labels) - 1)] for s in starts]
    return pd.Categorical(codes, categories=labels, ordered=True)


def pyramid_counts(pop: pd.DataFrame, fiscal_year: int, width: int = 5) -> pd.DataFrame:
    """Residents on 1 April of ``fiscal_year`` by age band and sex (count column ``n``)."""
    year = pop[pop["fiscal_year"] == fiscal_year]
    if year.empty:
        raise MimamoriError(f"population: no rows for fiscal year {fiscal_year}")
    df = pd.DataFrame({"age_band": age_band(year["age"], width), "sex": year["sex"].to_numpy()})
    out = df.groupby(["age_band", "sex"], observed=False).size().rename("n").reset_index()
    out["sex"] = out["sex"].map({"male": "男（male）", "female": "女（female）"})
    return out


def household_type_table(pop: pd.DataFrame) -> pd.DataFrame:
    """Children by household type per fiscal year: count and share."""
    kids = pop[pop["is_child"]]
    labels = kids["household_type"].map(HOUSEHOLD_LABELS).fillna(kids["household_type"])
    return household_share_table(kids["fiscal_year"], labels)


def household_share_table(fiscal_year: pd.Series, household_type: pd.Series) -> pd.DataFrame:
    """Children per (fiscal year, household type) and their share of the year's children."""
    t = (
        pd.DataFrame({"fiscal_year": fiscal_year, "type": household_type})
        .groupby(["fiscal_year", "type"])
        .size()
        .rename("n")
        .reset_index()
    )
    t["share"] = t["n"] / t.groupby("fiscal_year")["n"].transform("sum")
    return t.rename(
        columns={
            "fiscal_year": "年度",
            "type": "世帯類型（household type）",
            "n": "児童数（children）",
            "share": "割合（share）",
        }
    )


def _denominator(kids: pd.DataFrame, rule: str) -> pd.Series:
    if rule == "school":
        return kids["grade"] > 0
    if rule == "age3_5":
        return kids["age"].between(3, 5)
    if rule == "age0":
        return kids["age"] == 0
    return pd.Series(True, index=kids.index)


def item_prevalence(pop: pd.DataFrame, targets: dict) -> pd.DataFrame:
    """Long table: item x fiscal year with count, denominator, rate and the generator's target."""
    kids = pop[pop["is_child"]]
    prevalence = targets.get("prevalence", {})
    rows = []
    for item, (ja, rule) in ITEMS.items():
        if item not in kids.columns:
            continue
        base = kids[_denominator(kids, rule)]
        g = base.groupby("fiscal_year")[item].agg(["sum", "size"]).reset_index()
        target = prevalence.get(item, {}).get("target")
        rows += prevalence_rows(g, item, ja, target, DENOMINATORS[rule])
    return pd.DataFrame(rows)


def prevalence_rows(
    counts: pd.DataFrame, item: str, ja: str, target: float | None, denominator: str
) -> list[dict]:
    """Rows of the prevalence table from (fiscal_year, n, denominator) per year."""
    return [
        {
            "item": item,
            "項目（item）": ja,
            "年度": int(fy),
            "該当（n）": int(n),
            "分母（denominator）": int(d),
            "割合（rate）": n / d if d else np.nan,
            "目標（target）": np.nan if target is None else target,
            "分母の定義": denominator,
        }
        for fy, n, d in counts.itertuples(index=False)
    ]


def outcome_counts(pop: pd.DataFrame, targets: dict) -> pd.DataFrame:
    """Outcomes per fiscal year within each target's age range: child-years, events, rate, target."""
    kids = pop[pop["is_child"]]
    rows = []
    for name, ja in (
        ("physical_abuse", "身体的虐待（physical abuse）"),
        ("young_carer", "ヤングケアラー（young carer）"),
    ):
        spec = targets["outcomes"][name]
        a0, a1 = spec["ages"]
        base = kids[kids["age"].between(a0, a1)]
        g = base.groupby("fiscal_year")[name].agg(["sum", "size"]).reset_index()
        for fy, n, d in g.itertuples(index=False):
            rows.append(
                {
                    "目的変数（outcome）": ja,
                    "年度": int(fy),
                    "対象児童年（child-years）": int(d),
                    "件数（events）": int(n),
                    "発生率（rate）": n / d if d else np.nan,
                    "目標（target）": spec["rate"],
                    "年齢（ages）": f"{a0}-{a1}",
                }
            )
    return pd.DataFrame(rows)


def defect_summary(raw_dir: str | Path) -> pd.DataFrame:
    """Planted defects per table and reason (what ingest should reject), from the truth."""
    path = _truth(raw_dir).truth_defects
    if not path.exists():
        raise MimamoriError(f"{path}: not found (synthetic runs only)")
    d = pd.read_csv(path)
    return (
        d.groupby(["table", "reason"])
        .size()
        .rename("行数（rows）")
        .reset_index()
        .rename(columns={"table": "テーブル（table）", "reason": "理由（reason）"})
    )


def plot_prevalence_vs_target(prev: pd.DataFrame, rules: Rules, ax: Axes | None = None) -> Axes:
    """Mean yearly prevalence of each item (bars) against the generator's target (markers).
    Items whose pooled count is 1..T are left out so the plot hides what tables hide."""
    ax = axes(ax, (7.0, 4.8))
    g = (
        prev.groupby(["item", "項目（item）"], sort=False)
        .agg(
            n=("該当（n）", "sum"),
            d=("分母（denominator）", "sum"),
            target=("目標（target）", "first"),
        )
        .reset_index()
    )
    g = g[~small_mask(g["n"], rules)]
    y = np.arange(len(g))
    ax.barh(y, 100 * g["n"] / g["d"], color=PALETTE[0], label=label("観測", "observed"))
    has_t = g["target"].notna()
    ax.scatter(
        100 * g.loc[has_t, "target"].astype(float),
        y[has_t.to_numpy()],
        color=PALETTE[1],
        marker="D",
        zorder=3,
        label=label("目標", "target"),
    )
    ax.set_yticks(y, g["項目（item）"])
    ax.invert_yaxis()
    ax.set_xlabel(label("割合 %", "prevalence %"))
    ax.grid(axis="x")
    ax.legend(loc="lower right")
    ax.set_title(label("項目の有病率と目標", "item prevalence vs target"))
    return ax


def plot_outcome_rates(outcomes: pd.DataFrame, rules: Rules, ax: Axes | None = None) -> Axes:
    """Yearly outcome rate per 1,000 child-years with the target as a dashed line; years whose
    count is 1..T are not drawn."""
    ax = axes(ax, (7.0, 3.6))
    hidden_any = False
    for i, (name, g) in enumerate(outcomes.groupby("目的変数（outcome）", sort=False)):
        small = small_mask(g["件数（events）"], rules)
        hidden_any |= bool(small.any())
        rate = 1000 * g["発生率（rate）"].where(~small)
        colour = PALETTE[i % len(PALETTE)]
        ax.plot(g["年度"], rate, marker="o", color=colour, label=name)
        ax.axhline(1000 * g["目標（target）"].iloc[0], color=colour, linestyle="--", linewidth=0.8)
    years = sorted(outcomes["年度"].unique())
    ax.set_xticks(years, [f"{y}年度" for y in years])
    ax.set_xlim(years[0] - 0.5, years[-1] + 0.5)
    if hidden_any:
        t = rules.threshold
        ax.annotate(
            f"1〜{t}件の年は非表示（years with 1-{t} events not drawn）",
            xy=(0.99, 0.5),
            xycoords="axes fraction",
            ha="right",
            va="center",
            fontsize=8,
            color="#555555",
        )
    ax.set_xlabel(label("年度", "fiscal year"))
    ax.set_ylabel(label("千人年あたり", "per 1,000 child-years"))
    ax.legend(loc="upper left", fontsize=8)
    ax.set_title(label("目的変数の発生率（破線は目標）", "outcome rates; dashed = target"))
    return ax
