"""The synthetic municipality: a believable city of households whose departmental exports
look like the real ones (CP932, era dates, aliases, blanks that mean something, known defects).

Why: the workbench must be developed and tested without real children's data, and the
pipeline must be judged against a truth it cannot see (``_truth/``). The population lives in
``synth_population`` (households, yearly states, outcomes), the departmental tables in
``synth_records`` and the messy exports with planted defects in ``synth_export``; this module
is the stage entry point.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from helpers import MimamoriError
from helpers.config import data_dir
from helpers.io import append_audit, write_csv, write_json, write_parquet, write_text
from helpers.schema import load_schemas
from helpers.synth.export import write_exports
from helpers.synth.population import (
    PREVALENCE_SOURCES,
    build_city,
    population_facts,
    synth_settings,
    true_probabilities,
)
from helpers.synth.records import build_tables

__all__ = ["PREVALENCE_SOURCES", "generate_city", "main", "check_real_exports"]


def generate_city(cfg: dict, raw_dir: Path) -> dict:
    """Write the whole raw folder (exports, ``_truth/``, then ``.complete``); return a summary."""
    t0 = time.perf_counter()
    raw_dir = Path(raw_dir)
    raw_dir.mkdir(parents=True, exist_ok=True)
    stamp = raw_dir / ".complete"
    if stamp.exists():
        stamp.unlink()
    schemas = load_schemas()
    old = sorted({p for s in schemas.values() for pat in s.files for p in raw_dir.glob(pat) if p.is_file()})
    if old and not (raw_dir / "_truth" / "targets.json").exists():
        raise MimamoriError(
            f"{raw_dir}: holds exports the generator did not make (e.g. {old[0].name}); "
            "set run.synthetic: false in config/run.yaml to use them, or move them away")
    for path in old:  # an earlier synthetic run's export would otherwise match a table twice
        path.unlink()
    settings = synth_settings(cfg)
    city = build_city(settings)
    tables = build_tables(city, settings)
    missing = sorted(set(schemas) - set(tables))
    if missing:
        raise MimamoriError(f"synth: no generator for schema tables {missing}")
    files, defects = write_exports(tables, schemas, settings, raw_dir)
    truth = raw_dir / "_truth"
    write_csv(defects, truth / "defects.csv")
    write_parquet(true_probabilities(city), truth / "true_probabilities.parquet")
    write_parquet(population_facts(city), truth / "population.parquet")
    write_json(targets_document(city, settings), truth / "targets.json")
    seconds = round(time.perf_counter() - t0, 2)
    summary = {
        "rows": {t: int(len(df)) for t, df in tables.items()},
        "files": {t: p.name for t, p in files.items()},
        "n_persons": int(len(city.persons)),
        "n_children": int(city.n_children_start),
        "n_defects": int(len(defects)),
        "seconds": seconds,
    }
    write_text(f"synthetic city, seed {settings['seed']}\n", stamp)
    return summary


def targets_document(city, settings: dict) -> dict:
    """Prevalence and base-rate targets with their public sources, for the overview report."""
    return {
        "seed": settings["seed"],
        "fiscal_years": settings["fiscal_years"],
        "n_children": settings["n_children"],
        "age_max": settings["age_max"],
        "outcomes": {
            "physical_abuse": {
                "rate": settings["targets"]["physical_abuse"],
                "per": "child-year, age 0-15, resident on 1 April",
                "ages": [0, 15],
            },
            "young_carer": {
                "rate": settings["targets"]["young_carer"],
                "per": "child-year of school age, resident on 1 April",
                "ages": list(settings["young_carer_ages"]),
            },
        },
        "prevalence": {row["item"]: row for row in PREVALENCE_SOURCES},
        "calibrated_intercepts": city.intercepts,
    }


def check_real_exports(raw_dir: Path) -> list[Path]:
    """With real data: every schema table must have an export matching its ``files`` globs."""
    schemas = load_schemas()
    found: list[Path] = []
    missing: list[str] = []
    for name, schema in schemas.items():
        hits = sorted(
            {p for pattern in schema.files for p in raw_dir.glob(pattern) if p.is_file()}
        )
        if hits:
            found += hits
        else:
            missing.append(f"{name} ({schema.title}: {', '.join(schema.files)})")
    if missing:
        raise MimamoriError(
            f"{raw_dir}: run.synthetic is false but no export was found for "
            f"{len(missing)} table(s): {'; '.join(missing)}. Put each department's CSV/XLSX "
            f"export in {raw_dir} with a file name matching the pattern shown."
        )
    return found


def main(cfg: dict, argv: list[str]) -> int:
    """CLI ``python -m helpers synth [--raw-dir DIR]``."""
    parser = argparse.ArgumentParser(prog="python -m helpers synth")
    parser.add_argument("--raw-dir", default=None, help="output folder (default <data>/raw)")
    args = parser.parse_args(argv)
    root = data_dir(cfg)
    raw_dir = Path(args.raw_dir) if args.raw_dir else root / "raw"
    if not cfg["run"].get("synthetic", True):
        found = check_real_exports(raw_dir)
        write_text("real exports checked\n", raw_dir / ".complete")
        append_audit(root, "synth", cfg, inputs=found, outputs=[raw_dir / ".complete"])
        print(f"synth: real exports found for every table ({len(found)} files); stamp written")
        return 0
    summary = generate_city(cfg, raw_dir)
    append_audit(
        root, "synth", cfg, inputs=[],
        outputs=[raw_dir / f for f in summary["files"].values()], rows=summary["rows"],
    )
    print(
        f"synth: {summary['n_children']} children, {summary['n_persons']} persons, "
        f"{sum(summary['rows'].values())} rows in {len(summary['files'])} exports, "
        f"{summary['n_defects']} planted defects, {summary['seconds']} s -> {raw_dir}"
    )
    return 0
