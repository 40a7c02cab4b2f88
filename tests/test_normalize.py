"""Width, space, line-break and number normalisation of export cells."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers.normalize import (
    normalize_cells,
    normalize_key,
    normalize_keys,
    parse_numbers,
    to_halfwidth,
)


def _fullwidth(text: str) -> str:
    return "".join(
        chr(ord(c) + 0xFEE0) if 0x21 <= ord(c) <= 0x7E else ("\u3000" if c == " " else c)
        for c in text
    )


def test_fullwidth_digits_letters_and_spaces_become_ascii():
    assert to_halfwidth("１２３ＡＢｃ－＿") == "123ABc-_"
    assert to_halfwidth("山田\u3000太郎") == "山田 太郎"
    assert to_halfwidth("ｶﾀｶﾅ") == "ｶﾀｶﾅ"  # only the ASCII block is touched


def test_cells_lose_line_breaks_and_outer_space_but_keep_inner_space():
    s = pd.Series(["大阪府\r\n北区", "a\rb", "a\nb", "\u3000１２\u3000", "", "  ", None, "1 2"])
    out = normalize_cells(s)
    assert out.tolist()[:4] == ["大阪府 北区", "a b", "a b", "12"]
    assert out[[4, 5, 6]].isna().all()
    assert out[7] == "1 2"


def test_header_keys_ignore_width_space_and_case():
    assert normalize_key(" 宛名\u3000番号 ") == normalize_key("宛名番号")
    assert normalize_key("ＩＤ") == normalize_key("id")
    assert normalize_keys(pd.Series(["Ａ（重度）", None])).tolist()[0] == normalize_key("A(重度)")


@pytest.mark.parametrize(
    ("text", "value", "error"),
    [
        ("1,234", 1234.0, None),
        ("１，２３４", 1234.0, None),
        ("1,234,567.5", 1234567.5, None),
        ("0", 0.0, None),
        ("０", 0.0, None),
        ("-3", -3.0, None),
        ("12.0", 12.0, None),
        ("12,34", None, "not a number"),
        ("1.234,5", None, "not a number"),
        ("3kg", None, "not a number"),
        ("abc", None, "not a number"),
        ("2.5", None, "not a whole number"),
    ],
)
def test_numbers(text, value, error):
    values, errors = parse_numbers(pd.Series([text]), integer=True)
    if error == "not a whole number":
        assert errors[0] == error
        return
    values_f, errors_f = parse_numbers(pd.Series([text]))
    assert errors_f[0] == error
    if value is None:
        assert pd.isna(values_f[0])
    else:
        assert values_f[0] == value


def test_blank_is_missing_and_zero_is_zero():
    values, errors = parse_numbers(pd.Series(["", None, "0", "\u3000"]))
    assert values.isna().tolist() == [True, True, False, True]
    assert values[2] == 0
    assert errors.isna().all()


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30))
def test_fullwidth_round_trip(text):
    assert to_halfwidth(_fullwidth(text)) == text


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=12), min_size=1, max_size=8))
def test_normalise_is_idempotent(texts):
    once = normalize_cells(pd.Series(texts))
    twice = normalize_cells(once)
    assert once.fillna("<NA>").tolist() == twice.fillna("<NA>").tolist()


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=0, max_value=10**12))
def test_grouped_and_fullwidth_numbers_read_back(n):
    texts = pd.Series([f"{n:,}", _fullwidth(str(n)), str(n)])
    values, errors = parse_numbers(texts, integer=True)
    assert errors.isna().all()
    assert (values == float(n)).all()


@pytest.mark.parametrize(
    "text, unit, value",
    [
        ("10,000円", "円", 10000.0),
        ("１０，０００円", "円", 10000.0),
        ("¥1,200", "円", 1200.0),
        ("￥1,200", None, 1200.0),
        ("14.2kg", "kg", 14.2),
        ("14.2 kg", "kg", 14.2),
    ],
)
def test_currency_and_units_are_spellings_of_a_number(text, unit, value):
    values, errors = parse_numbers(pd.Series([text]), unit=unit)
    assert errors.isna().all() and values[0] == value


@pytest.mark.parametrize("text", ["円", "10,00円", "14.2cm", "kg14"])
def test_a_unit_alone_or_a_wrong_unit_is_still_an_error(text):
    values, errors = parse_numbers(pd.Series([text]), unit="kg")
    assert errors[0] == "not a number" and np.isnan(values[0])


def test_spelling_keys_fold_month_kana_and_range_dashes():
    from helpers.normalize import spelling_key

    assert {
        spelling_key(s) for s in ("1歳6ヶ月", "1歳6ケ月", "1歳6カ月", "1歳6ヵ月", "１歳６か月")
    } == {"1歳6か月"}
    assert spelling_key("3〜4ヶ月児") == spelling_key("3～4か月児") == "3-4か月児"
    assert spelling_key("ヤングケアラー") == "ヤングケアラー"  # a long vowel is not a dash
    assert spelling_key("身体的虐待（疑い）") == "身体的虐待(疑い)"


def test_cells_changed_by_normalize_are_exactly_those_normalize_cells_changes():
    import pyarrow as pa

    from helpers.normalize import cells_changed_by_normalize

    chars = [chr(c) for c in range(0x10000) if not 0xD800 <= c <= 0xDFFF]
    for template in ("{}", "a{}", "{}漢", "ア{}b"):
        texts = [template.format(c) for c in chars] + ["", " ", "\r\n", "山田\u3000太郎"]
        s = pd.Series(texts, dtype="string")
        changed = (normalize_cells(s).fillna("\0") != s).to_numpy(dtype=bool)
        assert (cells_changed_by_normalize(pa.array(texts, pa.string())) == changed).all()


def test_normalize_changed_equals_normalize_cells():
    import numpy as np
    import pyarrow as pa

    from helpers.normalize import cells_changed_by_normalize, normalize_changed

    texts = [
        "山田\u3000太郎",
        "\u3000山田",
        "山田\u3000",
        "ＡＢ\u3000c",
        "a\nb",
        " x",
        "x ",
        "",
        "\u3000",
        "a\u3000\u3000b",
        "ok",
        "a\u3000b\u3000c",
        "a\x85b",
        "a\u00a0\u3000b",
    ]
    cells = pa.array(texts)
    changed = cells_changed_by_normalize(cells)
    want = normalize_cells(pd.Series(np.array(texts, dtype=object)[changed], dtype="string"))
    assert list(normalize_changed(cells, changed)) == want.to_numpy(object, na_value=None).tolist()
