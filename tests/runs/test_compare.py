"""Two archived runs compared on the same child-years: paired bootstrap, verdict, refusals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest

from helpers import MimamoriError
from helpers.models import evaluation as ev
from helpers.paths import paths
from helpers.runs import compare as C
from helpers.runs import ledger as L
from helpers.runs.archive import archive_run

from .conftest import population, scores_for, write_models_run

T0 = datetime(2024, 4, 1, 9, 30, tzinfo=UTC)


def archive(cfg, scores, minutes=0, target="young_carer", **kw):
    write_models_run(cfg, target, scores, **kw)
    return archive_run(cfg, target, now=T0 + timedelta(minutes=minutes))


@pytest.fixture
def pop():
    return population(n=400, prevalence=0.1)


def test_a_run_against_itself_differs_by_exactly_zero(cfg, pop):
    run = archive(cfg, scores_for(pop, 1.0, 1))
    cmp = C.compare_runs(cfg, run, run, "young_carer")
    p = cmp.paired.pooled
    assert p["difference"] == 0.0 and p["ci_low"] == 0.0 and p["ci_high"] == 0.0
    assert (cmp.paired.replicates == 0).all()
    assert cmp.verdict == C.SAME == "no detectable difference"
    assert list(cmp.paired.per_year["fiscal_year"]) == [2021, 2022, 2023]


def test_a_much_better_ranking_is_better_and_the_reverse_worse(cfg, pop):
    weak = archive(cfg, scores_for(pop, 0.0, 1))
    strong = archive(cfg, scores_for(pop, 4.0, 2), minutes=1)
    up = C.compare_runs(cfg, weak, strong, "young_carer")
    assert up.verdict == C.BETTER and up.paired.pooled["ci_low"] > 0
    down = C.compare_runs(cfg, strong, weak, "young_carer")
    assert down.verdict == C.WORSE and down.paired.pooled["ci_high"] < 0
    assert down.paired.pooled["difference"] == -up.paired.pooled["difference"]


def test_hits_are_those_of_the_lists_staff_get(cfg, pop):
    a, b = scores_for(pop, 1.0, 1), scores_for(pop, 2.0, 2)
    ra, rb = archive(cfg, a), archive(cfg, b, minutes=1)
    cmp = C.compare_runs(cfg, ra, rb, "young_carer")
    k = cfg.run.capacity
    for run_scores, col in ((a, "hits_base"), (b, "hits_new")):
        live = run_scores[(run_scores["known"] == 0) & run_scores["label"].notna()]
        top = live[live["rank"] <= k]
        expected = top.groupby("fiscal_year")["label"].sum().to_numpy()
        np.testing.assert_array_equal(cmp.paired.per_year[col].to_numpy(), expected)
    p, y = cmp.paired.pooled, cmp.paired.per_year
    assert p["difference"] == pytest.approx((y["hits_new"] - y["hits_base"]).sum())
    assert p["precision_new"] == pytest.approx(y["hits_new"].sum() / (3 * k))


def test_topk_matches_the_models_stage_without_ties_and_splits_ties_pro_rata():
    rng = np.random.default_rng(3)
    y = (rng.random(500) < 0.1).astype(float)
    s1, s2 = rng.normal(size=500), rng.normal(size=500)
    ref = ev.paired_hits_difference(y, s1, s2, k=40, n_boot=0)
    ones = np.ones(500)
    assert C.TopK(y, s1).hits(ones, 40) == pytest.approx(ref["hits_a"])
    assert C.TopK(y, s2).hits(ones, 40) == pytest.approx(ref["hits_b"])
    tied = C.TopK(np.array([1.0, 0, 1, 0]), np.array([2.0, 1, 1, 1]))
    assert tied.hits(np.ones(4), 2) == pytest.approx(1 + 1 / 3)
    assert tied.hits(np.array([0, 1, 1, 1]), 1) == pytest.approx(1 / 3)


def test_verdict_reads_the_interval():
    assert C.verdict(0.5, 3.0) == C.BETTER
    assert C.verdict(-3.0, -0.1) == C.WORSE
    assert C.verdict(-1.0, 2.0) == C.SAME
    assert C.verdict(0.0, 0.0) == C.SAME


def test_same_seed_same_interval(cfg, pop):
    a, b = archive(cfg, scores_for(pop, 1.0, 1)), archive(cfg, scores_for(pop, 1.5, 2), minutes=1)
    one = C.compare_runs(cfg, a, b, "young_carer").paired.pooled
    two = C.compare_runs(cfg, a, b, "young_carer").paired.pooled
    assert one == two


# ------------------------------------------------------------------------------ bad input
def test_unknown_run_id_names_it_and_the_latest_runs(cfg, pop):
    run = archive(cfg, scores_for(pop, 1.0, 1))
    with pytest.raises(MimamoriError, match=rf"unknown run id 'nosuch' \(latest: {run}"):
        C.compare_runs(cfg, "nosuch", run, "young_carer")


def test_no_runs_yet(cfg):
    with pytest.raises(MimamoriError, match="no archived runs yet"):
        C.compare_runs(cfg, "latest", "previous", "young_carer")


def test_run_of_another_target_is_refused(cfg, pop):
    yc = archive(cfg, scores_for(pop, 1.0, 1))
    pa = archive(cfg, scores_for(pop, 1.0, 1), minutes=1, target="physical_abuse")
    with pytest.raises(
        MimamoriError,
        match=rf"run {pa} is a run of target 'physical_abuse', "
        "not 'young_carer'",
    ):
        C.compare_runs(cfg, yc, pa, "young_carer")


def test_runs_with_other_test_years_are_refused(cfg, pop):
    three = archive(cfg, scores_for(pop, 1.0, 1))
    two = archive(cfg, scores_for(pop[pop["fiscal_year"] > 2021], 1.0, 1), minutes=1)
    with pytest.raises(
        MimamoriError,
        match=r"tested on different years \(FY2021, FY2022, FY2023 "
        r"vs FY2022, FY2023\)",
    ):
        C.compare_runs(cfg, three, two, "young_carer")


def test_runs_with_other_test_children_are_refused(cfg, pop):
    a = archive(cfg, scores_for(pop, 1.0, 1))
    fewer = scores_for(pop, 1.0, 1)
    fewer = fewer[~((fewer["child_id"] == fewer["child_id"].iloc[0]) & (fewer["known"] == 0))]
    b = archive(cfg, fewer.iloc[1:], minutes=1)
    with pytest.raises(MimamoriError, match=rf"runs {a} and {b} have different test populations"):
        C.compare_runs(cfg, a, b, "young_carer")


def test_runs_that_disagree_on_outcomes_are_refused(cfg, pop):
    a = archive(cfg, scores_for(pop, 1.0, 1))
    other = scores_for(pop, 1.0, 1)
    other.loc[other.index[:3], "label"] = 1 - other.loc[other.index[:3], "label"]
    b = archive(cfg, other, minutes=1)
    with pytest.raises(MimamoriError, match="disagree on the outcome of 3 test child-years"):
        C.compare_runs(cfg, a, b, "young_carer")


def test_runs_with_another_list_length_are_refused(cfg, pop):
    a = archive(cfg, scores_for(pop, 1.0, 1))
    b = archive(cfg.with_overrides({"run": {"capacity": 50}}), scores_for(pop, 1.0, 1), minutes=1)
    with pytest.raises(MimamoriError, match=r"different list lengths \(k = 30 vs 50"):
        C.compare_runs(cfg, a, b, "young_carer")


@pytest.mark.parametrize(
    "name", ["scores.parquet", "metrics.json", "params.json", "feature_catalogue.csv"]
)
def test_a_deleted_archived_file_names_the_run_and_the_file(cfg, pop, name):
    a = archive(cfg, scores_for(pop, 1.0, 1))
    b = archive(cfg, scores_for(pop, 1.0, 2), minutes=1)
    (paths(cfg).run(b).dir / name).unlink()
    with pytest.raises(MimamoriError, match=rf"^run {b}: archived file {name} is missing"):
        C.compare_runs(cfg, a, b, "young_carer")


def test_a_deleted_run_folder_and_a_pruned_run(cfg, pop):
    cfg = cfg.with_overrides({"runs": {"keep_last": 2}})
    ids = [archive(cfg, scores_for(pop, 1.0, i), minutes=i) for i in range(3)]
    with pytest.raises(MimamoriError, match=rf"run {ids[0]}: its folder was deleted by retention"):
        C.compare_runs(cfg, ids[0], ids[2], "young_carer")
    import shutil

    shutil.rmtree(paths(cfg).run(ids[1]).dir)
    with pytest.raises(MimamoriError, match=rf"run {ids[1]}: archived folder .* is missing"):
        C.compare_runs(cfg, ids[1], ids[2], "young_carer")


def test_references_latest_previous_and_prefixes(cfg, pop):
    a = archive(cfg, scores_for(pop, 1.0, 1))
    b = archive(cfg, scores_for(pop, 1.0, 2), minutes=1)
    ledger = L.read_ledger(paths(cfg))
    assert L.resolve(ledger, "latest", "young_carer")["run_id"] == b
    assert L.resolve(ledger, "previous", "young_carer")["run_id"] == a
    assert L.resolve(ledger, b[:17], None)["run_id"] == b  # unique prefix (the minute differs)
    with pytest.raises(MimamoriError, match="is ambiguous"):
        L.resolve(ledger, "20240401-09", None)
    with pytest.raises(MimamoriError, match="needs --target"):
        L.resolve(ledger, "latest", None)
    with pytest.raises(MimamoriError, match="only 0 archived run"):
        L.resolve(ledger, "latest", "physical_abuse")
    cmp = C.compare_runs(cfg, "previous", "latest")  # target: that of the newest run
    assert (cmp.base.run_id, cmp.new.run_id, cmp.target) == (a, b, "young_carer")


def test_unknown_target_is_refused(cfg, pop):
    a = archive(cfg, scores_for(pop, 1.0, 1))
    with pytest.raises(MimamoriError, match="--target 'bullying': not one of run.targets"):
        C.compare_runs(cfg, a, a, "bullying")


def test_ledger_that_is_not_a_ledger(cfg):
    P = paths(cfg)
    P.runs.mkdir(parents=True)
    pd.DataFrame({"x": [1]}).to_parquet(P.runs_ledger)
    with pytest.raises(MimamoriError, match="not a run ledger"):
        L.read_ledger(P)
