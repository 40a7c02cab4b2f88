"""A blind that holds (helpers.review.blind) and power by the test that is run (Fisher exact)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from helpers.review.blind import allocate, arm_predictability, strata_key
from helpers.review.sheets import reviewer_frame
from helpers.review.stage import blinded_sample, eligible_ranking
from helpers.review.stats import (
    fisher_exact_power,
    fisher_sample_size,
    power_table,
    sample_size,
)


def graded_city(n: int = 3000, seed: int = 3) -> pd.DataFrame:
    """Eligible children whose score rises steeply with grade and differs by school - as a
    young-carer score does with age - so the top of the ranking is the oldest grades."""
    rng = np.random.default_rng(seed)
    grade = rng.integers(5, 10, n)
    school = rng.choice([f"S{i:02d}" for i in range(1, 9)], n)
    bump = pd.Series(school).map({f"S{i:02d}": i / 10 for i in range(1, 9)}).to_numpy()
    score = 1.5 * grade + 2 * bump + rng.normal(0, 1.0, n)
    return pd.DataFrame(
        {
            "child_id": [f"{i:016x}" for i in range(n)],
            "fiscal_year": 2023,
            "score": score,
            "school_code": school,
            "grade": grade.astype(str),
            "school_age": grade + 5,
        }
    )


def sheet_check(sample: pd.DataFrame) -> dict:
    """The classifier sees exactly what the reviewer sheet shows (school, grade)."""
    sheet = reviewer_frame(sample)
    return arm_predictability(sheet[["school_code", "grade"]], sample["arm"], seed=0)


def test_a_classifier_on_the_sheet_cannot_tell_the_stratified_arms_apart():
    ranked = eligible_ranking(graded_city(), seed=1)
    sample, info = blinded_sample(ranked, 80, 20, 0.5, seed=2, strata=["school_code", "grade"])
    check = sheet_check(sample)
    assert check["ci_low"] <= 0.5 <= check["ci_high"] and check["blind"]
    assert info["shortfall"] == 0


def test_without_strata_the_sheet_gives_the_arm_away():
    """The check can fail: the reference design (low arm from everyone at the bottom) is
    separable by grade alone."""
    ranked = eligible_ranking(graded_city(), seed=1)
    sample, _ = blinded_sample(ranked, 80, 20, 0.5, seed=2, strata=[])
    check = sheet_check(sample)
    assert check["ci_low"] > 0.5 and not check["blind"]


def test_allocation_follows_the_high_arm_and_respects_the_pool():
    high = pd.Series({"a": 40, "b": 30, "c": 10})
    assert allocate(high, pd.Series({"a": 99, "b": 99, "c": 99}), 20).to_dict() == {
        "a": 10,
        "b": 8,
        "c": 2,
    }
    capped = allocate(high, pd.Series({"a": 2, "b": 99, "c": 99}), 20)
    assert capped["a"] == 2 and capped.sum() == 20
    assert allocate(high, pd.Series({"a": 1, "b": 1}), 20).sum() == 2  # pool exhausted


def test_grade_bands_group_the_strata():
    frame = pd.DataFrame({"school_code": ["S1", "S1", "S2"], "grade": ["4", "6", "8"]})
    key = strata_key(frame, ["school_code", "grade"], [[1, 3], [4, 6], [7, 9]])
    assert key.tolist() == ["S1|4-6", "S1|4-6", "S2|7-9"]


# ------------------------------------------------------------------------------- power
def test_exact_sample_size_for_the_reference_rates():
    """22.9% vs 5% (the reference's FY2023 high arm against a 5% low arm): the normal
    approximation says 53 per arm, where Fisher's exact test has power 0.70; exact needs 64."""
    assert sample_size(0.229, 0.05)["n_high"] == 53
    assert fisher_exact_power(0.229, 0.05, 53, 53) == pytest.approx(0.70, abs=0.01)
    exact = fisher_sample_size(0.229, 0.05, 0.05, 0.8, 1.0)
    assert (exact["n_high"], exact["n_low"]) == (64, 64) and exact["normal_n_high"] == 53
    assert exact["power"] >= 0.8
    assert fisher_exact_power(0.229, 0.05, 63, 63) < 0.8


def test_power_table_is_exact_with_the_normal_approximation_beside_it():
    table = power_table(0.2, 0.05, 80, 20, response_rate=0.4)
    needed = table.iloc[1]
    assert needed["power_fisher"] >= 0.8 and needed["n_high"] >= needed["normal_n_high"]
    planned = table.iloc[2]
    assert (planned.n_high, planned.n_low) == (80, 20)
    assert planned["power_fisher"] == pytest.approx(fisher_exact_power(0.2, 0.05, 80, 20))
    assert planned["power_fisher"] < 0.8  # 80:20 is under-powered for 20% vs 5%
    assert planned["detectable_high_rate"] > planned["detectable_high_rate_normal"]
