"""Departmental tables of the synthetic city, clean and in schema terms.

Each builder returns a DataFrame with the schema's field names and canonical values: codes as
text, dates as integer days (``pd.NA`` = blank), enums as schema codes, booleans as True/False/NA.
``synth_export`` then writes them the way each vendor would and plants the known defects.
Records only exist while a person is registered here: an in-mover has no birth record and no
checkup, vaccination, allowance or consultation dated before the move-in.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from helpers.synth.population import (
    NEG,
    POS,
    City,
    _isin,
    day,
    days_of,
    resident_interval,
    rng_for,
    school_cohort,
    sigmoid,
    unique_ints,
    ymd,
)

FAMILY = [
    ("佐藤", "サトウ"),
    ("鈴木", "スズキ"),
    ("高橋", "タカハシ"),
    ("田中", "タナカ"),
    ("伊藤", "イトウ"),
    ("渡辺", "ワタナベ"),
    ("山本", "ヤマモト"),
    ("中村", "ナカムラ"),
    ("小林", "コバヤシ"),
    ("加藤", "カトウ"),
    ("吉田", "ヨシダ"),
    ("山田", "ヤマダ"),
    ("佐々木", "ササキ"),
    ("山口", "ヤマグチ"),
    ("松本", "マツモト"),
    ("井上", "イノウエ"),
    ("木村", "キムラ"),
    ("林", "ハヤシ"),
    ("斎藤", "サイトウ"),
    ("清水", "シミズ"),
    ("山崎", "ヤマザキ"),
    ("森", "モリ"),
    ("池田", "イケダ"),
    ("橋本", "ハシモト"),
    ("阿部", "アベ"),
    ("石川", "イシカワ"),
    ("山下", "ヤマシタ"),
    ("中島", "ナカジマ"),
    ("前田", "マエダ"),
    ("藤田", "フジタ"),
    ("小川", "オガワ"),
    ("岡田", "オカダ"),
    ("後藤", "ゴトウ"),
    ("長谷川", "ハセガワ"),
    ("村上", "ムラカミ"),
    ("近藤", "コンドウ"),
]
MALE = [
    ("翔太", "ショウタ"),
    ("大輔", "ダイスケ"),
    ("健太", "ケンタ"),
    ("拓也", "タクヤ"),
    ("蓮", "レン"),
    ("悠真", "ユウマ"),
    ("湊", "ミナト"),
    ("大和", "ヤマト"),
    ("陽翔", "ハルト"),
    ("颯太", "ソウタ"),
    ("誠", "マコト"),
    ("浩二", "コウジ"),
    ("隆", "タカシ"),
    ("修", "オサム"),
    ("博", "ヒロシ"),
    ("健一", "ケンイチ"),
    ("直樹", "ナオキ"),
    ("和也", "カズヤ"),
    ("樹", "イツキ"),
    ("悠人", "ユウト"),
    ("勇気", "ユウキ"),
    ("一郎", "イチロウ"),
]
FEMALE = [
    ("陽菜", "ヒナ"),
    ("結衣", "ユイ"),
    ("葵", "アオイ"),
    ("さくら", "サクラ"),
    ("美咲", "ミサキ"),
    ("愛", "アイ"),
    ("花子", "ハナコ"),
    ("恵子", "ケイコ"),
    ("裕子", "ユウコ"),
    ("智子", "トモコ"),
    ("明美", "アケミ"),
    ("由美", "ユミ"),
    ("芽依", "メイ"),
    ("凛", "リン"),
    ("結菜", "ユイナ"),
    ("彩", "アヤ"),
    ("真由美", "マユミ"),
    ("直子", "ナオコ"),
    ("美穂", "ミホ"),
    ("杏", "アン"),
    ("紬", "ツムギ"),
    ("節子", "セツコ"),
]
FOREIGN_FAMILY = [
    ("NGUYEN", "グエン"),
    ("TRAN", "チャン"),
    ("SILVA", "シルバ"),
    ("SANTOS", "サントス"),
    ("WANG", "ワン"),
    ("LI", "リ"),
    ("KIM", "キム"),
    ("PARK", "パク"),
    ("REYES", "レイエス"),
    ("GARCIA", "ガルシア"),
    ("SHRESTHA", "シュレスタ"),
    ("DA COSTA", "ダ　コスタ"),
]
FOREIGN_GIVEN = [
    ("ANH", "アン"),
    ("MINH", "ミン"),
    ("LUCAS", "ルーカス"),
    ("ANA", "アナ"),
    ("WEI", "ウェイ"),
    ("JIN", "ジン"),
    ("MARIA", "マリア"),
    ("JOSE", "ホセ"),
    ("LINH", "リン"),
    ("RAJ", "ラジ"),
    ("SOFIA", "ソフィア"),
    ("HUNG", "フン"),
]
# town -> elementary school district; junior high = J + ceil(n/2)
TOWNS = [
    ("本町", "E01"),
    ("栄町", "E01"),
    ("緑ケ丘", "E02"),
    ("旭町", "E02"),
    ("桜台", "E03"),
    ("若葉", "E03"),
    ("東町", "E04"),
    ("西町", "E05"),
    ("南台", "E05"),
    ("北原", "E06"),
    ("川端", "E07"),
    ("宮下", "E08"),
    ("松原", "E08"),
    ("中央", "E04"),
]
BUILDINGS = ["", "", "", "", "サンハイツ", "コーポ緑", "メゾン桜", "グランドパレス", "市営住宅"]
CITY_NAME = "みまもり市"

VACCINE_SCHEDULE = [  # vaccine, dose, age in days (from, to)
    ("hib", 1, 60, 90),
    ("hib", 2, 95, 130),
    ("hib", 3, 135, 170),
    ("hib", 4, 365, 460),
    ("pcv", 1, 60, 90),
    ("pcv", 2, 95, 130),
    ("pcv", 3, 135, 170),
    ("pcv", 4, 365, 460),
    ("hepb", 1, 60, 90),
    ("hepb", 2, 95, 130),
    ("hepb", 3, 220, 260),
    ("dpt_ipv", 1, 90, 120),
    ("dpt_ipv", 2, 125, 160),
    ("dpt_ipv", 3, 165, 200),
    ("dpt_ipv", 4, 540, 600),
    ("bcg", 1, 150, 240),
    ("mr", 1, 365, 460),
    ("mr", 2, 1900, 2200),
    ("varicella", 1, 365, 460),
    ("varicella", 2, 545, 700),
    ("je", 1, 1095, 1200),
    ("je", 2, 1210, 1300),
    ("je", 3, 1460, 1700),
]
VACCINE_RECORDS_FROM = (2010, 4, 1)  # the health system's records start here (system migration)
CHECKUPS = [("m1", 28, 40), ("m4", 120, 145), ("y1m6", 548, 600), ("y3", 1095, 1200)]


def _pick(rng, pairs, n):
    i = rng.integers(0, len(pairs), n)
    return np.array([p[0] for p in pairs], dtype=object)[i], np.array(
        [p[1] for p in pairs], dtype=object
    )[i]


def assign_identities(city: City) -> None:
    """Resident codes (10-15 digits), household codes, kanji names, kana and addresses."""
    rng = rng_for(city.settings["seed"], "identities")
    p, hh = city.persons, city.households
    n, nh = len(p), len(hh)
    lengths = rng.choice([10, 11, 12, 13, 15], size=n)
    codes = np.empty(n, dtype=object)
    for length in np.unique(lengths):
        m = lengths == length
        codes[m] = unique_ints(rng, int(m.sum()), 10 ** (length - 1), 10**length).astype(str)
    p["resident_code"] = codes.astype(str)
    hh["household_code"] = unique_ints(rng, nh, 100_000_000, 999_999_999).astype(str)
    fam, fam_k = _pick(rng, FAMILY, nh)
    ffam, ffam_k = _pick(rng, FOREIGN_FAMILY, nh)
    foreign = hh["foreign"].to_numpy()
    hh["family"] = np.where(foreign, ffam, fam)
    hh["family_kana"] = np.where(foreign, ffam_k, fam_k)
    town = rng.integers(0, len(TOWNS), nh)
    hh["district"] = np.array([t[1] for t in TOWNS])[town]
    chome, ban, go = rng.integers(1, 6, nh), rng.integers(1, 30, nh), rng.integers(1, 25, nh)
    bld = np.array(BUILDINGS, dtype=object)[rng.integers(0, len(BUILDINGS), nh)]
    room = rng.integers(1, 6, nh) * 100 + rng.integers(1, 10, nh)
    addr = (
        pd.Series([CITY_NAME + TOWNS[t][0] for t in town])
        + pd.Series(chome).astype(str)
        + "丁目"
        + pd.Series(ban).astype(str)
        + "番"
        + pd.Series(go).astype(str)
        + "号"
    )
    addr = addr + np.where(
        bld != "", "　" + bld.astype(str) + pd.Series(room).astype(str).to_numpy(), ""
    )
    hh["address"] = addr.to_numpy()
    mg, mk = _pick(rng, MALE, n)
    fg, fk = _pick(rng, FEMALE, n)
    xg, xk = _pick(rng, FOREIGN_GIVEN, n)
    male = p["sex"].to_numpy() == "male"
    pf = hh["foreign"].to_numpy()[p["hh"]]
    given = np.where(pf, xg, np.where(male, mg, fg))
    given_k = np.where(pf, xk, np.where(male, mk, fk))
    fam_p = hh["family"].to_numpy()[p["hh"]]
    famk_p = hh["family_kana"].to_numpy()[p["hh"]]
    sep = np.where(pf, " ", "　")
    p["name"] = pd.Series(fam_p) + sep + pd.Series(given)
    p["name_kana"] = pd.Series(famk_p) + "　" + pd.Series(given_k)


def _na_days(values: np.ndarray, end: int) -> pd.Series:
    """Integer days with blanks for 'never' or 'after the export date'."""
    v = pd.array(np.asarray(values, dtype="int64"), dtype="Int64")
    s = pd.Series(v)
    s[(s >= POS) | (s <= NEG) | (s > end)] = pd.NA
    return s


def build_tables(city: City, settings: dict) -> dict[str, pd.DataFrame]:
    """All 17 source tables, clean."""
    assign_identities(city)
    builders = {
        "residents": residents,
        "household_history": household_history,
        "birth_status": birth_status,
        "health_checkups": health_checkups,
        "vaccinations": vaccinations,
        "nursery_enrolment": nursery_enrolment,
        "school_register": school_register,
        "school_attendance": lambda c: school_attendance(c, out["school_register"]),
        "school_aid": school_aid,
        "allowances": allowances,
        "public_assistance": public_assistance,
        "long_term_care": long_term_care,
        "disability_handbooks": disability_handbooks,
        "independence_support": independence_support,
        "consultations": consultations,
        "progress_records": lambda c: progress_records(c, out["consultations"]),
        "case_conference": case_conference,
    }
    out: dict[str, pd.DataFrame] = {}
    for name, build in tqdm(builders.items(), desc="synth tables", unit="table"):
        out[name] = build(city)
    return out


def residents(city: City) -> pd.DataFrame:
    """Everyone registered during the export period, plus a few facility residents who appear
    in no other table (the only rows where a rejected resident cannot orphan anything)."""
    rng = rng_for(city.settings["seed"], "residents")
    p, hh, end = city.persons, city.households, city.end_day
    df = pd.DataFrame(
        {
            "resident_code": p["resident_code"].to_numpy(),
            "name": p["name"].to_numpy(),
            "name_kana": p["name_kana"].to_numpy(),
            "birth_date": p["birth"].astype("int64").to_numpy(),
            "sex": p["sex"].to_numpy(),
            "nationality": np.where(p["foreign"], "foreign", "japanese"),
            "address": hh["address"].to_numpy()[p["hh"]],
            "school_district": hh["district"].to_numpy()[p["hh"]],
            "move_in_date": _na_days(p["move_in"].to_numpy(), end),
            "move_out_date": _na_days(p["move_out"].to_numpy(), end),
            "death_date": _na_days(p["death"].to_numpy(), end),
        }
    )
    n_extra = max(5, int(len(p) * 0.003))
    codes = unique_ints(rng, n_extra * 2, 10**11, 10**12).astype(str)
    codes = codes[~_isin(codes, df["resident_code"].to_numpy())][:n_extra]
    fam, famk = _pick(rng, FAMILY, n_extra)
    g, gk = _pick(rng, FEMALE + MALE, n_extra)
    sex = np.where(_isin(g, [x[0] for x in MALE]), "male", "female")
    extra = pd.DataFrame(
        {
            "resident_code": codes,
            "name": pd.Series(fam) + "　" + pd.Series(g),
            "name_kana": pd.Series(famk) + "　" + pd.Series(gk),
            "birth_date": day(1935, 1, 1) + rng.integers(0, 365 * 30, n_extra),
            "sex": sex,
            "nationality": "japanese",
            "address": CITY_NAME + "北原3丁目1番1号　特別養護老人ホームみまもり苑",
            "school_district": "E06",
            "move_in_date": pd.array([pd.NA] * n_extra, dtype="Int64"),
            "move_out_date": pd.array([pd.NA] * n_extra, dtype="Int64"),
            "death_date": pd.array([pd.NA] * n_extra, dtype="Int64"),
        }
    )
    extra["_no_refs"] = True
    df["_no_refs"] = False
    return pd.concat([df, extra], ignore_index=True)


def household_history(city: City) -> pd.DataFrame:
    """Membership periods; a divorce ends the leaver's row and makes the mother head."""
    rng = rng_for(city.settings["seed"], "household_history")
    p, hh, end = city.persons, city.households, city.end_day
    hhi = p["hh"].to_numpy()
    role = p["role"].to_numpy()
    kids = p[p["role"] == "child"]
    first_kid = (
        kids.groupby("hh")["birth"].min().reindex(hh["hh"]).fillna(city.start_day).to_numpy()
    )
    formed = np.where(
        hh["move_in"] > NEG, hh["move_in"], first_kid - rng.integers(30, 1500, len(hh))
    )
    frm, to = resident_interval(p, end)
    start = np.where(role == "child", frm, np.maximum(formed[hhi], frm))
    has_father = np.zeros(len(hh), bool)
    has_father[hhi[role == "father"]] = True
    rel = np.select(
        [
            role == "child",
            _isin(role, ["grandmother", "grandfather"]),
            role == "father",
            (role == "mother") & has_father[hhi],
        ],
        ["child", "parent", "head", "spouse"],
        "head",
    )
    end_d = np.minimum(p["move_out"].to_numpy(), p["death"].to_numpy())
    df = pd.DataFrame(
        {
            "resident_code": p["resident_code"].to_numpy(),
            "household_code": hh["household_code"].to_numpy()[hhi],
            "relationship": rel,
            "start_date": start.astype("int64"),
            "end_date": end_d,
            "_sex": p["sex"].to_numpy(),
            "_order": p["birth_order"].to_numpy(),
        }
    )
    # divorce where the head (father) left: the mother's spouse row ends, a head row begins
    div = hh["divorce"].to_numpy()
    m = (
        (role == "mother")
        & has_father[hhi]
        & (div[hhi] < POS)
        & (hh["leaver"].to_numpy()[hhi] == "father")
    )
    m &= div[hhi] > start
    split = df[m].copy()
    df.loc[m, "end_date"] = div[hhi][m] - 1
    split["relationship"] = "head"
    split["start_date"] = div[hhi][m]
    df = pd.concat([df, split]).sort_values(["household_code", "start_date"], kind="stable")
    df["end_date"] = _na_days(df["end_date"].to_numpy(), end).to_numpy()
    return df.reset_index(drop=True)


