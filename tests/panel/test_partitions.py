"""helpers.panel.partitions: the panel per child_id partition equals the whole panel."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

from helpers.panel import partitions as D
from helpers.panel import stage as P
from helpers.panel.coverage import source_coverage
from helpers.paths import paths

from .test_panel import FY, fixture_cfg, make_fixture_mart, pid
from .test_robustness import _write

OUTPUTS = ("panel", "feature_catalogue", "missingness", "panel_coverage", "leakage_check")


def _hashes(cfg) -> dict[str, str]:
    P_ = paths(cfg)
    return {n: hashlib.sha256(getattr(P_, n).read_bytes()).hexdigest() for n in OUTPUTS}


def test_partitions_cover_every_child_once():
    mart, decoders = P.encode_keys(make_fixture_mart())
    parts = [D.partition_children(decoders["resident_code"], k, 3) for k in range(3)]
    together = np.sort(np.concatenate(parts))
    np.testing.assert_array_equal(together, np.arange(len(decoders["resident_code"])))


def test_a_partition_s_rows_equal_the_same_rows_of_the_whole_year():
    mart, decoders = P.encode_keys(make_fixture_mart())
    cfg = fixture_cfg()
    coverage = source_coverage(mart, (), cfg)  # the export spans: from the whole mart, once
    whole = P.build_year(mart, FY, cfg, decoders=decoders, coverage=coverage)
    whole = whole.set_index("child_id")
    pieces = []
    for k in range(3):
        children = D.partition_children(decoders["resident_code"], k, 3)
        own = D.own_rows(mart, children)  # what the task keeps of the mart
        pieces.append(
            P.build_year(own, FY, cfg, decoders=decoders, coverage=coverage, children=children)
        )
    joined = pd.concat(pieces).set_index("child_id").sort_index()
    assert any(len(p) for p in pieces[1:]) and all(len(p) < len(whole) for p in pieces)
    pd.testing.assert_frame_equal(joined, whole)


def test_merged_notes_and_leakage_checks_add_up():
    note = {"children": 2, "no_household": 1, "household_member_unknown": 0, "in_movers": 1}
    merged = D.merge_notes([{2022: {**note, "labels_observed": True}}, {2022: dict(note)}])
    assert merged[2022]["children"] == 4 and merged[2022]["labels_observed"] is True
    part = {
        "rows_compared": 3,
        "same_children": True,
        "features_changed": [],
        "features_from_post_outcome_tables": [],
        "passed": True,
    }
    bad = {**part, "features_changed": ["b", "a"], "passed": False}
    out = D.merge_leakage([part, bad], ["a", "b", "c"])
    assert out["rows_compared"] == 6 and out["features_changed"] == ["a", "b"]
    assert not out["passed"]
    assert D.merge_leakage([part, part], ["a"])["passed"]
    moved = D.merge_leakage([part, {**bad, "same_children": False}], ["a", "b"])
    assert moved["features_changed"] == [] and not moved["passed"]


@pytest.mark.parametrize("drop", [(), ("long_term_care",)])
def test_the_dask_engine_writes_the_local_engine_s_files(tmp_path, drop):
    pytest.importorskip("dask.distributed")
    mart = make_fixture_mart()
    local = _write(tmp_path / "local", mart, drop=drop)
    assert P.main(local, []) == 0
    dask = _write(
        tmp_path / "dask",
        mart,
        drop=drop,
        run={
            "data_dir": str(tmp_path / "dask"),
            "engine": "dask",
            "dask": {"n_workers": 2, "partitions": 3},
        },
    )
    assert P.main(dask, []) == 0
    assert _hashes(dask) == _hashes(local)
    assert not list(paths(dask).panel_dir.glob(".partitions-*"))  # scratch removed


def test_same_month_checkups_keep_the_later_mart_row_in_any_partition():
    mart = make_fixture_mart()
    chk = mart["health_checkups"]
    # 40 records of one checkup in one (masked) month: the mart's last one is the value
    dup = pd.concat([chk] * 40, ignore_index=True)
    dup["weight_kg"] = np.arange(40, dtype="float64")
    mart["health_checkups"] = pd.concat([dup, chk.iloc[0:0]], ignore_index=True)
    encoded, decoders = P.encode_keys(mart)
    cfg = fixture_cfg()
    whole = P.build_year(encoded, FY, cfg, decoders=decoders).set_index("child_id")
    assert whole.loc[pid("c1"), "chk_y3_weight_kg"] == 39.0
    code = decoders["resident_code"].get_loc(pid("c1"))
    alone = P.build_year(encoded, FY, cfg, decoders=decoders, children=np.array([code]))
    assert alone["chk_y3_weight_kg"].tolist() == [39.0]
