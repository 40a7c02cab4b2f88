"""Annual consultation statistics on tiny mart-shaped fixture frames (+ notebook 06, slow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from helpers import MimamoriError
from helpers.reports import annual as st
from helpers.reports.disclosure import Rules

TS = pd.Timestamp


def _cases() -> pd.DataFrame:
    consultations = pd.DataFrame(
        {
            "consultation_id": pd.array(list("abcdef"), dtype="string"),
            "resident_code": pd.array(["c1", "c1", "c2", "c3", "c3", "c4"], dtype="string"),
            "received_date": pd.to_datetime(
                ["2022-03-01", "2022-04-01", "2022-05-01", "2023-01-01", "2023-04-01", "2023-06-01"]
            ),
            "consultation_type": pd.array(
                ["neglect", "neglect", "young_carer", None, "neglect", "other"], dtype="string"
            ),
            "agencies": pd.array(
                ["学校・児童相談所", "学校・学校", "", None, "警察", " 学校 "], dtype="string"
            ),
            "young_carer_determined": pd.array(
                [False, None, True, False, True, False], dtype="boolean"
            ),
        }
    )
    residents = pd.DataFrame(
        {
            "resident_code": pd.array(["c1", "c2", "c3", "c4"], dtype="string"),
            "birth_date": pd.to_datetime(["2010-05-01", "2019-03-01", "2008-04-01", None]),
        }
    )
    return st.consultation_frame(consultations, residents)


def test_fiscal_year_boundary_and_missing():
    fy = st.fiscal_year(pd.Series(pd.to_datetime(["2023-03-01", "2023-04-01", None])))
    assert fy.tolist()[:2] == [2022, 2023] and fy.isna().iloc[2]


def test_age_and_band_from_month_level_birth_dates():
    cases = _cases()
    assert cases["age"].tolist()[:3] == [11, 11, 3]
    assert cases["age_band"].iloc[0].startswith("6〜11")
    assert cases["age_band"].iloc[5] == st.UNKNOWN_LABEL  # no birth date: unknown, not dropped


def test_count_by_year_keeps_zero_categories_unknown_and_total():
    cases = _cases()
    labels = st.enum_labels("consultations", "consultation_type")
    table = st.count_by_year(
        cases, "consultation_type", labels, years=[2021, 2022, 2023], category_title="種別"
    )
    assert list(table.columns) == ["種別", "2021年度", "2022年度", "2023年度"]
    by = table.set_index("種別")
    assert by.loc["ネグレクト（neglect）", "2021年度"] == 1
    assert by.loc["ネグレクト（neglect）", "2022年度"] == 1
    assert by.loc["性的虐待（sexual_abuse）"].sum() == 0  # zero rows kept
    assert by.loc[st.UNKNOWN_LABEL, "2022年度"] == 1  # blank type counted as unknown
    assert table.iloc[-1, 0] == st.TOTAL_LABEL
    assert by.loc[st.TOTAL_LABEL].tolist() == [1, 3, 2]  # 2022-03 is FY2021, 2023-01 FY2022
    assert (by.drop(index=st.TOTAL_LABEL).sum() == by.loc[st.TOTAL_LABEL]).all()


def test_agencies_exploded_deduplicated_blank_is_none():
    ex = st.explode_agencies(_cases())
    assert sorted(ex["agency"]) == sorted(
        ["学校", "児童相談所", "学校", st.NONE_LABEL, st.NONE_LABEL, "警察", "学校"]
    )
    table = st.count_by_year(ex, "agency", None, [2021, 2022, 2023], total=False)
    assert st.TOTAL_LABEL not in table.iloc[:, 0].tolist()


def test_yearly_summary_counts_children_and_young_carers():
    summary = st.yearly_summary(_cases(), years=[2021, 2022, 2023, 2024])
    assert summary["年度（fiscal year）"].tolist() == [2021, 2022, 2023, 2024]
    assert summary["相談件数（consultations）"].tolist() == [1, 3, 2, 0]
    assert summary["児童数（children）"].tolist() == [1, 3, 2, 0]
    assert summary["ヤングケアラー判定（young carers determined）"].tolist() == [0, 1, 1, 0]
    assert "<10" in st.headline_text(summary.iloc[:3], Rules(9))
    assert "1,000" in st.headline_text(
        summary.assign(**{"相談件数（consultations）": 1000}), Rules(9)
    )


def _progress() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "consultation_id": pd.array(["a", "a", "b", "c", "c", "d"], dtype="string"),
            "resident_code": pd.array(["zz", "zz", "aa", "aa", "aa", "zz"], dtype="string"),
            "record_date": pd.to_datetime(
                ["2022-06-01", "2022-05-01", "2023-04-01", "2021-12-01", "2022-01-01", "2023-02-01"]
            ),
            "assessment": pd.array(
                ["fair", "poor", "good", "poor", "fair", "good"], dtype="string"
            ),
        }
    )


def test_busiest_child_ties_broken_by_pseudonym_and_timeline_is_monthly():
    progress = _progress()
    assert st.busiest_child(progress) == "aa"  # 3 records each; "aa" < "zz"
    tl = st.child_timeline(progress, "zz")
    assert tl["assessment"].tolist() == ["poor", "fair", "good"]
    shown = st.timeline_table(tl)
    assert shown["記録月（month）"].tolist() == ["2022-05", "2022-06", "2023-02"]
    assert shown["評価（assessment）"].iloc[0] == "悪い（poor）"
    with pytest.raises(MimamoriError, match="no records for child"):
        st.child_timeline(progress, "nobody")


def test_assessment_mix_per_fiscal_year():
    mix = st.assessment_mix(_progress(), [2021, 2022]).set_index("評価（assessment）")
    assert mix.loc["悪い（poor）", "2021年度"] == 1 and mix.loc["悪い（poor）", "2022年度"] == 1
    assert mix.loc[st.TOTAL_LABEL].tolist() == [2, 3]


def test_missing_columns_are_reported():
    with pytest.raises(MimamoriError, match="received_date"):
        st.consultation_frame(
            pd.DataFrame({"resident_code": []}),
            pd.DataFrame({"resident_code": [], "birth_date": []}),
        )


def write_fixture_mart(root: Path, seed: int = 1) -> None:
    """A small mart following the architecture contract (consultations, residents, progress)."""
    rng = np.random.default_rng(seed)
    mart = root / "mart"
    mart.mkdir(parents=True, exist_ok=True)
    ids = [f"{i:016x}" for i in rng.integers(0, 2**60, 200)]
    births = TS("2004-04-01") + pd.to_timedelta(rng.integers(0, 365 * 17, 200), unit="D")
    pd.DataFrame(
        {
            "resident_code": pd.array(ids, dtype="string"),
            "birth_date": births.to_period("M").to_timestamp(),
        }
    ).to_parquet(mart / "residents.parquet")
    n = 400
    recv = TS("2017-04-01") + pd.to_timedelta(rng.integers(0, 365 * 7, n), unit="D")
    cons = pd.DataFrame(
        {
            "consultation_id": pd.array(
                [f"{i:016x}" for i in rng.integers(0, 2**60, n)], dtype="string"
            ),
            "resident_code": pd.array([ids[i] for i in rng.integers(0, 200, n)], dtype="string"),
            "received_date": recv.to_period("M").to_timestamp(),
            "consultation_type": pd.array(
                rng.choice(["neglect", "young_carer", "other"], n), dtype="string"
            ),
            "referral_route": pd.array(rng.choice(["school", "police"], n), dtype="string"),
            "agencies": pd.array(rng.choice(["学校・警察", "学校", ""], n), dtype="string"),
            "young_carer_determined": pd.array(rng.random(n) < 0.1, dtype="boolean"),
        }
    )
    cons.to_parquet(mart / "consultations.parquet")
    pick = rng.integers(0, n, 900)
    pd.DataFrame(
        {
            "consultation_id": cons["consultation_id"].iloc[pick].to_numpy(),
            "resident_code": cons["resident_code"].iloc[pick].to_numpy(),
            "record_date": (
                pd.to_datetime(cons["received_date"].iloc[pick].to_numpy())
                + pd.to_timedelta(rng.integers(0, 600, 900), unit="D")
            )
            .to_period("M")
            .to_timestamp(),
            "assessment": pd.array(rng.choice(["good", "fair", "poor"], 900), dtype="string"),
        }
    ).to_parquet(mart / "progress_records.parquet")


@pytest.mark.slow
def test_notebook_06_renders_and_passes_the_scan(tmp_path, monkeypatch):
    from helpers.config import load_config
    from helpers.reports.disclosure import Rules
    from helpers.reports.index import report_summary
    from helpers.reports.runner import render_report
    from helpers.reports.scan import scan_reports

    monkeypatch.setenv("MIMAMORI_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("MIMAMORI_REPORTS", str(tmp_path / "reports"))
    write_fixture_mart(tmp_path / "data")
    cfg = load_config(profile="tiny")
    out = render_report("06_annual_statistics", cfg, build_dir=tmp_path / "build", progress=False)
    page = out.read_text(encoding="utf-8")
    assert "相談種別 × 年度" in page and "関係機関" in page and "経過評価" in page
    assert "相談件数" in report_summary(out)["headline"]
    assert scan_reports(tmp_path / "reports", None, Rules(9)) == []
