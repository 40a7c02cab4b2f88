"""Ingest pass 2: orphan checks, masking and the mart file of one table, in row blocks.

The accepted rows of a table (``blocks.TablePlan``) are read twice, block by block: first the
few columns the table-level decisions need (references, top-coded and date fields) to reject
orphans, count linkage and find the top-coding bounds (exact percentiles from value counts),
then every column to mask and write. The parquet file is written one row group of
``ROW_GROUP`` rows at a time, which gives the same bytes as writing the whole table at once.

Pass 2 stays in Arrow (no pandas per row): references are looked up in the referred table's
``codes.CodeIndex``, pseudonyms in the domain's ``codes.PseudonymBook`` (``masking.mask_batch``)
and the masked columns are written under the schema ``pa.Table.from_pandas`` gives the mart
frame, so the bytes are those of the pandas route.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from helpers import io as hio
from helpers.ingest.blocks import BLOCK_ROWS, TablePlan, accepted_batches
from helpers.ingest.codes import CodeIndex, PseudonymBook
from helpers.ingest.masking import field_domain, mask_batch, mask_table
from helpers.ingest.validate import orphan_rejects
from helpers.io import atomic_path
from helpers.schema import MART_DTYPES, TableSchema

ROW_GROUP = 1024 * 1024  # pyarrow's default row group: the bytes equal a one-shot write
HOUSEHOLD_LINK = "household_history.household_code"


def percentile_from_counts(
    values: np.ndarray, counts: np.ndarray, pct: float, method: str
) -> float:
    """``np.percentile(data, pct, method=lower|higher)`` of data given as sorted distinct
    ``values`` with their ``counts`` (numpy's own index arithmetic)."""
    n = int(counts.sum())
    q = np.true_divide(np.asanyarray(pct, dtype=np.float64), 100)
    virtual = (n - 1) * q
    index = int(np.floor(virtual) if method == "lower" else np.ceil(virtual))
    index = min(max(index, 0), n - 1)
    cum = np.cumsum(counts)
    return float(values[int(np.searchsorted(cum, index, side="right"))])


def link_fields(
    table: str, schema: TableSchema, present: set[str], has_household: bool
) -> dict[str, str]:
    """The references whose linkage is reported (``validate.linkage``)."""
    links = dict(schema.references)
    if (
        not links
        and has_household
        and "household_history" in present
        and table != "household_history"
    ):
        links = {"household_code": HOUSEHOLD_LINK}
    return {f: t for f, t in links.items() if t.split(".", 1)[0] in present}


@dataclass
class Finish:
    """What pass 2 found about one table, for its report entry."""

    rows_out: int = 0
    orphans: list[pd.DataFrame] = field(default_factory=list)
    references: dict = field(default_factory=dict)
    links: dict = field(default_factory=dict)
    span: dict = field(default_factory=dict)
    masking: dict = field(default_factory=dict)
    codes: dict[str, list[np.ndarray]] = field(default_factory=dict)  # hmac field -> codes


ARROW_TYPES = {
    "code": pa.string(),
    "string": pa.string(),
    "text": pa.string(),
    "enum": pa.string(),
    "int": pa.int64(),
    "float": pa.float64(),
    "bool": pa.bool_(),
    "date": pa.timestamp("ns"),
}


def held_table(held: pd.DataFrame, schema: TableSchema) -> pa.Table:
    """A table held whole (名寄せ) as Arrow, typed as its spill files are."""
    cols = [*schema.field_names, "source_file", "source_row"]
    types = [ARROW_TYPES[f.type] for f in schema.fields] + [pa.string(), pa.int64()]
    arrays = [
        pa.Array.from_pandas(held[c], type=t) if len(held) else pa.array([], t)
        for c, t in zip(cols, types, strict=True)
    ]
    return pa.Table.from_arrays(arrays, names=cols)


def _blocks(
    plan: TablePlan, held: pa.Table | None, columns: list[str] | None
) -> Iterator[pa.RecordBatch]:
    if held is None:
        yield from accepted_batches(plan, columns)
        return
    table = held if columns is None else held.select(columns)
    for start in range(0, table.num_rows, BLOCK_ROWS):
        yield from table.slice(start, BLOCK_ROWS).combine_chunks().to_batches()


def _frame_of(block: pa.RecordBatch, rows: np.ndarray, columns: list[str]) -> pd.DataFrame:
    """The given rows of a block as a pandas frame (reject lines: a few rows)."""
    return block.select(columns).filter(pa.array(rows)).to_pandas()


def _orphans(
    block: pa.RecordBatch, schema: TableSchema, found: Mapping[str, np.ndarray], out: Finish
) -> np.ndarray:
    """Rows of the block kept after the reference checks; orphan lines recorded."""
    keep = np.ones(block.num_rows, dtype=bool)
    for fname, target in schema.references.items():
        info = out.references[fname]
        if not info["checked"]:
            continue
        present = block.column(fname).is_valid().to_numpy(zero_copy_only=False)
        orphan = keep & present & ~found[fname]
        info["orphans"] += int(orphan.sum())
        if orphan.any():
            rows = _frame_of(block, orphan, [fname, "source_file", "source_row"])
            out.orphans.append(orphan_rejects(rows, fname, target))
        keep &= ~orphan
    return keep


def _count_links(
    block: pa.RecordBatch, links: dict, found: Mapping[str, np.ndarray], out: Finish
) -> None:
    for fname, target in links.items():
        col = block.column(fname)
        e = out.links.setdefault(
            fname, {"references": target, "records": 0, "key_blank": 0, "linked": 0}
        )
        e["records"] += len(col)
        e["key_blank"] += col.null_count
        e["linked"] += int(found[fname].sum())


def _references(schema: TableSchema, present: set[str]) -> dict[str, dict]:
    out = {}
    for fname, target in schema.references.items():
        ref_table = target.split(".", 1)[0]
        out[fname] = (
            {"references": target, "checked": True, "orphans": 0}
            if ref_table in present
            else {
                "references": target,
                "checked": False,
                "orphans": 0,
                "note": f"{ref_table} export absent; not checked",
            }
        )
    return out


def _value_counts(col: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Distinct non-null values (as float) of a numeric column and their counts."""
    vc = pc.value_counts(pc.drop_null(col))
    values = vc.field("values").to_numpy(zero_copy_only=False).astype(float)
    return values, vc.field("counts").to_numpy(zero_copy_only=False).astype(np.int64)


def _first_pass(
    plan: TablePlan,
    held: pa.Table | None,
    schema: TableSchema,
    known: Mapping[str, CodeIndex],
    present: set[str],
) -> tuple[Finish, list[np.ndarray], dict[str, list]]:
    """Orphans, linkage, date span and top-coding counts; the rows kept per block."""
    out = Finish(references=_references(schema, present))
    links = link_fields(plan.table, schema, present, "household_code" in schema.field_names)
    tops = [f.name for f in schema.fields if f.masking == "topcode"]
    dates = [f.name for f in schema.fields if f.type == "date" and f.masking != "birth_month"]
    cols = sorted({*schema.references, *links, *tops, *dates, "source_file", "source_row"})
    cols = [c for c in [*schema.field_names, "source_file", "source_row"] if c in cols]
    keeps: list[np.ndarray] = []
    counts: dict[str, list] = {name: [] for name in tops}
    span: list[int] = []
    checked = {f: t for f, t in schema.references.items() if out.references[f]["checked"]}
    for block in _blocks(plan, held, cols):
        found = {  # whether each row's code is known, once per field
            f: known[t].contains(block.column(f)) for f, t in {**links, **checked}.items()
        }
        _count_links(block, links, found, out)
        keep = _orphans(block, schema, found, out)
        keeps.append(keep)
        kept = block.filter(pa.array(keep))
        for name in tops:
            counts[name].append(_value_counts(kept.column(name)))
        for d in dates:
            mm = pc.min_max(kept.column(d))
            span += [v.value for v in (mm["min"], mm["max"]) if v.is_valid]
    for e in out.links.values():
        n = e["records"]
        e["not_found"] = n - e["key_blank"] - e["linked"]
        e["linkage_rate"] = e["linked"] / n if n else None
    day = (lambda ns: pd.Timestamp(ns).date().isoformat()) if span else None
    out.span = {
        "first_date": day(min(span)) if day else None,
        "last_date": day(max(span)) if day else None,
    }
    return out, keeps, {k: v for k, v in counts.items() if v}


def _bounds(counts: dict[str, list], percentiles: tuple[float, float]) -> dict:
    out: dict[str, dict] = {}
    for name, parts in counts.items():
        values = np.concatenate([v for v, _c in parts])
        if not len(values):
            out[name] = {"lower": None, "upper": None}
            continue
        v, inverse = np.unique(values, return_inverse=True)
        c = np.bincount(inverse, weights=np.concatenate([c for _v, c in parts]))
        c = c.astype(np.int64)
        out[name] = {
            "lower": percentile_from_counts(v, c, percentiles[0], "lower"),
            "upper": percentile_from_counts(v, c, percentiles[1], "higher"),
        }
    return out


class _Writer:
    """Parquet written one full row group at a time (bytes equal ``df.to_parquet``)."""

    def __init__(self, path: Path) -> None:
        self._ctx = atomic_path(path)
        self.tmp = self._ctx.__enter__()
        self.writer: pq.ParquetWriter | None = None
        self.schema: pa.Schema | None = None
        self.buffer: list[pa.Table] = []
        self.rows = 0

    def write(self, frame: pd.DataFrame) -> None:
        if self.schema is None:
            self.start(pa.Schema.from_pandas(frame, preserve_index=False))
        self.write_table(pa.Table.from_pandas(frame, schema=self.schema, preserve_index=False))

    def start(self, schema: pa.Schema) -> None:
        """Open the file with the given schema (``write_table`` then adds Arrow tables)."""
        self.schema = schema
        self.writer = pq.ParquetWriter(self.tmp, self.schema)

    def write_table(self, table: pa.Table) -> None:
        self.buffer.append(table)
        self.rows += table.num_rows
        while self.rows >= ROW_GROUP:
            self._flush(ROW_GROUP)

    def _flush(self, n: int) -> None:
        assert self.writer is not None
        table = pa.concat_tables(self.buffer).combine_chunks()
        self.writer.write_table(table.slice(0, n), row_group_size=ROW_GROUP)
        rest = table.slice(n)
        self.buffer, self.rows = [rest], len(rest)

    def close(self, empty: pd.DataFrame) -> None:
        if self.writer is None:
            empty.to_parquet(self.tmp, index=False)
        else:
            if self.rows:
                self._flush(self.rows)
            self.writer.close()
        self._ctx.__exit__(None, None, None)

    def abort(self, exc: BaseException) -> None:
        if self.writer is not None:
            self.writer.close()
        self._ctx.__exit__(type(exc), exc, exc.__traceback__)


def _add_masking(total: dict, part: dict) -> None:
    for name, info in part.items():
        if name not in total:
            total[name] = dict(info)
            continue
        for k in ("n_values", "n_april_first", "n_lower", "n_upper"):
            if k in info:
                total[name][k] += info[k]


def _empty(schema: TableSchema) -> pd.DataFrame:
    return pd.DataFrame({f.name: pd.Series(dtype=MART_DTYPES[f.type]) for f in schema.mart_fields})


def _fixed_bounds(schema: TableSchema, bounds: dict) -> dict[str, tuple[float, float]]:
    out = {}
    for f in schema.fields:
        if f.masking == "topcode":
            b = bounds.get(f.name) or {"lower": None}
            out[f.name] = (b["lower"], b["upper"]) if b["lower"] is not None else (0.0, 0.0)
    return out


def _mart_schema(schema: TableSchema) -> pa.Schema:
    """The Arrow schema (with pandas metadata) ``pa.Table.from_pandas`` gives a mart table."""
    return pa.Schema.from_pandas(_empty(schema), preserve_index=False)


def _write_masked(
    plan: TablePlan,
    schema: TableSchema,
    held: pa.Table | None,
    keeps: list[np.ndarray],
    writer: _Writer,
    mask: tuple[bytes, dict, Mapping[str, PseudonymBook]],
    out: Finish,
    correspondence: bool,
) -> None:
    """Mask the kept rows block by block and write them (Arrow throughout)."""
    key, fixed, books = mask
    hmac_fields = [f.name for f in schema.mart_fields if f.masking == "hmac"]
    target = None
    for block, keep in zip(_blocks(plan, held, None), keeps, strict=True):
        if target is None:
            target = _mart_schema(schema)
            writer.start(target)
        kept = block.filter(pa.array(keep))
        columns, report = mask_batch(kept, schema, key, fixed, books)
        _add_masking(out.masking, report)
        if correspondence:
            for name in hmac_fields:
                codes = pc.unique(pc.drop_null(kept.column(name)))
                out.codes.setdefault(name, []).append(codes.to_numpy(zero_copy_only=False))
        out.rows_out += kept.num_rows
        writer.write_table(pa.Table.from_arrays(columns, schema=target))


def finish_table(
    plan: TablePlan,
    schema: TableSchema,
    held: pd.DataFrame | None,
    known: Mapping[str, CodeIndex],
    present: set[str],
    key: bytes,
    percentiles: tuple[float, float],
    path: Path,
    correspondence: bool,
    books: dict[str, PseudonymBook] | None = None,
) -> Finish:
    """Reject orphans, mask and write one table's mart file; what happened, for the report.
    ``books``: pseudonyms per domain, shared by the tables of one run (a domain without one
    gets an empty book, which pseudonymises each code as it is met)."""
    arrow = held_table(held, schema) if held is not None else None
    out, keeps, counts = _first_pass(plan, arrow, schema, known, present)
    bounds = _bounds(counts, percentiles)
    fixed = _fixed_bounds(schema, bounds)
    writer = _Writer(path)
    books = books if books is not None else {}
    for f in schema.fields:
        if f.masking == "hmac":
            books.setdefault(field_domain(f.name), PseudonymBook(key, field_domain(f.name)))
    try:
        _write_masked(plan, schema, arrow, keeps, writer, (key, fixed, books), out, correspondence)
        if not out.masking:
            _add_masking(out.masking, mask_table(_empty_typed(schema), schema, key, fixed)[1])
        writer.close(_empty(schema))
    except BaseException as exc:
        writer.abort(exc)
        raise
    for name, b in bounds.items():
        out.masking[name].update(lower=b["lower"], upper=b["upper"])
        out.masking[name]["percentiles"] = [percentiles[0], percentiles[1]]
    for f in schema.fields:
        if f.masking == "topcode" and f.name not in bounds:
            out.masking[f.name].update(lower=None, upper=None, n_lower=0, n_upper=0)
            out.masking[f.name]["percentiles"] = [percentiles[0], percentiles[1]]
    return out


def _empty_typed(schema: TableSchema) -> pd.DataFrame:
    return pd.DataFrame({f.name: pd.Series(dtype=MART_DTYPES[f.type]) for f in schema.fields})


def correspondence_codes(fin: Finish) -> dict[str, np.ndarray]:
    """Distinct real codes per hmac field of the accepted rows."""
    return {
        name: pd.unique(np.concatenate(parts)) if parts else np.array([], dtype=object)
        for name, parts in fin.codes.items()
    }


def write_lines(frames: list[pd.DataFrame], columns: list[str], path: Path) -> pd.DataFrame:
    """Reject or warning lines sorted by file, row and column, written as CSV."""
    parts = [f for f in frames if len(f)]
    lines = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)
    lines = lines[columns]
    hio.write_csv(lines.sort_values(["file", "source_row", "column"], kind="stable"), path)
    return lines


__all__ = ["finish_table", "percentile_from_counts", "field_domain", "correspondence_codes"]
