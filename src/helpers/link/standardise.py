"""Japanese identity standardisation for 名寄せ: the same person written by two systems should
come out the same.

Names: NFKC (half-width kana and full-width letters folded), hiragana to katakana, ヴ to the
ブ row, small kana written large, the long-vowel mark and its spellings folded (ユーキ = ユウキ,
コージ = コウジ = コオジ, オータ = オオタ), spaces removed after splitting surname and given
name; kanji variants folded to one form (髙→高, 﨑→崎, 邊/邉→辺, 齋/齊→斎 ...); ● (a 外字 the
system could not encode) is kept; the kanji comparison is on the given name: it costs one edit in the kanji comparison. Addresses: city
name, building and room dropped, 丁目/番(地)/号 or hyphens read into 町丁目 and 町丁目+番地.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

KANJI_FOLD = str.maketrans(
    {
        "髙": "高",
        "﨑": "崎",
        "嵜": "崎",
        "邊": "辺",
        "邉": "辺",
        "齋": "斎",
        "齊": "斉",
        "𠮷": "吉",
        "嶋": "島",
        "嶌": "島",
        "濵": "浜",
        "濱": "浜",
        "澤": "沢",
        "國": "国",
        "櫻": "桜",
        "廣": "広",
        "德": "徳",
        "惠": "恵",
        "眞": "真",
        "瀨": "瀬",
        "籠": "篭",
        "冨": "富",
        "槇": "槙",
        "祐": "祐",
        "藏": "蔵",
        "龍": "竜",
        "條": "条",
        "峯": "峰",
    }
)
SMALL_TO_LARGE = str.maketrans("ァィゥェォャュョッヮヵヶ", "アイウエオヤユヨツワカケ")
VU = {"ヴァ": "バ", "ヴィ": "ビ", "ヴェ": "ベ", "ヴォ": "ボ", "ヴ": "ブ"}
# the vowel row of every katakana (for ー and for オウ/エイ folding)
_ROWS = {
    "ア": "アカガサザタダナハバパマヤラワャ",
    "イ": "イキギシジチヂニヒビピミリ",
    "ウ": "ウクグスズツヅヌフブプムユルュ",
    "エ": "エケゲセゼテデネヘベペメレ",
    "オ": "オコゴソゾトドノホボポモヨロヲョ",
}
VOWEL = {ch: v for v, chars in _ROWS.items() for ch in chars}
SPACE = re.compile(r"[\s\u3000]+")
ADDRESS = re.compile(
    r"^(?P<town>\D+?)(?P<chome>\d+)(?:丁目|-|ー|の)(?P<ban>\d+)"
    r"(?:番地?|-|ー|の)?(?P<go>\d+)?"
)
KANJI_DIGITS = str.maketrans("一二三四五六七八九", "123456789")


def _nfkc(s: object) -> str | None:
    if s is None or (isinstance(s, float) and np.isnan(s)) or s is pd.NA:
        return None
    out = unicodedata.normalize("NFKC", str(s)).strip()
    return out or None


def fold_kana(s: object) -> str | None:
    """One kana name (or part) in its folded form, spaces removed."""
    t = _nfkc(s)
    if t is None:
        return None
    t = "".join(chr(ord(c) + 0x60) if "ぁ" <= c <= "ゖ" else c for c in t)
    for k, v in VU.items():
        t = t.replace(k, v)
    t = SPACE.sub("", t).translate(SMALL_TO_LARGE)
    out: list[str] = []
    for c in t:
        if c in "ー－-‐" and out:
            c = VOWEL.get(out[-1], "")
        out.append(c)
    t = "".join(out)
    t = re.sub(r"(?<=[" + _ROWS["オ"] + r"])ウ", "オ", t)
    return re.sub(r"(?<=[" + _ROWS["エ"] + r"])イ", "エ", t) or None


def fold_kanji(s: object) -> str | None:
    t = _nfkc(s)
    return SPACE.sub("", t.translate(KANJI_FOLD)) or None if t is not None else None


def given_kanji(s: object) -> str | None:
    """The given name in kanji (after the first space), else the whole name: a surname
    changed by divorce or remarriage then costs only the surname comparison."""
    t = _nfkc(s)
    if t is None:
        return None
    parts = SPACE.split(t, maxsplit=1)
    return fold_kanji(parts[1] if len(parts) == 2 and parts[1] else t)


def split_name(s: object, surnames: frozenset[str] = frozenset()) -> tuple[str | None, str | None]:
    """(surname, given) of a kana name: at the first space, else after the longest known
    surname the name starts with, else unknown (None, None)."""
    t = _nfkc(s)
    if t is None:
        return None, None
    parts = SPACE.split(t, maxsplit=1)
    if len(parts) == 2 and parts[0] and parts[1]:
        return fold_kana(parts[0]), fold_kana(parts[1])
    whole = fold_kana(t) or ""
    for n in range(len(whole) - 1, 0, -1):
        if whole[:n] in surnames:
            return whole[:n], whole[n:]
    return None, None


def address_parts(s: object) -> tuple[str | None, str | None]:
    """(町丁目, 町丁目+番地) of an address; city prefix, 号, building and room ignored."""
    t = _nfkc(s)
    if t is None:
        return None, None
    t = SPACE.sub("", t.translate(KANJI_FOLD))
    t = re.sub(r"^.*?[市区]", "", t, count=1) if re.search(r"[市区]", t[:8]) else t
    m = ADDRESS.match(t.translate(KANJI_DIGITS) if "丁目" in t else t)
    if not m:
        return t or None, None
    town = f"{m['town']}{int(m['chome'])}"
    return town, f"{town}-{int(m['ban'])}"


def _dates(values: pd.Series) -> tuple[pd.Series, pd.Series, pd.Series]:
    d = pd.to_datetime(values, errors="coerce")
    iso = d.dt.strftime("%Y-%m-%d").astype("object").where(d.notna(), None)
    swap = (
        d.dt.strftime("%Y-")
        + d.dt.day.map("{:02.0f}".format)
        + "-"
        + d.dt.month.map("{:02.0f}".format)
    ).where(d.notna() & (d.dt.day <= 12), None)
    year = d.dt.year.astype("Int64")
    return iso, swap.astype("object"), year


def map_unique(values: pd.Series, fn: Callable[[Any], Any]) -> pd.Series:
    """``values.map(fn)`` computed once per distinct value (names and addresses repeat: a
    500,000-child registry has far fewer distinct spellings than rows)."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    done = np.empty(len(uniques) + 1, dtype=object)
    done[:-1] = [fn(u) for u in uniques]
    done[-1] = fn(None)
    return pd.Series(done[codes], index=values.index, dtype="object")


