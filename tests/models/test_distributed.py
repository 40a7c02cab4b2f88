"""helpers.models.distributed: LightGBM trained data-parallel on a LocalCluster (tiny data).

The cluster is the engine's (``helpers.engine.dask_client``: free ports chosen by the OS); the
LightGBM machines take free ports too, so the test runs on any machine.
"""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest

from helpers.config import load_config
from helpers.models import distributed as dist
from helpers.models import evaluation as ev
from helpers.models import families as fam
from helpers.models.distributed import (
    fit_lgbm_distributed,
    partitioned_contrib,
    rank_rows,
    strip_network,
)

CAND = {
    "learning_rate": 0.1,
    "num_leaves": 15,
    "min_child_samples": 20,
    "reg_lambda": 1.0,
    "colsample_bytree": 0.8,
    "subsample": 0.8,
    "weighting": "sqrt",
    "n_estimators": 60,
}
FEATURES = [f"f{i}" for i in range(8)]
K = 200


def _toy(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rare events (~4%) driven by two features, one non-linearly; ids like the panel's."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, len(FEATURES))).astype(np.float32)
    logit = 1.2 * X[:, 0] + np.where(X[:, 1] > 0.5, 1.5, 0.0) - 4.0
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    ids = np.array([f"c{seed}{i:07d}" for i in range(n)])
    return X, y, ids


@pytest.fixture(scope="module")
def dask_cfg():
    pytest.importorskip("lightgbm.dask", reason="lightgbm's dask support is not installed")
    return load_config(
        profile="tiny",
        overrides={"run": {"engine": "dask", "dask": {"n_workers": 2, "partitions": 4}}},
    )


@pytest.fixture(scope="module")
def fitted(dask_cfg):
    X, y, ids = _toy(12000, 1)
    first = fit_lgbm_distributed(dask_cfg, X, y, ids, CAND, 7, 63, FEATURES)
    # a new cluster has other addresses, so its sorted order may put the ranks on the other
    # workers: fit again with the workers taken in reverse order
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(dist, "rank_workers", lambda addresses, n: sorted(addresses)[::-1][:n])
        again = fit_lgbm_distributed(dask_cfg, X, y, ids, CAND, 7, 63, FEATURES)
    local = fam.fit_lgbm(fam.lgbm_dataset(X, y, 63, FEATURES), CAND, 7, 1)
    return first, again, local


def test_rank_rows_fixed_by_the_ids_and_complete():
    ids = np.array([f"c{i:06d}" for i in range(3000)])
    ranks = rank_rows(ids, 4, 2)
    assert len(ranks) == 2
    rows = np.concatenate(ranks)
    assert sorted(rows.tolist()) == list(range(3000))
    for a, b in zip(ranks, rank_rows(ids, 4, 2), strict=True):
        np.testing.assert_array_equal(a, b)
    assert len(rank_rows(ids, 4, 8)) == 4  # never more machines than non-empty partitions
    assert len(rank_rows(ids[:1], 4, 2)) == 1


def test_model_string_has_no_ports():
    text = "[tree_learner: data]\n[machines: 127.0.0.1:5,127.0.0.1:6]\n[local_listen_port: 5]\n"
    assert strip_network(text) == "[tree_learner: data]\n"


def test_distributed_fit_is_a_booster_that_predicts(fitted):
    first, _, _ = fitted
    assert isinstance(first, lgb.Booster)
    assert first.num_trees() == CAND["n_estimators"]
    assert "tree_learner: data" in first.model_to_string()
    assert "[machines: " not in first.model_to_string()
    assert "[local_listen_port: " not in first.model_to_string()
    X, _, _ = _toy(500, 2)
    score = fam.margin(first, X)
    assert score.shape == (500,) and np.all(np.isfinite(score)) and score.std() > 0


def test_distributed_fit_is_deterministic(fitted):
    """The same data and settings with other ports and the ranks on other workers (as on a
    fresh cluster): the same model, byte for byte."""
    first, again, _ = fitted
    assert first.model_to_string() == again.model_to_string()


def test_precision_at_k_within_noise_of_the_local_fit(fitted):
    first, _, local = fitted
    X, y, _ = _toy(12000, 3)
    dist = ev.precision_at_k(y, fam.margin(first, X), K)
    here = ev.precision_at_k(y, fam.margin(local, X), K)
    ci = ev.bootstrap_ci(lambda yy, s: ev.precision_at_k(yy, s, K), [y, fam.margin(local, X)])
    noise = 3 * np.sqrt(here * (1 - here) / K)
    assert here > 3 * y.mean()  # the toy signal is learnt
    print(f"precision@{K}: distributed {dist:.3f}, local {here:.3f} (CI {ci})")
    assert abs(dist - here) <= noise, (dist, here, ci)
    assert np.corrcoef(fam.margin(first, X), fam.margin(local, X))[0, 1] > 0.95


def test_shap_per_partition_equals_the_local_call(dask_cfg, fitted):
    first, _, _ = fitted
    X, _, ids = _toy(400, 4)
    contrib = partitioned_contrib(dask_cfg, first, X, ids)
    np.testing.assert_array_equal(contrib, first.predict(X, pred_contrib=True))
    np.testing.assert_allclose(contrib.sum(axis=1), fam.margin(first, X), rtol=1e-9, atol=1e-9)


def test_one_machine_gives_the_local_model(dask_cfg, monkeypatch):
    """Every row on one machine: the very model of ``families.fit_lgbm`` (same parameters,
    weights and rounds); two machines differ only by their binning and histogram sums."""
    X, y, ids = _toy(4000, 5)
    monkeypatch.setattr(dist, "rank_rows", lambda ids, partitions, n: [np.arange(len(ids))])
    one = fit_lgbm_distributed(dask_cfg, X, y, ids, CAND, 7, 63, FEATURES)
    local = fam.fit_lgbm(fam.lgbm_dataset(X, y, 63, FEATURES), CAND, 7, 2)
    trees = [b.model_to_string().split("parameters:")[0] for b in (one, local)]
    assert trees[0] == trees[1]


def test_enabled_only_on_the_dask_engine(dask_cfg):
    assert dist.enabled(dask_cfg)
    assert not dist.enabled(None)
    assert not dist.enabled(load_config(profile="tiny"))
    here = {"run": {"engine": "dask", "dask": {"lightgbm": "local"}}}
    assert not dist.enabled(load_config(profile="tiny", overrides=here))
