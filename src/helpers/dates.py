"""Japanese and Western date parsing for municipal exports.

Exports mix 令和5年4月1日, R05.04.01, H31.4.30, 7-digit era codes (5050401 = 令和5年4月1日),
元年, and Western forms. An impossible date (令和5年2月30日), an era year past the era's end
(平成32年) or a date before the era began (令和1年4月1日) is an error with a reason, never a
guess. Parsing is vectorised over the unique values of a column.
"""

from __future__ import annotations

import datetime as dt
import re

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from helpers.normalize import nfkc

# (kanji, letter, 7-digit code, first day). An era ends the day before the next one starts.
ERAS: tuple[tuple[str, str, int, dt.date], ...] = (
    ("明治", "M", 1, dt.date(1868, 1, 1)),
    ("大正", "T", 2, dt.date(1912, 7, 30)),
    ("昭和", "S", 3, dt.date(1926, 12, 25)),
    ("平成", "H", 4, dt.date(1989, 1, 8)),
    ("令和", "R", 5, dt.date(2019, 5, 1)),
)
_ERA_BY_KEY: dict[str, int] = {}
for _i, (_kanji, _letter, _digit, _start) in enumerate(ERAS):
    _ERA_BY_KEY[_kanji] = _i
    _ERA_BY_KEY[_kanji[0]] = _i  # 平31.04.30, 令元.5.1
    _ERA_BY_KEY[_letter] = _i
    _ERA_BY_KEY[str(_digit)] = _i
_ERA_START = np.array([np.datetime64(e[3], "D") for e in ERAS])
_ERA_END = np.array(
    [np.datetime64(ERAS[i + 1][3], "D") - np.timedelta64(1, "D") for i in range(len(ERAS) - 1)]
    + [np.datetime64("2999-12-31", "D")]
)

_ERA_RE = re.compile(
    r"^(?P<era>明治|大正|昭和|平成|令和|[明大昭平令]|[MTSHR])\.?(?P<y>元|\d{1,2})(?:年|[./-])"
    r"(?P<m>\d{1,2})(?:月|[./-])(?P<d>\d{1,2})日?$"
)
_CODE7_RE = re.compile(r"^(?P<era>[1-5])(?P<y>\d{2})(?P<m>\d{2})(?P<d>\d{2})$")
_WEST_RE = re.compile(
    r"^(?P<y>\d{4})(?:年|[./-])(?P<m>\d{1,2})(?:月|[./-])(?P<d>\d{1,2})日?(?:T?0{1,2}:00(?::00)?)?$"
)
_WEST8_RE = re.compile(r"^(?P<y>\d{4})(?P<m>\d{2})(?P<d>\d{2})$")


def _numbered(regex: re.Pattern, k: int) -> str:
    return (
        regex.pattern.replace("(?P<era>", f"(?P<e{k}>")
        .replace("(?P<y>", f"(?P<y{k}>")
        .replace("(?P<m>", f"(?P<m{k}>")
        .replace("(?P<d>", f"(?P<d{k}>")
    )


# One pass over the column: the four forms as alternatives, each with its own group names.
_ANY_RE = re.compile(
    "|".join(
        f"(?:{_numbered(r, k)})" for k, r in enumerate((_ERA_RE, _CODE7_RE, _WEST_RE, _WEST8_RE), 1)
    )
)


# a time of day after the date (an Excel date-time cell, a timestamp): the date is kept
_TIME_RE = r"(?:T|\s+)\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?\s*$"
# what vendors write for "no end yet" in an end-date column (schema ``open_end: true``)
OPEN_END_RE = re.compile(
    r"^(?:9999\D?(?:12|99)\D?(?:31|99)日?|0{4}\D?0{1,2}\D?0{1,2}日?|9{7,8}|0{7,8}|[-‐―ー－]+)$"
)


def clean_date_text(series: pd.Series) -> pd.Series:
    """NFKC (full-width digits, ㋿ → 令和), upper-case era letters, no time of day, no spaces."""
    s = nfkc(series).str.upper()
    s = s.str.replace(_TIME_RE, "", regex=True)
    return s.str.replace(r"\s+", "", regex=True)