def standardise(
    frame: pd.DataFrame, roles: dict[str, str], surnames: frozenset[str] = frozenset()
) -> pd.DataFrame:
    """The linkage columns of one table: ``roles`` maps identity role -> column of ``frame``."""

    def col(role: str) -> pd.Series:
        return (
            frame[roles[role]]
            if role in roles
            else pd.Series(None, index=frame.index, dtype="object")
        )

    kana = map_unique(col("name_kana"), lambda v: split_name(v, surnames))
    out = pd.DataFrame(index=frame.index)
    out["surname_kana"] = kana.map(lambda x: x[0]).astype("object")
    out["given_kana"] = kana.map(lambda x: x[1]).astype("object")
    out["full_kana"] = map_unique(col("name_kana"), fold_kana).astype("object")
    out["name_kanji"] = map_unique(col("name"), given_kanji).astype("object")
    out["birth_date"], out["birth_swap"], out["birth_year"] = _dates(col("birth_date"))
    out["birth_month"] = out["birth_date"].str.slice(0, 7)
    out["sex"] = col("sex").astype("object").where(col("sex").notna(), None)
    addr = map_unique(col("address"), address_parts)
    out["address_town"] = addr.map(lambda x: x[0] if x else None).astype("object")
    out["address_block"] = addr.map(lambda x: x[1] if x else None).astype("object")
    out["guardian"] = map_unique(col("guardian_name"), fold_kanji).astype("object")
    return out


# the identity roles ``standardise`` reads (a schema's other link_by fields, e.g. the school,
# are not compared)
IDENTITY_ROLES = ("name", "name_kana", "birth_date", "sex", "address", "guardian_name")
ID_COLUMNS = [
    "surname_kana",
    "given_kana",
    "full_kana",
    "name_kanji",
    "birth_date",
    "birth_swap",
    "birth_year",
    "sex",
    "address_town",
    "address_block",
    "guardian",
]
# what splink sees: the identity plus keys derived from it for blocking (birth_month =
# year and month of birth, for a mistyped day); a record's id hashes ID_COLUMNS only
LINK_COLUMNS = [*ID_COLUMNS, "birth_month"]