def _born_here(city: City) -> np.ndarray:
    p = city.persons
    return (
        (p["role"].to_numpy() == "child")
        & (p["move_in"].to_numpy() == NEG)
        & (p["birth"].to_numpy() <= city.end_day)
    )


def birth_status(city: City) -> pd.DataFrame:
    rng = rng_for(city.settings["seed"], "birth_status")
    p = city.persons[_born_here(city)]
    n = len(p)
    blank = rng.random(n) < 0.02
    return pd.DataFrame(
        {
            "resident_code": p["resident_code"].to_numpy(),
            "birth_weight_g": pd.array(
                np.where(blank, -1, p["birth_weight"]), dtype="Int64"
            ).astype("Int64"),
            "head_circumference_cm": np.where(
                rng.random(n) < 0.03, np.nan, p["head_cm"].to_numpy()
            ),
            "gestational_weeks": pd.array(p["gest_weeks"].to_numpy(), dtype="Int64"),
            "multiple_birth": p["multiple"].to_numpy(),
        }
    ).assign(birth_weight_g=lambda d: d["birth_weight_g"].mask(d["birth_weight_g"] < 0))


def health_checkups(city: City) -> pd.DataFrame:
    """Attended checkups only, while resident: in-movers miss the ones before they came."""
    rng = rng_for(city.settings["seed"], "health_checkups")
    p, hh, end = city.persons, city.households, city.end_day
    kids = p[p["role"] == "child"]
    frm, to = resident_interval(kids, end)
    f = hh["foreign"].to_numpy()[kids["hh"]]
    h = hh["hardship"].to_numpy()[kids["hh"]]
    cig = hh["cigarettes"].to_numpy()[kids["hh"]]
    noco = hh["no_cooperation"].to_numpy()[kids["hh"]]
    frames = []
    means = {
        "m1": (4.3, 0.5, 53.5, 2.0),
        "m4": (6.9, 0.8, 63.0, 2.5),
        "y1m6": (10.5, 1.1, 80.5, 3.0),
    }
    for ctype, a0, a1 in CHECKUPS:
        n = len(kids)
        d = kids["birth"].to_numpy() + rng.integers(a0, a1, n)
        attend = rng.random(n) < sigmoid(3.2 - 1.3 * f - 0.4 * h)
        ok = attend & (d >= frm) & (d < to) & (d <= end)
        if ctype == "y3":
            w = kids["weight3"].to_numpy()
            ht = np.round(rng.normal(94, 3.5, n), 1)
        else:
            mw, sw, mh, sh = means[ctype]
            w = np.round(rng.normal(mw, sw, n), 1)
            ht = np.round(rng.normal(mh, sh, n), 1)
        skip = rng.random(n) < (0.03 + 0.15 * f)  # foreign families leave more questions blank
        coop = pd.array(~noco, dtype="boolean")
        coop[skip] = pd.NA
        diff = pd.array(rng.random(n) < sigmoid(-2.0 + 0.5 * h), dtype="boolean")
        diff[skip | (rng.random(n) < 0.02)] = pd.NA
        smoke = pd.array(cig, dtype="Int64")
        smoke[skip | (rng.random(n) < 0.03) | (ctype == "m1")] = pd.NA
        res = rng.choice(["normal", "observe", "refer", "treat"], p=[0.8, 0.12, 0.06, 0.02], size=n)
        frames.append(
            pd.DataFrame(
                {
                    "resident_code": kids["resident_code"].to_numpy(),
                    "checkup_type": ctype,
                    "checkup_date": d,
                    "weight_kg": np.clip(w, 1.5, 35),
                    "height_cm": np.clip(ht, 35, 125),
                    "q_cooperation": coop,
                    "q_difficulty": diff,
                    "q_mother_cigarettes": smoke,
                    "result": res,
                }
            )[ok]
        )
    df = pd.concat(frames, ignore_index=True)
    return df.sort_values(["checkup_date", "resident_code"], kind="stable").reset_index(drop=True)


