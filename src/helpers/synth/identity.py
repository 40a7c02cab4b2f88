"""Code-less exports for 名寄せ: sources that identify a child by name, kana, birth date, sex,
address and guardian instead of the resident code, with the identity noise real systems have.

Two sources (data_schema ``link_by:``): the school-affairs export 校務支援 出欠・指導記録
(``school_guidance``: one row per student and fiscal year; no resident code, no register
student number) and the roster the contracted NPO keeps for the children's learning and living
support programme (``learning_support``). Noise, drawn once per child and source (the school
keeps one student entry) plus a little per row: kana variants (ヴ/ブ, small ャュョッ written
large, ー for a long vowel, half-width kana, spaces), kanji variants (髙/高, 﨑/崎, 邊/邉/辺,
齋/斎) and ● for a character the system cannot encode, kana typos, a different surname after
divorce or remarriage, day and month transposed, addresses with or without 丁目/番地/号 and
building names, a missing birth date, twins and similarly named siblings (from the population),
children not in the registry (true non-matches) and duplicate records of one child.

The true resident code of every exported row is written to ``_truth/identity_links.csv``
(file, source_row, table, resident_code; blank = not in the registry) for the linkage report.
"""

from __future__ import annotations

import codecs
from pathlib import Path

import numpy as np
import pandas as pd

from helpers.io import atomic_path, write_csv
from helpers.schema import TableSchema
from helpers.synth.export import format_dates
from helpers.synth.population import dates_of, day, rng_for, sigmoid, ymd
from helpers.synth.records import FAMILY, FEMALE, MALE, City, resident_interval

KANJI_VARIANTS = {"高": "髙", "崎": "﨑", "辺": "邊", "斎": "齋", "吉": "𠮷", "島": "嶋"}
KANA_SMALL_TO_LARGE = str.maketrans("ャュョッァィゥェォ", "ヤユヨツアイウエオ")
KANA_TYPO = str.maketrans("シタカハナマヤラサトコ", "ツダガパヌミユルザドゴ")
FILES = {
    "school_guidance": "校務支援_出欠指導_{stamp}.csv",
    "learning_support": "学習支援事業_参加者名簿_{stamp}.csv",
}
# How each vendor's systems write the two exports (``synth.dialect``, as in
# helpers.synth.export): encoding, birth-date and other date styles, sex spellings, and the
# header of a field when it is not the schema title (one of the schema's aliases)
DIALECTS: dict[str, dict[str, dict]] = {
    "default": {
        "school_guidance": {
            "encoding": "utf-8-sig",
            "birth": "slash",
            "dates": "dash",
            "sex": {"male": "男", "female": "女"},
            "headers": {},
        },
        "learning_support": {
            "encoding": "cp932",
            "birth": "slash",
            "dates": "dash",
            "sex": {"male": "1", "female": "2"},
            "headers": {},
        },
    },
    "vendor_b": {
        "school_guidance": {  # the other school-affairs package: UTF-8 without BOM, 平成22年7月8日
            "encoding": "utf-8",
            "birth": "era_kanji",
            "dates": "dash",
            "sex": {"male": "男子", "female": "女子"},
            "headers": {
                "student_name": "漢字氏名",
                "student_kana": "カナ氏名",
                "guardian_name": "保護者名",
            },
        },
        "learning_support": {  # the NPO's Shift_JIS roster saved as UTF-8 (BOM): H18.12.29
            "encoding": "utf-8-sig",
            "charset": "cp932",  # what its system can hold (else ●), whatever the file encoding
            "birth": "era_short",
            "dates": "compact",
            "sex": {"male": "男性", "female": "女性"},
            "headers": {
                "name": "児童氏名",
                "name_kana": "ふりがな",
                "guardian_name": "保護者名",
                "start_date": "参加開始日",
                "end_date": "参加終了日",
            },
        },
    },
}
TRUTH_COLUMNS = ["table", "file", "source_row", "resident_code", "noise"]
# a character the system's code page cannot hold is exported as ● (外字 substitute)
codecs.register_error("mimamori_gaiji", lambda e: ("●", e.end))  # type: ignore[attr-defined]


