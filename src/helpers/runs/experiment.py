"""The feature-experiment path of notebook 10: add a feature, rebuild, compare with the last run.

A contractor adds a candidate feature to ``helpers.panel.features`` (a registry entry and the
code that computes it as of 1 April), then :func:`start` remembers the run to compare with,
:func:`rebuild` rebuilds the panel (with its leakage check) and the models of one target (the
models stage archives the new run), :func:`leakage_table` shows what the leakage check says
about the candidate, and :func:`land` writes the comparison and renders report 07.
"""

from __future__ import annotations

import contextlib
import io
import json
from dataclasses import dataclass, replace

import pandas as pd

from helpers import MimamoriError
from helpers.config import Settings
from helpers.paths import paths
from helpers.runs import ledger as L
from helpers.runs.compare import Comparison, compare_runs
from helpers.runs.report import Table


@dataclass(frozen=True)
class Experiment:
    """One feature experiment: the run before (``base``) and, after :func:`rebuild`, the new."""

    cfg: Settings
    target: str
    feature: str
    base: str
    new: str = ""


def registered(cfg: Settings) -> pd.DataFrame:
    """The feature catalogue the current code would write (the registry, not the built panel)."""
    from helpers.panel import features as F

    return F.feature_catalogue(cfg)


def start(cfg: Settings, target: str, feature: str = "", base: str = "latest") -> Experiment:
    """Check the target and the candidate feature; pin the run to compare with."""
    if target not in cfg.run.targets:
        raise MimamoriError(f"target {target!r}: not one of run.targets {list(cfg.run.targets)}")
    if feature:
        cat = registered(cfg)
        row = cat[cat["name"] == feature]
        if not len(row):
            raise MimamoriError(
                f"feature {feature!r} is not in helpers.panel.features."
                "feature_registry: add its registry entry first (step 1)"
            )
        if row["role"].iat[0] != "feature":
            raise MimamoriError(
                f"feature {feature!r} has role {row['role'].iat[0]!r} in the "
                "registry; only role 'feature' columns reach the models"
            )
    ledger = L.read_ledger(paths(cfg))
    if not len(L.runs_of(ledger, target)):
        raise MimamoriError(
            f"no archived run of {target!r} yet: run `make models` (before "
            "changing the feature) so there is a run to compare with"
        )
    return Experiment(cfg, target, feature, str(L.resolve(ledger, base, target)["run_id"]))


def feature_table(exp: Experiment) -> Table:
    """The candidate's registry entry (name, Japanese label, sources, window, type)."""
    from helpers.panel.features import CATALOGUE_COLUMNS

    cat = registered(exp.cfg)
    cols = [c for c in CATALOGUE_COLUMNS if c != "role" and c in cat.columns]
    frame = cat.loc[cat["name"] == exp.feature, cols]
    return Table(
        frame.reset_index(drop=True),
        f"候補の特徴量（candidate feature: {exp.feature or '(none given)'}）",
    )


def rebuild(exp: Experiment) -> Experiment:
    """Rebuild the panel (and its leakage check) and the models of the target; return the
    experiment with the new run's id. Stage output is captured (it may quote small counts)."""
    from helpers.models import stage as models_stage
    from helpers.panel import stage as panel_stage

    with contextlib.redirect_stdout(io.StringIO()):
        panel_stage.main(exp.cfg, [])
        models_stage.main(exp.cfg, ["--target", exp.target])
    ledger = L.read_ledger(paths(exp.cfg))
    new = str(L.resolve(ledger, "latest", exp.target)["run_id"])
    if new == exp.base:
        raise MimamoriError(
            f"the models stage archived no new run of {exp.target!r} "
            "(runs.archive is false in config/runs.yaml?)"
        )
    return replace(exp, new=new)


def without_rebuild(exp: Experiment) -> Experiment:
    """Compare with the newest archived run as it is (the models were refit elsewhere)."""
    ledger = L.read_ledger(paths(exp.cfg))
    return replace(exp, new=str(L.resolve(ledger, "latest", exp.target)["run_id"]))


def leakage_table(exp: Experiment) -> Table:
    """What the panel's leakage check (one year rebuilt from data cut at its as-of date) says."""
    path = paths(exp.cfg).leakage_check
    if not path.exists():
        raise MimamoriError(
            f"{path}: no leakage check; rebuild the panel without --no-leakage-check"
        )
    check = json.loads(path.read_text(encoding="utf-8"))
    changed = list(check.get("features_changed", []))
    post = list(check.get("features_from_post_outcome_tables", []))
    rows = [
        {
            "確認（check）": "全体（all features）",
            "結果（result）": "合格（passed）" if check.get("passed") else "不合格（FAILED）",
        }
    ]
    if exp.feature:
        ok = exp.feature not in changed and exp.feature not in post
        rows.append(
            {
                "確認（check）": f"候補 {exp.feature}",
                "結果（result）": "as-of 日以降の記録に影響されない（unchanged by records on or after the "
                "as-of date）"
                if ok
                else "漏洩あり（LEAKS: changes when later records are "
                "removed, or comes from a post-outcome table）",
            }
        )
    return Table(
        pd.DataFrame(rows),
        f"漏洩チェック（leakage check, FY{check.get('fiscal_year')}, as of {check.get('as_of')}）",
    )


def compare(exp: Experiment) -> Comparison:
    if not exp.new:
        raise MimamoriError("no new run yet: call rebuild() (or give the new run's id)")
    return compare_runs(exp.cfg, exp.base, exp.new, exp.target)


def land(cmp: Comparison, render: bool = True) -> str:
    """Record the comparison (report 07's default) and render report 07; return its path."""
    from helpers.runs.stage import record_comparison
    from helpers.runs.stage import render as render_07

    record_comparison(cmp.cfg, cmp)
    if render:
        with contextlib.redirect_stdout(io.StringIO()):
            render_07(cmp.cfg)
    return str(paths(cmp.cfg).report_html("07_run_comparison"))