def vaccinations(city: City) -> pd.DataFrame:
    rng = rng_for(city.settings["seed"], "vaccinations")
    p, hh, end = city.persons, city.households, city.end_day
    kids = p[p["role"] == "child"]
    frm, to = resident_interval(kids, end)
    comply = sigmoid(
        3.5
        - 0.9 * hh["foreign"].to_numpy()[kids["hh"]]
        - 0.5 * hh["hardship"].to_numpy()[kids["hh"]]
        + rng.normal(0, 0.8, len(kids))
    )
    first = day(*VACCINE_RECORDS_FROM)
    frames = []
    for vac, dose, a0, a1 in VACCINE_SCHEDULE:
        d = kids["birth"].to_numpy() + rng.integers(a0, a1, len(kids))
        ok = (rng.random(len(kids)) < comply) & (d >= frm) & (d < to) & (d <= end) & (d >= first)
        frames.append(
            pd.DataFrame(
                {
                    "resident_code": kids["resident_code"].to_numpy()[ok],
                    "vaccine": vac,
                    "dose": dose,
                    "vaccination_date": d[ok],
                }
            )
        )
    df = pd.concat(frames, ignore_index=True)
    return df.sort_values(["vaccination_date", "resident_code"], kind="stable").reset_index(
        drop=True
    )


