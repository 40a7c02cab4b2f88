"""One CSV export read in row blocks (bounded memory), the way ``helpers.exports`` reads it whole.

The whole-file reader (``read_export``: decode the file, parse every record, find the header,
title and footer lines) holds the file's text several times over; at a prefecture's size that
is gigabytes. This reader gives the same records in blocks of ``BLOCK_BYTES`` of the file:

- the encoding is decided the same way (UTF-8 with BOM, UTF-8 when the whole file decodes as
  UTF-8, else CP932, or the configured one) by one streaming pass over the bytes, which also
  counts quote characters and finds the first lines (delimiter sample);
- records come from pyarrow's streaming CSV parser (the same parser the whole-file reader uses),
  transcoding CP932 on the fly;
- the header is the record among the first ``HEADER_SEARCH_ROWS`` non-blank ones holding most
  known titles (or the one after ``skip_rows``), title lines above it are reported; the last
  few non-blank records are held back until the end so totals/footer lines are found as before.

Anything unusual (an odd number of quote characters, ragged records, a decoding error, an
empty file) raises :class:`Fallback`: the caller then reads that one file whole with
``read_export``, which knows every message for a damaged file. Workbooks (.xlsx) are read whole
as well (a sheet holds at most 1,048,576 rows).
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from helpers import MimamoriError
from helpers.exports import (
    ENCODING_NAMES,
    FOOTER_SEARCH_ROWS,
    HEADER_SEARCH_ROWS,
    _row_text,
    header_keys_of,
    header_score,
    is_footer,
)
from helpers.ingest.read import map_headers
from helpers.schema import TableSchema

BLOCK_BYTES = 1 << 24  # bytes of the export per parsed block (~100k records)
PROBE_BYTES = 1 << 24
PREFIX_BYTES = 1 << 20  # title lines and the header are looked for in the first MiB
TAIL_BYTES = 1 << 16  # totals lines of another width are looked for in the last 64 KiB
_EOL = re.compile(rb"\r\n|\r|\n")


class Fallback(Exception):
    """This file needs the whole-file reader (it knows the message for every damage)."""


@dataclass
class Probe:
    encoding: str  # what the file decodes as (cp932, utf-8, utf-8-sig or the configured one)
    delimiter: str


def probe_csv(path: Path, configured: str | None) -> Probe:
    """Encoding and delimiter of a CSV export, decided as ``read_sheets`` decides them."""
    quotes, text_seen, first = 0, False, b""
    utf8 = codecs.getincrementaldecoder("utf-8")()
    utf8_ok = True
    with open(path, "rb") as fh:
        while chunk := fh.read(PROBE_BYTES):
            if not first:
                first = chunk
            quotes += chunk.count(b'"')
            text_seen = text_seen or bool(chunk.strip())
            if utf8_ok and not configured:
                try:
                    utf8.decode(chunk)
                except UnicodeDecodeError:
                    utf8_ok = False
    if not text_seen or quotes % 2:
        raise Fallback  # empty, or maybe a quoted cell that never closes
    if utf8_ok and not configured:
        try:
            utf8.decode(b"", final=True)
        except UnicodeDecodeError:
            utf8_ok = False
    if first[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\x00" in first[:4096]:
        raise Fallback
    if configured:
        enc = ENCODING_NAMES.get(configured.lower().replace("_", "-"), configured)
    elif first.startswith(b"\xef\xbb\xbf"):
        enc = "utf-8-sig"
    else:
        enc = "utf-8" if utf8_ok else "cp932"
    try:
        text = codecs.getincrementaldecoder(enc)(errors="replace").decode(first[: 1 << 20])
    except LookupError:
        raise Fallback from None
    sample = "\n".join(text.split("\n", 5)[:5])
    return Probe(enc, "\t" if sample.count("\t") > sample.count(",") else ",")


class _Range(io.RawIOBase):
    """Bytes ``start`` to ``end`` of a file (the records between title and totals lines)."""

    def __init__(self, path: Path, start: int, end: int) -> None:
        self.fh = open(path, "rb")  # noqa: SIM115 - closed by close()
        self.fh.seek(start)
        self.left = end - start

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # type: ignore[override]
        n = min(len(b), self.left)
        data = self.fh.read(n) if n > 0 else b""
        b[: len(data)] = data
        self.left -= len(data)
        return len(data)

    def close(self) -> None:
        self.fh.close()
        super().close()


def _batches(path: Path, probe: Probe, where: Layout) -> Iterator[pa.RecordBatch]:
    enc = "utf8" if probe.encoding in ("utf-8", "utf-8-sig") else probe.encoding
    whole = not where.start and where.end == where.size
    source = path if whole else pa.PythonFile(_Range(path, where.start, where.end))
    try:
        reader = pacsv.open_csv(
            source,
            read_options=pacsv.ReadOptions(
                autogenerate_column_names=True, block_size=BLOCK_BYTES, encoding=enc
            ),
            parse_options=pacsv.ParseOptions(
                delimiter=probe.delimiter, newlines_in_values=True, ignore_empty_lines=False
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={f"f{i}": pa.string() for i in range(4096)},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
        for batch in reader:
            if batch.num_rows:
                yield batch
    except (pa.ArrowException, UnicodeDecodeError, LookupError):
        raise Fallback from None


@dataclass
class Layout:
    """Where pyarrow reads: from the header line (title lines above it parsed here) to the
    totals lines of another width at the end (parsed here too), or the whole file."""

    start: int
    end: int
    size: int
    before: int = 0  # records above the header (title and blank lines)
    titles: list[tuple[int, list[str]]] = field(default_factory=list)  # (row, cells)
    tail: list[list[str]] = field(default_factory=list)  # records after ``end``


def _is_blank(cells: list[str]) -> bool:
    if not cells:
        return True
    trimmed = pc.utf8_trim_whitespace(pa.array(cells, type=pa.string()))
    return bool(pc.all(pc.equal(trimmed, "")).as_py())


def _records(data: bytes, probe: Probe, bom: int, cut: bool, stop) -> list[tuple]:
    """(cells, physical lines before it, blank) of the first records of ``data``."""
    try:
        text = data[bom:].decode(probe.encoding.replace("-sig", ""))
    except (UnicodeDecodeError, LookupError):
        raise Fallback from None
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=probe.delimiter, strict=True)
    out: list[tuple] = []
    try:
        while True:
            lines = reader.line_num
            rec = next(reader, None)
            if rec is None:
                if cut:
                    raise Fallback  # the first records do not fit in the prefix
                return out
            out.append((rec, lines, _is_blank(rec)))
            if stop(out):
                return out
    except csv.Error:
        raise Fallback from None


def _head(path: Path, probe: Probe, keys: set[str], skip_rows: int | None, size: int) -> tuple:
    """(byte offset of the header line, records above it, title rows, header width)."""
    with open(path, "rb") as fh:
        prefix = fh.read(PREFIX_BYTES)
    cut = size > len(prefix)
    if cut:
        prefix = prefix[: max(prefix.rfind(b"\n"), prefix.rfind(b"\r")) + 1]
    bom = 3 if probe.encoding == "utf-8-sig" else 0

    def enough(recs: list[tuple]) -> bool:
        filled = [r for r in recs if not r[2]]
        if skip_rows is None:
            return len(filled) >= HEADER_SEARCH_ROWS
        return bool(filled) and len(recs) > int(skip_rows) and not recs[-1][2]

    recs = _records(prefix, probe, bom, cut, enough)
    filled = [i for i, r in enumerate(recs) if not r[2]]
    if not filled:
        return 0, 0, [], 0
    if skip_rows is None:
        window = filled[:HEADER_SEARCH_ROWS]
        scores = [header_score(recs[i][0], keys) for i in window]
        h = window[int(np.argmax(scores))] if max(scores) > 0 else window[0]
    else:
        after = [i for i in filled if i + 1 > int(skip_rows)]
        if not after:
            raise Fallback  # the whole-file reader says what is wrong
        h = after[0]
    ends = [m.end() for m in _EOL.finditer(prefix, bom)]
    lines = recs[h][1]
    start = 0 if h == 0 else ends[lines - 1]
    titles = [(i + 1, recs[i][0]) for i in range(h) if not recs[i][2]]
    return start, h, titles, len(recs[h][0])


def _tail(path: Path, probe: Probe, start: int, width: int, size: int) -> tuple[int, list]:
    """Byte offset where the last records of another width (totals, blank lines) begin, and
    those records; (size, []) when there are none or they cannot be told apart safely."""
    first = max(start, size - TAIL_BYTES)
    with open(path, "rb") as fh:
        fh.seek(first)
        chunk = fh.read()
    bounds = [0, *(m.end() for m in _EOL.finditer(chunk))]
    if bounds[-1] < len(chunk):
        bounds.append(len(chunk))
    segments = list(zip(bounds[:-1], bounds[1:], strict=True))[1:]  # the first may be cut
    taken: list[tuple[int, list[str]]] = []
    for a, b in reversed(segments):
        raw = _EOL.sub(b"", chunk[a:b])
        if b'"' in raw:
            # every quote lies before the lines taken (the file's quotes pair up), so those
            # start outside any quoted cell: whole records, one a line
            break
        try:
            text = raw.decode(probe.encoding.replace("-sig", ""))
        except (UnicodeDecodeError, LookupError):
            return size, []
        cells = next(csv.reader([text], delimiter=probe.delimiter), [])
        blank = _is_blank(cells)
        if not blank and len(cells) == width:
            break
        if len(cells) > width and not blank:
            return size, []
        taken.append((first + a, cells))
    else:
        return size, []  # no full record in the window
    if not taken:
        return size, []
    return taken[-1][0], [c for _a, c in reversed(taken)]


def find_layout(path: Path, probe: Probe, keys: set[str], skip_rows: int | None) -> Layout:
    """The header line (after any title lines) and the totals lines at the end."""
    size = path.stat().st_size
    start, before, titles, width = _head(path, probe, keys, skip_rows, size)
    if not width:
        return Layout(0, size, size)
    end, tail = _tail(path, probe, start, width, size)
    return Layout(start, end, size, before, titles, tail)


def _blank_cells(col: pa.Array) -> np.ndarray:
    return pc.equal(pc.utf8_trim_whitespace(col), "").to_numpy(zero_copy_only=False)


def _blank(batch: pa.RecordBatch) -> np.ndarray:
    """Rows whose every cell is blank: the next column is looked at only in the rows still
    blank (a record's first cell is nearly always filled)."""
    rows = np.arange(batch.num_rows)
    for col in batch.columns:
        if not len(rows):
            break
        part = col if len(rows) == batch.num_rows else col.take(pa.array(rows))
        rows = rows[_blank_cells(part)]
    blank = np.zeros(batch.num_rows, dtype=bool)
    blank[rows] = True
    return blank


@dataclass
class _Rows:
    """Non-blank records not yet given out: the batch and which of its rows, with numbers."""

    batch: pa.RecordBatch
    rows: np.ndarray  # positions in batch
    numbers: np.ndarray  # spreadsheet row numbers


@dataclass
class CsvMeta:
    """What ``read_export`` puts in ``df.attrs`` (filled while reading)."""

    encoding: str
    header: list[str] = field(default_factory=list)
    header_row: int = 0
    mapping: dict[int, str] = field(default_factory=dict)
    unknown: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    title_rows: list[list] = field(default_factory=list)
    footer_rows: list[list] = field(default_factory=list)
    blank_rows: int = 0
    rows: int = 0

    def attrs(self, name: str) -> dict:
        return {
            "encoding": self.encoding,
            "sheets": [name],
            "sheet": None,
            "unknown_headers": sorted(set(self.unknown)),
            "missing_optional_columns": self.missing,
            "blank_rows": self.blank_rows,
            "title_rows": self.title_rows,
            "footer_rows": self.footer_rows,
        }


def _cells(batch: pa.RecordBatch, i: int) -> list[str]:
    return [str(c[i].as_py()) for c in batch.columns]


def _find_header(
    head: list[_Rows], keys: set[str], skip_rows: int | None, name: str
) -> tuple[int, int]:
    """(index into the concatenated non-blank rows of ``head``, its batch) of the header."""
    flat = _first(head, skip_rows)
    if skip_rows is not None:
        after = [j for j, (_k, _r, n) in enumerate(flat) if n > int(skip_rows)]
        if not after:
            raise MimamoriError(
                f"{name}: nothing after the {skip_rows} line(s) ingest.skip_rows says to skip"
            )
        return after[0], len(flat)
    scores = [
        header_score(_cells(head[k].batch, r), keys) for k, r, _n in flat[:HEADER_SEARCH_ROWS]
    ]
    return (int(np.argmax(scores)) if max(scores) > 0 else 0), len(flat)


def _first(head: list[_Rows], skip_rows: int | None) -> list[tuple[int, int, int]]:
    """(batch, row, number) of the first non-blank records: the header search window, or up
    to the first record after ``skip_rows``."""
    out: list[tuple[int, int, int]] = []
    for k, h in enumerate(head):
        for r, n in zip(h.rows, h.numbers, strict=True):
            out.append((k, int(r), int(n)))
            if skip_rows is None and len(out) >= HEADER_SEARCH_ROWS:
                return out
            if skip_rows is not None and n > int(skip_rows):
                return out
    return out


class CsvBlocks:
    """Iterate the records of one CSV export as raw frames (schema field -> text cells, plus
    ``source_file`` and ``source_row``); ``meta`` is complete when the iteration ends."""

    def __init__(
        self,
        path: Path,
        schema: TableSchema,
        encoding: str | None,
        header_map: Mapping[str, str] | None,
        skip_rows: int | None,
        footer_rows: int | None,
    ) -> None:
        self.path, self.schema, self.header_map = path, schema, header_map
        self.skip_rows, self.footer_rows = skip_rows, footer_rows
        self.probe = probe_csv(path, encoding)
        self.meta = CsvMeta(self.probe.encoding)
        self.keys = header_keys_of(schema, header_map)
        self.layout = find_layout(path, self.probe, self.keys, skip_rows)
        self.meta.title_rows = [[path.name, n, _row_text(c)] for n, c in self.layout.titles]
        self.seen = self.layout.before  # records numbered so far

    def __iter__(self) -> Iterator[pd.DataFrame]:
        batches = _batches(self.path, self.probe, self.layout)
        numbered = self._numbered(batches)
        head: list[_Rows] = []
        wanted = HEADER_SEARCH_ROWS if self.skip_rows is None else None
        for rows in numbered:
            head.append(rows)
            n = sum(len(h.rows) for h in head)
            if wanted is not None and n >= wanted:
                break
            if wanted is None and any((h.numbers > int(self.skip_rows or 0)).any() for h in head):
                break
        if not any(len(h.rows) for h in head):
            raise MimamoriError(
                f"{self.path.name}: the file is empty; export it again with a header row and "
                "records"
            )
        hold = max(FOOTER_SEARCH_ROWS, int(self.footer_rows or 0))
        ready, pending = _split_tail(self._start(head), hold)
        for r in ready:
            yield self._frame(r)
        for rows in numbered:
            pending.append(rows)
            ready, pending = _split_tail(pending, hold)
            for r in ready:
                yield self._frame(r)
        tail = self._tail_rows(head[0].batch.num_columns)
        if tail is not None:
            pending.append(tail)
        last = self._ending(pending)
        if tail is not None and any(r.batch is tail.batch for r in last):
            raise Fallback  # a short record that is no totals line: the whole-file reader says so
        yield from (self._frame(r) for r in last)
        if not self.meta.rows:
            raise MimamoriError(
                f"{self.path.name}: header only, no records; export the data again (or "
                "remove the file if the table really is empty)"
            )

    def _numbered(self, batches: Iterator[pa.RecordBatch]) -> Iterator[_Rows]:
        """Non-blank records with their row numbers; blank ones after the header counted."""
        for batch in batches:
            blank = _blank(batch)
            rows = np.flatnonzero(~blank)
            numbers = rows + self.seen + 1
            self.seen += batch.num_rows
            if self.meta.header_row:
                self.meta.blank_rows += int(blank.sum())
            yield _Rows(batch, rows, numbers)

    def _tail_rows(self, width: int) -> _Rows | None:
        """The records after the parsed range (totals, blank lines), padded to the width."""
        cells = self.layout.tail
        if not cells:
            return None
        padded = [c + [""] * (width - len(c)) for c in cells]
        batch = pa.RecordBatch.from_arrays(
            [pa.array([r[i] for r in padded], type=pa.string()) for i in range(width)],
            names=[f"f{i}" for i in range(width)],
        )
        blank = np.array([_is_blank(c) for c in cells], dtype=bool)
        self.meta.blank_rows += int(blank.sum())
        rows = np.flatnonzero(~blank)
        numbers = rows + self.seen + 1
        self.seen += len(cells)
        return _Rows(batch, rows, numbers)

    def _start(self, head: list[_Rows]) -> list[_Rows]:
        """Find the header among the first records; the records after it (not yet given out)."""
        name = self.path.name
        j, _n = _find_header(head, self.keys, self.skip_rows, name)
        flat = _first(head, self.skip_rows)
        k, r, number = flat[j]
        for kk, rr, nn in flat[:j]:
            self.meta.title_rows.append([name, nn, _row_text(_cells(head[kk].batch, rr))])
        header = _cells(head[k].batch, r)
        while header and not header[-1].strip():
            header = header[:-1]
        self.meta.header, self.meta.header_row = header, number
        m = self.meta
        m.mapping, m.unknown, m.missing = map_headers(
            header, self.schema, self.header_map, name, self.probe.encoding, number
        )
        m.blank_rows = int(sum((b > number).sum() for b in self._blank_rows_so_far(head)))
        out = []
        for kk, h in enumerate(head):
            keep = h.numbers > number
            if kk >= k and keep.any():
                out.append(_Rows(h.batch, h.rows[keep], h.numbers[keep]))
        return out

    def _blank_rows_so_far(self, head: list[_Rows]) -> list[np.ndarray]:
        """Row numbers of the blank records in the batches read before the header was known."""
        out = []
        seen = 0
        for h in head:
            n = h.batch.num_rows
            mask = np.ones(n, dtype=bool)
            mask[h.rows] = False
            out.append(np.flatnonzero(mask) + seen + 1)
            seen += n
        return out

    def _ending(self, pending: list[_Rows]) -> list[_Rows]:
        """Drop totals/footer lines among the last records (reported)."""
        flat = [
            (k, int(r), int(n))
            for k, h in enumerate(pending)
            for r, n in zip(h.rows, h.numbers, strict=True)
        ]
        footer: list[tuple[int, int, int]] = []
        if self.footer_rows:
            footer = flat[-int(self.footer_rows) :]
        else:
            for item in flat[::-1][:FOOTER_SEARCH_ROWS]:
                if not is_footer(_cells(pending[item[0]].batch, item[1])):
                    break
                footer.append(item)
        drop = {n for _k, _r, n in footer}
        for k, r, n in sorted(footer, key=lambda t: t[2]):
            self.meta.footer_rows.append(
                [self.path.name, n, _row_text(_cells(pending[k].batch, r))]
            )
        return [
            _Rows(h.batch, h.rows[keep], h.numbers[keep])
            for h in pending
            if (keep := ~np.isin(h.numbers, list(drop))).any()
        ]

    def _frame(self, rows: _Rows) -> pd.DataFrame:
        """Raw text cells by schema field for the given records (extra cells must be blank)."""
        batch = rows.batch.take(pa.array(rows.rows))
        width = len(self.meta.header)
        for i in range(width, batch.num_columns):
            filled = np.flatnonzero(
                ~pc.equal(pc.utf8_trim_whitespace(batch.column(i)), "").to_numpy(
                    zero_copy_only=False
                )
            )
            if len(filled):
                raise MimamoriError(
                    f"{self.path.name}: row {rows.numbers[filled[0]]} has {batch.num_columns} "
                    f"cells but the header has {width}: the file is damaged or a cell holds an "
                    "unquoted comma; export it again"
                )
        by_field = {name: i for i, name in self.meta.mapping.items()}
        n = batch.num_rows
        out = {}
        for f in self.schema.fields:
            pos = by_field.get(f.name)
            out[f.name] = (
                pd.Series(pd.arrays.ArrowExtensionArray(batch.column(pos)))
                if pos is not None
                else pd.Series([None] * n, dtype=object)
            )
        frame = pd.DataFrame(out)
        frame["source_file"] = self.path.name
        frame["source_row"] = rows.numbers.astype("int64")
        self.meta.rows += n
        return frame


def _split_tail(pending: list[_Rows], hold: int) -> tuple[list[_Rows], list[_Rows]]:
    """All but the last ``hold`` records (ready to give out) and those last ones."""
    total = sum(len(p.rows) for p in pending)
    give = total - hold
    ready: list[_Rows] = []
    rest: list[_Rows] = []
    for p in pending:
        m = len(p.rows)
        if give >= m:
            if m:
                ready.append(p)
            give -= m
        elif give > 0:
            ready.append(_Rows(p.batch, p.rows[:give], p.numbers[:give]))
            rest.append(_Rows(p.batch, p.rows[give:], p.numbers[give:]))
            give = 0
        else:
            rest.append(p)
    return ready, rest
