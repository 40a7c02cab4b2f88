"""The settings one target's fit reads, gathered once from the typed run settings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from helpers.config import ModelsSettings, Settings


@dataclass(frozen=True)
class FitSettings:
    """Everything the model steps read from ``cfg`` (steps never look at ``cfg`` themselves)."""

    seed: int
    k: int
    threads: int
    workers: int  # run.local_workers: steps side by side (families, LightGBM fold years)
    n_boot: int
    alpha: float
    n_orderings: int
    small: int
    synthetic: bool
    models: ModelsSettings
    run_cfg: Settings | None = None  # only for the engine (helpers.models.scoring)

    @classmethod
    def from_config(cls, cfg: Settings) -> FitSettings:
        m = cfg.models
        return cls(
            seed=int(cfg.run.seed),
            k=int(cfg.run.capacity),
            threads=int(m.num_threads),
            workers=max(1, int(cfg.run.local_workers)),
            n_boot=int(m.bootstrap.n),
            alpha=float(m.bootstrap.alpha),
            n_orderings=int(m.tie_orderings),
            small=int(cfg.reports.small_cell_threshold),
            synthetic=bool(cfg.run.synthetic),
            models=m,
            run_cfg=cfg if cfg.run.engine != "local" else None,
        )

    def space(self, family: str) -> dict[str, list[Any]]:
        return dict(getattr(self.models, f"{family}_space"))

    def defaults(self, family: str) -> dict[str, Any]:
        return dict(getattr(self.models, f"{family}_defaults"))