def nursery_enrolment(city: City) -> pd.DataFrame:
    rng = rng_for(city.settings["seed"], "nursery")
    p, end = city.persons, city.end_day
    kids = p[(p["role"] == "child") & p["nursery_start_age"].notna()]
    frm, to = resident_interval(kids, end)
    birth = kids["birth"].to_numpy()
    sa = kids["nursery_start_age"].to_numpy()
    nominal = birth + (sa * 365.25).astype(int)
    y, m, d = ymd(nominal)
    april = days_of(np.where((m > 4) | ((m == 4) & (d > 1)), y + 1, y), 4, 1)
    start = np.where(sa < 1, nominal, april)
    start = np.maximum(start, frm)
    stop = days_of(school_cohort(birth) + 7, 3, 31)
    stop = np.where(to <= stop, to - 1, stop)
    ok = (start < stop) & (start <= end)
    ftype = np.where(
        sa < 3,
        rng.choice(
            ["nursery", "small_nursery", "certified_centre"], p=[0.6, 0.15, 0.25], size=len(kids)
        ),
        rng.choice(
            ["kindergarten", "nursery", "certified_centre"], p=[0.4, 0.35, 0.25], size=len(kids)
        ),
    )
    df = pd.DataFrame(
        {
            "resident_code": kids["resident_code"].to_numpy(),
            "facility_type": ftype,
            "start_date": start,
            "end_date": stop,
        }
    )[ok]
    df["end_date"] = _na_days(df["end_date"].to_numpy(), end).to_numpy()
    return df.sort_values(["start_date", "resident_code"], kind="stable").reset_index(drop=True)


