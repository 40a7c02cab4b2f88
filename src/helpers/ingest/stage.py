"""Ingest: read municipal exports, validate them against data_schema/, mask, write the mart.

Contract (docs/architecture.md): every record read is either in the mart, in
``mart/_rejects/<table>.csv`` with a reason from the reject vocabulary, or dropped as an
exact duplicate (also listed there, reason ``duplicate_exact``, and counted) — never silently
fixed or lost; ``rows_in == rows_out + rows_rejected + duplicates_dropped`` is enforced. A bad
value in an optional field does not reject its row: the cell becomes blank and is listed in
``mart/_warnings/<table>.csv`` (counted per reason). Whole-file problems (encoding, missing
required column, empty, truncated, corrupt xlsx) stop the run with one message per file.

The mart is replaced as a whole: it is written to a temporary folder beside it and swapped in
by renaming, so a killed run leaves the old mart or the new one, never a mix of both.

The rejects and warnings files keep the offending cell's raw value (the analyst needs it to
fix the export). They live under data/ (never reports/), like the raw exports they point
into; no report reads values from them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from helpers import MimamoriError
from helpers import io as hio
from helpers.config import Settings, config_hash
from helpers.exports import ExportScan, scan_exports, write_manifest
from helpers.ingest.masking import (
    correspondence_table,
    load_key,
    make_private,
    mask_table,
    private_dir,
)
from helpers.ingest.read import map_headers, read_export
from helpers.ingest.suggest import suggest_value_map, write_suggestion
from helpers.ingest.validate import (
    REASONS,
    REJECT_COLUMNS,
    TableResult,
    check_references,
    linkage,
    parse_field,
    validate_table,
    value_maps,
)
from helpers.link.stage import link_fingerprint, link_sources
from helpers.paths import MartPaths, Paths, paths
from helpers.schema import SCHEMA_DIR, TableSchema, load_schemas

HELPERS_DIR = Path(__file__).resolve().parents[1]
CODE_FILES = ("exports.py", "dates.py", "normalize.py", "schema.py")


# ----------------------------------------------------------------------------- fingerprint
def _code_hash() -> str:
    h = hashlib.sha256()
    for p in [
        *sorted((HELPERS_DIR / "ingest").glob("*.py")),
        *(HELPERS_DIR / n for n in CODE_FILES),
        *sorted(Path(SCHEMA_DIR).glob("*.yaml")),
    ]:
        if p.exists():
            h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()[:16]


def _fingerprint(
    cfg: Settings, files: list[Path], key: bytes, raw_dir: Path, correspondence: bool
) -> str:
    blob = {
        "inputs": {p.name: hio.file_sha256(p) for p in files},
        "config": config_hash(cfg, ("ingest",)),
        "synthetic": cfg.run.synthetic,
        "code": _code_hash(),
        "key": hashlib.sha256(b"fingerprint:" + key).hexdigest()[:16],
        "correspondence": correspondence,
        "raw_dir": str(raw_dir.resolve()),
        "link": link_fingerprint(cfg, paths(cfg)),  # 名寄せ settings, code, staff decisions
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:24]


def mart_dtypes(schema: TableSchema) -> dict[str, str]:
    """The mart dtype of every non-dropped field (docs/architecture.md)."""
    return schema.mart_dtypes()


# ----------------------------------------------------------------------------- the mart folder
def _siblings(mart_dir: Path, kind: str) -> list[Path]:
    return sorted(mart_dir.parent.glob(f".{mart_dir.name}.{kind}-*"))


def recover_mart(mart_dir: Path) -> None:
    """Undo what a killed run left: a finished swap's old copy, an unfinished new mart, or
    (killed between the two renames) the old mart set aside: it is put back."""
    old = _siblings(mart_dir, "old")
    if old and not mart_dir.exists():
        os.rename(old[-1], mart_dir)
        old = old[:-1]
    for leftover in [*old, *_siblings(mart_dir, "new")]:
        shutil.rmtree(leftover, ignore_errors=True)


def swap_in(new_dir: Path, mart_dir: Path) -> None:
    """Replace ``mart_dir`` by the finished ``new_dir``: two renames and a removal."""
    old = mart_dir.with_name(f".{mart_dir.name}.old-{os.getpid()}")
    if mart_dir.exists():
        os.rename(mart_dir, old)
    os.rename(new_dir, mart_dir)
    shutil.rmtree(old, ignore_errors=True)


# ----------------------------------------------------------------------------- reading
def _read_all(
    cfg: Settings, scan: ExportScan, schemas: Mapping[str, TableSchema]
) -> tuple[dict[str, pd.DataFrame], dict[str, list[dict]], list[str]]:
    """Every export read into raw text frames per table; file problems are collected."""
    ic = cfg.ingest
    raws: dict[str, pd.DataFrame] = {}
    file_info: dict[str, list[dict]] = {}
    problems: list[str] = []
    for table, files in tqdm(scan.files.items(), desc="read exports", leave=False):
        frames = []
        for p in files:
            try:
                df = read_export(
                    p,
                    schemas[table],
                    ic.encoding.get(table),
                    ic.header_map.get(table),
                    ic.skip_rows.get(table),
                    ic.footer_rows.get(table),
                )
            except MimamoriError as exc:
                problems.append(str(exc))
                continue
            frames.append(df)
            file_info.setdefault(table, []).append(
                {
                    "file": p.name,
                    "encoding": df.attrs["encoding"],
                    "sheet": df.attrs["sheet"],
                    "sheets": df.attrs["sheets"],
                    "rows": len(df),
                    "blank_rows_skipped": df.attrs["blank_rows"],
                    "title_rows_skipped": df.attrs["title_rows"],
                    "footer_rows_skipped": df.attrs["footer_rows"],
                    "unknown_headers": df.attrs["unknown_headers"],
                    "missing_optional_columns": df.attrs["missing_optional_columns"],
                    "sha256": hio.file_sha256(p),
                }
            )
        if frames:
            raws[table] = pd.concat(frames, ignore_index=True)
    return raws, file_info, problems


def validate_all(
    cfg: Settings, raw_dir: Path, schemas: Mapping[str, TableSchema]
) -> tuple[ExportScan, dict[str, TableResult], dict[str, list[dict]], list[str]]:
    """Find, read and validate every export (no mart written): the scan, the results per
    table, what each file held, and the required tables without an export."""
    scan = scan_exports(raw_dir, schemas)
    required = set(cfg.ingest.required_tables)
    unknown = sorted(required - set(schemas))
    if unknown:
        raise MimamoriError(
            f"config/ingest.yaml: required_tables: {unknown} are not tables of "
            f"data_schema/ ({sorted(schemas)})"
        )
    missing = sorted(t for t, ps in scan.files.items() if not ps)
    problems = [
        f"{raw_dir}: no export for required table {t} (file names {list(schemas[t].files)})"
        for t in missing
        if t in required
    ]
    raws, file_info, read_problems = _read_all(cfg, scan, schemas)
    problems += read_problems
    if problems:
        raise MimamoriError(
            "cannot ingest; fix these files and run again:\n  " + "\n  ".join(problems)
        )
    vmaps = value_maps(cfg.ingest.value_map, schemas)
    results = {
        t: validate_table(raw, schemas[t], vmaps.get(t))
        for t, raw in tqdm(raws.items(), desc="validate", leave=False)
    }
    return scan, results, file_info, missing


# ----------------------------------------------------------------------------- the report
def _reason_counts(frame: pd.DataFrame, rows: bool) -> tuple[dict[str, int], dict[str, int]]:
    real = frame[frame["reason"] != "duplicate_exact"]
    per = real.drop_duplicates(["file", "source_row", "reason"]) if rows else real
    reasons = per["reason"].value_counts()
    by_col = real.groupby(["column", "reason"]).size()
    return (
        {str(k): int(v) for k, v in reasons.items()},
        {f"{c}:{r}": int(n) for (c, r), n in by_col.items()},
    )


def _source_span(res: TableResult, schema: TableSchema) -> dict:
    """First and last date the export holds (unmasked, before masking) and its row count."""
    dates = [
        res.valid[f.name]
        for f in schema.fields
        if f.type == "date" and f.name in res.valid and f.masking != "birth_month"
    ]
    seen = pd.concat(dates).dropna() if dates else pd.Series(dtype="datetime64[ns]")
    return {
        "first_date": seen.min().date().isoformat() if len(seen) else None,
        "last_date": seen.max().date().isoformat() if len(seen) else None,
    }


def table_report(
    res: TableResult,
    schema: TableSchema,
    rows_out: int,
    mreport: dict,
    files: list[dict],
    references: dict,
    links: dict,
) -> dict:
    """One table's entry in _ingest_report.json; the rows must reconcile."""
    reasons, rejected_cells = _reason_counts(res.rejects, rows=True)
    warnings, warning_cells = _reason_counts(res.warnings, rows=False)
    tr = {
        "rows_in": res.rows_in,
        "rows_out": rows_out,
        "rows_rejected": res.rows_rejected,
        "duplicates_dropped": res.duplicates_dropped,
        "reasons": reasons,
        "rejected_cells": rejected_cells,
        "cell_warnings": warnings,
        "cell_warnings_by_column": warning_cells,
        "unmapped_values": res.unmapped.to_dict("records"),
        "open_end_sentinels": res.open_ends,
        "files": files,
        "unknown_headers": sorted({h for fi in files for h in fi["unknown_headers"]}),
        "missing_optional_columns": sorted(
            {c for fi in files for c in fi["missing_optional_columns"]}
        ),
        "references": references,
        "linkage": links,
        "span": _source_span(res, schema),
        "topcode": {k: v for k, v in mreport.items() if v.get("masking") == "topcode"},
        "masking": {k: v["masking"] for k, v in mreport.items()},
        "rejects_file": f"_rejects/{res.table}.csv",
        "warnings_file": f"_warnings/{res.table}.csv",
    }
    if tr["rows_in"] != tr["rows_out"] + tr["rows_rejected"] + tr["duplicates_dropped"]:
        raise MimamoriError(
            f"{res.table}: rows do not reconcile: in {tr['rows_in']} != out {tr['rows_out']} + "
            f"rejected {tr['rows_rejected']} + duplicates {tr['duplicates_dropped']}; nothing "
            "was written — this is a bug in ingest, please report it"
        )
    return tr


