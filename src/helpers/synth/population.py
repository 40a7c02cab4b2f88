"""Households, people, yearly household states and outcomes of the synthetic city.

Everything is vectorised over households or persons; the only Python loops run over the
handful of as-of dates (1 April of each fiscal year). Days are integers since 1970-01-01 so
date arithmetic stays in numpy; ``NEG``/``POS`` stand for "long before" / "never".
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from helpers.config import Settings

NEG = -(10**6)
POS = 10**6

# Prevalences and base rates the generator aims at, with their public sources. "assumption"
# marks a figure chosen for plausibility where no single public statistic fits.
PREVALENCE_SOURCES: list[dict] = [
    {
        "item": "single_parent",
        "label_ja": "ひとり親世帯",
        "target": 0.065,
        "per": "share of households with children at the start",
        "source": "国民生活基礎調査2022: ひとり親と未婚の子のみの世帯 6.3% of 児童のいる世帯",
    },
    {
        "item": "three_generation",
        "label_ja": "三世代世帯",
        "target": 0.11,
        "per": "share of households with children",
        "source": "国民生活基礎調査2022: 三世代世帯 ~11-12% of 児童のいる世帯",
    },
    {
        "item": "public_assistance",
        "label_ja": "生活保護受給世帯の子",
        "target": 0.013,
        "per": "child-years",
        "source": "被保護者調査: 被保護人員 ~1.6% of population; children slightly lower (assumption)",
    },
    {
        "item": "child_rearing_allowance",
        "label_ja": "児童扶養手当",
        "target": 0.055,
        "per": "child-years (about 85% of single-parent households qualify)",
        "source": "児童扶養手当受給者 ~0.85 million / 10.7 million households with children",
    },
    {
        "item": "school_aid",
        "label_ja": "就学援助",
        "target": 0.14,
        "per": "school-age child-years (grade 1-9)",
        "source": "文部科学省 就学援助実施状況調査: 就学援助率 ~14% (FY2021-2022)",
    },
    {
        "item": "special_needs_class",
        "label_ja": "特別支援学級",
        "target": 0.037,
        "per": "school-age child-years",
        "source": "文部科学省 特別支援教育資料: 特別支援学級在籍 ~3.7% of compulsory-school pupils",
    },
    {
        "item": "low_birth_weight",
        "label_ja": "低出生体重（2,500g未満）",
        "target": 0.094,
        "per": "births",
        "source": "人口動態統計: 低出生体重児 ~9.4% of births",
    },
    {
        "item": "foreign_household",
        "label_ja": "外国籍世帯",
        "target": 0.025,
        "per": "households",
        "source": "在留外国人統計 / 住民基本台帳: 外国人住民 ~2-3% of residents",
    },
    {
        "item": "care_need_75plus",
        "label_ja": "要介護・要支援認定率（75歳以上）",
        "target": 0.31,
        "per": "persons aged 75+",
        "source": "介護保険事業状況報告: 認定率 75歳以上 ~31%; 85歳以上 ~57%",
    },
    {
        "item": "mental_outpatient",
        "label_ja": "自立支援医療（精神通院）の親",
        "target": 0.045,
        "per": "households with children",
        "source": "自立支援医療(精神通院)受給者 ~2.3 million (~1.9% of population); per household (assumption)",
    },
    {
        "item": "not_in_nursery",
        "label_ja": "3-5歳の未就園",
        "target": 0.04,
        "per": "child-years aged 3-5",
        "source": "こども家庭庁: 未就園児 ~2-5% of 3-5 year olds (assumption within range)",
    },
    {
        "item": "in_mover",
        "label_ja": "期間中の転入世帯",
        "target": 0.03,
        "per": "households per year",
        "source": "住民基本台帳人口移動報告: ~3% per year (assumption)",
    },
]

HH_TYPES = np.array(["two_parent", "single_mother", "single_father", "three_generation"])
HH_TYPE_P = np.array([0.833, 0.05, 0.007, 0.11])
HH_TYPE_JA = {
    "two_parent": "ふたり親",
    "single_mother": "母子",
    "single_father": "父子",
    "three_generation": "三世代",
}
CARE_LEVELS = np.array(["support_1", "support_2", "care_1", "care_2", "care_3", "care_4", "care_5"])
CARE_LEVEL_P = np.array([0.14, 0.14, 0.20, 0.17, 0.13, 0.12, 0.10])

DEFAULT_RATES = {
    "foreign_household": 0.025,
    "old_mover_share": 0.30,
    "in_move_per_year": 0.03,
    "out_move_per_year": 0.025,
    "divorce_per_year": 0.0025,
    "mental_outpatient": 0.045,
    "public_assistance": 0.013,
    "school_aid": 0.14,
    "special_needs_class": 0.037,
    "low_birth_weight": 0.094,
    "three_gen_single": 0.10,
}
# background consultation types: yearly rate per eligible child-year, ages
BACKGROUND = {
    "neglect": (0.002, (0, 15)),
    "psychological_abuse": (0.002, (0, 17)),
    "sexual_abuse": (0.0002, (3, 17)),
    "school_refusal": (0.012, (9, 15)),
    "development": (0.015, (1, 6)),
    "parenting": (0.02, (0, 3)),
    "poverty": (0.004, (0, 17)),
    "other": (0.005, (0, 17)),
    "young_carer_not_determined": (0.007, (9, 15)),
}


TARGETS = ("physical_abuse", "young_carer")


def unique_ints(rng: np.random.Generator, n: int, low: int, high: int) -> np.ndarray:
    """n distinct random integers in [low, high) without materialising the range."""
    out = np.unique(rng.integers(low, high, int(n * 1.2) + 10))
    while len(out) < n:
        out = np.unique(np.concatenate([out, rng.integers(low, high, n)]))
    return rng.permutation(out)[:n]


def _isin(values, pool) -> np.ndarray:
    """Hash-based membership (np.isin on object arrays is very slow)."""
    return (
        pd.Series(np.asarray(values))
        .isin(list(pool) if not hasattr(pool, "__array__") else pool)
        .to_numpy()
    )


def rng_for(seed: int, name: str) -> np.random.Generator:
    """An independent stream per purpose, so adding one table never reshuffles another."""
    return np.random.default_rng([int(seed), zlib.crc32(name.encode("utf-8"))])


def synth_settings(cfg: Settings) -> dict:
    """The generator's settings as one plain mapping (the only place that reads cfg)."""
    s, run = cfg.synth, cfg.run
    targets = {"physical_abuse": 0.0025, "young_carer": 0.015}
    targets.update(s.targets)
    rates = dict(DEFAULT_RATES)
    rates.update(s.rates)
    return {
        "seed": int(run.seed),
        "fiscal_years": [int(y) for y in run.fiscal_years],
        "n_children": int(s.n_children),
        "age_max": int(s.age_max),
        "defect_rate": float(s.defect_rate),
        "messiness": s.messiness.as_dict(),
        "targets": targets,
        "young_carer_ages": tuple(s.young_carer_ages),
        "abuse_ages": (0, 15),
        "rates": rates,
        "dialect": s.dialect,
    }


