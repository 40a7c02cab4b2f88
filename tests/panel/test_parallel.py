"""The local engine's panel built by forked processes is the one-process panel, byte for byte."""

from __future__ import annotations

import os

import pytest

from helpers.panel import parallel
from helpers.panel import stage as P
from helpers.paths import paths

from .test_panel import make_fixture_mart
from .test_robustness import _write

OUTPUTS = ("panel", "feature_catalogue", "missingness", "panel_coverage", "leakage_check")


def test_year_blocks_are_contiguous_and_cover_every_year():
    years = [2017, 2018, 2019, 2020, 2021, 2022, 2023]
    assert parallel.year_blocks(years, 2) == [[2017, 2018, 2019], [2020, 2021, 2022, 2023]]
    assert parallel.year_blocks(years[:1], 2) == [[2017]]
    assert parallel.year_blocks(years, 1) == [years]


@pytest.mark.parametrize("drop", [(), ("long_term_care",)])
def test_forked_years_write_the_same_files(tmp_path, monkeypatch, drop):
    if parallel.process_count(2, 2) < 2:
        pytest.skip("one core or no fork here: the panel is built in one process")
    built, calls = {}, []
    forked = parallel.parallel_panel
    monkeypatch.setattr(parallel, "parallel_panel", lambda *a: calls.append(1) or forked(*a))
    for n in (1, 2):
        cfg = _write(tmp_path / f"p{n}", make_fixture_mart(), drop=drop)
        cfg = cfg.with_overrides({"run": {"local_workers": n}})
        assert P.main(cfg, []) == 0
        built[n] = {name: getattr(paths(cfg), name).read_bytes() for name in OUTPUTS}
        assert len(calls) == n - 1  # one process, then forked ones
    for name in OUTPUTS:
        assert built[2][name] == built[1][name], name


def test_process_count_is_capped_by_the_setting_the_cores_and_the_years():
    assert parallel.process_count(7, 1) == 1 and parallel.process_count(1, 2) == 1
    cores = len(os.sched_getaffinity(0))
    assert parallel.process_count(7, 64) == (
        min(cores, 7) if parallel.process_count(2, 2) > 1 else 1
    )
