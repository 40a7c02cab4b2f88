"""Japanese era and Western date parsing: every export form, every impossible date, era edges."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import dates as dates_mod
from helpers.dates import ERAS, format_jp_date, parse_dates, parse_jp_date, to_era

D = dt.date


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("令和5年4月1日", D(2023, 4, 1)),
        ("R5.4.1", D(2023, 4, 1)),
        ("R05/04/01", D(2023, 4, 1)),
        ("R05-04-01", D(2023, 4, 1)),
        ("r5.4.1", D(2023, 4, 1)),
        ("Ｒ５．４．１", D(2023, 4, 1)),
        ("令和５年４月１日", D(2023, 4, 1)),
        ("令和 5年 4月 1日", D(2023, 4, 1)),
        ("㋿5年4月1日", D(2023, 4, 1)),
        ("H31.4.30", D(2019, 4, 30)),
        ("平成31年4月30日", D(2019, 4, 30)),
        ("令和元年5月1日", D(2019, 5, 1)),
        ("平成元年1月8日", D(1989, 1, 8)),
        ("昭和64年1月7日", D(1989, 1, 7)),
        ("S64.1.7", D(1989, 1, 7)),
        ("大正15年12月24日", D(1926, 12, 24)),
        ("昭和元年12月25日", D(1926, 12, 25)),
        ("5050401", D(2023, 4, 1)),
        ("4310430", D(2019, 4, 30)),
        ("3640107", D(1989, 1, 7)),
        ("5010501", D(2019, 5, 1)),
        ("2023/04/01", D(2023, 4, 1)),
        ("2023-04-01", D(2023, 4, 1)),
        ("2023/4/1", D(2023, 4, 1)),
        ("20230401", D(2023, 4, 1)),
        ("2023年4月1日", D(2023, 4, 1)),
        ("２０２３／０４／０１", D(2023, 4, 1)),
        ("2023-04-01 00:00:00", D(2023, 4, 1)),
        ("2024/2/29", D(2024, 2, 29)),
    ],
)
def test_every_export_form_parses(text, expected):
    assert parse_jp_date(text) == expected


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("令和5年2月30日", "no such calendar day"),
        ("R5.2.30", "no such calendar day"),
        ("5050230", "no such calendar day"),
        ("2023/02/29", "no such calendar day"),
        ("2023/13/01", "no such calendar day"),
        ("平成32年1月1日", "after the end of its era"),
        ("H31.5.1", "after the end of its era"),
        ("4310501", "after the end of its era"),
        ("昭和64年1月8日", "after the end of its era"),
        ("令和1年4月30日", "before the start of its era"),
        ("R1.4.1", "before the start of its era"),
        ("平成元年1月7日", "before the start of its era"),
        ("令和0年5月1日", "era year 0"),
        ("23/04/01", "not a recognised date form"),
        ("6050401", "not a recognised date form"),
        ("X5.4.1", "not a recognised date form"),
        ("令和5年4月", "not a recognised date form"),
        ("2023-04-01 25", "not a recognised date form"),
        ("9999/12/31", "an open-end sentinel in a field that is not an end date"),
        ("2300/01/01", "year outside 1678-2261"),
        ("不明", "not a recognised date form"),
        ("0", "not a recognised date form"),
    ],
)
def test_impossible_and_malformed_dates_raise_with_reason(text, reason):
    with pytest.raises(ValueError, match=reason):
        parse_jp_date(text)


def test_blank_raises_for_scalar():
    with pytest.raises(ValueError, match="blank"):
        parse_jp_date("  ")


def test_vectorised_parse_keeps_blanks_null_and_reports_errors():
    s = pd.Series(
        ["R5.4.1", "", None, "　", "令和5年2月30日", "R5.4.1"], index=[10, 11, 12, 13, 14, 15]
    )
    dates, errors = parse_dates(s)
    assert dates.dtype == "datetime64[ns]"
    assert list(dates.index) == list(s.index)
    assert dates[10] == pd.Timestamp("2023-04-01") and dates[15] == pd.Timestamp("2023-04-01")
    assert dates[[11, 12, 13, 14]].isna().all()
    assert errors[[10, 11, 12, 13, 15]].isna().all()
    assert "no such calendar day" in errors[14] and "令和5年2月30日" in errors[14]


# Dates near every era boundary, plus the whole range of any child's or grandparent's life.
_BOUNDARIES = [
    D(1989, 1, 7),
    D(1989, 1, 8),
    D(2019, 4, 30),
    D(2019, 5, 1),
    D(1926, 12, 24),
    D(1926, 12, 25),
    D(1912, 7, 29),
    D(1912, 7, 30),
]
_near_edges = st.builds(
    lambda base, delta: base + dt.timedelta(days=delta),
    st.sampled_from(_BOUNDARIES),
    st.integers(-400, 400),
)
_any_date = st.dates(min_value=D(1900, 1, 1), max_value=D(2080, 12, 31))


@settings(max_examples=80, deadline=None)
@given(d=st.one_of(_near_edges, _any_date))
def test_round_trip_western_era_western(d):
    texts = [format_jp_date(d, f) for f in ("kanji", "letter", "padded", "code7")]
    texts += [d.isoformat(), d.strftime("%Y%m%d"), f"{d.year}年{d.month}月{d.day}日"]
    dates, errors = parse_dates(pd.Series(texts))
    assert errors.isna().all(), list(zip(texts, errors, strict=True))
    assert (dates == pd.Timestamp(d)).all()
    assert to_era(parse_jp_date(texts[0]))[0] == to_era(d)[0]


@settings(max_examples=50, deadline=None)
@given(d=_near_edges)
def test_a_date_written_in_the_wrong_era_is_rejected(d):
    """A date written in the era before its own (平成31年5月1日) or after it is an error."""
    kanji, _year = to_era(d)
    i = [e[0] for e in ERAS].index(kanji)
    for j in (i - 1, i + 1):
        if not 0 <= j < len(ERAS):
            continue
        other, start = ERAS[j][0], ERAS[j][3]
        year = d.year - start.year + 1
        if year < 1:
            continue
        with pytest.raises(ValueError):
            parse_jp_date(f"{other}{year}年{d.month}月{d.day}日")


def test_vectorised_parse_of_many_rows_matches_the_scalar_parser():
    # speed is measured by `make bench` (micro: date parsing), never asserted here
    s = pd.Series(
        [f"R{y}.{m}.{d}" for y in range(1, 6) for m in range(1, 13) for d in range(1, 29)] * 20
    )
    dates, errors = parse_dates(s)
    sample = s.drop_duplicates().sample(50, random_state=0)
    for i, text in sample.items():
        try:
            expected = parse_jp_date(text)
        except ValueError:
            assert pd.notna(errors[i])
        else:
            assert pd.Timestamp(expected) == dates[i] and pd.isna(errors[i])
    assert (
        errors.isna().sum()
        == len(s) - (s.str.startswith("R1.") & s.str.contains(r"^R1\.[1-4]\.")).sum()
    )


@pytest.mark.parametrize(
    "text, expected",
    [
        ("平31.04.30", dt.date(2019, 4, 30)),  # one-kanji era
        ("令元.5.1", dt.date(2019, 5, 1)),
        ("昭64.1.7", dt.date(1989, 1, 7)),
        ("2023-04-05 13:45:00", dt.date(2023, 4, 5)),  # an Excel date-time keeps its date
        ("2023/4/5T08:00", dt.date(2023, 4, 5)),
        ("令和5年4月1日 9:30", dt.date(2023, 4, 1)),
    ],
)
def test_abbreviated_eras_and_times_of_day(text, expected):
    assert parse_jp_date(text) == expected


def test_open_end_sentinels_are_recognised_and_dates_are_not():
    from helpers.dates import open_end_mask

    sentinels = [
        "9999/12/31",
        "9999-99-99",
        "99999999",
        "0000/00/00",
        "00000000",
        "－",
        "-",
        "９９９９／１２／３１",
        "9999年12月31日",
    ]
    dates = ["2023/12/31", "R05.12.31", "", "不明", "9999/12/30"]
    assert open_end_mask(pd.Series(sentinels)).all()
    assert not open_end_mask(pd.Series(dates)).any()


def test_texts_parsed_in_an_earlier_call_give_the_same_dates_and_errors(monkeypatch):
    import helpers.dates as hd

    texts = ["R5.4.1", "令和5年2月30日", "平成32年1月1日", "x", "2023/04/05", "R5.4.1", None]
    first = parse_dates(pd.Series(texts))
    assert "R5.4.1" in hd._PARSED
    again = parse_dates(pd.Series(texts[::-1]))  # all cached now
    assert (again[0][::-1].to_numpy() == first[0].to_numpy())[first[0].notna()].all()
    assert again[1][::-1].tolist() == first[1].tolist()
    monkeypatch.setattr(hd, "_PARSED", {})  # and equal to a fresh parse
    fresh = parse_dates(pd.Series(texts))
    assert fresh[0].equals(first[0]) and fresh[1].tolist() == first[1].tolist()


def test_the_pyarrow_pass_reads_every_form_like_the_pandas_pass(monkeypatch):
    import helpers.dates as hd

    texts = ["", "-", "9999/12/31", "99999999", "R5.4.1", "Ｒ５．４．１", "令和元年5月1日"]
    for era in ("R", "H", "S", "令和", "平成", "令", "平", "5", "4", "M", "明治"):
        for y, m, d in ((1, 4, 1), (31, 4, 30), (32, 1, 1), (0, 5, 1), (5, 2, 30), (64, 13, 7)):
            texts += [f"{era}{y}.{m}.{d}", f"{era}{y:02d}/{m:02d}/{d:02d}", f"{era}{y}年{m}月{d}日"]
            texts += [f"{era}{y:02d}{m:02d}{d:02d}", f"{2000 + y}-{m:02d}-{d:02d}"]
    raw = pd.Series(texts + [None], dtype="string")
    fast = hd._parse_unique(raw)
    monkeypatch.setattr(hd, "_RE2_SAFE", "^$x")  # nothing is plain: the pandas pass
    slow = hd._parse_unique(raw)
    assert fast[0].equals(slow[0]) and fast[1].tolist() == slow[1].tolist()


def test_plain_western_dates_read_by_pyarrow_equal_the_general_parser():
    texts = [
        fmt.format(y=y, m=m, d=d)
        for y in (0, 1678, 1899, 1900, 1999, 2024, 2099, 2100, 2261, 9999)
        for m in (0, 1, 2, 4, 12, 13)
        for d in (0, 1, 28, 29, 30, 31, 32)
        for fmt in (
            "{y:04d}/{m}/{d}",
            "{y:04d}-{m:02d}-{d:02d}",
            "{y:04d}.{m}.{d:02d}",
            "{y:04d}{m:02d}{d:02d}",
            "{y:04d}/{m:02d}-{d}",
        )
    ] + ["2024/3/31 ", "２０２４/3/31", "R6.3.31", "2024/03/31T00:00", "2024/3/311", "", None]
    uniques = np.array(texts, dtype=object)
    got, got_errors = dates_mod._parse_cached(uniques)
    want, want_errors = dates_mod._parse_unique(pd.Series(uniques, dtype="string"))
    assert got_errors.tolist() == want_errors.tolist()
    np.testing.assert_array_equal(got, want.to_numpy(dtype="datetime64[ns]"))
    _ns, plain = dates_mod._plain_western(uniques)
    assert plain.sum() > 300 and not plain[-7:].any()  # the plain ones took the fast path
