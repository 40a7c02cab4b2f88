"""Command line: ``python -m helpers <stage> [options]``.

Each stage module exposes ``main(cfg, argv) -> int`` and parses its own options; this file only
loads the settings and turns user-facing errors into one clear line (never a traceback).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from helpers import MimamoriError
from helpers.config import Settings, load_config

STAGES = {
    "synth": ("helpers.synth.stage", "main", "generate the synthetic municipality into data/raw"),
    "ingest": ("helpers.ingest.stage", "main", "read, validate and mask data/raw into data/mart"),
    "link": (
        "helpers.link.stage",
        "main",
        "名寄せ only: link the exports without a resident code "
        "(ingest does this too; prints the linkage figures)",
    ),
    "panel": (
        "helpers.panel.stage",
        "main",
        "build data/panel/panel.parquet and the feature catalogue",
    ),
    "models": (
        "helpers.models.stage",
        "main",
        "fit baselines and models per target into data/models",
    ),
    "review": (
        "helpers.review.stage",
        "main",
        "draw review lists, read verdicts back, re-identify",
    ),
    "reports": ("helpers.reports.runner", "main", "render notebooks into HTML reports"),
    "check-reports": (
        "helpers.reports.scan",
        "check_reports_main",
        "audit reports/ for PII and counts 1-9",
    ),
    "bench": ("helpers.bench", "main", "benchmark every stage at several city sizes"),
    "runs": ("helpers.runs.stage", "main", "list archived models runs, compare two (report 07)"),
    "targets": ("helpers.__main__", "print_targets", "print the configured targets (for make)"),
}


def print_targets(cfg: Settings, argv: list[str]) -> int:
    """``python -m helpers targets [--make]``: the configured outcomes (``--make``: as make's
    ``TARGETS :=`` line)."""
    line = " ".join(cfg.run.targets)
    print(f"TARGETS := {line}" if "--make" in argv else line)
    return 0


def build_parser(add_help: bool = True) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m helpers", description=__doc__.splitlines()[0], add_help=add_help
    )
    parser.add_argument(
        "stage", choices=sorted(STAGES), help="; ".join(f"{k}: {v[2]}" for k, v in STAGES.items())
    )
    parser.add_argument("--config-dir", default=None, help="settings folder (default: config/)")
    parser.add_argument(
        "--profile", default=None, help="config/profiles/<name>.yaml (or MIMAMORI_PROFILE)"
    )
    parser.add_argument("--data-dir", default=None, help="data root (default from config/run.yaml)")
    parser.add_argument("--reports-dir", default=None, help="reports folder (default reports/)")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    stage_at = next((i for i, a in enumerate(argv) if a in STAGES), None)
    # `python -m helpers <stage> --help` shows the stage's own options
    stage_help = stage_at is not None and any(a in ("-h", "--help") for a in argv[stage_at + 1 :])
    parser = build_parser(add_help=not stage_help)
    args, rest = parser.parse_known_args(argv)
    if stage_help and not any(a in ("-h", "--help") for a in rest):
        rest.append("--help")
    try:
        overrides: dict = {"run": {}}
        if args.data_dir:
            overrides["run"]["data_dir"] = args.data_dir
        if args.reports_dir:
            overrides["run"]["reports_dir"] = args.reports_dir
        cfg = load_config(args.config_dir, profile=args.profile, overrides=overrides)
        module_name, func_name, _ = STAGES[args.stage]
        func = getattr(importlib.import_module(module_name), func_name)
        return int(func(cfg, rest) or 0)
    except MimamoriError as exc:
        print(f"mimamori {args.stage}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        # only a stage that replaces its outputs as a whole may say nothing partial was kept
        kept = (
            "no partial output was kept"
            if getattr(exc, "outputs_clean", False)
            else "this stage's outputs may be incomplete: run it again before using them"
        )
        print(f"mimamori {args.stage}: interrupted; {kept}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
