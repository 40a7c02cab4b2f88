"""Small-cell suppression: edge counts, derived rates, secondary suppression, bad input."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hst

from helpers import MimamoriError
from helpers.reports.suppression import (
    RATE_LABEL,
    SECONDARY_LABEL,
    small_label,
    suppress_counts,
    suppression_note,
)


def test_edge_counts_0_1_9_10():
    df = pd.DataFrame({"k": list("abcd"), "n": [0, 1, 9, 10]})
    out = suppress_counts(df, ["n"], secondary=False)
    assert out["n"].tolist() == [0, "<10", "<10", 10]
    assert out["k"].tolist() == list("abcd")
    assert df["n"].tolist() == [0, 1, 9, 10]  # input untouched


def test_label_follows_threshold():
    df = pd.DataFrame({"n": [4, 5, 0]})
    out = suppress_counts(df, ["n"], threshold=4, secondary=False)
    assert out["n"].tolist() == ["<5", 5, 0]
    assert small_label(4) == "<5"


def test_rate_hidden_with_its_count():
    df = pd.DataFrame({"n": [0, 3, 9, 10, 250], "rate": [0.0, 0.03, 0.09, 0.1, 0.5]})
    out = suppress_counts(df, ["n"], rates={"rate": "n"}, secondary=False)
    assert out["rate"].tolist() == [0.0, RATE_LABEL, RATE_LABEL, 0.1, 0.5]


def test_secondary_hides_smallest_other_cell_when_one_cell_is_suppressed():
    # total row 55 shown: a lone "<10" would be 55 - 20 - 30 = 5
    df = pd.DataFrame({"cat": ["a", "b", "c", "total"], "n": [5, 30, 20, 55],
                       "rate": [0.1, 0.6, 0.4, 1.0]})
    out = suppress_counts(df, ["n"], rates={"rate": "n"})
    assert out["n"].tolist() == ["<10", 30, SECONDARY_LABEL, 55]
    assert out["rate"].tolist() == [RATE_LABEL, 0.6, RATE_LABEL, 1.0]


def test_no_secondary_when_two_cells_are_suppressed_or_none():
    df = pd.DataFrame({"n": [5, 3, 20, 28], "m": [10, 11, 12, 33]})
    out = suppress_counts(df, ["n", "m"])
    assert out["n"].tolist() == ["<10", "<10", 20, 28]
    assert out["m"].tolist() == [10, 11, 12, 33]


def test_secondary_within_groups():
    df = pd.DataFrame({"year": [2022, 2022, 2022, 2023, 2023],
                       "n": [4, 12, 15, 11, 13]})
    out = suppress_counts(df, ["n"], group_by=["year"])
    assert out["n"].tolist() == ["<10", SECONDARY_LABEL, 15, 11, 13]


def test_missing_count_stays_missing():
    df = pd.DataFrame({"n": pd.array([None, 2, 40], dtype="Int64")})
    out = suppress_counts(df, ["n"], secondary=False)
    assert out["n"].iloc[0] is pd.NA
    assert out["n"].tolist()[1:] == ["<10", 40]


@pytest.mark.parametrize("values, match", [
    ([1, "many"], "row 1, column 'n'"),
    ([1, -2], "non-negative"),
    ([1.5, 2], "whole number"),
])
def test_bad_counts_are_rejected(values, match):
    with pytest.raises(MimamoriError, match=match):
        suppress_counts(pd.DataFrame({"n": values}), ["n"])


def test_unknown_columns_are_rejected():
    df = pd.DataFrame({"n": [1], "r": [0.1]})
    with pytest.raises(MimamoriError, match="'x' not in table"):
        suppress_counts(df, ["x"])
    with pytest.raises(MimamoriError, match="not listed in counts"):
        suppress_counts(df, [], rates={"r": "n"})


def test_note_lists_only_used_labels():
    note = suppression_note(9, {"<10"})
    assert "<10" in note and "x:" not in note
    assert "1〜9" in suppression_note(9, set())


@settings(max_examples=60, deadline=None)
@given(hst.lists(hst.integers(min_value=0, max_value=60), min_size=1, max_size=15),
       hst.integers(min_value=1, max_value=12))
def test_no_small_count_survives(values, threshold):
    out = suppress_counts(pd.DataFrame({"n": values}), ["n"], threshold=threshold)
    for raw, shown in zip(values, out["n"], strict=True):
        if isinstance(shown, str):
            assert shown in (small_label(threshold), SECONDARY_LABEL)
            assert shown == SECONDARY_LABEL or 1 <= raw <= threshold
        else:
            assert shown == raw and not 1 <= raw <= threshold
    n_primary = sum(1 <= v <= threshold for v in values)
    if n_primary == 1 and any(v > threshold for v in values):
        assert SECONDARY_LABEL in out["n"].tolist()
