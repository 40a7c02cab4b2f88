"""helpers.review.stage: lists, blinding, verdict import and the verification statistics.

Reference figures (docs/domain.md §4): FY2023 8 of 35 high vs 0 of 3 low, FY2022 1 of 16;
item prevalence 75.0% vs 16.7% (4.5x).
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from openpyxl import Workbook, load_workbook
from scipy.stats import binom, fisher_exact
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import proportion_confint, proportion_effectsize

from helpers import MimamoriError
from helpers.config import load_config
from helpers.ingest.masking import DEMO_KEY, pseudonym
from helpers.models.population import population_for
from helpers.review.report import (
    arm_rates_display,
    plot_hit_rates,
    plot_power_curve,
    results_headline,
    rounds_display,
)
from helpers.review.sheets import (
    HEADER_OF,
    REVIEWER_COLUMNS,
    read_verdict_file,
    validate_verdicts,
)
from helpers.review.stage import (
    analyse_verdicts,
    blinded_sample,
    capacity_list,
    counts_by,
    eligible_ranking,
    main,
    reason_frequencies,
    reidentify,
    review_paths,
    simulate_answers,
    truth_probability,
)
from helpers.review.stats import (
    arm_rates,
    compare_rounds,
    detectable_high_rate,
    fisher_exact_power,
    fisher_high_low,
    fisher_pvalue_grid,
    item_prevalence,
    normal_power,
    percent,
    power_table,
    rate_ci,
    sample_size,
)

REASONS = [
    "生活保護受給世帯",
    "児童扶養手当受給",
    "要介護者が同居",
    "障害者手帳所持者が同居",
    "自立支援医療",
]
REFERENCE_ROUNDS = [
    {
        "round": "FY2022",
        "high_reviewed": 16,
        "high_positive": 1,
        "low_reviewed": 4,
        "low_positive": 0,
    },
    {
        "round": "FY2023",
        "high_reviewed": 35,
        "high_positive": 8,
        "low_reviewed": 3,
        "low_positive": 0,
    },
]


# --------------------------------------------------------------------------- fixture frames
def resident_codes(n: int) -> list[str]:
    """The fixture city's real resident codes (its pseudonyms are their keyed hashes)."""
    return [f"{200000 + i}" for i in range(n)]


