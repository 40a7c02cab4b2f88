"""The panel: spine, school age, households that change, deltas, labels and no leakage.

``make_fixture_mart`` builds a small mart that follows the contract in docs/architecture.md
("data/mart") exactly: every schema table, mart fields in schema order, masked dates on day 1
(1 April births on 1 March), 16-hex pseudonyms and nullable dtypes.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import MimamoriError
from helpers.config import load_config
from helpers.panel import features as F
from helpers.panel import stage as P
from helpers.paths import paths
from helpers.schema import load_schemas

DTYPES = {
    "code": "string",
    "enum": "string",
    "string": "string",
    "text": "string",
    "date": "datetime64[ns]",
    "int": "Int64",
    "float": "float64",
    "bool": "boolean",
}
FY = 2022
ON = pd.Timestamp("2022-04-01")


def pid(name: str) -> str:
    """A 16-hex pseudonym that is readable in the test (hash of the name)."""
    import hashlib

    return hashlib.sha256(name.encode()).hexdigest()[:16]


def frame(table: str, rows: list[dict]) -> pd.DataFrame:
    """A mart table: the schema's mart fields in order, with the contract's dtypes."""
    schema = load_schemas()[table]
    cols = {}
    for f in schema.mart_fields:
        values = [r.get(f.name) for r in rows]
        if f.type == "date":
            cols[f.name] = pd.to_datetime(pd.Series(values, dtype="object"))
        else:
            cols[f.name] = pd.Series(values, dtype="object").astype(DTYPES[f.type])
        if f.masking in ("hmac",) and rows:
            vals = cols[f.name].dropna()
            assert vals.str.fullmatch(r"[0-9a-f]{16}").all(), (table, f.name)
        if f.type == "date":
            dates = cols[f.name].dropna()
            assert (dates.dt.day == 1).all(), (table, f.name, "dates are masked to day 1")
    return pd.DataFrame(cols, columns=[f.name for f in schema.mart_fields])


def person(
    name,
    birth,
    sex="female",
    nationality="japanese",
    move_in=None,
    move_out=None,
    death=None,
    district="A1",
):
    return {
        "resident_code": pid(name),
        "birth_date": birth,
        "sex": sex,
        "nationality": nationality,
        "school_district": district,
        "move_in_date": move_in,
        "move_out_date": move_out,
        "death_date": death,
    }


def make_fixture_mart() -> dict[str, pd.DataFrame]:
    """Three households and a few loose children; see the comments for what each tests."""
    residents = [
        # H1: single mother, grandmother 82 with care need, four children, public assistance
        person("mother1", "1985-05-01"),
        person("grandma1", "1940-01-01"),
        person("c1", "2012-04-01", sex="male"),  # born 2-30 April 2012 -> cohort 2012
        person("c2", "2013-03-01"),  # born March 2013 or 1 April 2013 -> cohort 2012
        person("c3", "2020-06-01"),
        person("c4", "2018-05-01"),
        # H2: foreign father and son who moved in mid-window (Sept 2021)
        person("father2", "1980-02-01", sex="male", nationality="foreign", move_in="2021-09-01"),
        person("c5", "2010-08-01", sex="male", nationality="foreign", move_in="2021-09-01"),
        # H3: father leaves in October 2021 -> single parent from FY2022
        person("father3", "1978-07-01", sex="male"),
        person("mother3", "1981-11-01"),
        person("c6", "2009-10-01"),
        # loose children
        person("c7", "2011-01-01", move_out="2022-03-01"),  # left in March 2022
        person("c8", "2006-03-01"),  # 16 on 1 April 2022
        person("c9", "2022-03-01"),  # newborn, age 0
        person("c10", "2022-04-01"),  # born April 2022: not yet
        person("c11", "2012-03-01"),  # cohort 2011
    ]
    hh = []

    def span(name, hcode, rel, start, end=None):
        hh.append(
            {
                "resident_code": pid(name),
                "household_code": pid(hcode),
                "relationship": rel,
                "start_date": start,
                "end_date": end,
            }
        )

    span("mother1", "H1", "head", "2005-01-01")
    span("grandma1", "H1", "parent", "2005-01-01")
    for c, b in (
        ("c1", "2012-04-01"),
        ("c2", "2013-03-01"),
        ("c3", "2020-06-01"),
        ("c4", "2018-05-01"),
    ):
        span(c, "H1", "child", b)
    span("father2", "H2", "head", "2021-09-01")
    span("c5", "H2", "child", "2021-09-01")
    span("father3", "H3", "head", "2005-01-01", "2021-10-01")
    span("mother3", "H3", "spouse", "2005-01-01", "2021-10-01")
    span("mother3", "H3", "head", "2021-10-01")
    span("c6", "H3", "child", "2009-10-01")
    span("father3", "H4", "head", "2021-10-01")
    for c, b in (
        ("c7", "2011-01-01"),
        ("c8", "2006-03-01"),
        ("c9", "2022-03-01"),
        ("c10", "2022-04-01"),
        ("c11", "2012-03-01"),
    ):
        span(c, f"H_{c}", "head" if c == "c8" else "child", b)

    consultations = [
        # the earliest consultation: the system's records reach back to 2006
        {
            "consultation_id": pid("k0"),
            "resident_code": pid("c8"),
            "received_date": "2006-06-01",
            "consultation_type": "other",
            "referral_route": None,
            "agencies": None,
            "young_carer_determined": None,
        },
        {
            "consultation_id": pid("k1"),
            "resident_code": pid("c1"),
            "received_date": "2021-05-01",
            "consultation_type": "physical_abuse",
            "referral_route": "school",
            "agencies": None,
            "young_carer_determined": False,
        },
        {
            "consultation_id": pid("k2"),
            "resident_code": pid("c6"),
            "received_date": "2022-07-01",
            "consultation_type": "young_carer",
            "referral_route": "school",
            "agencies": None,
            "young_carer_determined": True,
        },
        {
            "consultation_id": pid("k3"),
            "resident_code": pid("c2"),
            "received_date": "2019-06-01",
            "consultation_type": "parenting",
            "referral_route": None,
            "agencies": None,
            "young_carer_determined": None,
        },
        {
            "consultation_id": pid("k4"),
            "resident_code": pid("c11"),
            "received_date": "2022-04-01",
            "consultation_type": "physical_abuse",
            "referral_route": "police",
            "agencies": None,
            "young_carer_determined": None,
        },
    ]
    return {
        "residents": frame("residents", residents),
        "household_history": frame("household_history", hh),
        "consultations": frame("consultations", consultations),
        "progress_records": frame(
            "progress_records",
            [
                {
                    "consultation_id": pid("k1"),
                    "resident_code": pid("c1"),
                    "record_date": "2021-06-01",
                    "assessment": "poor",
                }
            ],
        ),
        "case_conference": frame(
            "case_conference",
            [
                {
                    "resident_code": pid("c1"),
                    "registered_date": "2021-08-01",
                    "level": "support",
                    "closed_date": None,
                }
            ],
        ),
        "public_assistance": frame(
            "public_assistance",
            [{"household_code": pid("H1"), "start_date": "2021-06-01", "end_date": None}],
        ),
        "long_term_care": frame(
            "long_term_care",
            [
                {
                    "resident_code": pid("grandma1"),
                    "care_level": "care_2",
                    "certified_date": "2019-01-01",
                    "loss_date": None,
                }
            ],
        ),
        "disability_handbooks": frame(
            "disability_handbooks",
            [
                {
                    "resident_code": pid("grandma1"),
                    "handbook_type": "physical",
                    "grade": "2",
                    "issue_date": "2018-01-01",
                    "end_date": None,
                }
            ],
        ),
        "independence_support": frame(
            "independence_support",
            [
                {
                    "resident_code": pid("mother1"),
                    "kind": "mental_outpatient",
                    "start_date": "2020-01-01",
                    "end_date": None,
                }
            ],
        ),
        "allowances": frame(
            "allowances",
            [
                {
                    "resident_code": pid("mother1"),
                    "allowance_type": "child_rearing",
                    "start_date": "2015-01-01",
                    "end_date": None,
                    "monthly_amount": 43000,
                }
            ],
        ),
        "nursery_enrolment": frame(
            "nursery_enrolment",
            [
                {
                    "resident_code": pid("c4"),
                    "facility_type": "nursery",
                    "start_date": "2021-04-01",
                    "end_date": None,
                },
                {
                    "resident_code": pid("c8"),
                    "facility_type": "kindergarten",
                    "start_date": "2009-04-01",
                    "end_date": "2012-03-01",
                },
            ],
        ),
        "school_register": frame(
            "school_register",
            [
                {
                    "resident_code": pid("c1"),
                    "fiscal_year": 2021,
                    "student_id": pid("s1"),
                    "school_code": "E01",
                    "grade": 3,
                    "special_needs_class": None,
                },
                {
                    "resident_code": pid("c2"),
                    "fiscal_year": 2021,
                    "student_id": pid("s2"),
                    "school_code": "E01",
                    "grade": 3,
                    "special_needs_class": True,
                },
                {
                    "resident_code": pid("c1"),
                    "fiscal_year": 2022,
                    "student_id": pid("s1"),
                    "school_code": "E01",
                    "grade": 4,
                    "special_needs_class": None,
                },
                {
                    "resident_code": pid("c6"),
                    "fiscal_year": 2021,
                    "student_id": pid("s6"),
                    "school_code": "J01",
                    "grade": 6,
                    "special_needs_class": False,
                },
            ],
        ),
        "school_attendance": frame(
            "school_attendance",
            [
                {
                    "student_id": pid("s1"),
                    "resident_code": None,
                    "school_code": "E01",
                    "fiscal_year": 2021,
                    "absence_days": 35,
                },
                {
                    "student_id": pid("s6"),
                    "resident_code": None,
                    "school_code": "J01",
                    "fiscal_year": 2021,
                    "absence_days": None,
                },
            ],
        ),
        "school_aid": frame(
            "school_aid",
            [
                {
                    "resident_code": pid("c6"),
                    "fiscal_year": 2021,
                    "aid_type": "quasi_protected",
                    "approved_date": "2021-05-01",
                }
            ],
        ),
        "health_checkups": frame(
            "health_checkups",
            [
                {
                    "resident_code": pid("c1"),
                    "checkup_type": "y3",
                    "checkup_date": "2015-05-01",
                    "weight_kg": 15.5,
                    "height_cm": 95.0,
                    "q_cooperation": True,
                    "q_difficulty": False,
                    "q_mother_cigarettes": 3,
                    "result": "observe",
                }
            ],
        ),
        "birth_status": frame(
            "birth_status",
            [
                {
                    "resident_code": pid("c1"),
                    "birth_weight_g": 2300,
                    "head_circumference_cm": 32.0,
                    "gestational_weeks": 37,
                    "multiple_birth": False,
                }
            ],
        ),
        "vaccinations": frame(
            "vaccinations",
            [
                {
                    "resident_code": pid("c1"),
                    "vaccine": "mr",
                    "dose": 1,
                    "vaccination_date": "2013-05-01",
                }
            ],
        ),
    }


def fixture_cfg(years=(2020, 2021, 2022)) -> dict:
    # the fixture's exports were taken at the end of FY2022 (its last records are sparse),
    # and its one-record checkup export covers every checkup since 2005
    return load_config(
        overrides={
            "run": {"fiscal_years": list(years), "export_date": "2023-03-31"},
            "panel": {"source_start": {"health_checkups": "2005-04-01"}},
        }
    )


@pytest.fixture(scope="module")
def mart():
    return make_fixture_mart()


@pytest.fixture(scope="module")
def panel(mart):
    pnl, _ = P.build_panel(mart, fixture_cfg())
    return pnl


def row(panel, name, fy=FY) -> pd.Series:
    sel = panel[(panel["child_id"] == pid(name)) & (panel["fiscal_year"] == fy)]
    assert len(sel) == 1, f"{name} FY{fy}: {len(sel)} rows"
    return sel.iloc[0]


def test_fixture_mart_follows_the_contract(mart):
    schemas = load_schemas()
    assert set(mart) <= set(schemas)  # a schema table not in the fixture is an absent source
    for t, df in mart.items():
        assert list(df.columns) == [f.name for f in schemas[t].mart_fields]
        P.check_mart_table(df, t)


def test_spine_counts_residents_in_age_range_per_year(panel):
    def expected(fy):
        on = pd.Timestamp(fy, 4, 1)
        res = make_fixture_mart()["residents"]
        n = 0
        for r in res.itertuples():
            here = r.birth_date < on and (pd.isna(r.move_in_date) or r.move_in_date < on)
            here &= pd.isna(r.move_out_date) or r.move_out_date >= on
            b = r.birth_date
            age = fy - b.year - (1 if b.month >= 4 else 0)
            n += bool(here and 0 <= age <= 15)
        return n

    counts = panel.groupby("fiscal_year").size()
    for fy in (2020, 2021, 2022):
        assert counts[fy] == expected(fy)
    fy22 = set(panel.loc[panel["fiscal_year"] == FY, "child_id"])
    assert pid("c7") not in fy22  # moved out in March 2022
    assert pid("c8") not in fy22  # aged 16
    assert pid("c10") not in fy22  # born April 2022
    assert pid("c9") in fy22 and pid("c5") in fy22
    assert not panel.duplicated(["child_id", "fiscal_year"]).any()


def test_school_age_follows_the_april_cohort_with_masked_birthdays():
    # 2 April 2012 -> masked 2012-04-01 -> cohort 2012; 1 April 2013 -> masked 2013-03-01 ->
    # cohort 2012 too; 1 April 2012 -> masked 2012-03-01 -> cohort 2011 (one grade higher)
    births = pd.Series(pd.to_datetime(["2012-04-01", "2013-03-01", "2012-03-01", "2016-04-01"]))
    assert F.school_age_on(births, 2022).tolist() == [9.0, 9.0, 10.0, 5.0]
    assert F.age_on(births, ON).tolist() == [9.0, 9.0, 10.0, 5.0]
    # on a mid-year date age and school age part: on 1 Oct 2022 the April 2012 child is 10
    assert F.age_on(births, pd.Timestamp("2022-10-01")).tolist()[0] == 10.0


def test_grade_and_school_age_in_the_panel(panel):
    c1, c2, c11 = row(panel, "c1"), row(panel, "c2"), row(panel, "c11")
    assert c1["school_age"] == c2["school_age"] == 9 and c1["grade"] == c2["grade"] == 4
    assert c11["grade"] == 5
    assert np.isnan(row(panel, "c9")["grade"])


def test_young_carer_items_by_hand(panel):
    c1 = row(panel, "c1")
    expected = {
        "yc_indep_support_ever": 1,  # mother has 精神通院 since 2020
        "yc_member_75plus": 1,  # grandmother 82
        "yc_member_care_need": 1,  # care_2
        "yc_member_disability_handbook": 1,  # grandmother physical handbook
        "yc_foreign_member": 0,
        "yc_two_plus_under6": 1,  # c3 (1) and c4 (3)
        "yc_public_assistance": 1,  # since June 2021
        "yc_child_rearing_allowance": 1,  # mother receives 児童扶養手当
        "yc_school_aid": 0,
        "yc_no_nursery": 1,  # born here, never enrolled
        "yc_member_indep_support": 1,
        "yc_sibling_special_needs": 1,  # c2 in a special-needs class in FY2021
    }
    for item, value in expected.items():
        assert c1[item] == value, item
    assert c1["yc_rule_score"] == 10 and c1["yc_items_unknown"] == 0
    # c2 is the sibling in the special class; her own class does not count for her
    assert row(panel, "c2")["yc_sibling_special_needs"] == 0
    # c4 attends a nursery
    assert row(panel, "c4")["yc_no_nursery"] == 0
    c5 = row(panel, "c5")
    assert c5["yc_foreign_member"] == 1  # father is foreign (child excluded, but father counts)
    assert np.isnan(c5["yc_no_nursery"])  # arrived aged 11: preschool years elsewhere
    # moved in during FY2021: the household's FY2021 school aid and special-needs class and
    # its 自立支援医療 history before the move are held elsewhere: unknown, not 0
    for item in ("yc_school_aid", "yc_sibling_special_needs", "yc_indep_support_ever"):
        assert np.isnan(c5[item]), item
    assert c5["yc_items_unknown"] == 4
    c6 = row(panel, "c6")
    assert c6["yc_school_aid"] == 1 and c6["hh_single_parent"] == 1


def test_household_that_changes_mid_year(panel):
    before, after = row(panel, "c6", 2021), row(panel, "c6", 2022)
    assert before["hh_size"] == 3 and before["hh_parent_count"] == 2
    assert before["hh_single_parent"] == 0
    assert after["hh_size"] == 2 and after["hh_parent_count"] == 1
    assert after["delta_hh_size"] == -1 and after["delta_became_single_parent"] == 1
    assert after["delta_household_changed"] == 0
    assert row(panel, "c1")["delta_new_public_assistance"] == 1
    assert row(panel, "c1", 2021)["delta_new_public_assistance"] == 0


def test_in_mover_deltas_and_incomplete_history(panel):
    c5 = row(panel, "c5")
    assert c5["history_incomplete"] == 1 and c5["months_since_move_in"] == 7
    assert c5["delta_moved_in_last_fy"] == 1
    for col in (
        "delta_hh_size",
        "delta_new_public_assistance",
        "delta_became_single_parent",
        "delta_household_changed",
    ):
        assert np.isnan(c5[col]), col
    # nothing recorded here, window not fully observed: unknown, not zero
    assert np.isnan(c5["cons_any_1fy"]) and np.isnan(c5["cons_any_ever"])
    assert c5["hh_size"] == 2 and c5["hh_public_assistance"] == 0
    # born here: zeros are real zeros
    assert row(panel, "c4")["cons_any_ever"] == 0
    assert row(panel, "c1")["delta_moved_in_last_fy"] == 0


def test_child_features_by_hand(panel):
    c1 = row(panel, "c1")
    assert c1["cons_physical_abuse_1fy"] == 1 and c1["cons_physical_abuse_ever"] == 1
    assert c1["cons_physical_abuse_months_since"] == 11
    assert c1["progress_poor_1fy"] == 1
    assert c1["child_absence_days_last_fy"] == 35 and c1["child_absence_30plus_last_fy"] == 1
    assert c1["chk_y3_weight_kg"] == 15.5 and c1["chk_y3_q_mother_cigarettes"] == 3
    assert c1["chk_y3_result"] == 1 and c1["chk_y3_missed"] == 0
    assert c1["chk_y1m6_missed"] == 1 and c1["chk_m1_missed"] == 1
    assert c1["birth_low_weight"] == 1 and c1["vacc_doses"] == 1
    assert c1["child_special_needs_last_fy"] == 0  # blank = no (schema missing: none)
    assert row(panel, "c2")["child_special_needs_last_fy"] == 1
    assert np.isnan(row(panel, "c6")["child_absence_days_last_fy"])  # blank = not reported
    assert np.isnan(row(panel, "c9")["chk_m1_missed"])  # not yet due
    assert row(panel, "c1")["hh_care_level_max"] == 4


def test_labels_and_known_by_hand(panel):
    c1_21, c1_22 = row(panel, "c1", 2021), row(panel, "c1", 2022)
    assert c1_21["label_physical_abuse"] == 1 and c1_21["known_physical_abuse"] == 0
    assert c1_22["label_physical_abuse"] == 0 and c1_22["known_physical_abuse"] == 1
    assert c1_22["known_case_conference"] == 1 and c1_21["known_case_conference"] == 0
    c6 = row(panel, "c6")
    assert c6["label_young_carer"] == 1 and c6["known_young_carer"] == 0
    # recorded in April 2022 (masked): on/after the as-of date -> label, not known
    c11 = row(panel, "c11")
    assert c11["label_physical_abuse"] == 1 and c11["known_physical_abuse"] == 0
    assert c11["cons_physical_abuse_ever"] == 0


def test_zero_is_unknown_before_the_source_system_starts(mart):
    # the consultation system only holds records from June 2019: earlier windows are unseen
    late = dict(mart)
    cons = mart["consultations"]
    late["consultations"] = cons[cons["received_date"] >= "2019-06-01"].reset_index(drop=True)
    y = P.build_year(late, FY, fixture_cfg()).set_index("child_id")
    assert np.isnan(y.loc[pid("c4"), "cons_any_ever"])  # born 2018: partly before coverage
    assert y.loc[pid("c4"), "cons_any_1fy"] == 0  # last FY fully covered
    assert np.isnan(y.loc[pid("c4"), "cons_any_3fy"])  # window from April 2019
    assert y.loc[pid("c9"), "cons_any_ever"] == 0  # born 2022, after coverage began
    # yearly tables: FY2020 has no register for FY2019, so sibling items are unknown
    y20 = P.build_year(mart, 2020, fixture_cfg()).set_index("child_id")
    assert np.isnan(y20.loc[pid("c1"), "yc_sibling_special_needs"])
    assert np.isnan(y20.loc[pid("c1"), "yc_school_aid"])


def test_attendance_links_only_through_earlier_register_rows(mart):
    # a student whose only register row is for FY2022 (on/after the as-of date) cannot be
    # linked to last year's attendance without looking into the future
    m = dict(mart)
    m["school_register"] = pd.concat(
        [
            mart["school_register"],
            frame(
                "school_register",
                [
                    {
                        "resident_code": pid("c11"),
                        "fiscal_year": 2022,
                        "student_id": pid("s11"),
                        "school_code": "E01",
                        "grade": 5,
                    }
                ],
            ),
        ],
        ignore_index=True,
    )
    m["school_attendance"] = pd.concat(
        [
            mart["school_attendance"],
            frame(
                "school_attendance",
                [
                    {
                        "student_id": pid("s11"),
                        "school_code": "E01",
                        "fiscal_year": 2021,
                        "absence_days": 40,
                    }
                ],
            ),
        ],
        ignore_index=True,
    )
    y = P.build_year(m, FY, fixture_cfg()).set_index("child_id")
    assert np.isnan(y.loc[pid("c11"), "child_absence_days_last_fy"])
    assert y.loc[pid("c1"), "child_absence_days_last_fy"] == 35


def test_label_is_nan_when_the_window_runs_past_the_data(mart):
    cfg = fixture_cfg((2021, 2022))
    cfg = cfg.with_overrides({"panel": {"outcome_window_years": 2}})
    pnl, _ = P.build_panel(mart, cfg)
    assert pnl.loc[pnl["fiscal_year"] == 2022, "label_physical_abuse"].isna().all()
    assert pnl.loc[pnl["fiscal_year"] == 2021, "label_physical_abuse"].notna().all()


def test_post_outcome_table_never_feeds_a_feature(mart, panel):
    cat = F.feature_catalogue(fixture_cfg())
    feats = cat[cat["role"] == "feature"]
    assert not feats["source_tables"].str.contains("case_conference").any()
    # many registrations before the as-of date change no feature
    m2 = dict(mart)
    m2["case_conference"] = frame(
        "case_conference",
        [
            {"resident_code": pid(c), "registered_date": "2020-01-01", "level": "protection"}
            for c in ("c2", "c3", "c4", "c5", "c6", "c9", "c11")
        ],
    )
    a = P.build_year(mart, FY, fixture_cfg())
    b = P.build_year(m2, FY, fixture_cfg())
    cols = feats["name"].tolist()
    pd.testing.assert_frame_equal(a[cols], b[cols])
    assert (b["known_case_conference"] == 1).sum() > (a["known_case_conference"] == 1).sum()


def test_post_outcome_exclusion_is_generic(mart, monkeypatch):
    schemas = load_schemas()
    import dataclasses

    fake = dict(schemas)
    fake["nursery_enrolment"] = dataclasses.replace(
        schemas["nursery_enrolment"], role="post_outcome"
    )
    assert "nursery_enrolment" not in P.predictor_tables(mart, fake)
    with pytest.raises(MimamoriError, match="post-outcome"):
        F.check_registry_roles(F.feature_registry(fixture_cfg()), fake)


DATED_TABLES = {  # table -> (resident/household key field, a date field or fiscal_year)
    "consultations": "received_date",
    "progress_records": "record_date",
    "health_checkups": "checkup_date",
    "vaccinations": "vaccination_date",
    "disability_handbooks": "issue_date",
    "independence_support": "start_date",
    "allowances": "start_date",
    "nursery_enrolment": "start_date",
    "long_term_care": "certified_date",
    "public_assistance": "start_date",
    "household_history": "start_date",
    "school_register": "fiscal_year",
    "school_attendance": "fiscal_year",
    "school_aid": "fiscal_year",
    "case_conference": "registered_date",
    "birth_status": None,
}
PEOPLE = [
    "c1",
    "c2",
    "c3",
    "c4",
    "c5",
    "c6",
    "c9",
    "c11",
    "mother1",
    "grandma1",
    "father2",
    "mother3",
    "father3",
]


def late_record(table: str, who: str, when: pd.Timestamp, serial: int) -> dict:
    """A plausible record for ``who`` dated ``when`` (on or after the as-of date)."""
    schema = load_schemas()[table]
    rec: dict = {}
    for f in schema.mart_fields:
        if f.type == "enum":
            rec[f.name] = f.values[serial % len(f.values)].code
        elif f.type == "bool":
            rec[f.name] = True
        elif f.type == "int":
            rec[f.name] = int(f.min if f.min is not None else 1) + 1
        elif f.type == "float":
            rec[f.name] = float(f.max if f.max is not None else 1.0)
        elif f.type == "date":
            rec[f.name] = when if f.required else None
        elif f.type in ("code", "string"):
            rec[f.name] = pid(f"late{serial}{f.name}") if f.masking == "hmac" else "Z9"
    if "resident_code" in rec:
        rec["resident_code"] = pid(who)
    if table == "public_assistance":
        rec["household_code"] = pid("H1")
    if table == "household_history":
        rec["household_code"] = pid("H1")
        rec["relationship"] = "grandparent"
    if "fiscal_year" in rec:
        rec["fiscal_year"] = int(when.year)
    if table == "school_attendance":
        rec["student_id"] = pid("s1")
    return rec


@pytest.fixture(scope="module")
def base_year(mart):
    return P.build_year(mart, FY, fixture_cfg()).set_index("child_id")


LATE = st.tuples(
    st.sampled_from([t for t, d in DATED_TABLES.items() if d]),
    st.sampled_from(PEOPLE),
    st.integers(min_value=0, max_value=60),
    st.integers(min_value=0, max_value=50),
)


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(records=st.lists(LATE, min_size=1, max_size=5))
def test_records_on_or_after_the_as_of_date_change_no_feature(records, mart, base_year):
    cfg = fixture_cfg()
    grown = dict(mart)
    for table, who, months_after, serial in records:
        when = ON + pd.DateOffset(months=months_after)
        rec = late_record(table, who, when, serial)
        candidate = pd.concat([grown[table], frame(table, [rec])], ignore_index=True)
        if not candidate.duplicated(list(load_schemas()[table].primary_key)).any():
            grown[table] = candidate
    after = P.build_year(grown, FY, cfg).set_index("child_id")
    feats = F.feature_catalogue(cfg).query("role == 'feature'")["name"].tolist()
    assert base_year.index.equals(after.index)
    pd.testing.assert_frame_equal(base_year[feats], after[feats])


def test_a_record_before_the_as_of_date_does_change_features(mart):
    cfg = fixture_cfg()
    grown = dict(mart)
    grown["consultations"] = pd.concat(
        [
            mart["consultations"],
            frame(
                "consultations",
                [
                    {
                        "consultation_id": pid("early"),
                        "resident_code": pid("c4"),
                        "received_date": "2022-03-01",
                        "consultation_type": "neglect",
                    }
                ],
            ),
        ],
        ignore_index=True,
    )
    after = P.build_year(grown, FY, cfg).set_index("child_id")
    assert after.loc[pid("c4"), "cons_neglect_1fy"] == 1  # the property test has teeth


def test_leakage_check_passes_and_names_post_outcome_tables(mart):
    result = P.leakage_check(mart, fixture_cfg(), fiscal_year=2021)
    assert result["passed"], result
    assert result["post_outcome_tables"] == ["case_conference"]
    assert result["records_removed_by_cut"]["consultations"] >= 2


def test_load_mart_reports_missing_column(tmp_path, mart):
    for t, df in mart.items():
        df.to_parquet(tmp_path / f"{t}.parquet", index=False)
    loaded = P.load_mart(tmp_path)
    assert set(loaded) == set(load_schemas())  # absent sources come back empty
    assert all(loaded[t].empty for t in set(loaded) - set(mart))
    mart["vaccinations"].drop(columns=["dose"]).to_parquet(tmp_path / "vaccinations.parquet")
    with pytest.raises(MimamoriError, match=r"vaccinations.parquet.*dose"):
        P.load_mart(tmp_path)
    with pytest.raises(MimamoriError, match="not found"):
        P.load_mart(tmp_path / "nowhere")


def test_cli_writes_every_output_and_an_audit_line(tmp_path, mart, panel):
    mart_dir = tmp_path / "mart"
    mart_dir.mkdir()
    for t, df in mart.items():
        df.to_parquet(mart_dir / f"{t}.parquet", index=False)
    cfg = fixture_cfg()
    cfg = cfg.with_overrides({"run": {"data_dir": str(tmp_path)}})
    assert P.main(cfg, []) == 0
    out = paths(cfg)
    written = pd.read_parquet(out.panel)
    floats = [c for c in written.columns if written[c].dtype == "float64"]
    pd.testing.assert_frame_equal(written[floats], panel[floats].reset_index(drop=True))
    assert written["child_id"].tolist() == panel["child_id"].tolist()
    cat = pd.read_csv(out.feature_catalogue)
    assert cat["name"].tolist() == written.columns.tolist()
    miss = pd.read_csv(out.missingness)
    assert set(miss["fiscal_year"]) == {2020, 2021, 2022}
    assert miss["treatment"].notna().all()
    assert json.loads(out.leakage_check.read_text())["passed"]
    assert '"stage": "panel"' in out.audit_log.read_text()
