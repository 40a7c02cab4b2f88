"""helpers.engine: the same results in the same order on either engine."""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pytest

from helpers import MimamoriError
from helpers.config import load_config
from helpers.engine import child_partition, run_tasks


def _square_or_fail(x: int, bad: int) -> int:
    if x == bad:
        raise MimamoriError(f"item {x}: refused")
    return x * x


@pytest.fixture(scope="module")
def dask_cfg():
    pytest.importorskip("dask.distributed")
    return load_config(
        profile="tiny", overrides={"run": {"engine": "dask", "dask": {"n_workers": 2}}}
    )


def test_local_engine_runs_in_order():
    cfg = load_config(profile="tiny")
    assert run_tasks(cfg, functools.partial(_square_or_fail, bad=-1), [3, 1, 2], "t") == [9, 1, 4]


def test_dask_engine_gives_the_local_results_in_order(dask_cfg):
    fn = functools.partial(_square_or_fail, bad=-1)
    items = list(range(20, 0, -1))
    assert run_tasks(dask_cfg, fn, items, "t") == [x * x for x in items]


def test_a_task_error_reaches_the_caller_unchanged(dask_cfg):
    with pytest.raises(MimamoriError, match="item 2: refused"):
        run_tasks(dask_cfg, functools.partial(_square_or_fail, bad=2), [1, 2, 3], "t")


def test_child_partition_is_stable_and_spreads():
    ids = pd.Series([f"c{i:06d}" for i in range(4000)])
    p = child_partition(ids, 8)
    assert p.min() == 0 and p.max() == 7
    assert np.bincount(p).min() > 400
    np.testing.assert_array_equal(p, child_partition(ids.to_numpy(), 8))
    # a fixed value, so a change of hashing (and of every partitioned output) is noticed
    assert child_partition(pd.Series(["c000001"]), 1000)[0] == 678