def make_city(n: int = 400, seed: int = 7, year: int = 2023) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(scores, panel) conforming to the contract: the panel holds every child (preschoolers,
    15-year-olds with no school, OUT schools, already-known children); scores.parquet only the
    young-carer eligible population (school age 10-14, a school of ours, not known), with ties."""
    rng = np.random.default_rng(seed)
    ids = [pseudonym(c, DEMO_KEY, "resident") for c in resident_codes(n)]
    age = rng.integers(3, 16, n)
    school = np.where(
        (age < 6) | (age > 14),
        None,
        rng.choice(
            ["S01", "S02", "S03", "S04", "S05", "OUT"], n, p=[0.2, 0.2, 0.2, 0.2, 0.15, 0.05]
        ),
    )
    panel = pd.DataFrame(
        {
            "child_id": ids,
            "fiscal_year": year,
            "age": age,
            "school_age": age,
            "grade": np.where((age < 6) | (age > 14), None, (age - 5).astype(str)),
            "school_code": pd.array(school, dtype="string"),
            "school_district": "D1",
            "sex": rng.choice(["1", "2"], n),
            "known_young_carer": (rng.random(n) < 0.05).astype(int),
            "yc_public_assistance": rng.choice([0.0, 1.0, np.nan], n, p=[0.7, 0.25, 0.05]),
            "yc_single_parent_allowance": rng.choice([0.0, 1.0], n),
            "yc_rule_score": rng.integers(0, 6, n).astype(float),
        }
    )
    earlier = panel.assign(fiscal_year=year - 1, age=np.maximum(age - 1, 0))
    eligible = (
        panel["school_age"].between(10, 14)
        & panel["school_code"].notna()
        & (panel["school_code"] != "OUT")
        & (panel["known_young_carer"] == 0)
    ).to_numpy()
    m = int(eligible.sum())
    score = np.round(rng.random(m), 1)  # coarse: many ties
    prob = score * 0.3
    scores = pd.DataFrame(
        {
            "child_id": np.array(ids)[eligible],
            "fiscal_year": year,
            "score": score,
            "probability": prob,
            "risk_ratio": prob / 0.015,
            "rank": pd.Series(-score).rank(method="min").astype(int),
            "reason_1": rng.choice(REASONS, m),
            "reason_2": rng.choice(REASONS, m),
            "reason_3": rng.choice(REASONS, m),
            "label": (rng.random(m) < prob).astype(float),
            "known": 0,
            "baseline_rule_score": panel.loc[eligible, "yc_rule_score"].to_numpy(),
        }
    )
    return scores, pd.concat([earlier, panel], ignore_index=True)


@pytest.fixture
def city_cfg(tmp_path, monkeypatch):
    """A config whose data root holds a small scores.parquet and panel.parquet."""
    monkeypatch.delenv("MIMAMORI_DATA", raising=False)
    monkeypatch.delenv("MIMAMORI_PROFILE", raising=False)
    scores, panel = make_city()
    (tmp_path / "models" / "young_carer").mkdir(parents=True)
    (tmp_path / "panel").mkdir()
    scores.to_parquet(tmp_path / "models" / "young_carer" / "scores.parquet", index=False)
    panel.to_parquet(tmp_path / "panel" / "panel.parquet", index=False)
    cfg = load_config(
        overrides={
            "run": {"data_dir": str(tmp_path), "capacity": 30, "synthetic": True},
            "review": {"n_high": 16, "n_low": 4, "simulated_reviewers": {"response_rate": 0.6}},
        }
    )
    return cfg


def sheet_rows(path) -> list[tuple]:
    wb = load_workbook(path)
    return [
        r for ws in wb.worksheets if ws.title != "記入方法" for r in ws.iter_rows(values_only=True)
    ]


# ------------------------------------------------------------------- reference figures
def test_reference_hit_rates_and_round_ratio():
    rounds = compare_rounds(pd.DataFrame(REFERENCE_ROUNDS))
    fy22, fy23 = rounds.iloc[0], rounds.iloc[1]
    assert percent(fy23.high_rate) == "22.9%"
    assert percent(fy23.low_rate) == "0.0%"
    assert percent(fy22.high_rate) == "6.3%"  # half up, as the report printed 1/16
    assert round(fy23.high_ratio_vs_first, 1) == 3.7
    # CIs are statsmodels' Wilson intervals on the same counts
    assert (fy23.high_ci_low, fy23.high_ci_high) == pytest.approx(
        proportion_confint(8, 35, method="wilson")
    )
    assert fy23.low_ci_high == pytest.approx(proportion_confint(0, 3, method="wilson")[1])
    # Fisher's exact p against scipy on the same 2x2 tables
    assert fy23.fisher_p == pytest.approx(fisher_exact([[8, 27], [0, 3]]).pvalue)
    assert fy22.fisher_p == pytest.approx(fisher_exact([[1, 15], [0, 4]]).pvalue)
    assert fisher_high_low(8, 35, 0, 3, "greater") == pytest.approx(
        fisher_exact([[8, 27], [0, 3]], alternative="greater").pvalue
    )


def test_arm_rates_from_rows_reproduce_fy2023():
    rows = pd.DataFrame(
        {
            "arm": ["high"] * 35 + ["low"] * 3,
            "needs_support": [True] * 8 + [False] * 27 + [False] * 3,
        }
    )
    rates = arm_rates(rows).set_index("arm")
    assert rates.loc["high", ["reviewed", "positive"]].tolist() == [35, 8]
    assert rates.loc["low", ["reviewed", "positive"]].tolist() == [3, 0]
    assert rates.loc["high", "rate"] == pytest.approx(8 / 35)
    exact = arm_rates(rows, method="exact").set_index("arm")
    assert exact.loc["high", "ci_low"] == pytest.approx(proportion_confint(8, 35, method="beta")[0])


def test_item_prevalence_reproduces_reference_ratio():
    # 8 needing support (6 on public assistance), 30 not (5 on it) -> 75.0% vs 16.7% = 4.5x;
    # one unknown value is left out of the denominator, not counted as 0.
    reviewed = pd.DataFrame(
        {
            "needs_support": [True] * 8 + [False] * 31,
            "yc_public_assistance": [1] * 6 + [0] * 2 + [1] * 5 + [0] * 25 + [np.nan],
        }
    )
    out = item_prevalence(
        reviewed, ["yc_public_assistance"], {"yc_public_assistance": "生活保護"}
    ).iloc[0]
    assert percent(out.prevalence_support) == "75.0%"
    assert percent(out.prevalence_other) == "16.7%"
    assert round(out.ratio, 1) == 4.5
    assert out.other_known == 30 and out.label == "生活保護"
    assert out.difference == pytest.approx(0.75 - 5 / 30)


def test_rate_ci_rejects_impossible_counts_and_unknown_method():
    with pytest.raises(MimamoriError, match="impossible"):
        rate_ci(5, 3)
    with pytest.raises(MimamoriError, match="unknown CI method"):
        rate_ci(1, 3, method="bogus")
    assert np.isnan(rate_ci(0, 0)[0])


# ------------------------------------------------------------------------------ power
def test_sample_size_matches_statsmodels_directly():
    h = proportion_effectsize(0.20, 0.05)
    expected = NormalIndPower().solve_power(effect_size=h, alpha=0.05, power=0.8, ratio=0.25)
    got = sample_size(0.20, 0.05, alpha=0.05, power=0.8, ratio=0.25)
    assert got["n_high_exact"] == pytest.approx(expected)
    assert got["n_high"] == int(np.ceil(expected)) and got["n_low"] == int(np.ceil(expected * 0.25))
    assert normal_power(0.2, 0.05, got["n_high"], got["n_low"]) >= 0.8


def test_detectable_rate_round_trips_through_effect_size():
    d = detectable_high_rate(0.05, 80, 20, alpha=0.05, power=0.8)
    h = NormalIndPower().solve_power(effect_size=None, nobs1=80, alpha=0.05, power=0.8, ratio=0.25)
    assert proportion_effectsize(d["p_high"], 0.05) == pytest.approx(h)
    assert d["difference"] == pytest.approx(d["p_high"] - 0.05)


def test_fisher_grid_and_exact_power_match_scipy_brute_force():
    n1, n2 = 9, 6
    grid = fisher_pvalue_grid(n1, n2)
    brute = np.array(
        [
            [fisher_exact([[a, n1 - a], [c, n2 - c]]).pvalue for c in range(n2 + 1)]
            for a in range(n1 + 1)
        ]
    )
    np.testing.assert_allclose(grid, brute, rtol=1e-9, atol=1e-12)
    pw = sum(
        binom.pmf(a, n1, 0.6) * binom.pmf(c, n2, 0.1)
        for a in range(n1 + 1)
        for c in range(n2 + 1)
        if brute[a, c] < 0.05
    )
    assert fisher_exact_power(0.6, 0.1, n1, n2) == pytest.approx(pw)


def test_power_table_rows_and_bad_rates():
    table = power_table(0.2, 0.05, 80, 20, response_rate=0.4)
    assert len(table) == 4
    planned = table.iloc[2]
    assert (planned.n_high, planned.n_low) == (80, 20)
    assert table.iloc[3].n_high == 32 and table.iloc[3].n_low == 8
    assert (
        planned.power_normal < 0.8
    )  # 80:20 is under-powered for 20% vs 5%: the report must say so
    with pytest.raises(MimamoriError, match="review.power"):
        sample_size(1.5, 0.05)
    with pytest.raises(MimamoriError, match="different expected rates"):
        sample_size(0.1, 0.1)


# ------------------------------------------------------------------- ranking and sample
def _frame():
    scores, panel = make_city()
    return scores.merge(
        panel.loc[panel.fiscal_year == 2023].drop(columns="yc_rule_score"),
        on=["child_id", "fiscal_year"],
    )


YC = population_for(load_config(profile="").models, "young_carer")


def test_population_exclusions_are_counted_and_checked():
    _, panel = make_city()
    year = panel[panel.fiscal_year == 2023]
    counts = YC.exclusions(year)
    assert counts["children"].sum() + YC.mask(year).sum() == len(year)
    by = counts.set_index("exclusion")["children"]
    assert by.iloc[0] == int((year["known_young_carer"] == 1).sum())  # first rule: known
    ranked = eligible_ranking(_frame(), seed=1, population=YC)
    assert ranked["school_age"].between(10, 14).all()
    assert not ranked["school_code"].isin(["OUT"]).any() and ranked["school_code"].notna().all()
    outsider = _frame()
    outsider.loc[outsider.index[0], "school_age"] = 7
    with pytest.raises(MimamoriError, match="outside the eligible population of young_carer"):
        eligible_ranking(outsider, seed=1, population=YC)


def test_tie_break_is_seeded_and_input_order_free():
    frame = _frame()
    a = eligible_ranking(frame, seed=11)
    b = eligible_ranking(frame.sample(frac=1, random_state=3), seed=11)
    c = eligible_ranking(frame, seed=12)
    assert a["child_id"].tolist() == b["child_id"].tolist()
    assert a["child_id"].tolist() != c["child_id"].tolist()  # ties fall differently
    assert sorted(a["child_id"]) == sorted(c["child_id"])
    assert a["score"].is_monotonic_decreasing
    assert a["list_rank"].tolist() == list(range(1, len(a) + 1))
    top = capacity_list(a, 30)
    assert len(top) == 30 and top["list_rank"].max() == 30


def test_blinded_sample_arms_pool_and_shuffle():
    ranked = eligible_ranking(_frame(), seed=1)
    n = len(ranked)
    s, info = blinded_sample(ranked, 16, 4, 0.5, seed=5, strata=["school_code", "grade"])
    assert (s["arm"] == "high").sum() == 16 and (s["arm"] == "low").sum() == 4
    assert set(s.loc[s.arm == "high", "list_rank"]) == set(range(1, 17))
    assert (s.loc[s.arm == "low", "list_rank"] > n - n // 2).all()
    assert s["arm"].tolist() != sorted(s["arm"].tolist()) and s["arm"].tolist() != sorted(
        s["arm"], reverse=True
    )
    again, _ = blinded_sample(ranked, 16, 4, 0.5, seed=5, strata=["school_code", "grade"])
    assert s["child_id"].tolist() == again["child_id"].tolist()
    # every low-arm child sits in a stratum (school x grade) of the high arm
    key = s["school_code"].astype(str) + "|" + s["grade"].astype(str)
    assert set(key[s.arm == "low"]) <= set(key[s.arm == "high"])
    assert info["shortfall"] == 0 and info["strata"] == ["school_code", "grade"]
    with pytest.raises(MimamoriError, match="fewer than n_low=500"):
        blinded_sample(ranked, 16, 500, 0.5, seed=5)


def test_count_helpers():
    frame = _frame()
    by_school = counts_by(frame, "school_code")
    assert by_school["children"].sum() == len(frame)
    freq = reason_frequencies(frame).set_index("reason")
    assert freq["as_first"].sum() == len(frame)
    assert freq["any_of_three"].sum() == 3 * len(frame)


# ------------------------------------------------------------- draw, blinding, export
def test_draw_writes_blinded_reviewer_sheets(city_cfg):
    assert main(city_cfg, ["draw"]) == 0
    paths = review_paths(city_cfg)
    sample = pd.read_parquet(paths["sample"])
    cap = pd.read_parquet(paths["capacity_list"])
    assert len(cap) == 30 and len(sample) == 20
    forbidden_values = (
        {
            str(v)
            for c in ("score", "probability", "risk_ratio", "rank", "list_rank", "tiebreak")
            for v in sample[c]
        }
        | {"high", "low"}
        | set(REASONS)
    )
    headers = [h for _, h in REVIEWER_COLUMNS]
    seen = []
    for path in sorted(paths["sheets"].glob("review_*.xlsx")):
        wb = load_workbook(path)
        ws = wb.worksheets[0]
        rows = list(ws.iter_rows(values_only=True))
        assert list(rows[0]) == headers
        for row in rows[1:]:
            for i, value in enumerate(row):
                if i in (0, 3):  # row number and grade are small integers, legitimately shared
                    continue
                assert value is None or str(value) not in forbidden_values
            seen.append(row[1])
        # dropdowns with exactly 有/無 on both answer columns
        formulas = {dv.formula1 for dv in ws.data_validations.dataValidation}
        assert formulas == {'"有,無"'}
        ranges = " ".join(str(dv.sqref) for dv in ws.data_validations.dataValidation)
        assert "E2" in ranges and "G2" in ranges
    assert sorted(seen) == sorted(sample["child_id"])
    # within each school the order is the shuffled sample order, not the ranking
    order = sample.sort_values("sample_order")
    for school, part in order.groupby("school_code"):
        rows = sheet_rows(paths["sheets"] / f"review_{school}.xlsx")[1:]
        assert [r[1] for r in rows] == part["child_id"].tolist()
    staff = list(load_workbook(paths["staff_list"]).worksheets[0].iter_rows(values_only=True))
    assert "スコア" in staff[0] and "理由1" in staff[0] and len(staff) == 31


def test_simulate_refuses_on_real_data(city_cfg):
    main(city_cfg, ["draw"])
    city_cfg = city_cfg.with_overrides({"run": {"synthetic": False}})
    with pytest.raises(MimamoriError, match="refused: run.synthetic is false"):
        main(city_cfg, ["simulate"])


def test_simulate_then_verdicts_round_trip_is_deterministic(city_cfg):
    main(city_cfg, ["draw"])
    main(city_cfg, ["simulate"])
    paths = review_paths(city_cfg)
    files = sorted(paths["verdicts_in"].glob("*.xlsx"))
    assert files
    first = [sheet_rows(f) for f in files]
    main(city_cfg, ["simulate"])
    assert [sheet_rows(f) for f in sorted(paths["verdicts_in"].glob("*.xlsx"))] == first
    assert main(city_cfg, ["verdicts"]) == 0
    rates = pd.read_csv(paths["arm_rates"]).set_index("arm")
    verdicts = pd.read_parquet(paths["verdicts"])
    assert rates["reviewed"].sum() == len(verdicts) == sum(len(r) - 1 for r in first)
    assert (rates["drawn"] - rates["reviewed"] == rates["not_returned"]).all()
    rounds = pd.read_csv(paths["rounds"])
    assert rounds["round"].tolist()[:2] == ["FY2022", "FY2023"] and len(rounds) == 3
    prevalence = pd.read_csv(paths["item_prevalence"])
    assert set(prevalence["item"]) == {"yc_public_assistance", "yc_single_parent_allowance"}


def test_simulated_answers_follow_sensitivity():
    sample = pd.DataFrame(
        {
            "child_id": [f"c{i}" for i in range(2000)],
            "school_code": "S01",
            "grade": "3",
            "sample_order": range(2000),
        }
    )
    p = pd.Series([1.0] * 1000 + [0.0] * 1000)
    out = simulate_answers(
        sample, p, seed=3, sensitivity=0.8, false_positive_rate=0.05, response_rate=1.0
    )
    flagged = (out["family_concern"] == "有") | (out["child_complaint"] == "有")
    assert 0.75 < flagged[:1000].mean() < 0.85 and 0.03 < flagged[1000:].mean() < 0.07
    none = simulate_answers(
        sample.assign(school_code=[f"S{i % 20}" for i in range(2000)]), p, 3, response_rate=0.0
    )
    assert none["school_code"].nunique() == 1  # at least one school always replies


# ------------------------------------------------------------------- verdict validation
def write_sheet(path, rows, header=None, title="S01"):
    wb = Workbook()
    ws = wb.active
    ws.title = title
    ws.append(header or [h for _, h in REVIEWER_COLUMNS])
    for r in rows:
        ws.append(r)
    wb.save(path)
    return path


def row(no, pid, fam="無", comp="無", detail=""):
    return [no, pid, "S01", "3", fam, detail, comp, "", ""]


KNOWN = {"aaaa", "bbbb", "cccc"}


def check_error(tmp_path, rows, message, header=None):
    path = write_sheet(tmp_path / "v.xlsx", rows, header)
    with pytest.raises(MimamoriError, match=re.escape(message)):
        validate_verdicts(read_verdict_file(path), KNOWN)


def test_verdict_unknown_pseudonym(tmp_path):
    check_error(
        tmp_path,
        [row(1, "aaaa"), row(2, "zzzz")],
        "v.xlsx: sheet S01, row 3, cell B3: unknown pseudonym 'zzzz' (not in the blinded sample)",
    )


def test_verdict_missing_answer(tmp_path):
    check_error(
        tmp_path,
        [row(1, "aaaa", fam=None)],
        f"v.xlsx: sheet S01, row 2, cell E2 ({HEADER_OF['family_concern']}): missing answer (expected 有 or 無)",
    )


def test_verdict_value_not_yes_no(tmp_path):
    check_error(
        tmp_path,
        [row(1, "aaaa"), row(2, "bbbb", comp="はい")],
        f"v.xlsx: sheet S01, row 3, cell G3 ({HEADER_OF['child_complaint']}): value 'はい' is not 有 or 無",
    )


def test_verdict_answers_without_pseudonym(tmp_path):
    check_error(
        tmp_path,
        [row(1, None, fam="有")],
        "v.xlsx: sheet S01, row 2, cell B2: answers given but 仮名ID is blank",
    )


def test_verdict_missing_header_column(tmp_path):
    header = [h for k, h in REVIEWER_COLUMNS if k != "child_complaint"]
    check_error(
        tmp_path,
        [["1", "aaaa", "S01", "3", "無", "", "", ""]],
        "v.xlsx: sheet S01: row 1: missing column(s) ['本人からの訴え（有/無）']",
        header=header,
    )


def test_verdict_conflicting_duplicate_and_all_problems_listed(tmp_path):
    rows = [row(1, "aaaa", fam="有"), row(2, "aaaa"), row(3, "zzzz"), row(4, "bbbb", fam="x")]
    path = write_sheet(tmp_path / "v.xlsx", rows)
    with pytest.raises(MimamoriError) as err:
        validate_verdicts(read_verdict_file(path), KNOWN)
    text = str(err.value)
    assert text.startswith("verdicts: 3 problem(s):")
    assert (
        "pseudonym 'aaaa' answered differently 2 times: v.xlsx: sheet S01, row 2; v.xlsx: sheet S01, row 3"
        in text
    )
    assert "cell B4: unknown pseudonym 'zzzz'" in text and "cell E5" in text


def test_verdict_identical_duplicate_is_reported_and_kept_once(tmp_path):
    a = write_sheet(
        tmp_path / "a.xlsx",
        [row(1, "aaaa", fam="有"), row(2, "bbbb"), [None] * 9, [3, None, "S01"]],
    )
    b = write_sheet(tmp_path / "b.xlsx", [row(1, "aaaa", fam="有")])
    clean, dups = validate_verdicts(read_verdict_file(a) + read_verdict_file(b), KNOWN)
    assert clean["child_id"].tolist() == ["aaaa", "bbbb"]
    assert clean["needs_support"].tolist() == [True, False]
    assert dups == [
        "pseudonym 'aaaa' returned 2 times with the same answers: "
        "a.xlsx: sheet S01, row 2; b.xlsx: sheet S01, row 2"
    ]


def test_verdict_csv_in_cp932_and_complaint_counts_as_support(tmp_path):
    header = ",".join(h for _, h in REVIEWER_COLUMNS)
    text = header + "\n1,aaaa,S01,3,無,,有,疲れている,\n2,cccc,S01,4,無,,無,,\n"
    path = tmp_path / "v.csv"
    path.write_bytes(text.encode("cp932"))
    clean, _ = validate_verdicts(read_verdict_file(path), KNOWN)
    assert clean.set_index("child_id")["needs_support"].to_dict() == {"aaaa": True, "cccc": False}


def test_analyse_verdicts_joins_arms_and_counts_non_returns():
    sample = pd.DataFrame(
        {
            "child_id": ["a", "b", "c", "d"],
            "arm": ["high", "high", "low", "low"],
            "school_code": "S01",
            "grade": "3",
            "age": 9,
            "list_rank": [1, 2, 90, 95],
        }
    )
    verdicts = pd.DataFrame({"child_id": ["a", "b", "c"], "needs_support": [True, False, False]})
    items = pd.DataFrame({"child_id": ["a", "b", "c", "d"], "yc_x": [1, 0, 0, 1]})
    out = analyse_verdicts(verdicts, sample, REFERENCE_ROUNDS, "now", items)
    rates = out["arm_rates"].set_index("arm")
    assert rates.loc["low", ["drawn", "reviewed", "not_returned"]].tolist() == [2, 1, 1]
    assert out["rounds"]["round"].tolist() == ["FY2022", "FY2023", "now"]
    assert out["item_prevalence"].iloc[0].prevalence_support == 1.0


# -------------------------------------------------------------------------- re-identify
def test_reidentify_refused_without_table(city_cfg):
    main(city_cfg, ["draw"])
    with pytest.raises(MimamoriError, match="no correspondence table"):
        main(city_cfg, ["reidentify"])


def test_reidentify_writes_private_list(city_cfg):
    main(city_cfg, ["draw"])
    paths = review_paths(city_cfg)
    sample = pd.read_parquet(paths["sample"])
    table = pd.DataFrame(
        {
            "domain": "resident",
            "pseudonym": sample["child_id"],
            "code": [f"{100000 + i}" for i in range(len(sample))],
        }
    )
    paths["private"].mkdir(parents=True, exist_ok=True)
    table.to_parquet(paths["correspondence"], index=False)
    assert main(city_cfg, ["reidentify"]) == 0
    out = pd.read_csv(paths["private"] / "review_sample_reidentified.csv", dtype=str)
    assert list(out.columns) == [
        "sample_order",
        "child_id",
        "resident_code",
        "school_code",
        "grade",
    ]
    assert len(out) == len(sample)
    with pytest.raises(MimamoriError, match="1 pseudonym\\(s\\) of the list have no resident code"):
        reidentify(sample.loc[:, ["child_id"]], table.iloc[1:])


def test_cli_errors_are_one_line(city_cfg, monkeypatch, capsys, tmp_path):
    from helpers.__main__ import main as cli

    monkeypatch.setenv("MIMAMORI_DATA", str(tmp_path / "empty"))
    assert cli(["review", "draw"]) == 2
    assert "scores.parquet: not found" in capsys.readouterr().err


def test_simulate_uses_true_probability_through_the_oracle(city_cfg, capsys):
    """The generator's truth is keyed by real resident codes; helpers.oracle re-keys it to the
    pseudonyms (no correspondence table needed: that stays with the municipality)."""
    main(city_cfg, ["draw"])
    paths = review_paths(city_cfg)
    sample = pd.read_parquet(paths["sample"])
    code_of = {pseudonym(c, DEMO_KEY, "resident"): c for c in resident_codes(400)}
    codes = sample["child_id"].map(code_of)
    assert codes.notna().all()
    paths["truth"].parent.mkdir(parents=True)
    pd.DataFrame(
        {"resident_code": codes, "fiscal_year": 2023, "target": "young_carer", "p": 1.0}
    ).to_parquet(paths["truth"], index=False)
    city_cfg = city_cfg.with_overrides(
        {
            "review": {
                "simulated_reviewers": {
                    "sensitivity": 1.0,
                    "false_positive_rate": 0.0,
                    "response_rate": 1.0,
                }
            }
        }
    )
    main(city_cfg, ["simulate"])
    assert "truth from true_probability" in capsys.readouterr().out
    main(city_cfg, ["verdicts"])
    verdicts = pd.read_parquet(paths["verdicts"])
    assert len(verdicts) == len(sample) and verdicts["needs_support"].all()


# ------------------------------------------------------------------ report display helpers
def test_rounds_display_hides_values_derived_from_small_counts():
    rounds = compare_rounds(pd.DataFrame(REFERENCE_ROUNDS))
    shown = rounds_display(rounds, threshold=9)
    assert (shown["高：95%CI"] == "*").all() and (shown["Fisher p"] == "*").all()
    assert (shown["初回比（high rate vs first round）"] == "*").all()
    private = rounds_display(rounds, threshold=None)
    assert private["初回比（high rate vs first round）"].tolist() == ["1.0倍", "3.7倍"]
    assert private["高：要支援率（high rate）"].tolist() == ["6.3%", "22.9%"]
    assert private["高：95%CI"].iloc[1] == "12.1%–39.0%"


def test_results_headline_and_arm_display():
    rates = arm_rates(
        pd.DataFrame(
            {
                "arm": ["high"] * 40 + ["low"] * 20,
                "needs_support": [True] * 12 + [False] * 28 + [False] * 20,
            }
        )
    )
    rates.insert(1, "drawn", [80, 20])
    text = results_headline(rates, 0.01, threshold=9)
    assert (
        "高スコア群 要支援率 30.0%" in text
        and "低スコア群 要支援率 0.0%" in text
        and "0.010" in text
    )
    shown = arm_rates_display(rates, 9)
    assert "未回答（not returned）" not in shown.columns
    assert shown["95%信頼区間（95% CI）"].iloc[0] != "*"
    small = arm_rates(
        pd.DataFrame(
            {"arm": ["high"] * 12 + ["low"] * 3, "needs_support": [True] * 3 + [False] * 12}
        )
    )
    assert "非表示" in results_headline(small, 0.5, threshold=9)
    assert "Fisher p = 0.500" in results_headline(small, 0.5, threshold=None)


def test_plots_return_axes():
    import matplotlib

    matplotlib.use("Agg")
    rounds = compare_rounds(pd.DataFrame(REFERENCE_ROUNDS))
    ax = plot_hit_rates(rounds, threshold=9)
    assert ax.get_ylabel().startswith("要支援率")
    ax2 = plot_power_curve(0.05, 80, 20)
    assert len(ax2.get_lines()) >= 2


def test_population_tolerates_nullable_dtypes():
    frame = _frame()
    frame["school_age"] = frame["school_age"].astype("Int64")
    frame.loc[frame.index[:3], "school_age"] = pd.NA
    frame["known_young_carer"] = (frame["known_young_carer"] == 1).astype("boolean")
    frame["grade"] = pd.to_numeric(frame["grade"]).astype("Int64")
    counts = YC.exclusions(frame)
    assert counts.set_index("exclusion")["children"].sum() + YC.mask(frame).sum() == len(frame)
    assert counts.set_index("exclusion").loc["年齢不明（age unknown）", "children"] == 3
    ranked = eligible_ranking(frame[YC.mask(frame)], seed=1, population=YC)
    assert len(ranked) == len(frame) - 3


def test_truth_probability_prefers_oracle_then_label_then_model():
    sample = pd.DataFrame(
        {
            "oracle_p": [0.7, np.nan, np.nan],
            "label": [0.0, 1.0, np.nan],
            "probability": [0.1, 0.2, 0.3],
        }
    )
    p, source = truth_probability(sample)
    assert p.tolist() == [0.7, 1.0, 0.3]
    assert source.tolist() == ["true_probability", "label", "model_probability"]


def test_grade_text_and_capacity_reidentify(city_cfg):
    from helpers.review.sheets import grade_text

    assert grade_text(pd.Series([3.0, np.nan, 9.0])).tolist() == ["3", "", "9"]
    assert grade_text(pd.Series(["中1", None])).tolist() == ["中1", ""]
    main(city_cfg, ["draw"])
    paths = review_paths(city_cfg)
    cap = pd.read_parquet(paths["capacity_list"])
    paths["private"].mkdir(parents=True, exist_ok=True)
    pd.DataFrame(
        {
            "domain": ["household"] + ["resident"] * len(cap),
            "pseudonym": ["x", *cap["child_id"]],
            "code": ["1", *[str(300000 + i) for i in range(len(cap))]],
        }
    ).to_parquet(paths["correspondence"], index=False)
    assert main(city_cfg, ["reidentify", "--list", "capacity"]) == 0
    out = pd.read_csv(paths["private"] / "review_capacity_reidentified.csv", dtype=str)
    assert out["resident_code"].tolist() == [str(300000 + i) for i in range(len(cap))]
    assert "score" in out.columns and "arm" not in out.columns


def test_review_paths_target_override_leaves_config_alone():
    from helpers.config import load_config
    from helpers.review.stage import review_paths

    cfg = load_config(profile="")
    default = cfg["review"]["target"]
    other = next(t for t in cfg.run.targets if t != default)
    assert review_paths(cfg, other)["scores"].parent.name == other
    assert review_paths(cfg)["scores"].parent.name == default
    assert cfg["review"]["target"] == default