# ---------------------------------------------------------------- one identity, noisy
def _half_width(s: str) -> str:
    import unicodedata

    out = []
    for ch in s:  # NFKC's inverse for katakana: the half-width forms, dakuten split off
        base = unicodedata.normalize("NFD", ch)
        code = {
            "ア": "ｱ",
            "イ": "ｲ",
            "ウ": "ｳ",
            "エ": "ｴ",
            "オ": "ｵ",
            "カ": "ｶ",
            "キ": "ｷ",
            "ク": "ｸ",
            "ケ": "ｹ",
            "コ": "ｺ",
            "サ": "ｻ",
            "シ": "ｼ",
            "ス": "ｽ",
            "セ": "ｾ",
            "ソ": "ｿ",
            "タ": "ﾀ",
            "チ": "ﾁ",
            "ツ": "ﾂ",
            "テ": "ﾃ",
            "ト": "ﾄ",
            "ナ": "ﾅ",
            "ニ": "ﾆ",
            "ヌ": "ﾇ",
            "ネ": "ﾈ",
            "ノ": "ﾉ",
            "ハ": "ﾊ",
            "ヒ": "ﾋ",
            "フ": "ﾌ",
            "ヘ": "ﾍ",
            "ホ": "ﾎ",
            "マ": "ﾏ",
            "ミ": "ﾐ",
            "ム": "ﾑ",
            "メ": "ﾒ",
            "モ": "ﾓ",
            "ヤ": "ﾔ",
            "ユ": "ﾕ",
            "ヨ": "ﾖ",
            "ラ": "ﾗ",
            "リ": "ﾘ",
            "ル": "ﾙ",
            "レ": "ﾚ",
            "ロ": "ﾛ",
            "ワ": "ﾜ",
            "ン": "ﾝ",
            "ャ": "ｬ",
            "ュ": "ｭ",
            "ョ": "ｮ",
            "ッ": "ｯ",
            "ー": "ｰ",
            "　": " ",
            "ァ": "ｧ",
            "ィ": "ｨ",
            "ゥ": "ｩ",
            "ェ": "ｪ",
            "ォ": "ｫ",
        }
        head = code.get(base[0], base[0])
        tail = "".join({"\u3099": "ﾞ", "\u309a": "ﾟ"}.get(c, c) for c in base[1:])
        out.append(head + tail)
    return "".join(out)


def noisy_kana(kana: str, u: np.ndarray) -> tuple[str, list[str]]:
    """A kana name as another system spells it; ``u`` are 6 uniforms (the decisions)."""
    tags: list[str] = []
    if u[0] < 0.04 and "ヴ" in kana:
        kana = kana.replace("ヴ", "ブ")
        tags.append("kana_vu")
    if u[1] < 0.05 and any(c in kana for c in "ャュョッ"):
        kana = kana.translate(KANA_SMALL_TO_LARGE)
        tags.append("kana_small")
    if u[2] < 0.05 and ("ウ" in kana[1:] or "オオ" in kana):
        kana = (
            kana.replace("オオ", "オー", 1)
            if "オオ" in kana
            else kana[0] + kana[1:].replace("ウ", "ー", 1)
        )
        tags.append("kana_long")
    if u[3] < 0.10:
        kana = kana.replace("　", " " if u[3] < 0.05 else "")
        tags.append("kana_space")
    if u[4] < 0.02:
        i = int(u[5] * len(kana)) % max(len(kana), 1)
        kana = kana[:i] + kana[i:].translate(KANA_TYPO)[:1] + kana[i + 1 :]
        tags.append("typo")
    if u[5] < 0.04:
        kana = _half_width(kana)
        tags.append("half_width")
    return kana, tags


def noisy_kanji(name: str, u: np.ndarray, gaiji: bool) -> tuple[str, list[str]]:
    """Kanji variants (髙/高 ...) and, where the system cannot encode one, ●."""
    tags: list[str] = []
    hit = [c for c in KANJI_VARIANTS if c in name]
    if hit and u[0] < 0.25:
        var = KANJI_VARIANTS[hit[0]]
        if gaiji and u[1] < 0.4:
            var = "●"
            tags.append("gaiji")
        name = name.replace(hit[0], var, 1)
        tags.append("kanji_variant")
    if u[2] < 0.05:
        name = name.replace("　", " ")
        tags.append("kanji_space")
    return name, tags


