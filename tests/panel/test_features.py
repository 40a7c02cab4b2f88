"""Feature registry, catalogue, date rules, household items and missingness."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from helpers.config import load_config
from helpers.models.data import INFO_COLUMNS as MODEL_INFO_COLUMNS
from helpers.panel import features as F
from helpers.panel import stage as P

from .test_panel import fixture_cfg, frame, make_fixture_mart, person, pid

CATALOGUE_COLUMNS = [
    "name",
    "label_ja",
    "description",
    "source_tables",
    "window",
    "type",
    "role",
    "missing_treatment",
]


@pytest.fixture(scope="module")
def catalogue():
    return F.feature_catalogue(load_config())


def test_catalogue_has_the_contract_columns_and_japanese_labels(catalogue):
    assert list(catalogue.columns) == CATALOGUE_COLUMNS
    assert catalogue["name"].is_unique
    assert catalogue["label_ja"].str.contains(r"[\u3040-\u30ff\u4e00-\u9fff]").all()
    assert set(catalogue["role"]) == {"id", "info", "feature", "label", "known"}
    assert set(catalogue["missing_treatment"]) <= set(F.MISSING_TREATMENTS)
    info = set(catalogue.loc[catalogue["role"] == "info", "name"])
    assert set(MODEL_INFO_COLUMNS) <= info  # what the models stage copies beside the scores
    feats = catalogue[catalogue["role"] == "feature"]
    assert set(feats["type"]) <= {"binary", "count", "numeric"}
    for t in load_config().run.targets:
        assert f"label_{t}" in set(catalogue["name"]) and f"known_{t}" in set(catalogue["name"])


def test_young_carer_items_are_twelve_named_binary_features(catalogue):
    yc = catalogue[catalogue["name"].str.startswith("yc_")].set_index("name")
    assert len(F.YC_ITEM_NAMES) == 12
    assert (yc.loc[F.YC_ITEM_NAMES, "type"] == "binary").all()
    assert (yc.loc[F.YC_ITEM_NAMES, "role"] == "feature").all()
    assert "yc_rule_score" in yc.index


def test_catalogue_follows_the_configured_windows():
    cfg = fixture_cfg()
    cfg = cfg.with_overrides({"panel": {"windows": [2]}})
    names = set(F.feature_catalogue(cfg)["name"])
    assert "cons_neglect_2fy" in names and "cons_neglect_1fy" not in names
    year = P.build_year(make_fixture_mart(), 2022, cfg)
    assert list(year.columns) == F.feature_catalogue(cfg)["name"].tolist()


def test_feature_columns_are_numeric_in_the_panel():
    cfg = fixture_cfg()
    year = P.build_year(make_fixture_mart(), 2022, cfg)
    cat = F.feature_catalogue(cfg)
    for name in cat.loc[cat["role"].isin(["feature", "label", "known"]), "name"]:
        assert year[name].dtype == "float64", name


def test_age_and_active_period_boundaries_with_masked_dates():
    on = pd.Timestamp("2022-04-01")
    df = pd.DataFrame(
        {
            "start": pd.to_datetime(["2022-03-01", "2022-04-01", "2020-01-01", "2020-01-01"]),
            "end": pd.to_datetime([None, None, "2022-04-01", "2022-03-01"]),
        }
    )
    # started in March: active; started in April (maybe after the 1st): not yet;
    # ended in April: still open on the 1st; ended in March: over
    assert F.active_at(df, "start", "end", on).tolist() == [True, False, True, False]
    months = F.months_between(pd.Series(pd.to_datetime(["2021-09-01", None])), on)
    assert months.iloc[0] == 7 and np.isnan(months.iloc[1])


def test_zero_if_observed_keeps_positives_and_never_claims_unseen_zeros():
    counts = pd.Series([0, 2, 0, 3])
    observed = pd.Series([True, True, False, False])
    out = F.zero_if_observed(counts, observed)
    assert out.iloc[0] == 0 and out.iloc[1] == 2 and np.isnan(out.iloc[2]) and out.iloc[3] == 3


def small_household(child_birth: str, sibling_birth: str) -> dict[str, pd.DataFrame]:
    mart = {t: df.iloc[0:0].copy() for t, df in make_fixture_mart().items()}
    mart["residents"] = frame(
        "residents",
        [
            person("p", "1990-01-01"),
            person("k", child_birth),
            person("s", sibling_birth),
            person("old", "1945-01-01"),
        ],
    )
    mart["household_history"] = frame(
        "household_history",
        [
            {
                "resident_code": pid(n),
                "household_code": pid("H"),
                "relationship": r,
                "start_date": "2000-01-01",
                "end_date": None,
            }
            for n, r in (("p", "head"), ("k", "child"), ("s", "child"), ("old", "parent"))
        ],
    )
    return mart


@pytest.mark.parametrize(
    "child_birth, sibling_birth, expected",
    [
        ("2019-05-01", "2021-01-01", 1.0),  # child 2 and sibling 1: two children aged <=5
        ("2012-05-01", "2021-01-01", 0.0),  # child 9, one sibling aged 1: only one
        ("2016-03-01", "2021-01-01", 0.0),  # child turned 6 in March 2016+6: not <=5
        ("2016-04-01", "2021-01-01", 1.0),  # born April 2016 (2-30 April): still 5 on 1 April
    ],
)
def test_two_or_more_children_under_six_counts_the_child(child_birth, sibling_birth, expected):
    mart = small_household(child_birth, sibling_birth)
    tables = P.predictor_tables(mart)
    on = pd.Timestamp("2022-04-01")
    state = F.household_state(tables, on, 2022, pd.Index([pid("k")]))
    assert state.loc[pid("k"), "yc_two_plus_under6"] == expected
    # household members other than the child: the 77-year-old counts, the child never does
    assert state.loc[pid("k"), "hh_members_75plus"] == 1
    own = F.household_state(tables, on, 2022, pd.Index([pid("old")]))
    assert own.loc[pid("old"), "hh_members_75plus"] == 0


def test_care_level_of_other_members_excludes_the_person():
    mart = small_household("2012-05-01", "2010-01-01")
    mart["long_term_care"] = frame(
        "long_term_care",
        [
            {"resident_code": pid("old"), "care_level": "care_3", "certified_date": "2020-01-01"},
            {"resident_code": pid("p"), "care_level": "support_1", "certified_date": "2020-01-01"},
        ],
    )
    tables = P.predictor_tables(mart)
    on = pd.Timestamp("2022-04-01")
    kid = F.household_state(tables, on, 2022, pd.Index([pid("k"), pid("old")]))
    assert kid.loc[pid("k"), "hh_care_level_max"] == 5  # care_3
    assert kid.loc[pid("k"), "hh_care_need_members"] == 1
    assert kid.loc[pid("k"), "hh_care_support_members"] == 1
    assert kid.loc[pid("old"), "hh_care_level_max"] == 1  # only the parent's 要支援1


def test_missingness_table_reports_share_and_treatment():
    cfg = fixture_cfg()
    pnl, cat = P.build_panel(make_fixture_mart(), cfg)
    miss = F.missingness_table(pnl, cat)
    assert set(miss["fiscal_year"]) == {2020, 2021, 2022}
    row = miss[(miss["name"] == "delta_hh_size") & (miss["fiscal_year"] == 2022)].iloc[0]
    fy = pnl[pnl["fiscal_year"] == 2022]
    assert row["share_missing"] == pytest.approx(fy["delta_hh_size"].isna().mean())
    assert row["missing_treatment"] == "nan_not_applicable" and row["treatment"]
    assert (miss.loc[miss["missing_treatment"] == "never_missing", "share_missing"] == 0).all()


def test_missing_indicators_mirror_the_source_columns():
    year = P.build_year(make_fixture_mart(), 2022, fixture_cfg()).set_index("child_id")
    for name, *_, source in F.MISSING_INDICATORS:
        assert (year[name] == year[source].isna().astype(float)).all(), name
    assert year.loc[pid("c1"), "miss_birth_status"] == 0
    assert year.loc[pid("c5"), "miss_birth_status"] == 1  # in-mover: born elsewhere
