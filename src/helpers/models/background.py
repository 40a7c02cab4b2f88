"""Tuning in the background: one thread per model family, beside the rest of the fit.

LightGBM trains on its two fixed threads while the logistic regression, the baselines and the
evaluation run single-threaded; side by side they keep both cores busy instead of waiting for
each other. Each family's thread tunes every origin in turn (the origins share their folds,
``FoldCache``) and then fits the final models not already fitted as a later origin's fold;
the main thread fits the baselines meanwhile and finishes each origin (fit final, calibrate,
score, evaluate) as soon as its models are ready; the last evaluated year's bootstrap runs
beside the backtest and the diagnostics.

Every fit is the same deterministic function of its fold's data and parameters, whichever
thread runs it and whenever, and every table is assembled in the one fixed order, so the
results are identical to fitting one step after the other (``run_in_turn``).
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor

import pandas as pd

from helpers.models import steps, summary
from helpers.models.artefacts import Fit
from helpers.models.settings import FitSettings
from helpers.models.steps import OriginRun, Prepared
from helpers.models.tuning import FamilyTuning, FoldCache, fill_year, tune_family

# Side by side, two families' training copies of a fold are in memory at once; a panel whose
# feature matrix is larger than this (a prefecture) fits one step at a time instead.
MAX_BACKGROUND_BYTES = 512 * 2**20
# Fold years fitted at once per family (at most run.local_workers): two LightGBM fits side by
# side, each on its two fixed threads (the same models), fill the time one leaves idle at its
# threads' every sync point.
YEARS_AT_ONCE = {"lightgbm": 2}


class FamilyTuner:
    """Per family and origin, the tuning result and the final model, as futures."""

    def __init__(self, prep: Prepared, s: FitSettings, cache: FoldCache) -> None:
        self.prep, self.s, self.cache = prep, s, cache
        self.families: list[str] = list(s.models.tuning.families)
        n = len(prep.origins)
        self.tuned: dict[str, list[Future]] = {
            f: [Future() for _ in range(n)] for f in self.families
        }
        self.final: dict[str, list[Future]] = {
            f: [Future() for _ in range(n)] for f in self.families
        }
        self.stop = threading.Event()  # the main thread failed: stop after the current origin
        self.ids = prep.fit_ids(s)  # (computed here, before the threads start)

    def run(self, family: str) -> None:
        """Tune ``family`` on every origin, then fit its final models (in a worker thread)."""
        try:
            self._run(family)
        except BaseException as exc:
            for fut in (*self.tuned[family], *self.final[family]):
                if not fut.done():
                    fut.set_exception(exc)
            raise

    def _prefetch(self, family: str, pool: ThreadPoolExecutor) -> dict[int, Future]:
        """Every fold year's candidates go to ``pool`` (several years at once); the origins'
        tuning then reads them from the cache. A time budget (``time_budget_s``) stops these
        fits once spent from now on; tuning then goes on as without them, within its own."""
        prep, s = self.prep, self.s
        budget = s.models.tuning.time_budget_s
        deadline = time.perf_counter() + float(budget) if budget else float("inf")
        years = sorted({v for origin in prep.origins for _, v in origin.folds})
        args = (prep.X, prep.y, prep.year)
        return {
            v: pool.submit(
                fill_year, family, *args, v, s, prep.features, self.cache, self.ids, deadline
            )
            for v in years
        }

    def _run(self, family: str) -> None:
        at_once = min(YEARS_AT_ONCE.get(family, 1), self.s.workers)
        with ThreadPoolExecutor(at_once, f"fit_{family}") as pool:
            years = self._prefetch(family, pool) if at_once > 1 else {}
            try:
                results = self._tune(family, years)
            except BaseException:
                pool.shutdown(cancel_futures=True)
                raise
        self._finals(family, results)

    def _tune(self, family: str, years: dict[int, Future]) -> list[FamilyTuning]:
        prep, s, cache = self.prep, self.s, self.cache
        results: list[FamilyTuning] = []
        for i, origin in enumerate(prep.origins):
            if self.stop.is_set():
                raise RuntimeError("models: stopped (the main thread failed)")
            for _, v in origin.folds:
                if v in years:
                    years[v].result()
            res = tune_family(
                family, prep.X, prep.y, prep.year, origin.folds, s, prep.features, cache, self.ids
            )
            results.append(res)
            self.tuned[family][i].set_result(res)
            self._resolve_finals(family, results)
        return results

    def _finals(self, family: str, results: list[FamilyTuning]) -> None:
        """The final models not fitted as a later origin's fold model."""
        prep, s, cache = self.prep, self.s, self.cache
        for i, origin in enumerate(prep.origins):
            if not self.final[family][i].done():
                params = results[i].info["params"]
                model = steps.final_model(prep, origin, family, params, s, cache)
                self.final[family][i].set_result(model)

    def _resolve_finals(self, family: str, results: list[FamilyTuning]) -> None:
        """Final models already fitted as a later origin's fold model are ready."""
        for i, res in enumerate(results):
            key = self.cache.key(family, res.info["params"], self.prep.origins[i].test_year)
            if not self.final[family][i].done() and key in self.cache.models:
                self.final[family][i].set_result(self.cache.models[key])

    def wait(self, i: int) -> dict[str, FamilyTuning]:
        """Origin ``i``'s tuning per family, once its final models are in the cache."""
        results: dict[str, FamilyTuning] = {f: self.tuned[f][i].result() for f in self.families}
        for f in self.families:
            self.final[f][i].result()
        return results


