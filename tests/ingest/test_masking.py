"""Masking rules: keyed pseudonyms, key loading, birth-month rule, top-coding, mask_table."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from helpers import MimamoriError
from helpers.config import REPO_ROOT, load_config
from helpers.ingest.masking import (
    DEMO_KEY,
    load_key,
    mask_birth_month,
    mask_month,
    mask_table,
    pseudonym,
    pseudonymise,
    topcode,
)
from helpers.schema import load_schema

KEY = b"0123456789abcdef-test-key"


def test_pseudonym_is_16_lowercase_hex_stable_and_keyed():
    p = pseudonym("12345678", KEY, "resident")
    assert re.fullmatch(r"[0-9a-f]{16}", p)
    assert p == pseudonym("12345678", KEY, "resident")
    assert p != pseudonym("12345678", b"another-key-0123456789", "resident")
    assert p != pseudonym("12345678", KEY, "household")
    assert p != pseudonym("12345679", KEY, "resident")


def test_unknown_domain_is_refused():
    with pytest.raises(ValueError, match="domain"):
        pseudonym("1", KEY, "name")


def test_pseudonymise_matches_scalar_and_keeps_blanks():
    s = pd.Series(["12345678", None, "12345678", "87654321"])
    out = pseudonymise(s, KEY, "resident")
    assert out.dtype == "string"
    assert out[0] == out[2] == pseudonym("12345678", KEY, "resident")
    assert pd.isna(out[1])
    assert out[3] == pseudonym("87654321", KEY, "resident")


def _cfg(synthetic=True, key_file=None):
    return load_config(
        overrides={"run": {"synthetic": synthetic}, "ingest": {"key_file": key_file}}
    )


GOOD_KEY = "5f0c2b9e41d7a8c3e6f1029b7d4a5c8e"  # 32 characters


def test_key_from_env_wins(monkeypatch):
    monkeypatch.setenv("MIMAMORI_KEY", GOOD_KEY)
    assert load_key(_cfg(synthetic=False)) == (GOOD_KEY.encode(), "env")


@pytest.mark.parametrize(
    "bad, words",
    [
        ("short", "shorter than 32"),
        ("a-long-enough-secret-key", "shorter than 32"),  # 24 bytes: enough before, not now
        ("x" * 40, "one character repeated"),
        (DEMO_KEY.decode(), "public demo key"),
    ],
)
def test_weak_or_public_keys_are_refused_for_real_data(monkeypatch, tmp_path, bad, words):
    monkeypatch.setenv("MIMAMORI_KEY", bad)
    with pytest.raises(MimamoriError, match=words) as err:
        load_key(_cfg(synthetic=False))
    assert "secrets.token_hex(32)" in str(err.value)  # says how to make a key
    monkeypatch.delenv("MIMAMORI_KEY")
    kf = tmp_path / "city.key"
    kf.write_text(bad + "\n")
    with pytest.raises(MimamoriError, match=words):
        load_key(_cfg(synthetic=False, key_file=str(kf)))


def test_demo_key_by_value_is_fine_for_the_synthetic_city(monkeypatch):
    monkeypatch.setenv("MIMAMORI_KEY", DEMO_KEY.decode())
    assert load_key(_cfg(synthetic=True)) == (DEMO_KEY, "env")


def test_key_file_outside_repo(monkeypatch, tmp_path):
    monkeypatch.delenv("MIMAMORI_KEY", raising=False)
    kf = tmp_path / "city.key"
    kf.write_text(GOOD_KEY + "\n")
    assert load_key(_cfg(synthetic=False, key_file=str(kf))) == (GOOD_KEY.encode(), "file")


def test_key_file_inside_repo_is_refused(monkeypatch):
    monkeypatch.delenv("MIMAMORI_KEY", raising=False)
    with pytest.raises(MimamoriError, match="inside the repository"):
        load_key(_cfg(key_file=str(REPO_ROOT / "config" / "ingest.yaml")))
    with pytest.raises(MimamoriError, match="inside the repository"):
        load_key(_cfg(key_file="secrets/city.key"))  # relative = from the repo root


def test_demo_key_only_for_synthetic(monkeypatch):
    monkeypatch.delenv("MIMAMORI_KEY", raising=False)
    assert load_key(_cfg(synthetic=True)) == (DEMO_KEY, "demo")
    with pytest.raises(MimamoriError, match="MIMAMORI_KEY"):
        load_key(_cfg(synthetic=False))


def test_birth_month_rule_april_first_goes_to_march():
    s = pd.Series(pd.to_datetime(["2015-04-01", "2015-04-02", "2016-03-31", "2016-01-01", None]))
    out = mask_birth_month(s)
    assert out.dtype == "datetime64[ns]"
    assert out.tolist()[:4] == [
        pd.Timestamp("2015-03-01"),
        pd.Timestamp("2015-04-01"),
        pd.Timestamp("2016-03-01"),
        pd.Timestamp("2016-01-01"),
    ]
    assert pd.isna(out[4])


def test_other_dates_go_to_day_one():
    s = pd.Series(pd.to_datetime(["2015-04-01", "2023-12-31", None]))
    out = mask_month(s)
    assert out.tolist()[:2] == [pd.Timestamp("2015-04-01"), pd.Timestamp("2023-12-01")]
    assert pd.isna(out[2])


def test_topcode_clips_both_tails_and_counts():
    s = pd.Series(np.r_[np.arange(1, 1001, dtype=float), [np.nan]])
    out, info = topcode(s, 0.5, 99.5)
    # bounds are observed values at the 0.5th / 99.5th percentile: 5 and 996 of 1..1000
    assert info["lower"] == 5.0 and info["upper"] == 996.0
    assert info["n_lower"] == 4 and info["n_upper"] == 4
    assert out.min() == 5.0 and out.max() == 996.0
    assert (out[4:995] == s[4:995]).all()
    assert pd.isna(out.iloc[-1])
    assert info["n_values"] == 1000


def test_topcode_keeps_integers_integer():
    s = pd.Series(list(range(200)) + [None], dtype="Int64")
    out, info = topcode(s, 1, 99)
    assert out.dtype == "Int64"
    assert info["n_upper"] == 1 and out.max() == 198


def test_mask_table_applies_each_rule_and_drops_pii():
    schema = load_schema("residents")
    df = pd.DataFrame(
        {
            "resident_code": pd.Series(["12345678", "23456789"], dtype="string"),
            "name": pd.Series(["山田太郎", "鈴木花子"], dtype="string"),
            "name_kana": pd.Series(["ヤマダタロウ", "スズキハナコ"], dtype="string"),
            "birth_date": pd.to_datetime(["2015-04-01", "2015-06-20"]),
            "sex": pd.Series(["male", "female"], dtype="string"),
            "nationality": pd.Series(["japanese", "foreign"], dtype="string"),
            "address": pd.Series(["東京都千代田区1-1", "大阪市北区"], dtype="string"),
            "school_district": pd.Series(["A1", None], dtype="string"),
            "move_in_date": pd.to_datetime([None, "2020-08-17"]),
            "move_out_date": pd.to_datetime([None, None]),
            "death_date": pd.to_datetime([None, None]),
        }
    )
    masked, report = mask_table(df, schema, KEY)
    assert list(masked.columns) == [f.name for f in schema.mart_fields]
    assert {"name", "name_kana", "address"}.isdisjoint(masked.columns)
    assert masked["resident_code"].tolist() == [
        pseudonym("12345678", KEY, "resident"),
        pseudonym("23456789", KEY, "resident"),
    ]
    assert masked["birth_date"].tolist() == [pd.Timestamp("2015-03-01"), pd.Timestamp("2015-06-01")]
    assert masked["move_in_date"][1] == pd.Timestamp("2020-08-01")
    assert report["name"] == {"masking": "drop"}
    assert report["birth_date"]["n_april_first"] == 1


def test_mask_table_with_fixed_bounds():
    schema = load_schema("birth_status")
    df = pd.DataFrame(
        {
            "resident_code": pd.Series(["12345678", "23456789"], dtype="string"),
            "birth_weight_g": pd.Series([500, 3000], dtype="Int64"),
            "head_circumference_cm": [30.0, 44.0],
            "gestational_weeks": pd.Series([30, 40], dtype="Int64"),
            "multiple_birth": pd.Series([True, None], dtype="boolean"),
        }
    )
    masked, report = mask_table(
        df, schema, KEY, {"birth_weight_g": (1000, 5000), "head_circumference_cm": (25, 40)}
    )
    assert masked["birth_weight_g"].tolist() == [1000, 3000]
    assert masked["head_circumference_cm"].tolist() == [30.0, 40.0]
    assert (
        report["birth_weight_g"]["n_lower"] == 1 and report["head_circumference_cm"]["n_upper"] == 1
    )


def test_pseudonym_cache_across_blocks_gives_the_same_pseudonyms():
    from helpers.ingest.masking import DEMO_KEY, pseudonymise

    codes = pd.Series(["10000001", "10000002", None, "10000001"], dtype="string")
    cache: dict[str, str] = {}
    first = pseudonymise(codes[:2], DEMO_KEY, "resident", cache)
    again = pseudonymise(codes[2:], DEMO_KEY, "resident", cache)
    plain = pseudonymise(codes, DEMO_KEY, "resident")
    assert pd.concat([first, again]).tolist() == plain.tolist() and len(cache) == 2


def test_pseudonyms_equal_the_scalar_hmac_for_short_and_long_keys():
    from helpers.ingest.masking import pseudonyms

    codes = ["12345678", "", "テスト", "9" * 40]
    for key in (KEY, b"k" * 31 + b"x", bytes(range(100))):
        got = pseudonyms(codes, key, "household", {})
        assert got == [pseudonym(c, key, "household") for c in codes]
