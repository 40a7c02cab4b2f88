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

Bounded memory (``ingest_all``): every export is read, validated and normalised in row blocks,
one task per file on the configured engine (``helpers.ingest.blocks``; CSV streamed by
``helpers.ingest.stream``); exact duplicates and key conflicts are decided on 128-bit row and
key hashes; orphans against the distinct codes of the referenced fields; each table is then
masked and written in blocks, one task per table (``helpers.ingest.write``), byte for byte the
file a one-shot write gives. On the local engine the tasks run on ``run.local_workers``
threads (``run_ordered``: results in the given order, so the outputs do not depend on it).
Held whole, as compact typed frames: the residents and the code-less (``link_by``) tables when a code-less export is present, because 名寄せ links them in
memory. ``validate_all`` (``link`` and ``--suggest-map``) still builds whole tables.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import gc
import hashlib
import json
import multiprocessing
import os
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
from tqdm.auto import tqdm

from helpers import MimamoriError
from helpers import io as hio
from helpers.config import Settings, config_hash
from helpers.engine import run_tasks
from helpers.exports import ExportScan, scan_exports, write_manifest
from helpers.ingest import blocks as blocks_module
from helpers.ingest import codes as codes_module
from helpers.ingest.blocks import (
    FileJob,
    FilePass,
    TablePlan,
    materialise,
    plan_table,
    validate_file,
)
from helpers.ingest.codes import CodeIndex, PseudonymBook, distinct_text
from helpers.ingest.masking import (
    correspondence_table,
    field_domain,
    load_key,
    make_private,
    private_dir,
    pseudonyms_sql_of,
)
from helpers.ingest.read import map_headers, read_export
from helpers.ingest.suggest import suggest_value_map, write_suggestion
from helpers.ingest.validate import (
    REASONS,
    REJECT_COLUMNS,
    TableResult,
    check_references,
    parse_field,
    validate_table,
    value_maps,
)
from helpers.ingest.write import (
    HOUSEHOLD_LINK,
    Finish,
    correspondence_codes,
    finish_table,
    write_lines,
)
from helpers.link.stage import link_fingerprint, link_sources, link_tables
from helpers.paths import MartPaths, Paths, paths
from helpers.schema import SCHEMA_DIR, TableSchema, load_schemas

