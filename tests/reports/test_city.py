"""Report 00 without the generator's truth: the city from the mart's residents and the panel."""

from __future__ import annotations

import numpy as np
import pandas as pd

from helpers.config import load_config
from helpers.paths import paths
from helpers.reports import city as C


def residents() -> pd.DataFrame:
    d = pd.to_datetime
    return pd.DataFrame(
        {
            "resident_code": ["a", "b", "c", "d"],
            "birth_date": d(["1980-05-01", "2015-06-01", "2020-01-01", "1950-01-01"]),
            "sex": pd.array(["female", "male", "female", "male"], dtype="string"),
            "move_in_date": d([None, None, None, "2021-06-01"]),
            "move_out_date": d([None, None, None, None]),
            "death_date": d([None, None, "2021-02-01", None]),
        }
    )


def panel() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "fiscal_year": [2020, 2020, 2020, 2021, 2021],
            "age": [4, 5, 10, 5, 11],
            "school_age": [4, 5, 10, 5, 11],
            "grade": [np.nan, np.nan, 4, np.nan, 5],
            "hh_parent_count": [2, 1, np.nan, 2, 3],
            "hh_single_parent": [0, 1, np.nan, 0, 0],
            "yc_no_nursery": [1, np.nan, np.nan, 0, np.nan],
            "label_young_carer": [np.nan, np.nan, 1, np.nan, np.nan],  # FY2021 window not complete
            "label_physical_abuse": [0, 0, 0, np.nan, np.nan],
        }
    )


def test_residents_on_1_april_of_each_year():
    pop = C.residents_by_year(residents(), [2020, 2021])
    assert pop.groupby("fiscal_year").size().to_dict() == {2020: 3, 2021: 2}  # c died, d came
    assert sorted(pop.loc[pop["fiscal_year"] == 2021, "age"]) == [5, 40]


def test_household_types_count_children_whose_parents_are_known():
    hh = C.household_types(panel()).set_index(["年度", "世帯類型（household type）"])
    assert hh.loc[(2020, C.PARENTS[2]), "児童数（children）"] == 1
    # the child with unknown parents is left out, not a small row every total gives away
    assert hh.loc[2020, "児童数（children）"].sum() == 2
    assert hh.loc[(2021, C.PARENTS[2]), "児童数（children）"] == 2  # three parents: two or more


def test_prevalence_counts_known_child_years_only():
    prev = C.panel_prevalence(panel()).set_index(["item", "年度"])
    single = prev.loc[("single_parent", 2020)]
    assert (single["該当（n）"], single["分母（denominator）"]) == (1, 2)  # the NaN is not a "no"
    nursery = prev.loc[("not_in_nursery", 2020)]
    assert (nursery["該当（n）"], nursery["分母（denominator）"]) == (1, 1)


def test_outcomes_count_only_completed_windows():
    cfg = load_config()
    out = C.panel_outcomes(panel(), cfg).set_index(["目的変数（outcome）", "年度"])
    yc = out.loc[(C.OUTCOMES[1][1], 2020)]
    assert (yc["件数（events）"], yc["対象児童年（child-years）"]) == (1, 1)  # ages 10-14
    assert out.loc[(C.OUTCOMES[1][1], 2021), "対象児童年（child-years）"] == 0
    assert out.loc[(C.OUTCOMES[1][1], 2021), "観察（window）"] == "未完了（not complete）"


def test_city_facts_without_truth_reads_mart_and_panel(tmp_path):
    cfg = load_config(
        overrides={
            "run": {"data_dir": str(tmp_path), "synthetic": False, "fiscal_years": [2020, 2021]}
        }
    )
    P = paths(cfg)
    P.mart.mkdir(parents=True)
    P.panel_dir.mkdir(parents=True)
    residents().to_parquet(P.mart_table("residents"), index=False)
    panel().to_parquet(P.panel, index=False)
    facts = C.city_facts(cfg)
    assert not facts.synthetic and facts.defects is None and facts.targets == {}
    assert facts.inputs == [P.mart_table("residents"), P.panel]
    assert len(facts.pop) == 5 and not facts.prevalence.empty
    assert C.target_sources({}).empty
    assert "実データ" in C.provenance_note(facts)


def test_annual_report_survives_absent_consultation_exports(tmp_path):
    """Report 06 with no consultation or progress-record export: empty tables, a note."""
    from helpers.reports.annual import AnnualReport

    cfg = load_config(
        overrides={
            "run": {"data_dir": str(tmp_path), "synthetic": False, "fiscal_years": [2020, 2021]}
        }
    )
    P = paths(cfg)
    P.mart.mkdir(parents=True)
    residents().to_parquet(P.mart_table("residents"), index=False)
    rep = AnnualReport.load(cfg)
    assert rep.absent == ["consultations", "progress_records"] and rep.child == ""
    assert "consultations" in rep.absent_note()
    assert rep.inputs == [P.mart_table("residents")]
    summary = rep.summary().frame
    assert len(summary) == 2 and (summary.drop(columns=summary.columns[0]) == 0).all().all()
    assert rep.assessments().frame.drop(columns=rep.assessments().frame.columns[0]).sum().sum() == 0
