"""Where the work runs: this process (``run.engine: local``) or a dask.distributed cluster.

Stages hand independent pieces of work (one export file, one hash partition of children) to
:func:`run_tasks`, which runs them here in order or as tasks on a cluster and returns the
results in the order given either way, so what a stage writes does not depend on the engine.
The cluster is a ``LocalCluster`` started in this process (``run.dask.n_workers`` worker
processes) unless ``run.dask.scheduler_address`` names a running scheduler
(``dask scheduler`` on one node, ``dask worker tcp://host:8786`` on the others; each worker
needs this package installed and the data folder mounted at the same path).

Task functions must be importable module-level functions (``functools.partial`` of one is
fine): worker processes import them by name.
"""

from __future__ import annotations

import atexit
import logging
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from helpers.config import DaskSettings, Settings

T = TypeVar("T")
R = TypeVar("R")

_CLIENTS: dict[DaskSettings, Any] = {}


def dask_client(settings: DaskSettings) -> Any:
    """The process's client for these settings, started on first use and closed at exit."""
    if settings not in _CLIENTS:
        from dask.distributed import Client, LocalCluster

        if settings.scheduler_address:
            client = Client(settings.scheduler_address)
        else:
            cluster = LocalCluster(
                n_workers=settings.n_workers,
                threads_per_worker=settings.threads_per_worker,
                memory_limit=settings.memory_limit,
                processes=True,
                dashboard_address=":0",  # a free port: never clash with another cluster
                silence_logs=logging.WARNING,
            )
            client = Client(cluster)
        _CLIENTS[settings] = client
    return _CLIENTS[settings]


def close_clients() -> None:
    """Shut down every client (and LocalCluster) this process started."""
    while _CLIENTS:
        _, client = _CLIENTS.popitem()
        cluster = client.cluster
        client.close()
        if cluster is not None:
            cluster.close()


atexit.register(close_clients)


def run_tasks(cfg: Settings, fn: Callable[[T], R], items: Sequence[T], desc: str) -> list[R]:
    """``[fn(item) for item in items]`` here or on the cluster, results in the given order.

    An error raised inside a task (a :class:`helpers.MimamoriError` naming a file and row,
    say) is raised here unchanged, on either engine.
    """
    if cfg.run.engine == "local" or not items:
        return [fn(item) for item in tqdm(items, desc=desc, leave=False)]
    from dask.distributed import as_completed

    client = dask_client(cfg.run.dask)
    futures = client.map(fn, list(items), pure=False)
    for _ in tqdm(as_completed(futures), total=len(futures), desc=f"{desc} (dask)", leave=False):
        pass
    return list(client.gather(futures))


def child_partition(child_ids: pd.Series | np.ndarray, n: int) -> np.ndarray:
    """Stable hash partition (0..n-1) of each child id: the same id lands in the same
    partition on every machine and run (pandas' fixed-key SipHash, not Python's ``hash``)."""
    values = pd.Series(child_ids, copy=False).astype("string").to_numpy(dtype=object)
    return (pd.util.hash_array(values) % np.uint64(n)).astype("int64")
