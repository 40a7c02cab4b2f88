"""The panel on real exports: rejected household members, absent optional sources, exports that
start late or end mid-year, in-movers: NaN (unknown) with a count, never a crash, never a 0."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from helpers.panel import stage as P
from helpers.panel.coverage import Coverage, source_coverage
from helpers.paths import paths
from helpers.schema import load_schemas

from .test_panel import fixture_cfg, frame, make_fixture_mart, pid, row


def without(mart: dict, table: str, **match) -> dict:
    """The mart with the rows of ``table`` matching ``match`` removed."""
    out = dict(mart)
    df = out[table]
    keep = pd.Series(True, index=df.index)
    for col, value in match.items():
        keep &= df[col] != value
    out[table] = df[keep].reset_index(drop=True)
    return out


def test_a_household_member_without_a_resident_row_gives_nan_not_a_crash():
    # the grandmother's resident row was rejected at ingest; her household span remains
    mart = without(make_fixture_mart(), "residents", resident_code=pid("grandma1"))
    pnl, _ = P.build_panel(mart, fixture_cfg())
    c1 = row(pnl, "c1")
    assert np.isnan(c1["yc_member_75plus"])  # her age is unknown
    assert np.isnan(c1["hh_members_75plus"])
    assert c1["yc_member_care_need"] == 1  # her care certification is still on record
    assert c1["hh_size"] == 6  # she is still a member
    assert c1["hh_single_parent"] == 1  # the mother is known; the grandmother is not a parent
    assert np.isnan(c1["yc_foreign_member"])  # her nationality is unknown too
    assert c1["yc_items_unknown"] == 2


def test_unknown_members_are_counted_in_coverage_json(tmp_path):
    mart = without(make_fixture_mart(), "residents", resident_code=pid("grandma1"))
    cfg = _write(tmp_path, mart)
    assert P.main(cfg, []) == 0
    cov = json.loads(paths(cfg).panel_coverage.read_text())
    assert cov["years"]["2022"]["household_member_unknown"] == 4  # c1..c4 share her household
    assert cov["years"]["2022"]["children"] > 0


def _write(tmp_path, mart: dict, drop: tuple[str, ...] = (), **overrides):
    cfg = fixture_cfg().with_overrides({"run": {"data_dir": str(tmp_path)}, **overrides})
    out = paths(cfg)
    out.mart.mkdir(parents=True, exist_ok=True)
    for t, df in mart.items():
        if t not in drop:
            df.to_parquet(out.mart_table(t), index=False)
    return cfg


def test_an_absent_optional_source_is_reported_and_its_features_are_nan(tmp_path, capsys):
    cfg = _write(tmp_path, make_fixture_mart(), drop=("long_term_care",))
    assert P.main(cfg, []) == 0
    out = capsys.readouterr().out
    assert "no export for [" in out and "'long_term_care'" in out
    pnl = pd.read_parquet(paths(cfg).panel)
    c1 = pnl[(pnl["child_id"] == pid("c1")) & (pnl["fiscal_year"] == 2022)].iloc[0]
    for col in ("hh_care_need_members", "hh_care_level_max", "yc_member_care_need"):
        assert np.isnan(c1[col]), col
    assert c1["yc_public_assistance"] == 1  # other sources unaffected
    cov = json.loads(paths(cfg).panel_coverage.read_text())
    assert "long_term_care" in cov["absent_sources"]
    assert json.loads(paths(cfg).leakage_check.read_text())["passed"]


def test_absent_consultations_leave_labels_unknown():
    mart = make_fixture_mart()
    del mart["consultations"]
    del mart["progress_records"]
    pnl, _ = P.build_panel(mart, fixture_cfg())
    assert pnl["label_physical_abuse"].isna().all() and pnl["known_young_carer"].isna().all()
    assert pnl["cons_any_1fy"].isna().all()


def test_the_residents_table_is_still_required(tmp_path):
    from helpers import MimamoriError

    cfg = _write(tmp_path, make_fixture_mart(), drop=("residents",))
    with pytest.raises(MimamoriError, match="residents.parquet: not found"):
        P.main(cfg, [])


def test_household_history_windows_before_a_move_in_are_nan():
    mart = make_fixture_mart()
    pa = mart["public_assistance"]
    # H2 (moved in Sept 2021) had no assistance here; H1 had it since June 2021
    pnl, _ = P.build_panel(mart, fixture_cfg())
    c5, c1 = row(pnl, "c5"), row(pnl, "c1")
    assert np.isnan(c5["hh_public_assistance_3fy"])  # the 3 FY before the move are elsewhere
    assert c5["hh_public_assistance"] == 0  # the state on 1 April is known
    assert c1["hh_public_assistance_3fy"] == 1
    assert len(pa) >= 1


def test_a_positive_in_an_unobserved_window_is_kept():
    mart = make_fixture_mart()
    pa = pd.concat(
        [
            mart["public_assistance"],
            frame(
                "public_assistance",
                [{"household_code": pid("H2"), "start_date": "2021-10-01", "end_date": None}],
            ),
        ],
        ignore_index=True,
    )
    mart["public_assistance"] = pa
    pnl, _ = P.build_panel(mart, fixture_cfg())
    assert row(pnl, "c5")["hh_public_assistance_3fy"] == 1


def test_a_checkup_export_that_starts_late_does_not_make_missed_checkups():
    mart = make_fixture_mart()
    cfg = fixture_cfg().with_overrides(
        {"panel": {"source_start": {"health_checkups": "2019-04-01"}}}
    )
    pnl, _ = P.build_panel(mart, cfg)
    c1 = row(pnl, "c1")
    # due in 2013 / 2012: the export does not cover those dates -> unknown, not missed
    assert np.isnan(c1["chk_y1m6_missed"]) and np.isnan(c1["chk_m1_missed"])
    assert c1["chk_y3_missed"] == 0  # attended: that is known


def test_labels_of_a_year_the_export_does_not_complete_are_nan():
    mart = make_fixture_mart()
    mid_year = fixture_cfg().with_overrides({"run": {"export_date": "2022-10-15"}})
    pnl, _ = P.build_panel(mart, mid_year)
    assert pnl.loc[pnl["fiscal_year"] == 2022, "label_young_carer"].isna().all()
    assert pnl.loc[pnl["fiscal_year"] == 2021, "label_young_carer"].notna().all()


def test_without_an_export_date_the_latest_consultation_date_decides():
    mart = make_fixture_mart()  # consultation system's latest record: July 2022
    cfg = fixture_cfg().with_overrides({"run": {"export_date": None}})
    cov = source_coverage(mart, (), cfg)
    assert cov.own_end["consultations"] == pd.Timestamp("2022-07-31")
    pnl, _ = P.build_panel(mart, cfg)
    assert pnl.loc[pnl["fiscal_year"] == 2022, "label_physical_abuse"].isna().all()
    assert pnl.loc[pnl["fiscal_year"] == 2021, "label_physical_abuse"].notna().all()


def test_a_source_starting_after_the_window_makes_its_counts_unknown():
    mart = make_fixture_mart()
    late = fixture_cfg().with_overrides(
        {"panel": {"source_start": {"consultations": "2021-06-01"}}}
    )
    pnl, _ = P.build_panel(mart, late)
    assert np.isnan(row(pnl, "c4")["cons_any_ever"])  # born 2018: not observed since birth
    assert row(pnl, "c1")["cons_physical_abuse_ever"] == 1  # a positive stays


def test_coverage_of_a_source_without_dates_is_unlimited():
    cov = Coverage(start={}, end={}, absent=frozenset({"x"}))
    on = pd.Timestamp("2022-04-01")
    assert cov.covered_from("birth_status", on) == pd.Timestamp.min
    assert cov.covered_from("x", on) == on


def test_source_start_must_name_a_table():
    from helpers import MimamoriError

    cfg = fixture_cfg().with_overrides({"panel": {"source_start": {"nope": "2020-01-01"}}})
    with pytest.raises(MimamoriError, match="source_start"):
        source_coverage(make_fixture_mart(), (), cfg)


def test_every_schema_table_can_be_absent_except_residents():
    mart = make_fixture_mart()
    for table in load_schemas():
        if table == "residents":
            continue
        partial = {t: df for t, df in mart.items() if t != table}
        pnl, _ = P.build_panel(partial, fixture_cfg())
        assert len(pnl) > 0, table