def noisy_address(addr: str, u: np.ndarray) -> tuple[str, list[str]]:
    """丁目/番/号 written as hyphens, 番地, building name and room dropped or kept."""
    import re

    tags: list[str] = []
    m = re.match(r"^(.*?)(\d+)丁目(\d+)番(\d+)号(.*)$", addr)
    if not m:
        return addr, tags
    town, c, b, g, rest = m.groups()
    if u[0] < 0.35:
        body = f"{c}-{b}-{g}"
        tags.append("addr_hyphen")
    elif u[0] < 0.5:
        body = f"{c}丁目{b}番地{g}"
        tags.append("addr_banchi")
    else:
        body = f"{c}丁目{b}番{g}号"
    if u[1] < 0.4 and rest:
        rest = ""
        tags.append("addr_no_building")
    if u[2] < 0.5:
        town = town.replace("みまもり市", "")
        tags.append("addr_no_city")
    return town + body + rest, tags


def noisy_birth(birth: int, u: np.ndarray) -> tuple[int | None, list[str]]:
    y, m, d = (int(x[0]) for x in ymd(np.array([birth])))
    if u[0] < 0.012 and d <= 12 and d != m:
        return day(y, d, m), ["dob_swap"]
    if u[0] > 0.995:
        return None, ["dob_missing"]
    if 0.012 <= u[0] < 0.02:
        dd = min(d + 1 if d < 28 else d - 1, 28)
        return day(y, m, dd), ["dob_typo"]
    return birth, []


# ---------------------------------------------------------------- the people behind the rows
def _guardians(city: City) -> pd.Series:
    """Per household: the name of the mother, else the father, else any adult (kanji)."""
    p = city.persons
    rank = p["role"].map({"mother": 0, "father": 1, "grandmother": 2, "grandfather": 3})
    adults = p.assign(rank=rank).dropna(subset=["rank"]).sort_values(["hh", "rank"])
    return adults.drop_duplicates("hh").set_index("hh")["name"]


def _surname_change(name: str, kana: str, rng: np.random.Generator) -> tuple[str, str]:
    fam, famk = FAMILY[int(rng.integers(0, len(FAMILY)))]
    given = name.split("　", 1)[-1]
    givenk = kana.split("　", 1)[-1]
    return f"{fam}　{given}", f"{famk}　{givenk}"


def child_identity(
    person: pd.Series,
    guardian: str,
    address: str,
    rng: np.random.Generator,
    gaiji: bool,
    with_address: bool,
) -> dict:
    """One child's identity as a source system holds it (drawn once per child and source)."""
    name, kana, tags = str(person["name"]), str(person["name_kana"]), []
    if rng.random() < 0.02:
        name, kana = _surname_change(name, kana, rng)
        tags.append("surname_change")
    kana, t1 = noisy_kana(kana, rng.random(6))
    name, t2 = noisy_kanji(name, rng.random(3), gaiji)
    birth, t3 = noisy_birth(int(person["birth"]), rng.random(1))
    guard, _ = noisy_kanji(guardian, rng.random(3), gaiji)
    out = {"name": name, "kana": kana, "birth": birth, "sex": person["sex"], "guardian": guard}
    if with_address:
        out["address"], t4 = noisy_address(address, rng.random(3))
        tags += t4
    out["noise"] = "+".join(tags + t1 + t2 + t3)
    return out


def stranger(rng: np.random.Generator, birth_lo: int, birth_hi: int) -> dict:
    """A child the registry does not know (lives elsewhere, not yet registered)."""
    fam, famk = FAMILY[int(rng.integers(0, len(FAMILY)))]
    male = rng.random() < 0.5
    g, gk = (MALE if male else FEMALE)[int(rng.integers(0, len(MALE if male else FEMALE)))]
    gf, _ = FEMALE[int(rng.integers(0, len(FEMALE)))]
    return {
        "name": f"{fam}　{g}",
        "kana": f"{famk}　{gk}",
        "birth": int(rng.integers(birth_lo, birth_hi)),
        "sex": "male" if male else "female",
        "guardian": f"{fam}　{gf}",
        "address": f"隣町{int(rng.integers(1, 5))}丁目"
        f"{int(rng.integers(1, 30))}番{int(rng.integers(1, 20))}号",
        "noise": "not_in_registry",
    }


