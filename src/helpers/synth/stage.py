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
from helpers.config import Settings
from helpers.exports import scan_exports
from helpers.io import append_audit, write_csv, write_json, write_parquet, write_text
from helpers.paths import paths
from helpers.schema import load_schemas
from helpers.synth.export import write_exports
from helpers.synth.identity import write_identity_exports
from helpers.synth.population import (
    PREVALENCE_SOURCES,
    build_city,
    population_facts,
    synth_settings,
    true_probabilities,
)
from helpers.synth.records import build_tables

__all__ = ["PREVALENCE_SOURCES", "generate_city", "main", "check_real_exports"]


def generate_city(cfg: Settings, raw_dir: Path) -> dict:
    """Write the whole raw folder (exports, ``_truth/``, then ``.complete``); return a summary."""
    t0 = time.perf_counter()
    raw_dir = Path(raw_dir)
    raw_dir.mkdir(parents=True, exist_ok=True)
    P = paths(cfg)
    truth = raw_dir / P.truth.name
    stamp = raw_dir / P.raw_complete.name
    if stamp.exists():
        stamp.unlink()
    schemas = load_schemas()
    old = sorted(
        {p for s in schemas.values() for pat in s.files for p in raw_dir.glob(pat) if p.is_file()}
    )
    if old and not (truth / P.truth_targets.name).exists():
        raise MimamoriError(
            f"{raw_dir}: holds exports the generator did not make (e.g. {old[0].name}); "
            "set run.synthetic: false in config/run.yaml to use them, or move them away"
        )
    for path in old:  # an earlier synthetic run's export would otherwise match a table twice
        path.unlink()
    settings = synth_settings(cfg)
    city = build_city(settings)
    tables = build_tables(city, settings)
    coded = {t: s for t, s in schemas.items() if not s.link_by}  # link_by: helpers.synth.identity
    missing = sorted(set(coded) - set(tables))
    if missing:
        raise MimamoriError(f"synth: no generator for schema tables {missing}")
    files, defects = write_exports(tables, coded, settings, raw_dir)
    files.update(
        write_identity_exports(
            city, tables, schemas, settings, raw_dir, truth / P.truth_identity.name
        )
    )
    write_csv(defects, truth / P.truth_defects.name)
    write_parquet(true_probabilities(city), truth / P.truth_probabilities.name)
    write_parquet(population_facts(city), truth / P.truth_population.name)
    write_json(targets_document(city, settings), truth / P.truth_targets.name)
    seconds = round(time.perf_counter() - t0, 2)
    summary = {
        "rows": {t: int(len(df)) for t, df in tables.items()},
        "files": {t: p.name for t, p in files.items()},
        "n_persons": int(len(city.persons)),
        "n_children": int(city.n_children_start),
        "n_defects": int(len(defects)),
        "dialect": settings["dialect"],
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


def check_real_exports(raw_dir: Path, required: list[str]) -> tuple[list[Path], list[str]]:
    """With real data: the exports found (by the schema ``files`` globs) and the tables without
    one. A required table (``ingest.required_tables``) without an export is an error; any other
    absent source is reported and the analysis runs without it."""
    schemas = load_schemas()
    scan = scan_exports(raw_dir, schemas)
    absent = sorted(t for t, files in scan.files.items() if not files)
    missing = [
        f"{t} ({schemas[t].title}: {', '.join(schemas[t].files)})" for t in absent if t in required
    ]
    if missing:
        raise MimamoriError(
            f"{raw_dir}: run.synthetic is false but no export was found for required "
            f"table(s): {'; '.join(missing)}. Put the department's CSV/XLSX export in {raw_dir} "
            "with a file name matching the pattern shown."
        )
    return scan.all_files, absent


def main(cfg: Settings, argv: list[str]) -> int:
    """CLI ``python -m helpers synth [--raw-dir DIR]``."""
    parser = argparse.ArgumentParser(prog="python -m helpers synth")
    parser.add_argument("--raw-dir", default=None, help="output folder (default <data>/raw)")
    args = parser.parse_args(argv)
    P = paths(cfg)
    raw_dir = Path(args.raw_dir) if args.raw_dir else P.raw
    stamp = raw_dir / P.raw_complete.name
    if not cfg.run.synthetic:
        found, absent = check_real_exports(raw_dir, cfg.ingest.required_tables)
        write_text("real exports checked\n", stamp)
        append_audit(P.data, "synth", cfg, inputs=found, outputs=[stamp])
        print(f"synth: real data: {len(found)} export file(s) found; stamp written")
        if absent:
            print(f"synth: no export for {absent} (optional sources: reported, not fatal)")
        return 0
    summary = generate_city(cfg, raw_dir)
    append_audit(
        P.data,
        "synth",
        cfg,
        inputs=[],
        outputs=[raw_dir / f for f in summary["files"].values()],
        rows=summary["rows"],
    )
    print(
        f"synth: {summary['n_children']} children, {summary['n_persons']} persons, "
        f"{sum(summary['rows'].values())} rows in {len(summary['files'])} exports "
        f"({summary['dialect']} dialect), {summary['n_defects']} planted defects, "
        f"{summary['seconds']} s -> {raw_dir}"
    )
    return 0