def _school_code(district: np.ndarray, grade: np.ndarray) -> np.ndarray:
    num = np.array([int(x[1:]) for x in district]) if len(district) else np.array([], int)
    jh = np.char.add("J0", ((num + 1) // 2).astype(str))
    return np.where(grade >= 7, jh, district)


def school_register(city: City) -> pd.DataFrame:
    """Child x fiscal year for grades 1-9 while registered here at any time of the year."""
    rng = rng_for(city.settings["seed"], "school_register")
    p, hh, end = city.persons, city.households, city.end_day
    kids = p[p["role"] == "child"]
    frm, to = resident_interval(kids, end)
    frames = []
    for fy in city.settings["fiscal_years"]:
        g = fy - school_cohort(kids["birth"].to_numpy()) - 6
        ok = (g >= 1) & (g <= 9) & (frm <= day(fy + 1, 3, 31)) & (to > day(fy, 4, 1))
        k = kids[ok]
        frames.append(
            pd.DataFrame(
                {
                    "resident_code": k["resident_code"].to_numpy(),
                    "fiscal_year": fy,
                    "student_id": k["student_id"].to_numpy(),
                    "school_code": _school_code(hh["district"].to_numpy()[k["hh"]], g[ok]),
                    "grade": g[ok],
                    "special_needs_class": k["special_needs"].to_numpy(),
                    "_pid": k["pid"].to_numpy(),
                }
            )
        )
    df = pd.concat(frames, ignore_index=True)
    out_of_city = rng.random(len(df)) < 0.01
    df.loc[out_of_city, "school_code"] = "OUT"
    df["special_needs_class"] = pd.array(df["special_needs_class"].to_numpy(), dtype="boolean")
    df.loc[~df["special_needs_class"].astype(bool), "special_needs_class"] = pd.NA  # blank = no
    return df


def school_attendance(city: City, register: pd.DataFrame) -> pd.DataFrame:
    """Absence days from the school network: resident code blank for ~60% of rows."""
    rng = rng_for(city.settings["seed"], "school_attendance")
    r = register[register["school_code"] != "OUT"]
    hh = city.households
    h = hh["hardship"].to_numpy()[city.persons["hh"].to_numpy()[r["_pid"].to_numpy()]]
    n = len(r)
    refusal = rng.random(n) < sigmoid(-3.8 + 0.6 * h)
    days_abs = rng.poisson(np.exp(1.3 + 0.25 * h)) + np.where(refusal, rng.integers(30, 180, n), 0)
    absent = pd.array(np.clip(days_abs, 0, 240), dtype="Int64")
    absent[rng.random(n) < 0.03] = pd.NA
    code = r["resident_code"].to_numpy().astype(object)
    code[rng.random(n) < 0.6] = None
    return pd.DataFrame(
        {
            "student_id": r["student_id"].to_numpy(),
            "resident_code": code,
            "school_code": r["school_code"].to_numpy(),
            "fiscal_year": r["fiscal_year"].to_numpy(),
            "absence_days": absent,
        }
    ).reset_index(drop=True)


def school_aid(city: City) -> pd.DataFrame:
    rng = rng_for(city.settings["seed"], "school_aid")
    cy = city.child_year
    r = cy[cy["school_aid"] & (cy["grade"] > 0)]
    frm, _ = resident_interval(city.persons, city.end_day)
    approved = days_of(r["fiscal_year"].to_numpy(), 4, 1) + rng.integers(0, 75, len(r))
    approved = np.maximum(approved, frm[r["pid"].to_numpy()])
    return pd.DataFrame(
        {
            "resident_code": city.persons["resident_code"].to_numpy()[r["pid"].to_numpy()],
            "fiscal_year": r["fiscal_year"].to_numpy(),
            "aid_type": np.where(r["pa"], "protected", "quasi_protected"),
            "approved_date": approved,
        }
    ).reset_index(drop=True)


def _spells(
    state: np.ndarray, asof: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows, start days and end days (or POS) of the runs of True in a households x as-of
    matrix."""
    n, k = state.shape
    pad = np.zeros((n, k + 2), bool)
    pad[:, 1:-1] = state
    diff = np.diff(pad.astype(int), axis=1)
    rows_s, cols_s = np.nonzero(diff == 1)
    rows_e, cols_e = np.nonzero(diff == -1)
    o1, o2 = np.lexsort((cols_s, rows_s)), np.lexsort((cols_e, rows_e))
    rows_s, cols_s, cols_e = rows_s[o1], cols_s[o1], cols_e[o2]
    start = np.where(
        cols_s == 0,
        asof[0] - rng.integers(30, 2000, len(cols_s)),
        asof[np.maximum(cols_s, 0)] - rng.integers(1, 365, len(cols_s)),
    )
    end = np.where(
        cols_e >= k, POS, asof[np.minimum(cols_e, k - 1)] - rng.integers(1, 365, len(cols_e))
    )
    return rows_s, start, end


def _parent_allowances(
    city: City, role: str, kids: pd.DataFrame, rng: np.random.Generator
) -> list[pd.DataFrame]:
    """児童手当, 児童扶養手当 and ひとり親家庭等医療 of the fathers or the mothers."""
    p, hh, end = city.persons, city.households, city.end_day
    frm, to = resident_interval(p, end)
    first = kids.groupby("hh")["birth"].min()
    youngest = kids.groupby("hh")["birth"].max()
    nk = kids.groupby("hh").size()
    div = hh["divorce"].to_numpy()
    par = p[p["role"] == role]
    h = par["hh"].to_numpy()
    has = _isin(h, first.index)
    par, h = par[has], h[has]
    other = p[p["role"] == ("mother" if role == "father" else "father")].set_index("hh")
    has_other = _isin(h, other.index)
    # 児童手当: the father when both parents are here, else the parent who is
    s = np.maximum(first.reindex(h).to_numpy(), frm[par["pid"]])
    last = days_of(school_cohort(youngest.reindex(h).to_numpy()) + 16, 3, 31)
    e = np.minimum(last, to[par["pid"]] - 1)
    if role == "mother":
        left = has_other & (div[h] < POS) & (hh["leaver"].to_numpy()[h] == "father")
        s = np.where(has_other & ~left, POS, np.where(left, np.maximum(s, div[h]), s))
    else:
        e = np.where(div[h] < POS, np.minimum(e, div[h] - 1), e)
    amount = 10000 * nk.reindex(h).to_numpy() + np.where(rng.random(len(h)) < 0.1, -5000, 0)
    codes = par["resident_code"].to_numpy()
    rows = [
        pd.DataFrame(
            {
                "resident_code": codes,
                "allowance_type": "child_allowance",
                "start_date": s,
                "end_date": e,
                "monthly_amount": np.maximum(amount, 5000),
            }
        )
    ]
    # 児童扶養手当 / ひとり親家庭等医療: the parent who stays after divorce, or a single parent
    single0 = hh["single0"].to_numpy()[h]
    stays = (div[h] < POS) & (hh["leaver"].to_numpy()[h] != role)
    elig = hh["cra_eligible"].to_numpy()[h] & (single0 | stays)
    s2 = np.where(
        single0,
        np.maximum(first.reindex(h).to_numpy(), city.start_day - rng.integers(0, 2500, len(h))),
        div[h] + rng.integers(10, 60, len(h)),
    )
    s2 = np.maximum(s2, frm[par["pid"]])
    e2 = np.minimum(
        days_of(school_cohort(youngest.reindex(h).to_numpy()) + 19, 3, 31), to[par["pid"]] - 1
    )
    hardship = np.maximum(hh["hardship"].to_numpy()[h] * -1, 0)
    amt = np.round(np.clip(44140 - 12000 * hardship, 10410, 44140), -1)
    rows.append(
        pd.DataFrame(
            {
                "resident_code": codes,
                "allowance_type": "child_rearing",
                "start_date": s2,
                "end_date": e2,
                "monthly_amount": amt.astype(int),
            }
        )[elig]
    )
    med = elig & (rng.random(len(h)) < 0.9)
    rows.append(
        pd.DataFrame(
            {
                "resident_code": codes,
                "allowance_type": "single_parent_medical",
                "start_date": s2 + 1,
                "end_date": e2,
                "monthly_amount": pd.NA,
            }
        )[med]
    )
    return rows


def allowances(city: City) -> pd.DataFrame:
    rng = rng_for(city.settings["seed"], "allowances")
    p, end = city.persons, city.end_day
    frm, to = resident_interval(p, end)
    kids = p[p["role"] == "child"]
    rows = [
        *_parent_allowances(city, "father", kids, rng),
        *_parent_allowances(city, "mother", kids, rng),
    ]
    # 特別児童扶養手当 for the parent of a child with a 療育手帳
    rehab = kids[kids["rehab"]]
    prim = _primary_of(city, rehab["hh"].to_numpy())
    ok = prim >= 0
    s3 = np.maximum(rehab["handbook_day"].to_numpy(), frm[np.maximum(prim, 0)])
    rows.append(
        pd.DataFrame(
            {
                "resident_code": p["resident_code"].to_numpy()[np.maximum(prim, 0)],
                "allowance_type": "special_child_rearing",
                "start_date": s3,
                "end_date": to[np.maximum(prim, 0)] - 1,
                "monthly_amount": np.where(rng.random(len(rehab)) < 0.5, 53700, 35760),
            }
        )[ok]
    )
    df = pd.concat(rows, ignore_index=True)
    df = df[(df["start_date"] < df["end_date"]) & (df["start_date"] <= end)]
    df = df.drop_duplicates(["resident_code", "allowance_type", "start_date"])
    df["monthly_amount"] = pd.array(df["monthly_amount"], dtype="Int64")
    df["end_date"] = _na_days(df["end_date"].to_numpy(), end).to_numpy()
    return df.sort_values(["start_date", "resident_code"], kind="stable").reset_index(drop=True)


def _primary_of(city: City, hh_idx: np.ndarray) -> np.ndarray:
    from helpers.synth.population import _primary_parent

    return _primary_parent(city)[hh_idx]


def public_assistance(city: City) -> pd.DataFrame:
    rng = rng_for(city.settings["seed"], "public_assistance")
    hh, end = city.households, city.end_day
    rows, start, stop = _spells(city.state["pa"], city.asof_days, rng)
    start = np.maximum(start, hh["move_in"].to_numpy()[rows])
    stop = np.minimum(stop, hh["move_out"].to_numpy()[rows])
    case = pd.Series(rng.integers(10000, 99999, len(rows))).astype(str)
    df = pd.DataFrame(
        {
            "household_code": hh["household_code"].to_numpy()[rows],
            "case_number": (
                "H" + pd.Series(start // 365 + 1970).astype(str).str[-2:] + "-" + case
            ).to_numpy(),
            "start_date": start,
            "end_date": stop,
        }
    )
    df = df[(df["start_date"] < df["end_date"]) & (df["start_date"] <= end)]
    df["end_date"] = _na_days(df["end_date"].to_numpy(), end).to_numpy()
    return (
        df.drop_duplicates(["household_code", "start_date"])
        .sort_values(["start_date", "household_code"], kind="stable")
        .reset_index(drop=True)
    )


def long_term_care(city: City) -> pd.DataFrame:
    p, end = city.persons, city.end_day
    frm, to = resident_interval(p, end)
    c = p[p["care_day"] < POS]
    cert = np.maximum(c["care_day"].to_numpy(), frm[c["pid"]])
    df = pd.DataFrame(
        {
            "resident_code": c["resident_code"].to_numpy(),
            "care_level": c["care_level"].to_numpy(),
            "certified_date": cert,
            "loss_date": to[c["pid"]],
        }
    )
    df = df[
        (df["certified_date"] < df["loss_date"])
        & (df["certified_date"] <= end)
        & (df["certified_date"] >= day(2000, 4, 1))
    ]
    df["loss_date"] = _na_days(df["loss_date"].to_numpy(), end).to_numpy()
    return df.sort_values(["certified_date", "resident_code"], kind="stable").reset_index(drop=True)


def disability_handbooks(city: City) -> pd.DataFrame:
    rng = rng_for(city.settings["seed"], "disability_handbooks")
    p, end = city.persons, city.end_day
    frm, to = resident_interval(p, end)
    c = p[p["handbook_day"] < POS]
    issue = np.maximum(c["handbook_day"].to_numpy(), frm[c["pid"]])
    t = c["handbook_type"].to_numpy()
    grade = np.select(
        [t == "physical", t == "mental", t == "rehab"],
        [
            rng.choice(list("123456"), size=len(c)),
            rng.choice(list("123"), size=len(c)),
            rng.choice(["A", "B"], p=[0.35, 0.65], size=len(c)),
        ],
        "",
    )
    df = pd.DataFrame(
        {
            "resident_code": c["resident_code"].to_numpy(),
            "handbook_type": t,
            "grade": grade,
            "issue_date": issue,
            "end_date": to[c["pid"]],
        }
    )
    df = df[
        (df["issue_date"] < df["end_date"])
        & (df["issue_date"] <= end)
        & (df["issue_date"] >= day(1995, 4, 1))
    ]
    df["end_date"] = _na_days(df["end_date"].to_numpy(), end).to_numpy()
    return df.sort_values(["issue_date", "resident_code"], kind="stable").reset_index(drop=True)


def independence_support(city: City) -> pd.DataFrame:
    """精神通院 spells of the household's primary parent, plus a few 育成医療 for infants."""
    rng = rng_for(city.settings["seed"], "independence_support")
    p, end = city.persons, city.end_day
    frm, to = resident_interval(p, end)
    rows, start, stop = _spells(city.state["mental"], city.asof_days, rng)
    who = _primary_of(city, rows)
    ok = who >= 0
    who = np.maximum(who, 0)
    start = np.maximum(start, frm[who])
    stop = np.minimum(stop, to[who])
    df = pd.DataFrame(
        {
            "resident_code": p["resident_code"].to_numpy()[who],
            "kind": "mental_outpatient",
            "start_date": start,
            "end_date": stop,
        }
    )[ok]
    kids = p[(p["role"] == "child") & _born_here(city)]
    dev = kids[rng.random(len(kids)) < 0.004]
    s = dev["birth"].to_numpy() + rng.integers(30, 700, len(dev))
    df2 = pd.DataFrame(
        {
            "resident_code": dev["resident_code"].to_numpy(),
            "kind": "development",
            "start_date": s,
            "end_date": s + 365,
        }
    )
    df = pd.concat([df, df2[(df2["start_date"] < to[dev["pid"]])]], ignore_index=True)
    df = df[(df["start_date"] < df["end_date"]) & (df["start_date"] <= end)]
    df["end_date"] = _na_days(df["end_date"].to_numpy(), end).to_numpy()
    return (
        df.drop_duplicates(["resident_code", "kind", "start_date"])
        .sort_values(["start_date", "resident_code"], kind="stable")
        .reset_index(drop=True)
    )


ROUTES = {
    "physical_abuse": ["school", "police", "neighbour", "nursery", "medical"],
    "neglect": ["school", "nursery", "health_centre", "neighbour"],
    "young_carer": ["school", "self", "other"],
    "school_refusal": ["school", "family"],
    "development": ["health_centre", "nursery", "family"],
    "parenting": ["family", "health_centre", "self"],
}
MEMO = {
    "physical_abuse": "顔にあざがあると学校から連絡。",
    "neglect": "衣服の汚れが続いている。",
    "young_carer": "家族の介護のため遅刻・欠席が多い。",
    "school_refusal": "登校しぶりが続く。",
    "development": "ことばの遅れについて相談。",
    "parenting": "育児の不安について母より相談。",
    "poverty": "生活費の相談。",
    "psychological_abuse": "面前DVの疑い。",
    "sexual_abuse": "関係機関より通告。",
    "other": "その他の相談。",
}


def consultations(city: City) -> pd.DataFrame:
    rng = rng_for(city.settings["seed"], "consultations")
    ev = city.events
    n = len(ev)
    fy = ev["fiscal_year"].to_numpy()
    seq = pd.Series(np.arange(n)).groupby(fy).cumcount().to_numpy() + 1
    cid = (fy * 1_000_000 + seq * 7 + rng.integers(0, 7, n)).astype(str)
    route = np.array(
        [rng.choice(ROUTES.get(t, ["other", "family", "self"])) for t in ev["consultation_type"]],
        dtype=object,
    )
    route[rng.random(n) < 0.05] = None
    memo = pd.Series([MEMO[t] for t in ev["consultation_type"]])
    follow = np.where(rng.random(n) < 0.5, "\n" + "経過を確認する。", "　継続対応。")
    det = ev["young_carer_determined"].map({"yes": True, "no": False}).astype("boolean")
    return pd.DataFrame(
        {
            "consultation_id": cid,
            "resident_code": city.persons["resident_code"].to_numpy()[ev["pid"]],
            "received_date": ev["day"].to_numpy(),
            "consultation_type": ev["consultation_type"].to_numpy(),
            "referral_route": route,
            "agencies": np.where(
                rng.random(n) < 0.4,
                "学校・児童相談所",
                np.where(rng.random(n) < 0.5, "保健センター", np.array(None)),
            ),
            "young_carer_determined": det,
            "memo": (memo + follow).to_numpy(),
            "_pid": ev["pid"].to_numpy(),
        }
    )


def progress_records(city: City, cons: pd.DataFrame) -> pd.DataFrame:
    """1-4 records for ~70% of consultations (the rest have none: those are the only
    consultations where a planted defect cannot orphan a progress record)."""
    rng = rng_for(city.settings["seed"], "progress_records")
    end = city.end_day
    _, to = resident_interval(city.persons, end)
    n_rec = np.where(rng.random(len(cons)) < 0.7, rng.integers(1, 5, len(cons)), 0)
    idx = np.repeat(np.arange(len(cons)), n_rec)
    gaps = rng.integers(7, 120, len(idx))
    cum = pd.Series(gaps).groupby(idx).cumsum().to_numpy()
    d = cons["received_date"].to_numpy()[idx] + cum
    serious = (
        cons["consultation_type"].isin(["physical_abuse", "neglect", "young_carer"]).to_numpy()[idx]
    )
    assess = np.where(
        serious,
        rng.choice(["good", "fair", "poor"], p=[0.2, 0.4, 0.4], size=len(idx)),
        rng.choice(["good", "fair", "poor"], p=[0.45, 0.45, 0.1], size=len(idx)),
    )
    ok = (d <= end) & (d < to[cons["_pid"].to_numpy()[idx]])
    notes = np.where(rng.random(len(idx)) < 0.3, "家庭訪問を実施。\n母と面談。", "学校と情報共有。")
    return pd.DataFrame(
        {
            "consultation_id": cons["consultation_id"].to_numpy()[idx],
            "resident_code": cons["resident_code"].to_numpy()[idx],
            "record_date": d,
            "assessment": assess,
            "note": notes,
        }
    )[ok].reset_index(drop=True)


def case_conference(city: City) -> pd.DataFrame:
    """Registration 0-6 months AFTER the first physical-abuse or neglect consultation: a
    post-outcome record (the leakage trap a careless model would love)."""
    rng = rng_for(city.settings["seed"], "case_conference")
    end = city.end_day
    _, to = resident_interval(city.persons, end)
    ev = city.events[city.events["consultation_type"].isin(["physical_abuse", "neglect"])]
    first = ev.sort_values("day", kind="stable").drop_duplicates("pid")
    reg = first["day"].to_numpy() + rng.integers(0, 183, len(first))
    ok = (rng.random(len(first)) < 0.65) & (reg <= end) & (reg < to[first["pid"].to_numpy()])
    closed = reg + rng.integers(180, 1200, len(first))
    df = pd.DataFrame(
        {
            "resident_code": city.persons["resident_code"].to_numpy()[first["pid"]],
            "registered_date": reg,
            "level": np.where(rng.random(len(first)) < 0.4, "protection", "support"),
            "closed_date": np.where(rng.random(len(first)) < 0.5, closed, POS),
        }
    )[ok]
    df["closed_date"] = _na_days(df["closed_date"].to_numpy(), end).to_numpy()
    return df.sort_values("registered_date", kind="stable").reset_index(drop=True)


__all__ = ["build_tables", "assign_identities"]
