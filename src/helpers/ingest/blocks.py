"""Ingest in row blocks: one export file is read, validated and normalised block by block.

Pass 1 (``validate_file``, one task per export file, on either engine): every block of raw text
cells is parsed field by field (``validate._fields``: vectorised, on distinct values); reject and
warning lines are kept (they are few), and the rows without a row-level problem are written,
typed and unmasked, to a spill file (Arrow IPC) beside the new mart. What the table-level checks
need is kept per clean row as keys only: a 128-bit hash of the whole typed row (exact
duplicates), one of the primary key (conflicts), the row's file and number; and the distinct
codes of the fields other tables refer to (orphan checks). Both are built from each field's
distinct values (``Parsed.codes``/``Parsed.values``): the spilled Arrow columns are the distinct
typed values taken by the rows' codes, and a row's hash gathers its fields' per-value hashes
(the very hashes of hashing the whole typed rows), so no text is hashed or converted per row.

``plan_table`` then decides, on the keys alone, which clean rows are exact copies (the first one
stays) and which share a primary key with different values (all rejected; their detail lines are
built from those few rows read back from the spill). ``helpers.ingest.write`` masks and writes
the accepted rows in blocks.

Memory: one block of raw and typed cells, plus the keys (~40 bytes per row of the largest
table) and the reject lines; never a whole table of text.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pandas.core.util.hashing import combine_hash_arrays

from helpers import io as hio
from helpers.ingest.codes import distinct_text, fingerprints
from helpers.ingest.read import read_export
from helpers.ingest.stream import CsvBlocks, Fallback
from helpers.ingest.validate import (
    REJECT_COLUMNS,
    _conflicts,
    _fields,
    _frames,
    _reject_frame,
)
from helpers.schema import TableSchema

BLOCK_ROWS = 200_000  # rows per block when a file was read whole (workbooks, damaged CSVs)
SPILL_MIN_BYTES = 1 << 24  # smaller exports keep their typed rows in memory, larger spill
RAW_PREFIX = "__raw__"  # spill columns holding a primary-key field's raw text
SOURCE_CODE = "__source"  # spill column: source_file as an index into FilePass.sources
KEY_COLUMNS = ["h1", "h2", "k1", "k2"]


@dataclass(frozen=True)
class FileJob:
    """One export file to validate (picklable: it travels to a dask worker)."""

    table: str
    path: Path
    spill: Path
    schema: TableSchema
    value_map: Mapping[str, Mapping[str, object]]
    encoding: str | None
    header_map: Mapping[str, str] | None
    skip_rows: int | None
    footer_rows: int | None
    known_fields: tuple[str, ...]  # fields of this table that other tables refer to
    code_fields: tuple[str, ...] = ()  # hmac fields: their distinct codes are kept (pass 2)
    sha256: str | None = None  # the file's hash when the caller has it already


@dataclass
class FilePass:
    """What pass 1 kept of one file."""

    table: str
    info: dict  # the file's entry in the ingest report
    rows_in: int
    rejects: pd.DataFrame
    warnings: pd.DataFrame
    unmapped: dict[str, dict[str, int]]  # field -> spelling -> rows
    open_ends: dict[str, int]
    keys: pd.DataFrame  # per clean row: h1, h2, k1, k2 (uint64), source_row, source (int)
    sources: list[str]  # source_file names (a workbook's sheets) indexed by keys.source
    spill: Path | None
    known: dict[str, pa.Array] = field(default_factory=dict)  # distinct codes, referred to
    codes: dict[str, pa.Array] = field(default_factory=dict)  # distinct codes of code_fields
    frames: list[pa.Table] | None = None  # the typed clean rows of a small file


class _Whole:
    """A file read whole by ``read_export``, given out in blocks like ``CsvBlocks``."""

    def __init__(self, job: FileJob) -> None:
        self.df = read_export(
            job.path, job.schema, job.encoding, job.header_map, job.skip_rows, job.footer_rows
        )

    def __iter__(self) -> Iterator[pd.DataFrame]:
        for start in range(0, len(self.df), BLOCK_ROWS):
            yield self.df.iloc[start : start + BLOCK_ROWS].reset_index(drop=True)

    def attrs(self) -> dict:
        return dict(self.df.attrs)


def _source(job: FileJob) -> CsvBlocks | _Whole:
    if job.path.suffix.lower() in (".csv", ".txt"):
        try:
            return CsvBlocks(
                job.path, job.schema, job.encoding, job.header_map, job.skip_rows, job.footer_rows
            )
        except Fallback:
            pass
    return _Whole(job)


_HASH_KEYS = ("mimamori-ingst-1", "mimamori-ingst-2")


def _column_hashes(values) -> list[np.ndarray]:
    """``pd.util.hash_array`` of one column under each of ``_HASH_KEYS``; a column of text is
    factorised once for both keys (pandas would factorise it once per key)."""
    arr = getattr(values, "_ndarray", values)
    if isinstance(arr, np.ndarray) and arr.dtype == object:
        codes, categories = pd.factorize(arr, sort=False)
        cat = pd.Categorical.from_codes(codes, dtype=pd.CategoricalDtype(pd.Index(categories)))
        return [pd.util.hash_array(cat, hash_key=k) for k in _HASH_KEYS]
    return [pd.util.hash_array(values, hash_key=k) for k in _HASH_KEYS]


def row_hashes(frame: pd.DataFrame, names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Two independent 64-bit hashes of each row's values in ``names`` (128 bits together);
    equal to ``pd.util.hash_pandas_object(frame[names], index=False, hash_key=k)``."""
    return row_hashes_of(frame, [names])[0]