HELPERS_DIR = Path(__file__).resolve().parents[1]
CODE_FILES = ("exports.py", "dates.py", "normalize.py", "schema.py")
# the phases whose wall seconds go into the audit log line of a run
INGEST_PHASES = ("read_validate", "link", "mask_write")


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
    cfg: Settings, hashes: Mapping[Path, str], key: bytes, raw_dir: Path, correspondence: bool
) -> str:
    blob = {
        "inputs": {p.name: h for p, h in hashes.items()},
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
    for leftover in [*old, *_siblings(mart_dir, "new"), *_siblings(mart_dir, "spill")]:
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


def _scan_required(
    cfg: Settings, raw_dir: Path, schemas: Mapping[str, TableSchema]
) -> tuple[ExportScan, list[str], list[str]]:
    """The exports found, the tables without one, and a problem line per required table
    without one (a required table that is not in data_schema/ stops here)."""
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
    return scan, missing, problems


def validate_all(
    cfg: Settings, raw_dir: Path, schemas: Mapping[str, TableSchema]
) -> tuple[ExportScan, dict[str, TableResult], dict[str, list[dict]], list[str]]:
    """Find, read and validate every export (no mart written): the scan, the results per
    table, what each file held, and the required tables without an export."""
    scan, missing, problems = _scan_required(cfg, raw_dir, schemas)
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


# ----------------------------------------------------------------------------- in row blocks
def run_ordered(
    cfg: Settings,
    fn: Callable,
    items: Sequence,
    desc: str,
    sizes: Sequence[float] | None = None,
) -> list:
    """``run_tasks``; on the local engine the items run on ``run.local_workers`` threads (the
    work is mostly Arrow, numpy and hashing, which release the GIL), the largest (``sizes``)
    first, and the results come back in the given order either way."""
    threads = cfg.run.local_workers
    if cfg.run.engine != "local" or len(items) < 2 or threads < 2:
        return run_tasks(cfg, fn, items, desc)
    return _largest_first(ThreadPoolExecutor(max_workers=threads), fn, items, desc, sizes)


def _largest_first(
    pool: Executor, fn: Callable, items: Sequence, desc: str, sizes: Sequence[float] | None
) -> list:
    """``fn`` of every item on ``pool``, the largest (``sizes``) first; the results in the
    given order; the pool shut down."""
    order = sorted(range(len(items)), key=lambda i: -(sizes[i] if sizes else 0))
    try:
        futures = {pool.submit(fn, items[i]): i for i in order}
        results: list = [None] * len(items)
        for fut in tqdm(as_completed(futures), total=len(items), desc=desc, leave=False):
            results[futures[fut]] = fut.result()
        return results
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _forked_worker() -> None:
    """A forked pass-1 process leaves everything it inherited alone: the garbage collector
    never finalises an inherited object (a DuckDB or dask object's finaliser touches threads
    that were not forked), and it opens its own DuckDB connections. Its typed rows go to
    spill files (read back by memory map) rather than back through the pipe."""
    gc.freeze()
    codes_module.reset_connections()
    blocks_module.SPILL_MIN_BYTES = 0  # every file spills: rows come back by file, not pipe


def run_forked(
    cfg: Settings, fn: Callable, items: Sequence, desc: str, sizes: Sequence[float]
) -> list:
    """``run_ordered`` in ``run.local_workers`` forked processes (pass 1 holds Python's lock
    for much of its work, so threads share one core for it); the largest items first, the
    results in the given order. Threads where fork is not available (``run_ordered``)."""
    workers = min(cfg.run.local_workers, len(items))
    forkable = "fork" in multiprocessing.get_all_start_methods()
    if cfg.run.engine != "local" or workers < 2 or not forkable:
        return run_ordered(cfg, fn, items, desc, sizes)
    gc.collect()  # what is garbage here is finalised here, not in a forked copy
    context = multiprocessing.get_context("fork")
    pool = ProcessPoolExecutor(workers, mp_context=context, initializer=_forked_worker)
    try:
        return _largest_first(pool, fn, items, desc, sizes)
    except BrokenProcessPool as exc:
        raise MimamoriError(
            f"{desc}: a worker process stopped (out of memory?); run again with "
            "run.local_workers: 1 to read one file at a time"
        ) from exc


def reference_targets(schemas: Mapping[str, TableSchema]) -> set[str]:
    """Every ``table.field`` whose distinct codes other tables are checked against."""
    return {t for s in schemas.values() for t in s.references.values()} | {HOUSEHOLD_LINK}


def _task(job: FileJob) -> FilePass | str:
    """Pass 1 over one file; a whole-file problem comes back as its message."""
    try:
        return validate_file(job)
    except MimamoriError as exc:
        return str(exc)


def _file_jobs(
    cfg: Settings,
    scan: ExportScan,
    schemas: Mapping[str, TableSchema],
    spill_dir: Path,
    hashes: Mapping[Path, str],
) -> list[FileJob]:
    ic = cfg.ingest
    vmaps = value_maps(ic.value_map, schemas)
    targets = reference_targets(schemas)
    jobs = []
    for table, files in scan.files.items():
        known = tuple(f for f in schemas[table].field_names if f"{table}.{f}" in targets)
        hmac = tuple(f.name for f in schemas[table].fields if f.masking == "hmac")
        for i, p in enumerate(files):
            jobs.append(
                FileJob(
                    table=table,
                    path=p.resolve(),
                    spill=(spill_dir / f"{table}.{i}.arrow").resolve(),
                    schema=schemas[table],
                    value_map=vmaps.get(table, {}),
                    encoding=ic.encoding.get(table),
                    header_map=ic.header_map.get(table),
                    skip_rows=ic.skip_rows.get(table),
                    footer_rows=ic.footer_rows.get(table),
                    known_fields=known,
                    code_fields=hmac,
                    sha256=hashes.get(p),
                )
            )
    return jobs


def _plan_tables(
    cfg: Settings, passes: Mapping[str, list[FilePass]], schemas: Mapping[str, TableSchema]
) -> dict[str, TablePlan]:
    """``plan_table`` of every table, here (on the local engine's threads): the keys are here."""
    tables = list(passes)
    if cfg.run.engine != "local":
        return {t: plan_table(t, passes[t], schemas[t]) for t in tables}
    decided = run_ordered(
        cfg,
        lambda t: plan_table(t, passes[t], schemas[t]),
        tables,
        "duplicates and conflicts",
        [sum(len(p.keys) for p in passes[t]) for t in tables],
    )
    return dict(zip(tables, decided, strict=True))


def validate_blocks(
    cfg: Settings,
    raw_dir: Path,
    schemas: Mapping[str, TableSchema],
    spill_dir: Path,
    key: bytes,
    hashes: Mapping[Path, str] | None = None,
) -> tuple[ExportScan, dict[str, TablePlan], list[str], Lookups]:
    """Pass 1 over every export (one task per file on the configured engine), then the
    duplicate/conflict decisions per table beside the look-ups pass 2 needs: the scan, the
    plans, the absent tables, the look-ups."""
    scan, missing, problems = _scan_required(cfg, raw_dir, schemas)
    jobs = _file_jobs(cfg, scan, schemas, spill_dir, hashes or {})
    sizes = [j.path.stat().st_size for j in jobs]
    done = run_forked(cfg, _task, jobs, "read and validate", sizes)
    problems += [d for d in done if isinstance(d, str)]
    if problems:
        raise MimamoriError(
            "cannot ingest; fix these files and run again:\n  " + "\n  ".join(problems)
        )
    passes: dict[str, list[FilePass]] = {}
    for d in done:
        assert isinstance(d, FilePass)
        passes.setdefault(d.table, []).append(d)
    with ThreadPoolExecutor(max_workers=1) as beside:  # C work: little of Python's lock
        lookups = beside.submit(build_lookups, cfg, passes, schemas, key)
        plans = _plan_tables(cfg, passes, schemas)
        return scan, plans, missing, lookups.result()


def _known(
    passes: Mapping[str, list[FilePass]], schemas: Mapping[str, TableSchema], threads: int = 1
) -> dict[str, CodeIndex]:
    """The codes each referred-to field holds (``table.field`` -> index), for orphan checks."""
    out = {}
    for target in reference_targets(schemas):
        table, fname = target.split(".", 1)
        if table in passes:
            parts = [p.known[fname] for p in passes[table] if fname in p.known]
            out[target] = CodeIndex(distinct_text(parts, threads))
    return out


def pseudonym_books(
    passes: Mapping[str, list[FilePass]],
    schemas: Mapping[str, TableSchema],
    key: bytes,
    threads: int = 1,
) -> dict[str, PseudonymBook]:
    """Every hmac field's codes seen in pass 1, pseudonymised once per domain (名寄せ's codes
    are registry codes, so they are among them; a code that is not is hashed when met)."""
    parts: dict[str, list[pa.Array]] = {}
    for table, file_passes in passes.items():
        for f in schemas[table].fields:
            if f.masking == "hmac":
                got = [p.codes[f.name] for p in file_passes if f.name in p.codes]
                parts.setdefault(field_domain(f.name), []).extend(got)
    codes = {d: distinct_text(ps, threads) for d, ps in sorted(parts.items())}
    hashed = pseudonyms_sql_of(codes, key, threads)  # one query for every domain
    return {d: PseudonymBook(key, d, c, threads, hashed[d]) for d, c in codes.items()}


@dataclass
class Lookups:
    """What pass 2 looks codes up in: referred-to codes per ``table.field``, and pseudonym
    books per domain (empty on the dask engine: a book is too large to ship with each task)."""

    known: dict[str, CodeIndex]
    books: dict[str, PseudonymBook]


def build_lookups(
    cfg: Settings,
    passes: Mapping[str, list[FilePass]],
    schemas: Mapping[str, TableSchema],
    key: bytes,
) -> Lookups:
    books = (
        pseudonym_books(passes, schemas, key, cfg.run.local_workers)
        if cfg.run.engine == "local"
        else {}
    )
    return Lookups(_known(passes, schemas, cfg.run.local_workers), books)


@dataclass
class Held:
    """A table held whole for 名寄せ (``link_sources`` fills resident codes in place)."""

    valid: pd.DataFrame


def _link(
    cfg: Settings,
    plans: Mapping[str, TablePlan],
    schemas: Mapping[str, TableSchema],
    key: bytes,
    P: Paths,
    raw_dir: Path,
) -> tuple[dict[str, pd.DataFrame], dict]:
    """The residents and the code-less tables, held whole as compact typed frames because
    linkage needs them (every other table streams); linked in place."""
    wanted = [t for t in link_tables(schemas) if t in plans]
    if not wanted:
        return {}, {}
    held = {
        t: Held(materialise(plans[t], schemas[t])) for t in ["residents", *wanted] if t in plans
    }
    link_report = link_sources(cfg, held, schemas, key, P, raw_dir)
    return {t: h.valid for t, h in held.items()}, link_report


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
    span: dict | None = None,
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
        "span": span if span is not None else _source_span(res, schema),
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


def _unmapped(passes: list[FilePass], schema: TableSchema) -> pd.DataFrame:
    rows = []
    for f in schema.fields:
        seen: dict[str, int] = {}
        for p in passes:
            for v, n in p.unmapped.get(f.name, {}).items():
                seen[v] = seen.get(v, 0) + n
        action = "row rejected" if schema.rejects_row(f.name) else "cell set to blank"
        rows += [
            {"field": f.name, "value": v, "count": n, "action": action}
            for v, n in sorted(seen.items(), key=lambda kv: (-kv[1], kv[0]))
        ]
    return pd.DataFrame(rows, columns=["field", "value", "count", "action"])


def _open_ends(passes: list[FilePass], schema: TableSchema) -> dict[str, int]:
    out = {f.name: sum(p.open_ends.get(f.name, 0) for p in passes) for f in schema.fields}
    return {k: v for k, v in out.items() if v}


def _table_entry(plan: TablePlan, schema: TableSchema, fin: Finish, new: MartPaths) -> dict:
    """Write the table's reject and warning lines; its entry in the ingest report."""
    rejects = write_lines([*plan.rejects, *fin.orphans], REJECT_COLUMNS, new.rejects(plan.table))
    warnings = write_lines(
        [p.warnings for p in plan.passes], REJECT_COLUMNS, new.cell_warnings(plan.table)
    )
    res = TableResult(
        table=plan.table,
        typed_all=pd.DataFrame(),
        valid=pd.DataFrame(),
        rejects=rejects,
        rows_in=plan.rows_in,
        duplicates_dropped=plan.duplicates_dropped,
        warnings=warnings,
        unmapped=_unmapped(plan.passes, schema),
        open_ends=_open_ends(plan.passes, schema),
    )
    return table_report(
        res,
        schema,
        fin.rows_out,
        fin.masking,
        [p.info for p in plan.passes],
        fin.references,
        fin.links,
        fin.span,
    )


def _finish_task(
    item: tuple[TablePlan, TableSchema, pd.DataFrame | None, Path],
    known: Mapping[str, CodeIndex],
    present: set[str],
    key: bytes,
    percentiles: tuple[float, float],
    correspondence: bool,
    books: dict[str, PseudonymBook],
) -> Finish:
    """Pass 2 of one table (a task on either engine): orphans, masking, its mart file.
    ``books`` (pseudonyms per domain) is shared by the tables of a local run; a dask task
    gets its own, empty ones (a full book is too large to ship with every task)."""
    plan, schema, held, path = item
    return finish_table(
        plan, schema, held, known, present, key, percentiles, path, correspondence, books
    )


def _write_tables(
    cfg: Settings,
    plans: Mapping[str, TablePlan],
    held: Mapping[str, pd.DataFrame],
    schemas: Mapping[str, TableSchema],
    key: bytes,
    lookups: Lookups,
    new: MartPaths,
    correspondence: bool,
) -> tuple[dict[str, dict], dict[str, dict[str, np.ndarray]]]:
    """Reject orphans, mask and write every table into the new mart folder (row blocks);
    the per-table report entries and, when asked, the real codes per hmac field."""
    lo, hi = cfg.ingest.topcode_percentiles
    new.dir.mkdir(parents=True, exist_ok=True)
    task = functools.partial(
        _finish_task,
        known=lookups.known,
        present=set(plans),
        key=key,
        percentiles=(float(lo), float(hi)),
        correspondence=correspondence,
        books=lookups.books,
    )
    items = [(p, schemas[t], held.get(t), new.table(t)) for t, p in plans.items()]
    rows = [sum(int(a.sum()) for a in p.accepted) for p, *_rest in items]
    fins = run_ordered(cfg, task, items, "mask and write", rows)
    out: dict[str, dict] = {}
    codes: dict[str, dict[str, np.ndarray]] = {}
    for (plan, schema, _held, _path), fin in zip(items, fins, strict=True):
        out[plan.table] = _table_entry(plan, schema, fin, new)
        codes[plan.table] = correspondence_codes(fin)
    return out, codes


def _write_correspondence(
    codes: Mapping[str, Mapping[str, np.ndarray]],
    schemas: Mapping[str, TableSchema],
    key: bytes,
    P: Paths,
) -> Path:
    """pseudonym -> real code for every hmac field, owner-only under data/private/."""
    parts = [
        correspondence_table(pd.DataFrame({name: pd.Series(c, dtype=object)}), schemas[t], key)
        for t, per in codes.items()
        for name, c in per.items()
    ]
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
    hashes = {p: hio.file_sha256(p) for p in scan.all_files}  # also the report's, per file
    fingerprint = _fingerprint(cfg, hashes, key, raw_dir, write_correspondence)
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
    new = MartPaths(mart_dir.with_name(f".{mart_dir.name}.new-{os.getpid()}"))
    spill_dir = mart_dir.with_name(f".{mart_dir.name}.spill-{os.getpid()}")
    clock = [time.perf_counter()]
    try:
        scan, plans, missing, lookups = validate_blocks(
            cfg, raw_dir, schemas, spill_dir, key, hashes
        )
        clock.append(time.perf_counter())
        held, link_report = _link(cfg, plans, schemas, key, P, raw_dir)  # 名寄せ, before masking
        clock.append(time.perf_counter())
        tables, codes = _write_tables(
            cfg, plans, held, schemas, key, lookups, new, bool(write_correspondence)
        )
        clock.append(time.perf_counter())
        if write_correspondence and plans:
            _write_correspondence(codes, schemas, key, P)
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
    finally:
        shutil.rmtree(spill_dir, ignore_errors=True)
    hio.append_audit(
        P.data,
        "ingest",
        cfg,
        inputs=scan.all_files,
        outputs=[MartPaths(mart_dir).table(t) for t in tables] + [MartPaths(mart_dir).report],
        rows={t: v["rows_out"] for t, v in tables.items()},
        # where the time went (make bench reads it: ingest's floor ratio without 名寄せ)
        seconds=dict(zip(INGEST_PHASES, np.diff(clock).tolist(), strict=True)),
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