def _write_tables(
    results: dict[str, TableResult],
    schemas: Mapping[str, TableSchema],
    key: bytes,
    cfg: Settings,
    new: MartPaths,
    file_info: dict,
    references: dict,
    links: dict,
) -> dict[str, dict]:
    """Mask and write every table into the new mart folder; the per-table report entries."""
    percentiles = tuple(cfg.ingest.topcode_percentiles)
    out: dict[str, dict] = {}
    for table, res in tqdm(results.items(), desc="mask and write", leave=False):
        schema = schemas[table]
        masked, mreport = mask_table(res.valid, schema, key, percentiles)  # type: ignore[arg-type]
        masked = masked.astype(mart_dtypes(schema))
        order = ["file", "source_row", "column"]
        hio.write_parquet(masked, new.table(table))
        hio.write_csv(res.rejects.sort_values(order, kind="stable"), new.rejects(table))
        hio.write_csv(res.warnings.sort_values(order, kind="stable"), new.cell_warnings(table))
        out[table] = table_report(
            res,
            schema,
            len(masked),
            mreport,
            file_info.get(table, []),
            references.get(table, {}),
            links.get(table, {}),
        )
    return out


def _write_correspondence(
    results: dict[str, TableResult], schemas: Mapping[str, TableSchema], key: bytes, P: Paths
) -> Path:
    """pseudonym -> real code for every hmac field, owner-only under data/private/."""
    parts = [correspondence_table(res.valid, schemas[t], key) for t, res in results.items()]
    corr = (
        pd.concat(parts, ignore_index=True)
        .drop_duplicates()
        .sort_values(["domain", "code"])
        .reset_index(drop=True)
    )
    private_dir(P.private)
    if P.correspondence.resolve().is_relative_to(P.mart.resolve()):
        raise MimamoriError(
            f"{P.correspondence}: the correspondence table must not live under the mart"
        )
    return make_private(hio.write_parquet(corr, P.correspondence))


