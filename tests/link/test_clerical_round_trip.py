"""Clerical review end to end on the tiny city: the workbook is written by ingest, filled by a
script (the simulated clerk), read back by the next ingest, and the decided pairs are never
asked again; the simulated clerk is refused on real data."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest

from helpers import MimamoriError
from helpers.config import load_config
from helpers.ingest.stage import main as ingest_main
from helpers.link.evaluate import read_truth
from helpers.link.simulate import answers_for, simulate_clerical, true_codes_by_record
from helpers.paths import paths

pytestmark = pytest.mark.slow


@pytest.fixture
def city(tiny_city, tmp_path, monkeypatch):
    data = tmp_path / "data"
    shutil.copytree(tiny_city["data"], data)
    for var in ("MIMAMORI_DATA", "MIMAMORI_PROFILE", "MIMAMORI_CONFIG"):
        monkeypatch.delenv(var, raising=False)
    cfg = load_config(profile="tiny", overrides={"run": {"data_dir": str(data)}})
    return cfg, paths(cfg)


def test_decided_pairs_are_applied_and_never_asked_again(city):
    cfg, P = city
    asked = pd.read_parquet(P.linkage_review_pairs)
    assert len(asked), "the tiny city should leave some pairs for clerical review"
    truth = true_codes_by_record(pd.read_parquet(P.key_master), read_truth(P.raw, P))
    answers = answers_for(asked, truth)
    done = simulate_clerical(cfg, P)
    assert done["same"] + done["different"] == len(asked)
    assert ingest_main(cfg, ["--force"]) == 0
    report = json.loads(P.linkage_report.read_text(encoding="utf-8"))
    assert report["decisions_on_file"] == len(asked)
    still = (
        set(pd.read_parquet(P.linkage_review_pairs)["pair_id"])
        if P.linkage_review_pairs.exists()
        else set()
    )
    assert not still & set(asked["pair_id"]), "a decided pair was asked again"
    linked = pd.read_parquet(P.key_master).groupby("record_id")["resident_code"].first()
    same = asked[answers.to_numpy() == "同一"]
    assert len(same), "no pair judged the same person"
    assert (linked.loc[same["record_id"]].to_numpy() == same["resident_code"].to_numpy()).all()


def test_simulated_clerk_refused_on_real_data(city):
    cfg, P = city
    with pytest.raises(MimamoriError, match="refused: run.synthetic is false"):
        simulate_clerical(cfg.with_overrides({"run": {"synthetic": False}}), P)


def test_answers_follow_the_truth():
    pairs = pd.DataFrame({"record_id": ["a", "a", "b"], "resident_code": ["1", "2", "3"]})
    truth = pd.Series({"a": "2", "b": pd.NA})
    assert answers_for(pairs, truth).tolist() == ["別人", "同一", "別人"]
