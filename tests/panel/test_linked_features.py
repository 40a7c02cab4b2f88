"""Panel features from the code-less sources (名寄せ): school_guidance and learning_support.

Built on the panel tests' fixture mart with the two tables added; every expected value is
worked out by hand from the records below.
"""

from __future__ import annotations

import numpy as np
import pytest

from helpers.panel import features as F
from helpers.panel import stage as P
from tests.panel.test_panel import FY, fixture_cfg, frame, make_fixture_mart, pid


def sg(who, fy, school="E01", nurse=0, guidance=0, decision="auto", cand=None):
    return {
        "resident_code": pid(who) if who else None,
        "link_decision": decision,
        "link_reason": None if who else "below_threshold",
        "candidate_code": pid(cand) if cand else None,
        "sex": "male",
        "school_code": school,
        "grade": 3,
        "fiscal_year": fy,
        "nurse_visits": nurse,
        "guidance_count": guidance,
    }


def ls(who, start, end=None, cand=None):
    return {
        "resident_code": pid(who) if who else None,
        "link_decision": "auto" if who else "unmatched",
        "link_reason": None if who else "below_threshold",
        "candidate_code": pid(cand) if cand else None,
        "sex": "female",
        "start_date": start,
        "end_date": end,
    }


def with_linked(mart: dict) -> dict:
    out = dict(mart)
    out["school_guidance"] = frame(
        "school_guidance",
        [
            sg("c1", 2021, nurse=4, guidance=1),
            sg("c1", 2021, nurse=4, guidance=1),  # a duplicate record: counts once
            sg("c1", 2020, nurse=2),  # c1 not in the 2020 register: still known
            sg("c2", 2021, nurse=7),
            sg(None, 2021, nurse=9, decision="unmatched", cand="c2"),  # might be c2's: unknown
            sg("c1", 2022, nurse=30),  # FY2022 itself: not before the as-of date
            # c6 is in the 2021 register (J01) with no linked record: unknown, not 0
        ],
    )
    out["learning_support"] = frame(
        "learning_support",
        [
            ls("c6", "2021-06-01"),  # taking part on 1 April 2022
            ls("c11", "2019-05-01", "2020-12-01"),  # ended before FY2021
            ls(None, "2021-09-01", cand="c2"),  # unmatched, c2 its best candidate
            ls("c1", "2022-05-01"),  # starts after the as-of date
        ],
    )
    return out


@pytest.fixture(scope="module")
def year():
    return P.build_year(with_linked(make_fixture_mart()), FY, fixture_cfg()).set_index("child_id")


def test_school_guidance_counts_by_hand(year):
    c1 = year.loc[pid("c1")]
    assert c1["sg_nurse_visits_1fy"] == 4 and c1["sg_guidance_1fy"] == 1  # duplicate once
    assert c1["sg_nurse_visits_3fy"] == 6 and c1["sg_nurse_visits_ever"] == 6  # FY2022 ignored


def test_school_guidance_unknown_is_nan_not_zero(year):
    # c2's year has a record that might be theirs; c6 is in the register with no linked record
    for who in ("c2", "c6"):
        assert np.isnan(year.loc[pid(who), "sg_nurse_visits_1fy"]), who
        assert np.isnan(year.loc[pid(who), "sg_nurse_visits_ever"]), who
    # c9 (a newborn) was in no school: not applicable
    assert np.isnan(year.loc[pid("c9"), "sg_nurse_visits_ever"])


def test_learning_support_by_hand(year):
    assert year.loc[pid("c6"), "ls_enrolled"] == 1 and year.loc[pid("c6"), "ls_1fy"] == 1
    c11 = year.loc[pid("c11")]
    assert c11["ls_enrolled"] == 0 and c11["ls_1fy"] == 0 and c11["ls_3fy"] == 1
    assert year.loc[pid("c1"), "ls_enrolled"] == 0  # its record starts after the as-of date
    # c2 is the candidate of an unmatched record: unknown, not 0
    assert np.isnan(year.loc[pid("c2"), "ls_enrolled"]) and np.isnan(year.loc[pid("c2"), "ls_1fy"])
    # c5 moved in during the window: no zero claimed for the years before the move-in
    assert np.isnan(year.loc[pid("c5"), "ls_3fy"])


def test_absent_code_less_sources_give_nan():
    panel = P.build_year(make_fixture_mart(), FY, fixture_cfg())
    cols = [s.name for s in F.linked_source_specs(F.window_names(fixture_cfg().panel))]
    assert panel[cols].isna().all().all()


def test_registry_lists_the_code_less_features():
    cat = F.feature_catalogue(fixture_cfg()).set_index("name")
    assert cat.loc["sg_nurse_visits_1fy", "missing_treatment"] == "nan_unlinked"
    assert "learning_support" in cat.loc["ls_ever", "source_tables"]


def test_leakage_check_passes_with_the_code_less_sources():
    result = P.leakage_check(with_linked(make_fixture_mart()), fixture_cfg(), fiscal_year=FY)
    assert result["passed"], result
    assert result["records_removed_by_cut"]["school_guidance"] == 1
    assert result["records_removed_by_cut"]["learning_support"] == 1