def _identities(
    city: City, pids: np.ndarray, rng: np.random.Generator, gaiji: bool, with_address: bool
) -> dict[int, dict]:
    p, hh = city.persons, city.households
    guardians = _guardians(city)
    out = {}
    for pid in pids:
        person = p.iloc[int(pid)]
        h = int(person["hh"])
        out[int(pid)] = child_identity(
            person, str(guardians.get(h, "")), str(hh["address"].iat[h]), rng, gaiji, with_address
        )
    return out


def _rows(ids: dict[int, dict], pids: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
    """One identity per row; 3% of rows re-keyed that year (a fresh kana typo or variant)."""
    rows = []
    for pid in pids:
        d = dict(ids[int(pid)])
        if rng.random() < 0.03:
            d["kana"], t = noisy_kana(d["kana"], rng.random(6))
            d["noise"] = "+".join(x for x in [d["noise"], *t] if x)
        rows.append(d)
    return pd.DataFrame(rows, index=range(len(pids)))


def _extras(
    df: pd.DataFrame,
    ids_for_dup: dict[int, dict],
    rng: np.random.Generator,
    dup_rate: float,
    stranger_rate: float,
    birth_lo: int,
    birth_hi: int,
    city: City,
) -> pd.DataFrame:
    """Duplicate records of one child (a second entry, spelt afresh) and strangers."""
    n_dup = int(round(dup_rate * len(df)))
    dup = df.iloc[rng.choice(len(df), n_dup, replace=False)].copy()
    fresh = _identities(city, dup["_pid"].to_numpy(), rng, gaiji=True, with_address=True)
    for col in ("name", "kana", "birth", "guardian", "address"):
        if col in df:
            dup[col] = [fresh[int(pid)][col] for pid in dup["_pid"]]
    dup["noise"] = "duplicate_record"
    n_new = max(1, int(round(stranger_rate * len(df))))
    tmpl = df.iloc[rng.choice(len(df), n_new)].copy()
    strangers = pd.DataFrame([stranger(rng, birth_lo, birth_hi) for _ in range(n_new)])
    for col in strangers.columns:
        if col in tmpl:
            tmpl[col] = strangers[col].to_numpy()
    tmpl["resident_code"], tmpl["_pid"] = None, -1
    return pd.concat([df, dup, tmpl], ignore_index=True)


def school_guidance(city: City, register: pd.DataFrame) -> pd.DataFrame:
    """One row per student and fiscal year in the city's schools, identity instead of codes."""
    rng = rng_for(city.settings["seed"], "identity_school_guidance")
    r = register[register["school_code"] != "OUT"].reset_index(drop=True)
    pids = r["_pid"].to_numpy()
    ids = _identities(city, np.unique(pids), rng, gaiji=False, with_address=False)
    df = _rows(ids, pids, rng)
    h = city.households["hardship"].to_numpy()[city.persons["hh"].to_numpy()[pids]]
    df["nurse_visits"] = rng.poisson(np.exp(0.8 + 0.35 * h))
    df["guidance_count"] = rng.poisson(np.exp(-2.2 + 0.6 * h))
    for col in ("school_code", "grade", "fiscal_year", "resident_code", "_pid"):
        df[col] = r[col].to_numpy()
    lo, hi = int(city.persons["birth"].min()), int(city.end_day - 6 * 365)
    df = _extras(df, ids, rng, 0.005, 0.005, max(lo, hi - 10 * 365), hi, city)
    return df.sort_values(["fiscal_year", "school_code", "grade", "kana"], kind="stable")


def learning_support(city: City) -> pd.DataFrame:
    """Children of hard-pressed households aged 10-15 who joined the NPO's programme."""
    rng = rng_for(city.settings["seed"], "identity_learning_support")
    p, fys = city.persons, city.settings["fiscal_years"]
    frm, to = resident_interval(p, city.end_day)
    birth = p["birth"].to_numpy()
    lo = np.maximum.reduce([frm, birth + 10 * 365, np.full(len(p), day(fys[0], 4, 1))])
    hi = np.minimum.reduce([to, birth + 15 * 365, np.full(len(p), city.end_day)])
    h = city.households["hardship"].to_numpy()[p["hh"].to_numpy()]
    take = (
        (p["role"].to_numpy() == "child")
        & (hi - lo > 60)
        & (rng.random(len(p)) < sigmoid(-4.2 + 1.2 * h))
    )
    pids = np.flatnonzero(take)
    ids = _identities(city, pids, rng, gaiji=True, with_address=True)
    df = _rows(ids, pids, rng)
    start = lo[pids] + (rng.random(len(pids)) * (hi[pids] - lo[pids] - 30)).astype("int64")
    stop = start + rng.integers(90, 900, len(pids))
    df["start_date"] = start
    df["end_date"] = np.where(stop > city.end_day, -1, stop)
    df["resident_code"], df["_pid"] = p["resident_code"].to_numpy()[pids], pids
    lo_b, hi_b = int(city.end_day - 16 * 365), int(city.end_day - 10 * 365)
    df = _extras(df, ids, rng, 0.02, 0.03, lo_b, hi_b, city)
    return df.sort_values(["start_date", "kana"], kind="stable")


# ---------------------------------------------------------------- writing
def _date_text(days: pd.Series, style: str) -> pd.Series:
    if style not in ("slash", "dash"):
        return format_dates(days.where(days.notna() & (days >= 0)), style).fillna("")
    d = dates_of(days.where(days.notna() & (days >= 0)))
    fmt = "%Y/%m/%d" if style == "slash" else "%Y-%m-%d"
    return d.dt.strftime(fmt).fillna("")


def export_frame(
    table: str, df: pd.DataFrame, schema: TableSchema, spec: dict | None = None
) -> pd.DataFrame:
    """The rows as the source system writes them (``spec``: the dialect's way, default the
    default vendor's): headers, dates, sex; no link fields."""
    spec = spec or DIALECTS["default"][table]
    cols = {
        "name": df["name"],
        "kana": df["kana"],
        "sex": df["sex"].map(spec["sex"]),
        "birth": _date_text(df["birth"], spec["birth"]),
        "guardian": df["guardian"],
    }
    role_col = {
        "name": "name",
        "name_kana": "kana",
        "birth_date": "birth",
        "sex": "sex",
        "guardian_name": "guardian",
        "address": "address",
    }
    out = {}
    for f in schema.fields:
        if f.name in ("resident_code", "link_decision", "link_reason", "candidate_code"):
            continue
        head = spec["headers"].get(f.name, f.title)
        role = next((r for r, fn in schema.link_by.items() if fn == f.name), None)
        if role in role_col and role_col[role] in cols:
            out[head] = cols[role_col[role]].to_numpy()
        elif role == "address":
            out[head] = df["address"].to_numpy()
        elif f.type == "date":
            out[head] = _date_text(df[f.name], spec["dates"]).to_numpy()
        else:
            out[head] = df[f.name].to_numpy()
    return pd.DataFrame(out)


def write_identity_exports(
    city: City,
    tables: dict[str, pd.DataFrame],
    schemas: dict[str, TableSchema],
    settings: dict,
    raw_dir: Path,
    truth_path: Path,
) -> dict[str, Path]:
    """Write the code-less exports and their true links; returns {table: path}."""
    built = {
        "school_guidance": lambda: school_guidance(city, tables["school_register"]),
        "learning_support": lambda: learning_support(city),
    }
    stamp = f"{settings['fiscal_years'][-1] + 1}0331"
    specs = DIALECTS[settings.get("dialect", "default")]
    files, truth = {}, []
    for table, build in built.items():
        df = build().reset_index(drop=True)
        out = export_frame(table, df, schemas[table], specs[table])
        path = raw_dir / FILES[table].format(stamp=stamp)
        text = out.to_csv(index=False, lineterminator="\r\n")
        if "charset" in specs[table]:
            text = text.encode(specs[table]["charset"], errors="mimamori_gaiji").decode(
                specs[table]["charset"]
            )
        with atomic_path(path) as tmp:
            tmp.write_bytes(text.encode(specs[table]["encoding"], errors="mimamori_gaiji"))
        files[table] = path
        truth.append(
            pd.DataFrame(
                {
                    "table": table,
                    "file": path.name,
                    "source_row": np.arange(len(df)) + 2,
                    "resident_code": df["resident_code"].to_numpy(),
                    "noise": df["noise"].to_numpy(),
                }
            )
        )
    write_csv(pd.concat(truth, ignore_index=True)[TRUTH_COLUMNS], truth_path)
    return files