def open_end_mask(series: pd.Series) -> pd.Series:
    """True where a cell holds an open-end sentinel (9999/12/31, 9999-99-99, 99999999,
    0000/00/00, a dash) rather than a date."""
    text = clean_date_text(pd.Series(series, copy=False))
    return text.str.match(OPEN_END_RE).fillna(False).astype(bool)


def _era_index(era: pd.Series) -> pd.Series:
    return era.map(_ERA_BY_KEY)


# Distinct date texts already parsed in this process -> (datetime64[ns] as int64, error). The
# blocks of an export, and the exports of a run, repeat the same few thousand dates; each is
# parsed once. The result of a text does not depend on the other texts parsed with it.
_PARSED: dict[str, tuple[int, str | None]] = {}
_PARSED_MAX = 1 << 19  # entries (~100 MB at most); emptied when full


# A plain Western date (2024/3/31, 2024-03-31, 2024.3.31, 20240331): read in one pyarrow pass
_PLAIN_WEST = (
    r"^(?P<y1>\d{4})[./-](?P<m1>\d{1,2})[./-](?P<d1>\d{1,2})$"
    r"|^(?P<y2>\d{4})(?P<m2>\d{2})(?P<d2>\d{2})$"
)


def _plain_western(texts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(int64 ns, found) of the texts in a plain Western form that name a real calendar day
    from 1900 to 2099: what ``_parse_unique`` gives them (no error), in one pyarrow pass. The
    other texts (era forms, full-width digits, sentinels, errors) are left to it."""
    arr = pa.array(texts, pa.string(), from_pandas=True)
    st = pc.extract_regex(arr, _PLAIN_WEST)

    def part(name: str, width: int) -> pa.Array:
        a, b = (pc.struct_field(st, f"{name}{k}") for k in (1, 2))
        return pc.utf8_lpad(pc.if_else(pc.equal(a, ""), b, a), width, "0")

    iso = pc.binary_join_element_wise(part("y", 4), part("m", 2), part("d", 2), "-")
    when = pc.strptime(iso, format="%Y-%m-%d", unit="ns", error_is_null=True)
    same_day = pc.equal(pc.strftime(when, format="%Y-%m-%d"), iso)  # no 2月30日 rolled over
    year = pc.year(when)
    found = pc.and_(same_day, pc.and_(pc.greater_equal(year, 1900), pc.less(year, 2100)))
    found_np = pc.fill_null(found, False).to_numpy(zero_copy_only=False).astype(bool)
    ns = pc.cast(pc.fill_null(when, 0), pa.int64()).to_numpy(zero_copy_only=False)
    return ns, found_np


def _parse_cached(uniques: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``_parse_unique`` of distinct texts through ``_PARSED``: (int64 ns, error or None).
    Plain Western dates are read in one pyarrow pass (``_plain_western``) instead."""
    ints, errors = np.zeros(len(uniques), dtype=np.int64), np.empty(len(uniques), dtype=object)
    ns, plain = _plain_western(uniques) if len(uniques) else (ints, np.zeros(0, dtype=bool))
    ints[plain] = ns[plain]
    rest = np.flatnonzero(~plain)
    if len(rest):
        rest_ints, rest_errors = _parse_rest(uniques[rest])
        ints[rest], errors[rest] = rest_ints, rest_errors
    return ints.view("datetime64[ns]"), errors


def _parse_rest(uniques: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    found = [_PARSED.get(u) for u in uniques.tolist()]
    missing = [i for i, hit in enumerate(found) if hit is None]
    if missing:
        texts = uniques[missing]
        mdates, merrors = _parse_unique(pd.Series(texts, dtype="string"))
        ns = mdates.to_numpy(dtype="datetime64[ns]").view("int64").tolist()
        new = dict(zip(texts.tolist(), zip(ns, merrors.tolist(), strict=True), strict=True))
        if len(_PARSED) + len(new) > _PARSED_MAX:
            _PARSED.clear()
        _PARSED.update(new)
        for i, text in zip(missing, texts.tolist(), strict=True):
            found[i] = new[text]
    nat = np.datetime64("NaT", "ns").view("int64")
    ints = np.fromiter((nat if hit is None else hit[0] for hit in found), np.int64, len(found))
    errors = np.full(len(found), None, dtype=object)
    errors[:] = [None if hit is None else hit[1] for hit in found]
    return ints, errors


def parse_dates(series: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Parse a column of date texts.

    Returns ``(dates, errors)``: ``dates`` is datetime64[ns] (NaT for blanks and errors) and
    ``errors`` holds a reason text for every non-blank cell that is not a valid date (None
    elsewhere). Works on the unique values, so repeated dates cost nothing; a text met in an
    earlier call of this process is not parsed again.
    """
    series = pd.Series(series)
    codes, uniques = pd.factorize(series.astype("string"), use_na_sentinel=True)
    udates, uerrors = _parse_cached(np.asarray(uniques, dtype=object))
    dates = np.full(len(series), np.datetime64("NaT", "ns"))
    errors = np.full(len(series), None, dtype=object)
    has = codes >= 0
    dates[has] = udates[codes[has]]
    errors[has] = uerrors[codes[has]]
    return (
        pd.Series(dates, index=series.index, dtype="datetime64[ns]"),
        pd.Series(errors, index=series.index, dtype=object),
    )


# Texts of ASCII and the era words only: there RE2 (pyarrow) and ``re`` read _ANY_RE alike
# (``\\d`` is an ASCII digit for both, and the cleaned texts hold no line breaks).
_RE2_SAFE = "^[\\x00-\\x7f明治大正昭和平成令元年月日]*$"


def _parts(text: pd.Series) -> tuple[pd.Series, pd.Series, pd.Series, pd.Series]:
    """Era text, year, month and day (floats, NaN when no form matches) of cleaned date texts:
    the groups of the first date form that matched. One pyarrow pass when every text is plain
    (nearly always), else the same through pandas' ``str.extract``."""
    arr = pa.array(text.to_numpy(dtype=object), pa.string(), from_pandas=True)
    if pc.all(pc.match_substring_regex(arr, _RE2_SAFE)).as_py() is not False:
        st = pc.extract_regex(arr, _ANY_RE.pattern)

        def first(kind: str) -> pa.Array:
            names = [f"{kind}{k}" for k in range(1, 5) if f"{kind}{k}" in _ANY_RE.groupindex]
            cols = [pc.struct_field(st, n) for n in names]
            cols = [pc.if_else(pc.equal(c, ""), pa.scalar(None, pa.string()), c) for c in cols]
            return pc.coalesce(*cols)

        def num(col: pa.Array) -> pd.Series:
            values = pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False)
            return pd.Series(values, index=text.index, dtype="float64")

        y = first("y")
        y = pc.if_else(pc.equal(y, "元"), "1", y)
        era = pd.Series(first("e").to_numpy(zero_copy_only=False), index=text.index, dtype="string")
        return era, num(y), num(first("m")), num(first("d"))
    ex = text.str.extract(_ANY_RE)
    era_txt = ex["e1"].fillna(ex["e2"])
    year = (
        ex["y1"].fillna(ex["y2"]).fillna(ex["y3"]).fillna(ex["y4"]).replace("元", "1").astype(float)
    )
    month = ex["m1"].fillna(ex["m2"]).fillna(ex["m3"]).fillna(ex["m4"]).astype(float)
    day = ex["d1"].fillna(ex["d2"]).fillna(ex["d3"]).fillna(ex["d4"]).astype(float)
    return era_txt, year, month, day


def _parse_unique(raw: pd.Series) -> tuple[pd.Series, pd.Series]:
    text = clean_date_text(raw)
    n = len(text)
    era_txt, year, month, day = _parts(text)
    era = _era_index(era_txt).astype(float)
    matched = year.notna()
    blank = text.isna() | (text == "")
    errors = pd.Series(None, index=text.index, dtype=object)
    errors[~matched & ~blank] = "not a recognised date form"

    # Era years → Western years; era year 0 is not a year.
    is_era = era.notna()
    era_i = era.fillna(0).astype(int).to_numpy()
    start_year = np.array([e[3].year for e in ERAS])[era_i]
    west_year = np.where(is_era, start_year + year.to_numpy() - 1, year.to_numpy())
    bad_era_year = is_era & (year < 1)
    errors[bad_era_year & errors.isna()] = "era year 0 does not exist"

    ok = matched & ~bad_era_year
    parts = pd.DataFrame(
        {
            "year": np.where(ok, west_year, 2000),
            "month": np.where(ok, month, 1),
            "day": np.where(ok, day, 1),
        }
    ).astype(int)
    dates = pd.Series(pd.to_datetime(parts, errors="coerce"), index=text.index)
    dates[~ok] = pd.NaT
    impossible = ok & dates.isna()
    errors[impossible] = "no such calendar day"
    outside = impossible & ((parts["year"] < 1678) | (parts["year"] > 2261))
    errors[outside] = "year outside 1678-2261"
    sentinel = text.str.match(OPEN_END_RE).fillna(False).astype(bool)
    errors[sentinel & ~blank] = "an open-end sentinel in a field that is not an end date"
    dates[impossible] = pd.NaT

    # Era range: the date must fall inside its era (平成32年, 令和1年4月 are errors).
    d_days = dates.to_numpy(dtype="datetime64[D]")
    inside_ok = ok & dates.notna() & is_era
    if inside_ok.any():
        sel = inside_ok.to_numpy()
        after_end = np.zeros(n, dtype=bool)
        before_start = np.zeros(n, dtype=bool)
        after_end[sel] = d_days[sel] > _ERA_END[era_i[sel]]
        before_start[sel] = d_days[sel] < _ERA_START[era_i[sel]]
        after_end_s = pd.Series(after_end, index=text.index)
        before_s = pd.Series(before_start, index=text.index)
        errors[after_end_s] = "date is after the end of its era"
        errors[before_s] = "date is before the start of its era"
        dates[after_end_s | before_s] = pd.NaT
    # Detail includes the text so the analyst sees what was read.
    has_err = errors.notna()
    errors[has_err] = errors[has_err] + " (" + raw[has_err].astype(str) + ")"
    errors = errors.astype(object).where(has_err, None)
    return dates, errors


def parse_jp_date(text: str) -> dt.date:
    """One date text → date; ValueError with the reason when it is blank or not a valid date."""
    if text is None or not str(text).strip():
        raise ValueError("blank date")
    dates, errors = _parse_unique(pd.Series([str(text)], dtype="string"))
    if errors.iloc[0] is not None:
        raise ValueError(errors.iloc[0])
    return dates.iloc[0].date()


def to_era(date: dt.date) -> tuple[str, int]:
    """(era kanji, era year) of a date from 明治 on."""
    for kanji, _letter, _digit, start in reversed(ERAS):
        if date >= start:
            return kanji, date.year - start.year + 1
    raise ValueError(f"{date} is before 明治")


def format_jp_date(date: dt.date, form: str = "kanji") -> str:
    """Write a date the way exports do: kanji 令和5年4月1日, letter R5.4.1, padded R05/04/01, code7 5050401."""
    kanji, year = to_era(date)
    i = _ERA_BY_KEY[kanji]
    letter, digit = ERAS[i][1], ERAS[i][2]
    if form == "kanji":
        y = "元" if year == 1 else str(year)
        return f"{kanji}{y}年{date.month}月{date.day}日"
    if form == "letter":
        return f"{letter}{year}.{date.month}.{date.day}"
    if form == "padded":
        return f"{letter}{year:02d}/{date.month:02d}/{date.day:02d}"
    if form == "code7":
        return f"{digit}{year:02d}{date.month:02d}{date.day:02d}"
    raise ValueError(f"unknown form {form!r}")