# ---------------------------------------------------------------- date helpers
def day(y: int, m: int, d: int) -> int:
    return int(
        (np.datetime64(f"{y:04d}-{m:02d}-{d:02d}") - np.datetime64("1970-01-01")).astype(int)
    )


def days_of(y, m: int, d: int) -> np.ndarray:
    """Vectorised ``day``: integer days of y-m-d for an array of years."""
    yy = np.asarray(y, dtype="int64") - 1970
    months = yy.astype("datetime64[Y]").astype("datetime64[M]") + (m - 1)
    return (months.astype("datetime64[D]") + (d - 1)).astype("int64")


def ymd(days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    d = np.asarray(days, dtype="int64").astype("datetime64[D]")
    y = d.astype("datetime64[Y]").astype(int) + 1970
    m = d.astype("datetime64[M]").astype(int) % 12 + 1
    dd = (d - d.astype("datetime64[M]")).astype(int) + 1
    return y, m, dd


def dates_of(days: pd.Series) -> pd.Series:
    """Day numbers since 1970-01-01 (nullable) as datetimes, NaT where missing.

    Integer arithmetic only: pandas' float path for ``unit="D"`` reads
    uninitialised memory at NaN positions and can raise an overflow at random.
    """
    ints = pd.array(days, dtype="Int64")
    known = ~ints.isna()
    out = np.full(len(ints), np.datetime64("NaT"), dtype="datetime64[ns]")
    out[known] = ints[known].to_numpy("int64").astype("datetime64[D]")
    return pd.Series(out, index=days.index)


def age_on(birth: np.ndarray, y, m: int = 4, d: int = 1) -> np.ndarray:
    """Completed years on y-m-d (y may be an array)."""
    by, bm, bd = ymd(birth)
    later = (bm > m) | ((bm == m) & (bd > d))
    return np.asarray(y) - by - later.astype(int)


def school_cohort(birth: np.ndarray) -> np.ndarray:
    """School-entry cohort: born 2 April Y .. 1 April Y+1 -> Y (1 April births join the earlier year)."""
    by, bm, bd = ymd(birth)
    early = (bm < 4) | ((bm == 4) & (bd == 1))
    return by - early.astype(int)


def grade_in(birth: np.ndarray, fiscal_year) -> np.ndarray:
    """Compulsory-school grade 1-9 in a fiscal year (<=0 preschool, >=10 beyond)."""
    return np.asarray(fiscal_year) - school_cohort(birth) - 6


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def calibrate_intercept(linear: np.ndarray, target: float, mask: np.ndarray | None = None) -> float:
    """Intercept b so that mean(sigmoid(b + linear)) over ``mask`` equals ``target`` (bisection)."""
    x = linear if mask is None else linear[mask]
    if len(x) == 0 or target <= 0:
        return -30.0
    lo, hi = -30.0, 30.0
    for _ in range(80):
        mid = (lo + hi) / 2
        if sigmoid(mid + x).mean() > target:
            hi = mid
        else:
            lo = mid
    return (lo + hi) / 2


def _threshold(
    score: np.ndarray, weight: np.ndarray, target: float, forced: np.ndarray | None = None
) -> float:
    """Cut-off t so that the weighted share of (forced | score > t) equals ``target``."""
    if weight.sum() == 0:
        return np.inf
    forced = np.zeros(len(score), bool) if forced is None else forced
    lo, hi = score.min() - 1, score.max() + 1
    for _ in range(60):
        mid = (lo + hi) / 2
        share = (weight * (forced | (score > mid))).sum() / weight.sum()
        if share > target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _ar(rng: np.random.Generator, n: int, k: int, rho: float) -> np.ndarray:
    z = np.empty((n, k))
    z[:, 0] = rng.standard_normal(n)
    for j in range(1, k):
        z[:, j] = rho * z[:, j - 1] + np.sqrt(1 - rho**2) * rng.standard_normal(n)
    return z


@dataclass
class City:
    settings: dict
    households: pd.DataFrame
    persons: pd.DataFrame
    asof_years: np.ndarray
    asof_days: np.ndarray
    state: dict[str, np.ndarray]
    n_children_start: int
    person_year: pd.DataFrame = field(default_factory=pd.DataFrame)
    child_year: pd.DataFrame = field(default_factory=pd.DataFrame)
    events: pd.DataFrame = field(default_factory=pd.DataFrame)
    intercepts: dict = field(default_factory=dict)

    @property
    def start_day(self) -> int:
        return day(self.settings["fiscal_years"][0], 4, 1)

    @property
    def end_day(self) -> int:
        return day(self.settings["fiscal_years"][-1] + 1, 3, 31)


# ---------------------------------------------------------------- households and people
def _household_draws(rng: np.random.Generator, n: int, settings: dict) -> dict:
    rates = settings["rates"]
    start = day(settings["fiscal_years"][0], 4, 1)
    years = len(settings["fiscal_years"])
    htype = rng.choice(HH_TYPES, p=HH_TYPE_P / HH_TYPE_P.sum(), size=n)
    foreign = rng.random(n) < rates["foreign_household"]
    htype = np.where(foreign & (htype == "three_generation"), "two_parent", htype)
    n_kids = rng.choice([1, 2, 3, 4], p=[0.42, 0.42, 0.13, 0.03], size=n)
    ages = np.empty((n, 4))
    ages[:, 0] = rng.uniform(
        -(years + 1), settings["age_max"] + 3, n
    )  # new families keep births flowing
    gaps = rng.uniform(1.2, 4.5, (n, 3))
    twins = (n_kids >= 2) & (rng.random(n) < 0.02)  # ~1% of births are multiple births
    gaps[twins, 0] = 0.0
    for j in range(1, 4):
        ages[:, j] = ages[:, j - 1] - gaps[:, j - 1]
    kid_birth = start - np.round(ages * 365.25).astype(int)
    kid_ok = (np.arange(4)[None, :] < n_kids[:, None]) & (ages > -years)
    mother_birth = kid_birth[:, 0] - np.round(rng.uniform(22, 38, n) * 365.25).astype(int)
    father_birth = mother_birth - np.round(np.clip(rng.normal(2, 3, n), -3, 12) * 365.25).astype(
        int
    )
    return {
        "type": htype,
        "foreign": foreign,
        "kid_birth": kid_birth,
        "kid_ok": kid_ok,
        "mother_birth": mother_birth,
        "father_birth": father_birth,
        "three_gen_single": (htype == "three_generation")
        & (rng.random(n) < rates["three_gen_single"]),
        "gp_side_father": rng.random(n) < 0.7,
        "gp_which": rng.choice([0, 1, 2], p=[0.6, 0.3, 0.1], size=n),
        "gm_gap": rng.uniform(25, 33, n),
        "gf_gap": rng.uniform(0, 4, n),
    }


def _persons_from(draws: dict, hh_index: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
    """One row per person (children, parents, grandparents) of the given households."""
    frames = []
    t = draws["type"][hh_index]
    single_mother = (t == "single_mother") | draws["three_gen_single"][hh_index]
    has_father = ~single_mother
    has_mother = t != "single_father"
    frames.append(
        pd.DataFrame(
            {
                "hh": hh_index[has_father],
                "role": "father",
                "sex": "male",
                "birth": draws["father_birth"][hh_index][has_father],
            }
        )
    )
    frames.append(
        pd.DataFrame(
            {
                "hh": hh_index[has_mother],
                "role": "mother",
                "sex": "female",
                "birth": draws["mother_birth"][hh_index][has_mother],
            }
        )
    )
    three = t == "three_generation"
    base = np.where(
        draws["gp_side_father"][hh_index] & has_father,
        draws["father_birth"][hh_index],
        draws["mother_birth"][hh_index],
    )
    gm_birth = base - np.round(draws["gm_gap"][hh_index] * 365.25).astype(int)
    gf_birth = gm_birth - np.round(draws["gf_gap"][hh_index] * 365.25).astype(int)
    which = draws["gp_which"][hh_index]
    gm = three & (which != 2)
    gf = three & (which != 1)
    frames.append(
        pd.DataFrame(
            {"hh": hh_index[gf], "role": "grandfather", "sex": "male", "birth": gf_birth[gf]}
        )
    )
    frames.append(
        pd.DataFrame(
            {"hh": hh_index[gm], "role": "grandmother", "sex": "female", "birth": gm_birth[gm]}
        )
    )
    kb = draws["kid_birth"][hh_index]
    ok = draws["kid_ok"][hh_index]
    rows, cols = np.nonzero(ok)
    sex = np.where(rng.random(len(rows)) < 0.512, "male", "female")
    frames.append(
        pd.DataFrame(
            {
                "hh": hh_index[rows],
                "role": "child",
                "sex": sex,
                "birth": kb[rows, cols],
                "birth_order": cols + 1,
            }
        )
    )
    out = pd.concat(frames, ignore_index=True)
    out["birth_order"] = out["birth_order"].fillna(0).astype(int)
    return out


def _base_draws(settings: dict, rng: np.random.Generator) -> tuple[dict, int, int]:
    """Household draws: enough base households to reach n_children aged 0..age_max on the
    first as-of date, plus the in-movers of the later years."""
    fys = settings["fiscal_years"]
    start = day(fys[0], 4, 1)
    n_try = int(settings["n_children"] * 1.4) + 50
    draws = _household_draws(rng, n_try, settings)
    age0 = age_on(draws["kid_birth"].ravel(), fys[0]).reshape(draws["kid_birth"].shape)
    counted = (
        draws["kid_ok"]
        & (draws["kid_birth"] <= start)
        & (age0 >= 0)
        & (age0 <= settings["age_max"])
    ).sum(axis=1)
    n_base = min(int(np.searchsorted(np.cumsum(counted), settings["n_children"]) + 1), n_try)
    n_in = int(round(n_base * settings["rates"]["in_move_per_year"] * max(len(fys) - 1, 0)))
    n_hh = n_base + n_in
    if n_hh > n_try:
        extra = _household_draws(rng, n_hh - n_try, settings)
        draws = {k: np.concatenate([draws[k], extra[k]]) for k in draws}
    return {k: v[:n_hh] for k, v in draws.items()}, n_base, n_hh


def _moves(
    settings: dict, rng: np.random.Generator, n_base: int, n_hh: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """In-mover flag, move-in and move-out day of every household."""
    fys, rates = settings["fiscal_years"], settings["rates"]
    start, end = day(fys[0], 4, 1), day(fys[-1] + 1, 3, 31)
    in_mover = np.arange(n_hh) >= n_base
    move_in = np.full(n_hh, NEG, dtype=np.int64)
    old = ~in_mover & (rng.random(n_hh) < rates["old_mover_share"])
    move_in[old] = start - rng.integers(30, 3650, old.sum())
    if len(fys) > 1:
        move_in[in_mover] = rng.integers(day(fys[1], 4, 1), end, in_mover.sum())
    p_out = 1 - (1 - rates["out_move_per_year"]) ** len(fys)
    earliest_out = np.maximum(start, move_in + 365)
    out = (rng.random(n_hh) < p_out) & (earliest_out < end)
    move_out = np.full(n_hh, POS, dtype=np.int64)
    span = (rng.random(out.sum()) * (end - earliest_out[out])).astype(int)
    move_out[out] = earliest_out[out] + span
    return in_mover, move_in, move_out


def _household_frame(
    settings: dict,
    rng: np.random.Generator,
    draws: dict,
    in_mover: np.ndarray,
    move_in: np.ndarray,
    move_out: np.ndarray,
) -> pd.DataFrame:
    """Households with type, hardship and a divorce (the leaving parent moves away)."""
    fys, rates = settings["fiscal_years"], settings["rates"]
    start, end = day(fys[0], 4, 1), day(fys[-1] + 1, 3, 31)
    n_hh = len(move_in)
    hardship = rng.standard_normal(n_hh)
    htype = draws["type"]
    single0 = (htype == "single_mother") | (htype == "single_father") | draws["three_gen_single"]
    foreign = draws["foreign"]
    hardship = hardship + 0.6 * single0 + 0.4 * foreign
    p_div = 1 - (1 - rates["divorce_per_year"]) ** len(fys)
    divorce = np.full(n_hh, POS, dtype=np.int64)
    dv = ~single0 & (rng.random(n_hh) < sigmoid(np.log(p_div / (1 - p_div)) + 0.5 * hardship))
    divorce[dv] = rng.integers(start, end, dv.sum())
    first_kid = np.where(draws["kid_ok"], draws["kid_birth"], POS).min(axis=1)
    divorce[~((divorce > np.maximum(move_in, first_kid)) & (divorce < move_out))] = POS
    households = pd.DataFrame(
        {
            "hh": np.arange(n_hh),
            "type0": np.where(draws["three_gen_single"], "three_generation", htype),
            "three_gen_single": draws["three_gen_single"],
            "foreign": foreign,
            "hardship": hardship,
            "in_mover": in_mover,
            "move_in": move_in,
            "move_out": move_out,
            "divorce": divorce,
            "leaver": np.where(rng.random(n_hh) < 0.85, "father", "mother"),
            "single0": single0,
        }
    )
    households["initial_type"] = np.where(
        households["three_gen_single"], "three_generation", households["type0"]
    )
    return households


def _people(
    settings: dict, rng: np.random.Generator, draws: dict, households: pd.DataFrame
) -> pd.DataFrame:
    """Persons with move-in (parents who came to marry or work), move-out and the period."""
    fys = settings["fiscal_years"]
    start, end = day(fys[0], 4, 1), day(fys[-1] + 1, 3, 31)
    hh = households
    persons = _persons_from(draws, hh["hh"].to_numpy(), rng)
    p_hh = persons["hh"].to_numpy()
    foreign = hh["foreign"].to_numpy()
    persons["foreign"] = foreign[p_hh]
    # move-in: members born before the household arrived carry its move-in date
    hh_in = hh["move_in"].to_numpy()[p_hh]
    persons["move_in"] = np.where((hh_in > NEG) & (persons["birth"].to_numpy() < hh_in), hh_in, NEG)
    # parents of long-settled households: many came here to marry or work before the first
    # child (every foreign national did); grandparents have lived here since birth
    parent = persons["role"].isin(["mother", "father"]).to_numpy()
    first_kid_p = np.where(draws["kid_ok"], draws["kid_birth"], POS).min(axis=1)[p_hh]
    came = (
        parent
        & (hh_in == NEG)
        & ((rng.random(len(persons)) < 0.5) | foreign[p_hh])
        & (first_kid_p < POS)
    )
    came_day = np.minimum(first_kid_p, start) - rng.integers(30, 3000, len(persons))
    came_day = np.maximum(came_day, persons["birth"].to_numpy() + 18 * 365)
    persons["move_in"] = np.where(came & (came_day < start), came_day, persons["move_in"])
    persons["move_out"] = hh["move_out"].to_numpy()[p_hh]
    divorce = hh["divorce"].to_numpy()
    is_leaver = (persons["role"].to_numpy() == hh["leaver"].to_numpy()[p_hh]) & (
        divorce[p_hh] < POS
    )
    persons.loc[is_leaver, "move_out"] = np.minimum(
        persons.loc[is_leaver, "move_out"], divorce[p_hh][is_leaver]
    )
    persons["death"] = POS
    # drop people never resident: born after the household left or after the period
    born = persons["birth"].to_numpy()
    keep = (born < persons["move_out"].to_numpy()) & (born <= end)
    persons = persons[keep].sort_values(["hh", "birth"], kind="stable").reset_index(drop=True)
    persons["pid"] = np.arange(len(persons))
    return persons


def build_city(settings: dict) -> City:
    """Households, people, moves, yearly states and outcomes; deterministic for the seed."""
    fys = settings["fiscal_years"]
    rng = rng_for(settings["seed"], "households")
    draws, n_base, n_hh = _base_draws(settings, rng)
    in_mover, move_in, move_out = _moves(settings, rng, n_base, n_hh)
    households = _household_frame(settings, rng, draws, in_mover, move_in, move_out)
    persons = _people(settings, rng, draws, households)
    start = day(fys[0], 4, 1)
    n_children_start = int(
        (
            (persons["role"] == "child")
            & ~households["in_mover"].to_numpy()[persons["hh"]]
            & (persons["birth"] <= start)
            & (age_on(persons["birth"].to_numpy(), fys[0]) <= settings["age_max"])
        ).sum()
    )
    asof_years = np.arange(fys[0] - 1, fys[-1] + 2)
    asof_days = np.array([day(int(y), 4, 1) for y in asof_years])
    city = City(settings, households, persons, asof_years, asof_days, {}, n_children_start)
    _grandparent_lives(city)
    _household_states(city)
    _child_traits(city)
    _person_years(city)
    _outcomes(city)
    return city


def _grandparent_lives(city: City) -> None:
    """Deaths (75+ mortality) and care-need certification of grandparents, year by year."""
    rng = rng_for(city.settings["seed"], "grandparents")
    p = city.persons
    gp = p["role"].isin(["grandmother", "grandfather"]).to_numpy()
    idx = np.nonzero(gp)[0]
    birth = p["birth"].to_numpy()[idx]
    death = np.full(len(idx), POS, dtype=np.int64)
    care_day = np.full(len(idx), POS, dtype=np.int64)
    care_level = np.full(len(idx), "", dtype=object)
    ages0 = age_on(birth, city.asof_years[0])
    p0 = sigmoid((ages0 - 85) / 4.5)
    init = rng.random(len(idx)) < p0
    care_day[init] = city.asof_days[0] - rng.integers(30, 5 * 365, init.sum())
    care_level[init] = rng.choice(CARE_LEVELS, p=CARE_LEVEL_P, size=init.sum())
    for k in range(len(city.asof_years) - 1):
        a0 = age_on(birth, city.asof_years[k])
        alive = death == POS
        q = np.minimum(0.02 * np.exp((a0 - 75) / 9.0), 0.5) * (a0 >= 65) + 0.004 * (a0 < 65)
        dies = alive & (rng.random(len(idx)) < q)
        death[dies] = city.asof_days[k] + rng.integers(0, 365, dies.sum())
        pa, pb = sigmoid((a0 - 85) / 4.5), sigmoid((a0 + 1 - 85) / 4.5)
        hz = np.clip((pb - pa) / (1 - pa), 0, 1)
        onset = alive & (care_day == POS) & (rng.random(len(idx)) < hz)
        care_day[onset] = city.asof_days[k] + rng.integers(0, 365, onset.sum())
        care_level[onset] = rng.choice(CARE_LEVELS, p=CARE_LEVEL_P, size=onset.sum())
    care_day[care_day >= death] = POS
    care_level[care_day == POS] = ""
    p.loc[idx, "death"] = np.minimum(death, p.loc[idx, "death"].to_numpy())
    p["care_day"] = POS
    p["care_level"] = ""
    p.loc[idx, "care_day"] = care_day
    p.loc[idx, "care_level"] = care_level
    handbook = (rng.random(len(idx)) < 0.06) | ((care_day < POS) & (rng.random(len(idx)) < 0.3))
    hb_day = np.where(
        care_day < POS,
        care_day + rng.integers(0, 200, len(idx)),
        city.asof_days[0] - rng.integers(100, 4000, len(idx)),
    )
    p["handbook_day"] = POS
    p["handbook_type"] = ""
    p.loc[idx[handbook], "handbook_day"] = hb_day[handbook]
    p.loc[idx[handbook], "handbook_type"] = "physical"


def _household_states(city: City) -> None:
    """Yearly household states on each 1 April: presence, single parent, mental outpatient care,
    public assistance and school aid (persistent latent processes with entries and exits)."""
    rng = rng_for(city.settings["seed"], "states")
    hh, rates = city.households, city.settings["rates"]
    p = city.persons
    n, k = len(hh), len(city.asof_days)
    asof = city.asof_days[None, :]
    present = (hh["move_in"].to_numpy()[:, None] <= asof) & (
        asof < hh["move_out"].to_numpy()[:, None]
    )
    single = hh["single0"].to_numpy()[:, None] | (hh["divorce"].to_numpy()[:, None] <= asof)
    h = hh["hardship"].to_numpy()[:, None]
    foreign = hh["foreign"].to_numpy()[:, None]
    kids = p[p["role"] == "child"]
    kid_birth = kids["birth"].to_numpy()
    n_kids = np.zeros((n, k))
    n_school = np.zeros((n, k))
    for j, y in enumerate(city.asof_years):
        res = (kid_birth <= city.asof_days[j]) & (kids["move_out"].to_numpy() > city.asof_days[j])
        ages = age_on(kid_birth, y)
        g = grade_in(kid_birth, y)
        n_kids[:, j] = np.bincount(kids["hh"][res & (ages <= 17)], minlength=n)
        n_school[:, j] = np.bincount(kids["hh"][res & (g >= 1) & (g <= 9)], minlength=n)
    mental_score = 0.5 * h + 0.5 * single + _ar(rng, n, k, 0.85)
    mental = np.zeros((n, k), bool)
    pa = np.zeros((n, k), bool)
    aid = np.zeros((n, k), bool)
    pa_score = 0.9 * h + 0.9 * single + 0.4 * foreign + 0.8 * _ar(rng, n, k, 0.9)
    aid_score = 1.0 * h + 1.2 * single + 0.6 * foreign + 0.6 * _ar(rng, n, k, 0.9)
    for j in range(k):
        w = present[:, j] & (n_kids[:, j] > 0)
        t = _threshold(mental_score[w, j], np.ones(w.sum()), rates["mental_outpatient"])
        mental[:, j] = w & (mental_score[:, j] > t)
        s = pa_score[:, j] + 0.5 * mental[:, j]
        t = _threshold(s[w], n_kids[w, j], rates["public_assistance"])
        pa[:, j] = w & (s > t)
        ws = present[:, j] & (n_school[:, j] > 0)
        t = _threshold(aid_score[ws, j], n_school[ws, j], rates["school_aid"], forced=pa[ws, j])
        aid[:, j] = ws & (pa[:, j] | (aid_score[:, j] > t))
    city.state.update(
        present=present,
        single=single,
        mental=mental,
        pa=pa,
        school_aid=aid,
        n_kids=n_kids,
        n_school=n_school,
    )
    # allowances: 児童扶養手当 for most single-parent households (income limit)
    hh["cra_eligible"] = h[:, 0] > np.quantile(h[:, 0], 0.15)
    # mental handbook for some parents in outpatient care; physical handbook for a few parents
    ever_mental = mental.any(axis=1)
    first_mental = np.where(ever_mental, mental.argmax(axis=1), 0)
    hh["mental_first_k"] = np.where(ever_mental, first_mental, -1)
    hh["mental_handbook"] = ever_mental & (rng.random(n) < 0.3)
    hh["parent_physical"] = rng.random(n) < 0.01
    hh["mother_smokes"] = rng.random(n) < sigmoid(-3.2 + 0.8 * h[:, 0] + 0.6 * single[:, 1])
    hh["cigarettes"] = np.where(
        hh["mother_smokes"],
        rng.choice([1, 2, 3, 5, 10, 15, 20], size=n, p=[0.1, 0.1, 0.1, 0.2, 0.3, 0.1, 0.1]),
        0,
    )
    hh["no_cooperation"] = rng.random(n) < sigmoid(-3.0 + 1.5 * single[:, 1] + 0.5 * h[:, 0])
    # parent handbooks as person-level days (the primary parent holds them)
    primary = _primary_parent(city)
    hb_day = p["handbook_day"].to_numpy().copy()
    hb_type = p["handbook_type"].to_numpy().copy()
    ph = hh["parent_physical"].to_numpy()
    who = primary[ph]
    ok = who >= 0
    hb_day[who[ok]] = city.asof_days[0] - rng.integers(0, 3000, ok.sum())
    hb_type[who[ok]] = "physical"
    mh = hh["mental_handbook"].to_numpy()
    who = primary[mh]
    ok = who >= 0
    mk = hh["mental_first_k"].to_numpy()[mh][ok]
    hb_day[who[ok]] = city.asof_days[np.minimum(mk + 1, k - 1)] - rng.integers(1, 300, ok.sum())
    hb_type[who[ok]] = "mental"
    p["handbook_day"] = hb_day
    p["handbook_type"] = hb_type


def _primary_parent(city: City) -> np.ndarray:
    """Per household, the pid of the parent who stays (mother unless she left or is absent)."""
    p = city.persons
    n = len(city.households)
    out = np.full(n, -1, dtype=np.int64)
    for role in ("father", "mother"):  # mother overwrites father
        r = p[
            (p["role"] == role) & (p["move_out"] >= city.households["move_out"].to_numpy()[p["hh"]])
        ]
        out[r["hh"].to_numpy()] = r["pid"].to_numpy()
    return out


def _child_traits(city: City) -> None:
    """Birth facts, development, smoking exposure and nursery enrolment for each child."""
    rng = rng_for(city.settings["seed"], "child_traits")
    p = city.persons
    hh = city.households
    kid = (p["role"] == "child").to_numpy()
    n = len(p)
    h = hh["hardship"].to_numpy()[p["hh"]]
    multiple = kid & p.duplicated(["hh", "birth"], keep=False).to_numpy()
    lbw = rng.random(n) < sigmoid(np.log(0.083 / 0.917) + 0.25 * h + 2.5 * multiple)
    bw = np.where(lbw, rng.normal(2150, 300, n), rng.normal(3100, 330, n))
    bw = np.where(lbw, np.clip(bw, 600, 2499), np.clip(bw, 2500, 4800))
    p["birth_weight"] = np.round(bw).astype(int)
    p["low_birth_weight"] = kid & lbw
    p["gest_weeks"] = np.where(
        lbw,
        np.clip(np.round(rng.normal(35, 2.5, n)), 24, 40),
        np.clip(np.round(rng.normal(39, 1.2, n)), 36, 42),
    ).astype(int)
    p["head_cm"] = np.round(np.clip(rng.normal(33.0 + (bw - 3000) / 900, 1.2, n), 25, 40), 1)
    p["multiple"] = multiple
    dev = rng.standard_normal(n) + 0.3 * lbw
    p["dev"] = dev
    p["rehab"] = kid & (dev > 2.33)
    p["special_needs"] = kid & (dev > 1.79)
    p["weight3"] = np.round(np.clip(rng.normal(14.0, 1.5, n) + 0.3 * h, 9, 22), 1)
    # nursery: start age or never
    f = hh["foreign"].to_numpy()[p["hh"]]
    never = rng.random(n) < sigmoid(-4.3 + 1.6 * f + 0.5 * h)
    start_age = rng.choice([0.5, 1, 2, 3, 4], p=[0.2, 0.35, 0.1, 0.25, 0.1], size=n)
    p["nursery_never"] = kid & never
    p["nursery_start_age"] = np.where(kid & ~never, start_age, np.nan)
    rehab_issue = p["birth"].to_numpy() + rng.integers(3 * 365, 6 * 365, n)
    hb = p["rehab"].to_numpy()
    p.loc[hb, "handbook_day"] = rehab_issue[hb]
    p.loc[hb, "handbook_type"] = "rehab"
    p["student_id"] = ""
    sid = unique_ints(rng, int(kid.sum()), 10_000_000, 99_999_999)
    p.loc[kid, "student_id"] = sid.astype(str)


def resident_interval(p: pd.DataFrame, end: int) -> tuple[np.ndarray, np.ndarray]:
    """First and last day each person is registered here."""
    frm = np.maximum(p["birth"].to_numpy(), p["move_in"].to_numpy())
    to = np.minimum(np.minimum(p["move_out"].to_numpy(), p["death"].to_numpy()), end + 1)
    return frm, to


def _person_years(city: City) -> None:
    """Person x as-of rows for residents, with household items of the 12-item rule."""
    p, hh, st = city.persons, city.households, city.state
    frm, to = resident_interval(p, city.end_day)
    rows = []
    for j, y in enumerate(city.asof_years):
        d = city.asof_days[j]
        res = (frm <= d) & (to > d)
        idx = np.nonzero(res)[0]
        rows.append(
            pd.DataFrame(
                {
                    "pid": idx,
                    "k": j,
                    "fiscal_year": int(y),
                    "age": age_on(p["birth"].to_numpy()[idx], y),
                }
            )
        )
    py = pd.concat(rows, ignore_index=True)
    pp = p.iloc[py["pid"].to_numpy()]
    py["hh"] = pp["hh"].to_numpy()
    py["role"] = pp["role"].to_numpy()
    d = city.asof_days[py["k"].to_numpy()]
    kk, hhi = py["k"].to_numpy(), py["hh"].to_numpy()
    is_kid = py["role"].to_numpy() == "child"
    grade = grade_in(pp["birth"].to_numpy(), py["fiscal_year"].to_numpy())
    py["grade"] = np.where(is_kid & (grade >= 1) & (grade <= 9), grade, 0)
    special = pp["special_needs"].to_numpy() & (py["grade"].to_numpy() > 0)
    py["special_needs_class"] = special
    care = (pp["care_day"].to_numpy() <= d) & _isin(pp["care_level"].to_numpy(), CARE_LEVELS[2:])
    any_care = pp["care_day"].to_numpy() <= d
    hb = pp["handbook_day"].to_numpy() <= d
    grp = (
        pd.DataFrame(
            {
                "hh": hhi,
                "k": kk,
                "m75": (py["age"].to_numpy() >= 75),
                "care": care,
                "anycare": any_care,
                "hb": hb & ~is_kid,
                "le5": is_kid & (py["age"].to_numpy() <= 5),
                "sn": special,
            }
        )
        .groupby(["hh", "k"])
        .agg(
            m75=("m75", "any"),
            care=("care", "any"),
            anycare=("anycare", "any"),
            hb=("hb", "any"),
            n_le5=("le5", "sum"),
            n_sn=("sn", "sum"),
            size=("m75", "size"),
        )
    )
    g = grp.reindex(pd.MultiIndex.from_arrays([hhi, kk])).to_numpy()
    py["member_75plus"] = g[:, 0].astype(bool)
    py["care_need_member"] = g[:, 1].astype(bool)
    py["any_care_member"] = g[:, 2].astype(bool)
    py["disability_member"] = g[:, 3].astype(bool)
    py["n_le5"] = g[:, 4].astype(int)
    py["sibling_special_needs"] = (g[:, 5] - special) > 0
    py["household_size"] = g[:, 6].astype(int)
    for name in ("single", "mental", "pa", "school_aid"):
        py[name] = st[name][hhi, kk]
    py["school_aid"] = py["school_aid"] & (py["grade"] > 0)
    prev = np.maximum(kk - 1, 0)
    py["newly_pa"] = st["pa"][hhi, kk] & ~st["pa"][hhi, prev]
    py["newly_single"] = st["single"][hhi, kk] & ~st["single"][hhi, prev]
    grp2 = grp["care"].groupby(level=0).shift(1).reindex(pd.MultiIndex.from_arrays([hhi, kk]))
    py["newly_care"] = py["care_need_member"].to_numpy() & ~grp2.astype("boolean").fillna(
        True
    ).to_numpy(dtype=bool)
    py["foreign"] = hh["foreign"].to_numpy()[hhi]
    py["hardship"] = hh["hardship"].to_numpy()[hhi]
    py["cra"] = py["single"] & hh["cra_eligible"].to_numpy()[hhi]
    sa = pp["nursery_start_age"].to_numpy()
    py["not_in_nursery"] = (
        is_kid & (py["age"].between(3, 5).to_numpy()) & ~(sa <= py["age"].to_numpy())
    )
    py["mother_smokes2"] = hh["cigarettes"].to_numpy()[hhi] >= 2
    py["no_cooperation"] = hh["no_cooperation"].to_numpy()[hhi]
    py["low_birth_weight"] = pp["low_birth_weight"].to_numpy()
    py["heavy3"] = (pp["weight3"].to_numpy() >= 15.5) & (py["age"].to_numpy() >= 3)
    py["in_mover"] = hh["in_mover"].to_numpy()[hhi]
    city.person_year = py
    cy = py[
        is_kid
        & (py["age"].to_numpy() >= 0)
        & (py["age"].to_numpy() <= city.settings["age_max"])
        & py["fiscal_year"].isin(city.settings["fiscal_years"]).to_numpy()
    ]
    city.child_year = cy.reset_index(drop=True)


def _logits(cy: pd.DataFrame) -> dict[str, np.ndarray]:
    """The latent-risk model: logit(p) = intercept + the terms below, per child-year, with the
    intercept calibrated (``calibrate_intercept``) so the mean p over eligible child-years hits
    ``synth.targets``. Household states are read on 1 April of the year; ``newly_*`` means true
    now and false a year earlier (the change since the previous year).

    physical abuse: age 0-2 +0.8, 3-5 +0.3, 6-9 0, 10-12 +0.4, 13-15 +0.2 (non-monotone);
      hardship 0.6·h + 0.35·clip(h, 0, 2)² (non-linear); single parent +0.6; newly on public
      assistance +1.0; newly single parent +0.9; parent in 精神通院 +0.7, and +0.8 more if the
      household also just became single-parent (interaction); mother smokes >=2/day +1.0, +0.5
      more in single-parent households; no help with child rearing +0.6; low birth weight +0.4;
      3-year checkup weight >=15.5 kg +0.4; two or more children <=5 +0.3; foreign +0.2.
    young carer (ages ``young_carer_ages``): member with 要介護1-5 +1.6; member 75+ +0.6;
      parent in 精神通院 +1.5; member with a disability handbook +0.7; single parent +0.7;
      public assistance +0.5; foreign household +0.6; two or more children <=5 +1.0; single
      parent x 精神通院 +0.9; care need started since last year +0.9; sibling in a special-needs
      class +0.4; +0.12 per year of age above 10; hardship 0.4·h.
    The 12 rule items are correlated by construction (児童扶養手当, 就学援助 and 生活保護 share the
    hardship and single-parent drivers; 75+ members and care needs live in the same
    three-generation households), so item redundancy can be found.
    Background consultation types reuse scaled versions of these scores."""
    f = {
        c: cy[c].to_numpy().astype(float)
        for c in (
            "single",
            "mental",
            "pa",
            "newly_pa",
            "newly_single",
            "newly_care",
            "foreign",
            "mother_smokes2",
            "no_cooperation",
            "low_birth_weight",
            "heavy3",
            "member_75plus",
            "care_need_member",
            "disability_member",
            "sibling_special_needs",
            "school_aid",
        )
    }
    age = cy["age"].to_numpy()
    h = cy["hardship"].to_numpy()
    le5 = (cy["n_le5"].to_numpy() >= 2).astype(float)
    age_abuse = np.select([age <= 2, age <= 5, age <= 9, age <= 12], [0.8, 0.3, 0.0, 0.4], 0.2)
    abuse = (
        age_abuse
        + 0.6 * h
        + 0.35 * np.clip(h, 0, 2.0) ** 2
        + 0.6 * f["single"]
        + 1.0 * f["newly_pa"]
        + 0.9 * f["newly_single"]
        + 0.7 * f["mental"]
        + 0.8 * f["mental"] * f["newly_single"]
        + 1.0 * f["mother_smokes2"]
        + 0.5 * f["mother_smokes2"] * f["single"]
        + 0.6 * f["no_cooperation"]
        + 0.4 * f["low_birth_weight"]
        + 0.4 * f["heavy3"]
        + 0.3 * le5
        + 0.2 * f["foreign"]
    )
    yc = (
        1.6 * f["care_need_member"]
        + 0.6 * f["member_75plus"]
        + 1.5 * f["mental"]
        + 0.7 * f["disability_member"]
        + 0.7 * f["single"]
        + 0.5 * f["pa"]
        + 0.6 * f["foreign"]
        + 1.0 * le5
        + 0.9 * f["single"] * f["mental"]
        + 0.9 * f["newly_care"]
        + 0.4 * f["sibling_special_needs"]
        + 0.12 * (age - 10)
        + 0.4 * h
    )
    return {
        "physical_abuse": abuse,
        "young_carer": yc,
        "neglect": 0.8 * abuse + 0.5 * f["pa"],
        "psychological_abuse": 0.6 * abuse,
        "sexual_abuse": 0.3 * abuse,
        "school_refusal": 0.5 * h + 0.6 * f["sibling_special_needs"],
        "development": 0.6 * cy["dev"].to_numpy() if "dev" in cy else 0 * h,
        "parenting": 0.4 * f["no_cooperation"] + 0.3 * h,
        "poverty": 1.0 * h + 1.0 * f["pa"],
        "other": 0 * h,
        "young_carer_not_determined": 0.5 * yc,
    }


def _outcomes(city: City) -> None:
    """Calibrated yearly probabilities and drawn events (consultations) per child-year."""
    rng = rng_for(city.settings["seed"], "outcomes")
    cy = city.child_year
    cy["dev"] = city.persons["dev"].to_numpy()[cy["pid"].to_numpy()]
    logits = _logits(cy)
    age = cy["age"].to_numpy()
    frm, to = resident_interval(city.persons, city.end_day)
    specs = {
        "physical_abuse": (city.settings["targets"]["physical_abuse"], city.settings["abuse_ages"]),
        "young_carer": (city.settings["targets"]["young_carer"], city.settings["young_carer_ages"]),
    }
    specs.update(BACKGROUND)
    events = []
    for name, (target, (a0, a1)) in specs.items():
        elig = (age >= a0) & (age <= a1)
        b = calibrate_intercept(logits[name], target, elig)
        city.intercepts[name] = round(float(b), 4)
        prob = np.where(elig, sigmoid(b + logits[name]), 0.0)
        if name in ("physical_abuse", "young_carer"):
            cy[f"p_{name}"] = prob
        hit = rng.random(len(cy)) < prob
        idx = np.nonzero(hit)[0]
        pid = cy["pid"].to_numpy()[idx]
        lo = np.maximum(city.asof_days[cy["k"].to_numpy()[idx]], frm[pid])
        hi = np.minimum(city.asof_days[cy["k"].to_numpy()[idx]] + 365, to[pid])
        d = lo + (rng.random(len(idx)) * np.maximum(hi - lo, 1)).astype(int)
        ctype = "young_carer" if name == "young_carer_not_determined" else name
        events.append(
            pd.DataFrame(
                {
                    "pid": pid,
                    "fiscal_year": cy["fiscal_year"].to_numpy()[idx],
                    "consultation_type": ctype,
                    "day": d,
                    "young_carer_determined": {
                        "young_carer": "yes",
                        "young_carer_not_determined": "no",
                    }.get(name, ""),
                    "outcome": name if name in TARGETS else "",
                }
            )
        )
        cy[f"y_{name}"] = hit
    ev = pd.concat(events, ignore_index=True).sort_values(["day", "pid"], kind="stable")
    city.events = ev.reset_index(drop=True)


def true_probabilities(city: City) -> pd.DataFrame:
    """The oracle: the true yearly probability of each target per child-year."""
    cy = city.child_year
    codes = (
        city.persons["resident_code"].to_numpy()[cy["pid"].to_numpy()]
        if "resident_code" in city.persons
        else cy["pid"].astype(str).to_numpy()
    )
    frames = []
    for t in ("physical_abuse", "young_carer"):
        frames.append(
            pd.DataFrame(
                {
                    "resident_code": pd.array(codes, dtype="string"),
                    "fiscal_year": cy["fiscal_year"].astype("int64").to_numpy(),
                    "target": t,
                    "p": cy[f"p_{t}"].to_numpy(),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


def population_facts(city: City) -> pd.DataFrame:
    """Person-year facts (everyone resident on 1 April of each fiscal year) for the overview."""
    py = city.person_year
    py = py[py["fiscal_year"].isin(city.settings["fiscal_years"])]
    p = city.persons.iloc[py["pid"].to_numpy()]
    hh = city.households
    htype = hh["initial_type"].to_numpy()[py["hh"].to_numpy()]
    single = py["single"].to_numpy()
    mother_present = _isin(htype, ["single_mother"]) | (
        single & (hh["leaver"].to_numpy()[py["hh"]] == "father")
    )
    cur_type = np.where(
        htype == "three_generation",
        "three_generation",
        np.where(single, np.where(mother_present, "single_mother", "single_father"), "two_parent"),
    )
    out = pd.DataFrame(
        {
            "resident_code": pd.array(p["resident_code"].to_numpy(), dtype="string"),
            "fiscal_year": py["fiscal_year"].astype("int64").to_numpy(),
            "age": py["age"].astype("int64").to_numpy(),
            "sex": p["sex"].to_numpy(),
            "nationality": np.where(p["foreign"].to_numpy(), "foreign", "japanese"),
            "role": py["role"].to_numpy(),
            "household_type": cur_type,
            "is_child": (py["role"].to_numpy() == "child")
            & (py["age"].to_numpy() <= city.settings["age_max"]),
            "in_mover": py["in_mover"].to_numpy(),
            "grade": py["grade"].astype("int64").to_numpy(),
        }
    )
    flags = {
        "single_parent": "single",
        "public_assistance": "pa",
        "school_aid": "school_aid",
        "child_rearing_allowance": "cra",
        "mental_outpatient": "mental",
        "member_75plus": "member_75plus",
        "care_need_member": "care_need_member",
        "any_care_member": "any_care_member",
        "disability_member": "disability_member",
        "foreign_household": "foreign",
        "not_in_nursery": "not_in_nursery",
        "special_needs_class": "special_needs_class",
        "low_birth_weight": "low_birth_weight",
        "sibling_special_needs": "sibling_special_needs",
    }
    for name, col in flags.items():
        out[name] = py[col].to_numpy().astype(bool)
    out["two_plus_under6"] = py["n_le5"].to_numpy() >= 2
    out["care_need"] = p["care_day"].to_numpy() <= city.asof_days[py["k"].to_numpy()]
    # outcomes drawn for this child-year
    cy = city.child_year[["pid", "fiscal_year", "y_physical_abuse", "y_young_carer"]]
    m = pd.DataFrame(
        {"pid": py["pid"].to_numpy(), "fiscal_year": py["fiscal_year"].to_numpy()}
    ).merge(cy, on=["pid", "fiscal_year"], how="left")
    out["physical_abuse"] = (
        m["y_physical_abuse"].astype("boolean").fillna(False).to_numpy(dtype=bool)
    )
    out["young_carer"] = m["y_young_carer"].astype("boolean").fillna(False).to_numpy(dtype=bool)
    return out
