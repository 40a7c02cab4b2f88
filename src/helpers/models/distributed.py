"""LightGBM fits trained data-parallel on the dask engine's cluster (``run.engine: dask`` with
``run.dask.lightgbm: distributed``): every fold fit of ``helpers.models.tuning`` (the tuning
folds and the final model per test year share one cache) calls :func:`fit_lgbm_distributed`.

The training rows are split by the stable hash partition of ``child_id``
(:func:`helpers.engine.child_partition`, ``run.dask.partitions``); each LightGBM *machine*
(rank) gets a fixed set of partitions and runs on one dask worker, and the machines train one
model together with LightGBM's data-parallel tree learner (``tree_learner=data``: each builds
histograms of its rows, the histograms are summed over the network). The hyper-parameters,
the positive-class weight (of the whole training set) and the number of rounds are the local
fit's (:func:`helpers.models.families.lgbm_params`); the result is an ordinary
``lgb.Booster``, so scoring, SHAP and everything downstream are unchanged.

Why not ``lightgbm.dask.DaskLGBMClassifier``: it maps dask workers to LightGBM ranks in the
order of ``Client.who_has`` (keys gathered in a Python ``set``, so the order changes with the
string hash seed of the process) and, when several workers share a host, gives them the ports
of ``machines`` by ``set.pop``. The rank decides which machine finds the bin boundaries of which
features (from its own rows), so the same data can give a different model on the next run
(LightGBM issue #5798). Here the same rows always form the same rank, the machine list is
built in rank order, and the network settings (random free ports) are removed from the
returned model, so the same run twice gives the same model string. It is the same LightGBM
distributed training that ``lightgbm.dask`` drives (network parameters ``machines``,
``local_listen_port``, ``num_machines``), the placement done here.

The model differs from the local fit: each machine finds the bins of its share of the features
from its own rows (not from a sample of all rows), and histograms are summed in another order.
On one machine it is the local fit exactly (tested). On the S city the test year's precision@k
of each candidate fell inside the local fit's bootstrap CI, and local and distributed scores
differ about as much as two local fits with different seeds.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from functools import partial
from operator import itemgetter
from typing import Any
from urllib.parse import urlparse

import lightgbm as lgb
import numpy as np

from helpers.config import Settings
from helpers.engine import child_partition, dask_client, run_tasks
from helpers.models.families import lgbm_params

TIME_OUT_MINUTES = 120  # LightGBM's network time-out (minutes)
_RUN_DEPENDENT = ("machines", "local_listen_port", "time_out")  # dropped from the model string


def enabled(cfg: Settings | None) -> bool:
    """Whether LightGBM fits go to the cluster: the dask engine with ``run.dask.lightgbm``
    ``distributed``."""
    if cfg is None or cfg.run.engine != "dask":
        return False
    return cfg.run.dask.lightgbm == "distributed"


def rank_rows(child_ids: np.ndarray, partitions: int, n_ranks: int) -> list[np.ndarray]:
    """Row indices of each LightGBM machine: the i-th non-empty child partition goes to rank
    ``i % n_ranks``; rows stay in their given order. Fewer ranks when fewer partitions hold
    rows. Depends only on the ids and the two counts (never on the cluster's addresses)."""
    part = child_partition(np.asarray(child_ids), int(partitions))
    present = [p for p in range(int(partitions)) if np.any(part == p)]
    n = max(1, min(int(n_ranks), len(present)))
    groups = [present[r::n] for r in range(n)]
    return [np.flatnonzero(np.isin(part, g)) for g in groups if g]


@dataclass
class _Port:
    """A listening socket held open on a worker until its LightGBM machine starts (so no other
    process takes the port in between), as ``lightgbm.dask`` does."""

    sock: socket.socket | None = None

    def acquire(self) -> int:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("", 0))
        return int(self.sock.getsockname()[1])

    def release(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def _acquire_port() -> tuple[_Port, int]:
    port = _Port()
    return port, port.acquire()


def _quiet_thread() -> None:
    """Silence LightGBM's native log in this thread (dask runs tasks in worker threads, where
    the level is not yet set): the network's progress messages (ports bound, ranks connected,
    retries) come before the training parameters' ``verbosity`` takes effect. Parsing a
    ``verbosity=-1`` configuration here (a one-row Dataset) sets the level first."""
    lgb.Dataset(np.zeros((2, 1)), params={"verbosity": -1}).construct()


def strip_network(model_str: str) -> str:
    """The model string without the run-dependent network settings (ports, machine list)."""
    lines = model_str.splitlines(keepends=True)
    return "".join(
        line for line in lines if not any(line.startswith(f"[{k}: ") for k in _RUN_DEPENDENT)
    )


def _train_machine(
    params: dict,
    X: np.ndarray,
    y: np.ndarray,
    features: list[str],
    max_bin: int,
    rounds: int,
    port: tuple[_Port, int],
    network: dict,
    keep: bool,
) -> str | None:
    """One LightGBM machine (runs on a worker): bins its rows, trains with the others, and
    returns the model string (the first machine only; every machine ends with the same model)."""
    holder, listen = port
    _quiet_thread()
    data = lgb.Dataset(
        X,
        label=y,
        feature_name=features,
        free_raw_data=True,
        params={"max_bin": int(max_bin), "feature_pre_filter": False, "verbosity": -1},
    )
    holder.release()
    booster = lgb.train({**params, **network, "local_listen_port": listen}, data, rounds)
    try:
        return strip_network(booster.model_to_string()) if keep else None
    finally:
        booster.free_network()


def rank_workers(addresses: list[str], n: int) -> list[str]:
    """The workers of ranks 0..n-1 (the first ``n`` addresses in sorted order). Which worker
    runs a rank does not change the model: a rank's rows and its place in the machine list are
    fixed; only the addresses (and so this order) change from one cluster to the next."""
    return sorted(addresses)[:n]


def _ports(client: Any, workers: list[str]) -> tuple[list[Any], str]:
    """A held free port on each worker (futures, to hand to the machines) and the machine list
    in rank order (``host:port``, one per worker)."""
    held = [
        client.submit(_acquire_port, workers=[w], allow_other_workers=False, pure=False)
        for w in workers
    ]
    numbers = client.gather(
        [
            client.submit(itemgetter(1), f, workers=[w], pure=False)
            for f, w in zip(held, workers, strict=True)
        ]
    )
    hosts = [f"{urlparse(w).hostname}:{n}" for w, n in zip(workers, numbers, strict=True)]
    return held, ",".join(hosts)


def fit_lgbm_distributed(
    cfg: Settings,
    X: np.ndarray,
    y: np.ndarray,
    child_ids: np.ndarray,
    cand: dict,
    seed: int,
    max_bin: int,
    features: list[str],
) -> lgb.Booster:
    """``families.fit_lgbm`` on the cluster: the candidate's LightGBM trained data-parallel on
    the rows of ``X`` split by child partition (see the module docstring). Each machine uses
    its worker's thread count (``run.dask.threads_per_worker`` on a LocalCluster)."""
    client = dask_client(cfg.run.dask)
    ncores = client.nthreads()
    ranks = rank_rows(child_ids, int(cfg.run.dask.partitions), len(ncores))
    workers = rank_workers(list(ncores), len(ranks))
    y = np.asarray(y)
    base = {**lgbm_params(cand, y, seed, 1), "tree_learner": "data"}
    held, machines = _ports(client, workers)
    network = {"machines": machines, "num_machines": len(ranks), "time_out": TIME_OUT_MINUTES}
    futures = []
    for r, (rows, w) in enumerate(zip(ranks, workers, strict=True)):
        Xr, yr = client.scatter([X[rows], y[rows]], workers=[w])
        params = {**base, "num_threads": int(ncores[w])}
        futures.append(
            client.submit(
                _train_machine,
                params,
                Xr,
                yr,
                list(features),
                int(max_bin),
                int(cand["n_estimators"]),
                held[r],
                network,
                r == 0,
                workers=[w],
                allow_other_workers=False,
                pure=False,
            )
        )
    model_str = client.gather(futures)[0]
    return lgb.Booster(model_str=model_str)


def _contrib_task(booster: lgb.Booster, X: np.ndarray) -> np.ndarray:
    return np.asarray(booster.predict(X, pred_contrib=True))


def partitioned_contrib(
    cfg: Settings | None, booster: lgb.Booster, X: np.ndarray, child_ids: np.ndarray
) -> np.ndarray:
    """``booster.predict(X, pred_contrib=True)`` (LightGBM's TreeSHAP: one row per row of ``X``,
    the features' contributions then the base value), per child partition on the dask engine.
    Each row's values are computed on their own, so they equal the local call's."""
    if cfg is None or cfg.run.engine != "dask" or not len(X):
        return _contrib_task(booster, X)
    part = child_partition(np.asarray(child_ids), int(cfg.run.dask.partitions))
    rows = [np.flatnonzero(part == p) for p in range(int(cfg.run.dask.partitions))]
    rows = [r for r in rows if len(r)]
    results = run_tasks(cfg, partial(_contrib_task, booster), [X[r] for r in rows], "SHAP")
    out = np.empty((len(X), X.shape[1] + 1), dtype=float)
    for r, values in zip(rows, results, strict=True):
        out[r] = values
    return out
