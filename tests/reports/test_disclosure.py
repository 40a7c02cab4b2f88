"""Disclosure control: primary, secondary (audited by linprog), derived, text, charts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hst

from helpers import MimamoriError
from helpers.reports import disclosure as D

R = D.Rules(9)


def grid_of(frame: pd.DataFrame, counts: list[str], status: pd.DataFrame) -> D.Grid:
    values = frame[counts].to_numpy(dtype=float)
    return D.Grid(
        values, status[counts].to_numpy(dtype=np.int8), D.row_labels(frame, counts), counts
    )


def audit_protected(frame: pd.DataFrame, counts: list[str], prot: D.Protected) -> list:
    """The audit a reader would run on the protected table (same relations)."""
    return D.audit(
        grid_of(frame, counts, prot.status),
        D.relations_for(prot.structure),
        R.threshold,
        R.protection,
    )


# ----------------------------------------------------------------------------- primary
def test_edge_counts_0_1_9_10_and_labels_follow_the_threshold():
    df = pd.DataFrame({"k": list("abcd"), "n": [0, 1, 9, 10]})
    out = D.protect_table(df, ["n"], R).frame
    assert out["n"].tolist() == [0, "<10", "<10", 10]
    assert df["n"].tolist() == [0, 1, 9, 10]  # input untouched
    out5 = D.protect_table(pd.DataFrame({"n": [4, 5, 0]}), ["n"], D.Rules(4)).frame
    assert out5["n"].tolist() == ["<5", 5, 0]


def test_missing_counts_stay_missing_and_bad_counts_name_row_and_column():
    out = D.protect_table(pd.DataFrame({"n": [np.nan, 20.0]}), ["n"], R).frame
    assert pd.isna(out["n"].iloc[0]) and out["n"].iloc[1] == 20
    with pytest.raises(MimamoriError, match=r"row 1, column 'n'.*not a count"):
        D.protect_table(pd.DataFrame({"n": [1, "many"]}), ["n"], R)
    with pytest.raises(MimamoriError, match=r"row 0, column 'n'.*non-negative whole"):
        D.protect_table(pd.DataFrame({"n": [2.5]}), ["n"], R)
    with pytest.raises(MimamoriError, match="'zz' not in table"):
        D.protect_table(pd.DataFrame({"n": [2]}), ["zz"], R)


def test_suppression_off_shows_everything():
    out = D.protect_table(pd.DataFrame({"n": [3, 30]}), ["n"], D.Rules(9, enabled=False)).frame
    assert out["n"].tolist() == [3, 30]


# ------------------------------------------------------------------------ secondary
def test_total_row_would_give_back_a_lone_hidden_cell():
    # 55 - 30 - 20 = 5: the smallest other cell of the column is hidden too
    df = pd.DataFrame({"cat": ["a", "b", "c", "合計（total）"], "n": [5, 30, 20, 55]})
    prot = D.protect_table(df, ["n"], R)
    assert prot.frame["n"].tolist() == ["<10", 30, "x", 55]
    assert not audit_protected(df, ["n"], prot)


def test_two_small_cells_under_a_total_are_not_enough():
    # police + medical = 17: each is 8 or 9 unless a third cell is hidden
    df = pd.DataFrame(
        {"route": ["police", "medical", "school", "合計"], "FY2020": [8, 9, 120, 137]}
    )
    grid = D.Grid(
        df[["FY2020"]].to_numpy(float),
        np.array([[1], [1], [0], [0]], np.int8),
        df["route"].tolist(),
        ["FY2020"],
    )
    rels = D.relations_for(D.Structure(list(df.columns), ["FY2020"], df["route"].tolist()))
    exposed = D.audit(grid, rels, 9, R.protection)
    assert [(e.row, e.interval()) for e in exposed] == [(0, "8..9"), (1, "8..9")]
    prot = D.protect_table(df, ["FY2020"], R)
    assert prot.frame["FY2020"].tolist() == ["<10", "<10", "x", 137]
    assert not audit_protected(df, ["FY2020"], prot)


def test_row_relations_found_in_the_data_are_protected():
    # rows in = kept + rejected + duplicates holds in every row: a reader finds it
    df = pd.DataFrame(
        {
            "table": ["a", "b", "c"],
            "rows_in": [100, 50, 80],
            "rows_out": [95, 30, 70],
            "rows_rejected": [2, 20, 5],
            "duplicates": [3, 0, 5],
        }
    )
    counts = ["rows_in", "rows_out", "rows_rejected", "duplicates"]
    prot = D.protect_table(df, counts, R)
    assert prot.meta["sums"] == {"rows_in": ["rows_out", "rows_rejected", "duplicates"]}
    assert prot.frame.loc[0, "rows_out"] == "x"  # else 100 - 95 - 3 = 2 rejected
    assert not audit_protected(df, counts, prot)


def test_margins_printed_elsewhere_are_known():
    # no total row here, but the column's total is printed elsewhere in the report
    df = pd.DataFrame({"group": ["japanese", "foreign"], "events": [86, 9]})
    plain = D.protect_table(df, ["events"], R)
    assert plain.frame["events"].tolist() == [86, "<10"]
    known = D.protect_table(df, ["events"], R, margins={"events": "test.events"})
    assert known.frame["events"].tolist() == ["x", "<10"]
    assert known.structure.margins == {"events": {"0": 95.0}}


def test_groups_have_their_own_margins():
    df = pd.DataFrame(
        {
            "attribute": ["sex", "sex", "nat", "nat"],
            "group": ["f", "m", "jp", "foreign"],
            "events": [40, 55, 86, 9],
        }
    )
    prot = D.protect_table(
        df, ["events"], R, group_by=["attribute"], margins={"events": "test.events"}
    )
    assert prot.frame["events"].tolist() == [40, 55, "x", "<10"]


def test_a_cell_that_cannot_be_protected_is_an_error_but_a_loose_bound_is_not():
    loose = pd.DataFrame({"g": ["a", "b"], "n": [3, 4]})  # 7 known: each 1..6, six values
    assert D.protect_table(loose, ["n"], R, margins={"n": "k"}).frame["n"].tolist() == ["<10"] * 2
    df = pd.DataFrame({"g": ["a", "b"], "n": [8, 9]})  # the total 17 is known elsewhere
    with pytest.raises(MimamoriError, match="can be worked out"):
        D.protect_table(df, ["n"], R, margins={"n": "k"})


def test_declared_sums_must_hold():
    df = pd.DataFrame({"a": [10, 20], "b": [10, 10], "c": [5, 5]})
    with pytest.raises(MimamoriError, match="does not hold"):
        D.protect_table(df, ["a", "b", "c"], R, sums={"a": ["b", "c"]})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hst.data())
def test_suppression_then_audit_never_leaves_a_cell_recoverable(data):
    """Random count tables with row and column totals: after protection, no hidden count of
    1..9 can be narrowed below 1..9 by the totals (linprog audit)."""
    n_rows = data.draw(hst.integers(2, 5))
    n_cols = data.draw(hst.integers(1, 4))
    cell = hst.one_of(hst.integers(0, 12), hst.integers(10, 400))
    body = np.array([[data.draw(cell) for _ in range(n_cols)] for _ in range(n_rows)])
    cols = [f"c{j}" for j in range(n_cols)]
    frame = pd.DataFrame(body, columns=cols)
    with_total_col = data.draw(hst.booleans()) and n_cols > 1
    if with_total_col:
        frame["合計"] = frame[cols].sum(axis=1)
        cols = [*cols, "合計"]
    frame.insert(0, "label", [f"r{i}" for i in range(n_rows)])
    frame.loc[len(frame)] = ["合計（total）", *frame[cols].sum().tolist()]
    try:
        prot = D.protect_table(frame, cols, R)
    except MimamoriError as exc:  # only when the totals themselves pin a cell
        assert "can be worked out" in str(exc)
        return
    exposed = audit_protected(frame, cols, prot)
    assert not exposed, [(e.row, e.col, e.interval()) for e in exposed]
    shown = prot.frame[cols].to_numpy()
    assert not any(isinstance(v, int | np.integer) and 1 <= v <= 9 for v in shown.ravel())


# ------------------------------------------------------------------------- derived
def test_derived_figures_are_hidden_with_any_count_behind_them():
    df = pd.DataFrame(
        {
            "g": ["a", "b", "c"],
            "tp": [3, 12, 0],
            "selected": [40, 8, 30],
            "precision": [0.075, 1.5, 0.0],
            "note": ["x1", "x2", "x3"],
        }
    )
    prot = D.protect_table(df, ["tp", "selected"], R, derived={"precision": ["tp", "selected"]})
    assert prot.frame["precision"].tolist() == ["*", "*", 0.0]
    assert D.DERIVED_LABEL in prot.labels_used
    by_figure = D.protect_table(df, ["tp"], R, derived={"precision": 7})  # 7 printed elsewhere
    assert set(by_figure.frame["precision"]) == {"*"}


def test_fractions_that_pin_a_count_are_caught_declared_or_not():
    # a mean of a yes/no item × group size: 0.111 × 54 = 6
    assert D.pinned_count("0.111", 54, 9) == 6
    assert D.pinned_count("0.077", 13, 9) == 1
    assert D.pinned_count("40.0%", 10, 9) == 4
    assert D.pinned_count("0.5", 400, 9) is None  # 200: not small
    assert D.pinned_count("0.1", 54, 9) == 3  # 2.7..8.1: narrower than 1..9
    assert D.pinned_count("0.1", 95, 9) is None  # 4.75..14.25 covers more than 1..9
    df = pd.DataFrame({"feature": ["a", "b"], "mean_top": [0.111, 0.5], "n_top": [54, 54]})
    prot = D.protect_table(df, ["n_top"], R)
    texts, used = D.guard_texts(
        [["a", "0.111", "54"], ["b", "0.5", "54"]], list(df.columns), prot, R
    )
    assert texts[0][1] == "*" and texts[1][1] == "0.5" and used == {"*"}


def test_shares_are_banded_where_they_stand_for_a_small_count():
    df = pd.DataFrame(
        {"list": ["model", "rule"], "precision": ["0.040 [0.010–0.090]", "0.230 [0.150–0.310]"]}
    )
    prot = D.protect_table(df, [], R, shares={"precision": 100})
    texts, _ = D.guard_texts(
        [["model", df.loc[0, "precision"]], ["rule", df.loc[1, "precision"]]],
        list(df.columns),
        prot,
        R,
    )
    assert texts[0][1] == "<0.1 [<0.1–<0.1]"
    assert texts[1][1] == "0.230 [0.150–0.310]"
    assert D.share_text(0.04, 100, R) == "<0.1" and D.share_text(0.23, 100, R) == "0.230"


# ------------------------------------------------------------------------------ text
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("相談 4 件", "相談 <10 件"),
        ("要支援 3〜4人", "要支援 <10人"),
        ("n = 5", "n = <10"),
        ("precision@100 0.04", "precision@100 <0.1"),
        ("5歳以下の子が2人以上", "5歳以下の子が2人以上"),  # a definition, not a count
        ("1〜9件は <10 と表示", "1〜9件は <10 と表示"),  # the rule itself
        ("上位100人中 12 人", "上位100人中 12 人"),
    ],
)
def test_text_figures_pass_through_disclosure(text, expected):
    assert D.protect_text(text, R) == expected
    assert not D.count_words(D.protect_text(text, R), 9)
    assert not D.derived_in_text(D.protect_text(text, R), 9)


# ---------------------------------------------------------------------------- charts
def test_precision_curve_starts_where_hits_reach_ten():
    curve = pd.DataFrame({"k": [10, 20, 30, 40], "precision": [0.4, 0.35, 0.4, 0.3]})
    out = D.precision_curve_from(curve, R)
    assert out["k"].tolist() == [30, 40]  # 4 and 7 hits dropped; 12 and 12 kept


def test_pr_curve_starts_after_ten_true_cases():
    rng = np.random.default_rng(0)
    y = (rng.random(400) < 0.1).astype(float)
    s = y + rng.random(400)
    precision, recall = D.pr_curve_from(y, s, R)
    assert len(precision) and (recall * y.sum()).min() >= 10 - 1e-9
    assert precision.max() <= 1.0
    visible, small = D.visible_counts([0, 3, 25], R)
    assert visible.tolist() == [0, 10, 25] and small.tolist() == [False, True, False]


def test_undeclared_figures_are_hidden_in_rows_and_groups_with_a_hidden_count():
    # a ratio to the reference group, not declared: it may be made from any count of its group
    df = pd.DataFrame(
        {
            "group": ["female", "male", "foreign", "japanese"],
            "attribute": ["sex", "sex", "nationality", "nationality"],
            "n": [3472, 3629, 160, 6941],
            "selected": [49, 51, 7, 93],
            "selection_ratio": [1.004, 1.0, 3.265, 1.0],
        }
    )
    prot = D.protect_table(df, ["n", "selected"], R)
    assert prot.meta["partition"] == ["n", "selected"]
    texts = [[str(v) for v in row] for row in df.itertuples(index=False)]
    shown, _ = D.guard_texts(texts, list(df.columns), prot, R)
    hidden = prot.status.isin([D.PRIMARY, D.SECONDARY]).any(axis=1)
    for group in ("sex", "nationality"):
        rows = [i for i in range(4) if df["attribute"][i] == group]
        expect = hidden[rows].any()
        assert all((shown[i][4] == "*") == expect for i in rows), (group, shown)
    assert shown[2][4] == "*"  # foreign's own counts are hidden


def test_text_with_figures_is_hidden_beside_a_hidden_count_but_the_row_name_is_kept():
    df = pd.DataFrame(
        {
            "group": ["0.0", "1.0"],
            "positives": [3, 40],
            "child_years": [50, 900],
            "path": ["0.22 → 3.33", "0.50 → 1.10"],
        }
    )
    prot = D.protect_table(df, ["positives", "child_years"], R)
    texts = [[str(v) for v in row] for row in prot.frame.itertuples(index=False)]
    shown, _ = D.guard_texts(texts, list(df.columns), prot, R)
    assert [row[0] for row in shown] == ["0.0", "1.0"]  # names, not figures
    assert shown[0][3] == "*" and shown[1][3] == "0.50 → 1.10"
