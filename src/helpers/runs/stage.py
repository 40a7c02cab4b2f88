"""``python -m helpers runs list|compare|archive|prune``: the run history on the command line.

``compare BASE NEW --target T`` checks that the two archived runs answer the same question,
writes the comparison's figures to ``data/runs/comparisons/<base>__<new>.json``, records it as
the latest comparison and renders ``reports/07_run_comparison.html`` through the reports
runner (``python -m helpers reports --only 07_run_comparison``). Run references are ids, unique
id prefixes, ``latest`` or ``previous``.
"""

from __future__ import annotations

import argparse
import importlib
import json

import pandas as pd

from helpers import MimamoriError
from helpers.config import Settings
from helpers.io import write_json
from helpers.paths import paths
from helpers.runs import ledger as L
from helpers.runs.archive import archive_run, prune
from helpers.runs.compare import Comparison, compare_runs

REPORT = "07_run_comparison"
# rendered on request (`make compare`, `python -m helpers reports --only NAME`), not by `make all`
ON_DEMAND_NOTEBOOKS = (REPORT, "10_try_a_feature")
LIST_COLUMNS = [
    "run_id",
    "created",
    "target",
    "profile",
    "code_version",
    "headline",
    "config_diff",
    "features_added",
    "features_removed",
    "status",
]


def record_comparison(cfg: Settings, cmp: Comparison) -> None:
    """The comparison's figures, and which comparison report 07 shows by default."""
    P = paths(cfg)
    write_json(cmp.summary(), P.comparison(cmp.base.run_id, cmp.new.run_id))
    write_json(
        {"base": cmp.base.run_id, "new": cmp.new.run_id, "target": cmp.target}, P.last_comparison
    )


def latest_request(cfg: Settings) -> dict[str, str]:
    """The last comparison asked for (what report 07 shows when given no run ids)."""
    path = paths(cfg).last_comparison
    if not path.exists():
        raise MimamoriError(
            f"{path}: no comparison yet; run `make compare BASE=… NEW=… "
            "TARGET=…` (or give base, new and target to the notebook)"
        )
    return dict(json.loads(path.read_text(encoding="utf-8")))


def load_comparison(cfg: Settings, base: str = "", new: str = "", target: str = "") -> Comparison:
    """Report 07's entry point: the given runs, or the latest comparison asked for."""
    if not (base and new):
        req = latest_request(cfg)
        base, new, target = base or req["base"], new or req["new"], target or req["target"]
    return compare_runs(cfg, base, new, target or None)


def render(cfg: Settings) -> None:
    """Render report 07 through the project's reports stage (papermill runner)."""
    from helpers.__main__ import STAGES

    module, func, _ = STAGES["reports"]
    getattr(importlib.import_module(module), func)(cfg, ["--only", REPORT])


def _compare(cfg: Settings, args: argparse.Namespace) -> int:
    cmp = compare_runs(cfg, args.base, args.new, args.target)
    record_comparison(cfg, cmp)
    p = cmp.paired.pooled
    print(
        f"{cmp.target}: {cmp.new.run_id} vs {cmp.base.run_id}: difference in hits@{cmp.k} "
        f"{p['difference']:+.2f} [{p['ci_low']:+.2f}, {p['ci_high']:+.2f}] -> {cmp.verdict}"
    )
    if not args.no_render:
        render(cfg)
    return 0


def _list(cfg: Settings, args: argparse.Namespace) -> int:
    ledger = L.runs_of(L.read_ledger(paths(cfg)), args.target)
    if not len(ledger):
        print("no archived runs" + (f" for {args.target}" if args.target else ""))
        return 0
    with pd.option_context("display.max_colwidth", 60, "display.width", 200):
        print(ledger[LIST_COLUMNS].tail(args.last).to_string(index=False))
    return 0


def _archive(cfg: Settings, args: argparse.Namespace) -> int:
    for target in args.target or list(cfg.run.targets):
        if archive_run(cfg, target) is None:
            print("runs.archive is false in config/runs.yaml: nothing archived")
    return 0


def _prune(cfg: Settings, args: argparse.Namespace) -> int:
    P = paths(cfg)
    with L.locked(P):
        ledger = L.read_ledger(P)
        for target in sorted(set(ledger["target"].dropna())):
            ledger = prune(P, ledger, str(target), int(cfg.runs.keep_last))
        L.write_ledger(P, ledger)
    print(f"kept the last {cfg.runs.keep_last} runs of each target")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m helpers runs", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("compare", help="compare two archived runs and render report 07")
    c.add_argument("base", help="run id (or unique prefix, latest, previous) of the base run")
    c.add_argument("new", help="run id (or unique prefix, latest, previous) of the new run")
    c.add_argument(
        "--target",
        default=None,
        help="the target both runs modelled (default: that of NEW, or of the newest run)",
    )
    c.add_argument("--no-render", action="store_true", help="only print and record the result")
    ls = sub.add_parser("list", help="print the ledger")
    ls.add_argument("--target", default=None)
    ls.add_argument("--last", type=int, default=20, help="newest N rows (default 20)")
    a = sub.add_parser("archive", help="archive the current data/models/<target> run")
    a.add_argument("--target", action="append", default=None, help="repeatable; default: all")
    sub.add_parser("prune", help="apply runs.keep_last now")
    return parser


def main(cfg: Settings, argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    handler = {"compare": _compare, "list": _list, "archive": _archive, "prune": _prune}
    return handler[args.command](cfg, args)
