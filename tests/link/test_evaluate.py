"""The true-link mart (synthetic truth) and the agreement of two panels' code-less features."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from helpers import MimamoriError
from helpers.ingest.masking import pseudonym
from helpers.link.evaluate import feature_agreement, true_link_table

KEY = b"k" * 32


def ps(code: str) -> str:
    return pseudonym(code, KEY, "resident")


def setup():
    # three exported rows: row 2 linked right, row 3 linked to the wrong child, row 4 unmatched
    # (its person 103 is in the registry), row 5 a child not in the registry
    km = pd.DataFrame(
        {
            "table": "t",
            "file": "f.csv",
            "source_row": [2, 3, 4, 5],
            "resident_code": ["101", "999", None, None],
            "decision": ["auto", "auto", "unmatched", "unmatched"],
        }
    )
    mart = pd.DataFrame(
        {
            "resident_code": pd.array([ps("101"), ps("999"), None, None], dtype="string"),
            "link_decision": pd.array(["auto", "auto", "unmatched", "unmatched"], dtype="string"),
            "link_reason": pd.array(
                [None, None, "below_threshold", "no_candidate"], dtype="string"
            ),
            "candidate_code": pd.array([None, None, ps("103"), None], dtype="string"),
            "nurse_visits": pd.array([1, 2, 3, 4], dtype="Int64"),
        }
    )
    truth = pd.DataFrame(
        {
            "table": "t",
            "file": "f.csv",
            "source_row": [2, 3, 4, 5],
            "resident_code": ["101", "102", "103", None],
        }
    )
    registry = pd.Index([ps(c) for c in ("101", "102", "103", "999")])
    return mart, km, truth, registry


def test_true_link_table_carries_the_true_pseudonyms():
    mart, km, truth, registry = setup()
    out = true_link_table(mart, km, truth, registry, KEY, "t")
    assert out["resident_code"].tolist()[:3] == [ps("101"), ps("102"), ps("103")]
    assert pd.isna(out["resident_code"].iat[3])
    assert out["link_decision"].tolist() == ["auto", "auto", "auto", "unmatched"]
    assert out["link_reason"].iat[3] == "not_in_registry" and out["candidate_code"].isna().all()
    assert out["nurse_visits"].tolist() == [1, 2, 3, 4] and out.dtypes.equals(mart.dtypes)


def test_true_link_table_refuses_a_key_master_of_another_run():
    mart, km, truth, registry = setup()
    with pytest.raises(MimamoriError, match="key master has 3 rows"):
        true_link_table(mart, km.iloc[:3], truth, registry, KEY, "t")
    km.loc[1, "resident_code"] = "101"
    with pytest.raises(MimamoriError, match="mart row 1"):
        true_link_table(mart, km, truth, registry, KEY, "t")


def test_true_link_table_unmatched_when_the_true_person_is_not_in_the_mart():
    mart, km, truth, registry = setup()
    out = true_link_table(mart, km, truth, registry.drop(ps("102")), KEY, "t")
    assert pd.isna(out["resident_code"].iat[1]) and out["link_decision"].iat[1] == "unmatched"


def test_feature_agreement_counts_child_years_with_every_column_equal():
    a = pd.DataFrame(
        {
            "child_id": ["a", "b", "c", "d"],
            "fiscal_year": 2020,
            "x": [1.0, np.nan, 2.0, np.nan],
            "y": [0.0, 0.0, 1.0, 1.0],
        }
    )
    b = a.copy()
    b.loc[2, "x"] = 3.0  # differs
    b.loc[3, "x"] = 5.0  # linked unknown, truth known
    res = feature_agreement(a, b, ["x", "y"])
    assert res["child_years"] == 4 and res["equal"] == 2 and res["share_equal"] == 0.5
    assert res["differ_with_linked_unknown"] == 1
    assert res["per_feature"] == {"x": 0.5, "y": 1.0}
    extra = pd.concat([b, b.iloc[[0]].assign(child_id="e")], ignore_index=True)
    assert feature_agreement(a, extra, ["x", "y"])["child_years_in_one_panel_only"] == 1