def keep_features(prep: Prepared, run: OriginRun) -> bool:
    """Diagnose reads the features of the latest evaluated origin and of the last origin."""
    return run.origin is prep.evaluated_origins[-1] or run.origin is prep.origins[-1]


def run_in_turn(
    prep: Prepared, truth: pd.DataFrame | None, s: FitSettings, cache: FoldCache
) -> list[OriginRun]:
    """Every origin one step after the other (tune, fit final, ...) in this thread."""
    last_evaluated = prep.evaluated_origins[-1]
    runs = []
    for origin in prep.origins:
        run = steps.run_origin(
            prep,
            origin,
            truth,
            s,
            cache,
            explain_list=origin is prep.origins[-1],
            full=origin is last_evaluated,
        )
        if not keep_features(prep, run):
            run.scored.drop_features()
        runs.append(run)
    return runs


def _origins_beside(
    prep: Prepared,
    truth: pd.DataFrame | None,
    s: FitSettings,
    cache: FoldCache,
    tuner: FamilyTuner,
) -> tuple[list[OriginRun], tuple[pd.DataFrame, str]]:
    """In this thread while the families tune: the baselines and the odds ratios, then each
    origin as soon as its models are ready (the full evaluation is left to the caller)."""
    baselines = [steps.fit_baselines(prep, origin, s) for origin in prep.origins]
    odds = summary.odds(prep, prep.evaluated_origins[-1], s)
    runs = []
    for i, origin in enumerate(prep.origins):
        tuned = steps.tuned_from(origin, tuner.wait(i), s)
        run = steps.finish_origin(
            prep,
            origin,
            tuned,
            truth,
            s,
            cache,
            baselines[i],
            explain_list=origin is prep.origins[-1],
        )
        if not keep_features(prep, run):
            run.scored.drop_features()
        runs.append(run)
    return runs, odds


def fit_beside(prep: Prepared, truth: pd.DataFrame | None, s: FitSettings, cache: FoldCache) -> Fit:
    """Every origin with the families tuned in background threads, then the latest evaluated
    year's bootstrap in a thread beside the backtest and the diagnostics (the same results)."""
    tuner = FamilyTuner(prep, s, cache)
    with ThreadPoolExecutor(len(tuner.families) + 1, thread_name_prefix="models") as pool:
        jobs = [pool.submit(tuner.run, family) for family in tuner.families]
        try:
            runs, odds = _origins_beside(prep, truth, s, cache, tuner)
            e = [r for r in runs if r.evaluation is not None][-1].evaluation
            assert e is not None
            full = pool.submit(steps.complete_evaluation, e, *steps.headline_inputs(e), s)
            backtest = summary.backtest(runs, s)
            diagnostics = summary.diagnose(prep, runs, s, odds)
            full.result()
        except BaseException:
            tuner.stop.set()
            raise
        for job in jobs:
            job.result()
    return Fit(prep, runs, backtest, diagnostics)


def fit(prep: Prepared, truth: pd.DataFrame | None, s: FitSettings) -> Fit:
    """Every origin's steps, the backtest and the diagnostics: with background threads
    (``fit_beside``) unless the panel is large (one fold's training copy in memory at a time),
    there is one family only or ``run.local_workers`` is 1."""
    cache = FoldCache()
    families = len(s.models.tuning.families)
    if s.workers > 1 and families > 1 and prep.X.nbytes <= MAX_BACKGROUND_BYTES:
        return fit_beside(prep, truth, s, cache)
    runs = run_in_turn(prep, truth, s, cache)
    return Fit(prep, runs, summary.backtest(runs, s), summary.diagnose(prep, runs, s))