def _skip_if_unchanged(report_path: Path, fingerprint: str, mart_dir: Path) -> dict | None:
    try:
        old = json.loads(report_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    if old.get("fingerprint") != fingerprint or not all(
        (mart_dir / f"{t}.parquet").exists() for t in old.get("tables", {})
    ):
        return None
    old["skipped_reruns"] = int(old.get("skipped_reruns", 0)) + 1
    old["last_checked"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    old["skipped"] = True
    hio.write_json(old, report_path)
    return old


# ----------------------------------------------------------------------------- the stage
def _report(
    cfg: Settings,
    fingerprint: str,
    key_source: str,
    raw_dir: Path,
    scan: ExportScan,
    missing: list[str],
    tables: dict[str, dict],
    correspondence: bool,
) -> dict:
    return {
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "fingerprint": fingerprint,
        "skipped": False,
        "skipped_reruns": 0,
        "key_source": key_source,
        "synthetic": cfg.run.synthetic,
        "export_date": cfg.run.export_date,
        "config_hash": config_hash(cfg, ("ingest",)),
        "raw_dir": str(raw_dir),
        "topcode_percentiles": list(cfg.ingest.topcode_percentiles),
        "missing_tables": missing,
        "unmatched_files": scan.unmatched,
        "broken_links": scan.broken_links,
        "correspondence_written": bool(correspondence),
        "tables": tables,
        "totals": {
            k: int(sum(t[k] for t in tables.values()))
            for k in ("rows_in", "rows_out", "rows_rejected", "duplicates_dropped")
        },
        "cell_warnings": int(sum(sum(t["cell_warnings"].values()) for t in tables.values())),
    }


def ingest_all(
    cfg: Settings,
    raw_dir: Path,
    mart_dir: Path,
    write_correspondence: bool | None = None,
    force: bool = False,
) -> dict:
    """Read, validate and mask every table of raw_dir into mart_dir; return the ingest report.

    The new mart is built beside the old one and swapped in at the end; nothing of a failed
    or interrupted run is kept.
    """
    raw_dir, mart_dir = Path(raw_dir), Path(mart_dir)
    P = paths(cfg)
    schemas = load_schemas()
    if write_correspondence is None:
        write_correspondence = cfg.ingest.write_correspondence
    key, key_source = load_key(cfg)
    recover_mart(mart_dir)
    scan = scan_exports(raw_dir, schemas)
    if raw_dir.resolve() == P.raw.resolve():
        write_manifest(raw_dir, schemas, P.exports_manifest)  # older than the new mart
    fingerprint = _fingerprint(cfg, scan.all_files, key, raw_dir, write_correspondence)
    if not force and (old := _skip_if_unchanged(MartPaths(mart_dir).report, fingerprint, mart_dir)):
        hio.append_audit(
            P.data,
            "ingest",
            cfg,
            inputs=scan.all_files,
            outputs=[MartPaths(mart_dir).report],
            rows={"skipped": 1},
        )
        return old
    scan, results, file_info, missing = validate_all(cfg, raw_dir, schemas)
    link_report = link_sources(cfg, results, schemas, key, P, raw_dir)  # 名寄せ, before masking
    links = linkage(results, schemas)
    references = check_references(results, schemas)
    new = MartPaths(mart_dir.with_name(f".{mart_dir.name}.new-{os.getpid()}"))
    try:
        tables = _write_tables(results, schemas, key, cfg, new, file_info, references, links)
        if write_correspondence and results:
            _write_correspondence(results, schemas, key, P)
        report = _report(
            cfg, fingerprint, key_source, raw_dir, scan, missing, tables, write_correspondence
        )
        hio.write_json(report, new.report)
        if link_report:
            hio.write_json(link_report, new.linkage_report)
        swap_in(new.dir, mart_dir)
    except BaseException as exc:
        shutil.rmtree(new.dir, ignore_errors=True)
        if isinstance(exc, KeyboardInterrupt):  # the old mart is untouched: say so
            exc.outputs_clean = True  # type: ignore[attr-defined]
        raise
    hio.append_audit(
        P.data,
        "ingest",
        cfg,
        inputs=scan.all_files,
        outputs=[MartPaths(mart_dir).table(t) for t in tables] + [MartPaths(mart_dir).report],
        rows={t: v["rows_out"] for t, v in tables.items()},
    )
    return report


def suggest(cfg: Settings, raw_dir: Path, out: Path) -> dict:
    """Read and validate every export (no mart written) and write a starter value map of the
    spellings no vocabulary knows; returns {"path", "values"}."""
    schemas = load_schemas()
    _scan, results, _info, _missing = validate_all(cfg, raw_dir, schemas)
    entries = suggest_value_map({t: r.unmapped for t, r in results.items()}, schemas)
    write_suggestion(entries, out)
    return {"path": out, "values": len(entries)}


def _print_summary(report: dict, mart_dir: Path) -> None:
    t = report["totals"]
    print(
        f"ingest: {len(report['tables'])} tables, {t['rows_in']} rows in, {t['rows_out']} to "
        f"the mart, {t['rows_rejected']} rejected (see {mart_dir / '_rejects'}), "
        f"{t['duplicates_dropped']} exact duplicates dropped, {report['cell_warnings']} bad "
        f"cells in optional fields set to blank (see {mart_dir / '_warnings'}); key source "
        f"{report['key_source']}"
    )
    unmapped = [(tb, u) for tb, tr in report["tables"].items() for u in tr["unmapped_values"]]
    if unmapped:
        print(
            f"ingest: {len(unmapped)} value(s) match no code, e.g. "
            + "; ".join(
                f"{tb}.{u['field']} {u['value']!r} ({u['count']} rows, {u['action']})"
                for tb, u in unmapped[:5]
            )
            + " — `python -m helpers ingest --suggest-map` writes a starter value_map"
        )
    if report["missing_tables"]:
        print(f"ingest: no export for {report['missing_tables']} (optional; reported)")
    if report["unmatched_files"] or report["broken_links"]:
        print(
            f"ingest: not read: {report['unmatched_files']} (no table's file pattern fits); "
            f"broken links: {report['broken_links']}"
        )


def main(cfg: Settings, argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m helpers ingest", description=(__doc__ or "").splitlines()[0]
    )
    parser.add_argument(
        "--raw-dir", type=Path, default=None, help="exports folder (default data/raw)"
    )
    parser.add_argument(
        "--mart-dir", type=Path, default=None, help="output folder (default data/mart)"
    )
    parser.add_argument(
        "--write-correspondence",
        action="store_true",
        help="also write pseudonym → real code to data/private/ (never the mart)",
    )
    parser.add_argument(
        "--force", action="store_true", help="rerun even when inputs and settings are unchanged"
    )
    parser.add_argument(
        "--suggest-map",
        nargs="?",
        const="",
        default=None,
        metavar="FILE",
        help="write a starter value_map of the unmapped values (default "
        "data/value_map_suggestion.yaml) instead of ingesting",
    )
    args = parser.parse_args(argv)
    P = paths(cfg)
    raw_dir = args.raw_dir or P.raw
    mart_dir = args.mart_dir or P.mart
    if args.suggest_map is not None:
        done = suggest(
            cfg, raw_dir, Path(args.suggest_map) if args.suggest_map else P.value_map_suggestion
        )
        print(
            f"ingest: {done['values']} unmapped value(s); starter value_map written to "
            f"{done['path']} (check it, then copy it into config/ingest.yaml)"
        )
        return 0
    report = ingest_all(
        cfg,
        raw_dir,
        mart_dir,
        write_correspondence=args.write_correspondence or None,
        force=args.force,
    )
    if report.get("skipped"):
        print(f"ingest: inputs and settings unchanged since {report.get('created')}; nothing to do")
        return 0
    _print_summary(report, mart_dir)
    return 0


__all__ = [
    "read_export",
    "validate_table",
    "check_references",
    "ingest_all",
    "main",
    "parse_field",
    "map_headers",
    "mart_dtypes",
    "TableResult",
    "REASONS",
    "REJECT_COLUMNS",
    "suggest",
]