def row_hashes_of(
    frame: pd.DataFrame, subsets: list[list[str]]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``row_hashes`` of several column subsets, each column hashed once."""
    columns = {name: _column_hashes(frame[name]._values) for s in subsets for name in s}
    return _combined(columns, subsets, len(frame))


def _combined(
    columns: Mapping[str, list[np.ndarray]], subsets: list[list[str]], n: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each subset's two row hashes from its columns' per-row hashes (zeros when empty)."""
    out = []
    for names in subsets:
        if not names or not n:
            z = np.zeros(n, dtype=np.uint64)
            out.append((z, z))
            continue
        a, b = (
            combine_hash_arrays(iter([columns[c][i] for c in names]), len(names)) for i in (0, 1)
        )
        out.append((a, b))
    return out


def _text_hashes(columns: list) -> list[tuple[list[np.ndarray], list[np.ndarray]]]:
    """Two independent 64-bit hashes of each text of Arrow-backed columns, and of a blank
    (DuckDB's, in C, in one call for all the columns; a text column's part of a row hash in
    pass 1, where every key is made this way): per column, (per value, blank) hashes."""
    cells = [pa.array(v, pa.string(), from_pandas=True) for v in columns]
    both = fingerprints(pa.concat_arrays([*cells, pa.nulls(1, pa.string())]), columns=2)
    ends = np.cumsum([len(c) for c in cells])
    blank = [both[-1:, 0], both[-1:, 1]]
    return [
        ([both[end - len(c) : end, 0], both[end - len(c) : end, 1]], blank)
        for c, end in zip(cells, ends, strict=True)
    ]


def _is_arrow_text(values) -> bool:
    return isinstance(values, pd.arrays.ArrowStringArray)


def _value_hashes(values) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """``_column_hashes`` of a field's distinct values, and of its blank."""
    blank_value = (
        np.full(1, np.nan, dtype=values.dtype)  # a float64 column: NaN is its blank
        if isinstance(values, np.ndarray)
        else values.take([-1], allow_fill=True)
    )
    return _column_hashes(values), _column_hashes(blank_value)


def _gathered(
    hashes: tuple[list[np.ndarray], list[np.ndarray]], codes: np.ndarray, blank: np.ndarray
) -> list[np.ndarray]:
    """The per-value ``hashes`` (and the blank's) taken by ``codes``, ``blank`` rows the
    blank's: the distinct values hashed once, then gathered (hashing is per value, so the
    result is that of hashing the rows' values)."""
    per_value, na = hashes
    if not len(per_value[0]):
        return [np.full(len(codes), n[0], dtype=np.uint64) for n in na]
    pos = np.where(blank, 0, codes)
    return [np.where(blank, n[0], u.take(pos)) for u, n in zip(per_value, na, strict=True)]


def clean_row_hashes(
    parsed: Mapping[str, tuple], clean: np.ndarray, subsets: list[list[str]]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """``row_hashes_of`` the clean rows of a typed block, from each field's distinct values
    (``validate._fields``' ``parsed``: codes, typed distinct values, cells set to blank);
    Arrow text is hashed by ``_text_hashes`` instead (the same in every block and file)."""
    names = sorted({n for s in subsets for n in s})
    text = [n for n in names if _is_arrow_text(parsed[n][1])]
    hashes = dict(zip(text, _text_hashes([parsed[n][1] for n in text]), strict=True))
    columns = {}
    for name in names:
        codes, values, blanked = parsed[name]
        c = codes[clean]
        blank = c < 0 if blanked is None else (c < 0) | blanked[clean]
        columns[name] = _gathered(hashes.get(name) or _value_hashes(values), c, blank)
    return _combined(columns, subsets, int(clean.sum()))


class _Spill:
    """Typed clean rows of one file, appended block by block to an Arrow IPC file (or, for a
    file under ``SPILL_MIN_BYTES``, kept in memory as the same Arrow tables)."""

    def __init__(self, path: Path, in_memory: bool) -> None:
        self.path = path
        self.writer: pa.ipc.RecordBatchFileWriter | None = None
        self.schema: pa.Schema | None = None
        self.frames: list[pa.Table] | None = [] if in_memory else None

    def write(self, frame: pd.DataFrame) -> None:
        if self.schema is None:
            self.schema = pa.Schema.from_pandas(frame, preserve_index=False)
        self.write_table(pa.Table.from_pandas(frame, schema=self.schema, preserve_index=False))

    def write_table(self, table: pa.Table) -> None:
        """Append an Arrow table (of the schema of the first one)."""
        if self.schema is None:
            self.schema = table.schema
        if not table.schema.equals(self.schema, check_metadata=True):
            table = table.cast(self.schema)
        if self.frames is not None:
            self.frames.append(table)
            return
        if self.writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.writer = pa.ipc.new_file(str(self.path), self.schema)
        self.writer.write_table(table)

    def close(self) -> Path | None:
        if self.writer is None:
            return None
        self.writer.close()
        return self.path


def _clean_frame(raw: pd.DataFrame, typed: pd.DataFrame, clean: np.ndarray, pk: list[str]):
    out = typed.loc[clean].reset_index(drop=True)
    text = [c for c in out.columns if _is_arrow_text(out[c].array)]
    out = out.astype(dict.fromkeys(text, pd.StringDtype("python")))  # the spill's text type
    for name in pk:
        out[RAW_PREFIX + name] = raw[name][clean].astype("string").reset_index(drop=True)
    return out


def _distinct(parsed: tuple, typed: pd.Series) -> pa.Array:
    """``typed.dropna().unique()`` as Arrow text, from the field's distinct values (every one
    occurs in the block)."""
    _codes, values, blanked = parsed
    distinct = typed.dropna().unique() if blanked is not None else values
    return pc.drop_null(pa.array(distinct, pa.string(), from_pandas=True))


def _raw_text(col: pd.Series, clean: np.ndarray) -> pa.Array:
    """``col[clean].astype("string")`` as Arrow (the raw text of a primary-key field)."""
    arr = col.array
    if isinstance(arr, pd.arrays.ArrowExtensionArray) and pa.types.is_string(
        arr.dtype.pyarrow_dtype
    ):
        return pc.filter(arr._pa_array, pa.array(clean)).combine_chunks()
    return pa.array(col[clean].astype("string").to_numpy(object), pa.string(), from_pandas=True)


def _clean_table(
    raw: pd.DataFrame,
    typed: pd.DataFrame,
    parsed: Mapping[str, tuple],
    clean: np.ndarray,
    schema: TableSchema,
    source: np.ndarray,
) -> pa.Table:
    """The clean rows of a block, typed, as Arrow: each field's distinct values taken by the
    rows' codes (no per-row Python objects); equal to ``from_pandas`` of ``_clean_frame``, but
    for ``source_file``, which is spilled as the rows' ``source`` indices (``_decoded``)."""
    pk = list(schema.primary_key)
    first = np.zeros(len(clean), dtype=bool)
    first[np.flatnonzero(clean)[0]] = True
    target = pa.Schema.from_pandas(_clean_frame(raw, typed, first, pk), preserve_index=False)
    arrays = []
    for name in schema.field_names:
        codes, values, blanked = parsed[name]
        c = codes[clean]
        blank = c < 0 if blanked is None else (c < 0) | blanked[clean]
        kind = target.field(name).type
        if not len(values):
            arrays.append(pa.nulls(len(c), kind))
            continue
        distinct = pa.array(values, type=kind, from_pandas=True)
        arrays.append(distinct.take(pa.array(np.where(blank, 0, c), pa.int64(), mask=blank)))
    arrays.append(pa.array(source, pa.int32()))
    arrays.append(pa.array(raw["source_row"].to_numpy()[clean].astype("int64")))
    arrays += [_raw_text(raw[name], clean) for name in pk]
    return pa.Table.from_arrays(arrays, schema=_coded(target))


def _coded(schema: pa.Schema) -> pa.Schema:
    """The spill's schema: ``source_file`` kept as its index into ``FilePass.sources``."""
    return schema.set(schema.get_field_index("source_file"), pa.field(SOURCE_CODE, pa.int32()))


def _decoded(batch: pa.RecordBatch, sources: list[str]) -> pa.RecordBatch:
    """A spilled batch with its ``source_file`` names back in place of their indices."""
    i = batch.schema.get_field_index(SOURCE_CODE)
    if i < 0:
        return batch
    names = pa.array(sources, pa.string()).take(batch.column(i))
    return batch.set_column(i, pa.field("source_file", pa.string()), names)


def _source_codes(raw: pd.DataFrame, clean: np.ndarray, sources: list[str]) -> np.ndarray:
    """Each clean row's source_file as an index into ``sources`` (names met first are added)."""
    codes, names = pd.factorize(raw["source_file"].to_numpy())
    for name in names:
        if name not in sources:
            sources.append(name)
    return np.array([sources.index(n) for n in names], dtype=np.int32)[codes[clean]]


def _one_block(job: FileJob, raw: pd.DataFrame, acc: dict, spill: _Spill) -> None:
    schema = job.schema
    typed, row_bad, rejects, warnings, seen = _fields(raw, schema, job.value_map)
    acc["rejects"] += rejects
    acc["warnings"] += warnings
    acc["rows_in"] += len(raw)
    for u in seen["unmapped"]:
        per = acc["unmapped"].setdefault(u["field"], {})
        per[u["value"]] = per.get(u["value"], 0) + int(u["count"])
    for name, n in seen["open_ends"].items():
        acc["open_ends"][name] = acc["open_ends"].get(name, 0) + int(n)
    for name in {*job.known_fields, *job.code_fields}:
        acc["distinct"][name] = [
            *acc["distinct"].get(name, []),
            _distinct(seen["parsed"][name], typed[name]),
        ]
    clean = ~row_bad
    if not clean.any():
        return
    subsets = [schema.field_names, list(schema.primary_key)]
    (h1, h2), (k1, k2) = clean_row_hashes(seen["parsed"], clean, subsets)
    codes = _source_codes(raw, clean, acc["sources"])
    acc["keys"].append(
        pd.DataFrame(
            {
                "h1": h1,
                "h2": h2,
                "k1": k1,
                "k2": k2,
                "source_row": raw["source_row"].to_numpy()[clean].astype("int64"),
                "source": codes,
            }
        )
    )
    spill.write_table(_clean_table(raw, typed, seen["parsed"], clean, schema, codes))


def _file_info(job: FileJob, attrs: dict, rows: int) -> dict:
    return {
        "file": job.path.name,
        "encoding": attrs["encoding"],
        "sheet": attrs["sheet"],
        "sheets": attrs["sheets"],
        "rows": rows,
        "blank_rows_skipped": attrs["blank_rows"],
        "title_rows_skipped": attrs["title_rows"],
        "footer_rows_skipped": attrs["footer_rows"],
        "unknown_headers": attrs["unknown_headers"],
        "missing_optional_columns": attrs["missing_optional_columns"],
        "sha256": job.sha256 or hio.file_sha256(job.path),
    }


def _run(job: FileJob, source: CsvBlocks | _Whole) -> FilePass:
    acc: dict = {
        "rejects": [],
        "warnings": [],
        "rows_in": 0,
        "unmapped": {},
        "open_ends": {},
        "distinct": {},
        "keys": [],
        "sources": [],
    }
    spill = _Spill(job.spill, job.path.stat().st_size < SPILL_MIN_BYTES)
    try:
        for raw in source:
            _one_block(job, raw, acc, spill)
    finally:
        path = spill.close()
    attrs = source.meta.attrs(job.path.name) if isinstance(source, CsvBlocks) else source.attrs()
    keys = (
        pd.concat(acc["keys"], ignore_index=True)
        if acc["keys"]
        else pd.DataFrame({c: np.zeros(0, np.uint64) for c in KEY_COLUMNS})
        .assign(source_row=np.zeros(0, np.int64))
        .assign(source=np.zeros(0, np.int32))
    )
    return FilePass(
        table=job.table,
        info=_file_info(job, attrs, acc["rows_in"]),
        rows_in=acc["rows_in"],
        rejects=_frames(acc["rejects"])[REJECT_COLUMNS],
        warnings=_frames(acc["warnings"])[REJECT_COLUMNS],
        unmapped=acc["unmapped"],
        open_ends=acc["open_ends"],
        keys=keys,
        sources=acc["sources"],
        spill=path,
        frames=spill.frames,
        known={k: distinct_text(acc["distinct"].get(k, [])) for k in job.known_fields},
        codes={k: distinct_text(acc["distinct"].get(k, [])) for k in job.code_fields},
    )


def validate_file(job: FileJob) -> FilePass:
    """Pass 1 over one export file (a task on either engine); whole-file problems raise
    MimamoriError naming the file."""
    source = _source(job)
    try:
        return _run(job, source)
    except Fallback:  # the streaming reader met something only the whole-file reader names
        if job.spill.exists():
            os.unlink(job.spill)
        return _run(job, _Whole(job))


# ----------------------------------------------------------------------------- one table
@dataclass
class TablePlan:
    """Which clean rows of a table reach the mart, and the lines for those that do not."""

    table: str
    passes: list[FilePass]
    accepted: list[np.ndarray]  # per file: mask over that file's clean (spilled) rows
    rejects: list[pd.DataFrame]
    duplicates_dropped: int
    rows_in: int


def _source_names(passes: list[FilePass], src: np.ndarray, file_of: np.ndarray) -> np.ndarray:
    """The source_file name of rows given by their file (``file_of``) and source code."""
    names = np.empty(len(src), dtype=object)
    for i, p in enumerate(passes):
        here = file_of == i
        names[here] = np.asarray(p.sources, dtype=object)[src[here]] if p.sources else None
    return names


def spilled_batches(p: FilePass, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
    """The typed clean rows of one file as Arrow batches (from memory or its spill file)."""
    if columns is not None:
        columns = [SOURCE_CODE if c == "source_file" else c for c in columns]
    if p.frames is not None:
        for table in p.frames:
            table = table if columns is None else table.select(columns)
            for batch in table.combine_chunks().to_batches() or [_empty_batch(table.schema)]:
                yield _decoded(batch, p.sources)
    elif p.spill is not None:
        with pa.memory_map(str(p.spill)) as source:
            reader = pa.ipc.open_file(source)
            for i in range(reader.num_record_batches):
                batch = reader.get_batch(i)
                yield _decoded(batch if columns is None else batch.select(columns), p.sources)


def _empty_batch(schema: pa.Schema) -> pa.RecordBatch:
    return pa.RecordBatch.from_pylist([], schema=schema)


def spilled(p: FilePass, columns: list[str] | None = None) -> Iterator[pd.DataFrame]:
    """The typed clean rows of one file, block by block (from memory or its spill file)."""
    for batch in spilled_batches(p, columns):
        yield batch.to_pandas()


def _rows_of(passes: list[FilePass], wanted: list[np.ndarray]) -> pd.DataFrame:
    """Spilled rows at the given positions (per file) in file order."""
    parts = []
    for p, pos in zip(passes, wanted, strict=True):
        if not len(pos):
            continue
        start = 0
        for batch in spilled_batches(p):
            end = start + batch.num_rows
            here = pos[(pos >= start) & (pos < end)] - start
            if len(here):
                parts.append(batch.take(pa.array(here)))
            start = end
    if not parts:
        return pd.DataFrame()
    return pa.Table.from_batches(parts, schema=parts[0].schema).to_pandas()


def repeated(values: np.ndarray) -> np.ndarray:
    """Positions of the values that occur more than once (one hash pass over a 64-bit key)."""
    return np.flatnonzero(pd.Series(values, copy=False).duplicated(keep=False).to_numpy())


def _dup_lines(
    sub: pd.DataFrame, dup: np.ndarray, passes: list[FilePass], file_of: np.ndarray
) -> pd.DataFrame:
    """Reject lines of the exact copies ``dup`` among the candidate rows ``sub`` (which hold
    every copy and its first)."""
    first = sub.groupby(["h1", "h2"], sort=False)["source_row"].transform("first").to_numpy()
    detail = np.array(
        [f"exact copy of row {r}; dropped (counted, not rejected)" for r in first[dup]],
        dtype=object,
    )
    names = _source_names(passes, sub["source"].to_numpy()[dup], file_of[dup])
    frame = pd.DataFrame({"source_file": names, "source_row": sub["source_row"].to_numpy()[dup]})
    return _reject_frame(
        frame, np.ones(int(dup.sum()), dtype=bool), "*", "", "duplicate_exact", detail
    )


def _conflict_lines(
    passes: list[FilePass], conflict: np.ndarray, bounds: np.ndarray, schema: TableSchema
) -> pd.DataFrame:
    pk = list(schema.primary_key)
    wanted = [np.flatnonzero(conflict[bounds[i] : bounds[i + 1]]) for i in range(len(passes))]
    rows = _rows_of(passes, wanted)
    raw = pd.DataFrame({name: rows[RAW_PREFIX + name].astype(object) for name in pk})
    raw["source_file"] = rows["source_file"].to_numpy()
    raw["source_row"] = rows["source_row"].to_numpy()
    typed = rows[[*schema.field_names, "source_file", "source_row"]]
    _mask, lines = _conflicts(raw, typed, np.ones(len(rows), dtype=bool), schema)
    return lines


def plan_table(table: str, passes: list[FilePass], schema: TableSchema) -> TablePlan:
    """Exact duplicates and primary-key conflicts of one table, decided on the keys.

    One hash pass finds the candidates: the rows whose primary-key hash repeats (an exact copy
    shares its original's primary key), or, without a primary key, whose row hash repeats.
    Copies (the first stays) and conflicts are then decided among those few rows."""
    keys = pd.concat([p.keys for p in passes], ignore_index=True)
    sizes = np.array([len(p.keys) for p in passes], dtype=np.int64)
    bounds = np.concatenate([[0], np.cumsum(sizes)])
    file_of = np.repeat(np.arange(len(passes)), sizes)
    cand = repeated(keys["k1" if schema.primary_key else "h1"].to_numpy())
    sub = keys.iloc[cand].reset_index(drop=True)
    dup_sub = sub.duplicated(["h1", "h2"], keep="first").to_numpy()
    rejects = [p.rejects for p in passes]
    if dup_sub.any():
        rejects.append(_dup_lines(sub, dup_sub, passes, file_of[cand]))
    dup = np.zeros(len(keys), dtype=bool)
    dup[cand[dup_sub]] = True
    conflict = np.zeros(len(keys), dtype=bool)
    if schema.primary_key:
        rest = np.flatnonzero(~dup_sub)
        same_key = sub.iloc[rest].duplicated(["k1", "k2"], keep=False).to_numpy()
        conflict[cand[rest[same_key]]] = True
        if conflict.any():
            rejects.append(_conflict_lines(passes, conflict, bounds, schema))
    accepted = ~dup & ~conflict
    for p in passes:  # decided: the keys are not needed any more
        p.keys = p.keys.iloc[:0]
    return TablePlan(
        table=table,
        passes=passes,
        accepted=[accepted[bounds[i] : bounds[i + 1]] for i in range(len(passes))],
        rejects=rejects,
        duplicates_dropped=int(dup.sum()),
        rows_in=int(sum(p.rows_in for p in passes)),
    )


def accepted_blocks(plan: TablePlan, columns: list[str] | None = None) -> Iterator[pd.DataFrame]:
    """The accepted rows of a table (typed, unmasked) block by block, in file order."""
    for p, ok in zip(plan.passes, plan.accepted, strict=True):
        start = 0
        for block in spilled(p, columns):
            end = start + len(block)
            yield block.loc[ok[start:end]].reset_index(drop=True)
            start = end


def accepted_batches(plan: TablePlan, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
    """``accepted_blocks`` as Arrow batches (no pandas)."""
    for p, ok in zip(plan.passes, plan.accepted, strict=True):
        start = 0
        for batch in spilled_batches(p, columns):
            end = start + batch.num_rows
            yield batch.filter(pa.array(ok[start:end], pa.bool_()))
            start = end


def materialise(plan: TablePlan, schema: TableSchema) -> pd.DataFrame:
    """The accepted rows as one frame (the residents and the code-less tables: 名寄せ)."""
    cols = [*schema.field_names, "source_file", "source_row"]
    batches = list(accepted_batches(plan, cols))
    if not batches:
        return pd.DataFrame(columns=cols)
    text = {pa.string(): pd.StringDtype("pyarrow"), pa.large_string(): pd.StringDtype("pyarrow")}
    return pa.Table.from_batches(batches).to_pandas(types_mapper=text.get)  # text stays Arrow
