"""Department exports in data/raw: which file holds which table, how it decodes, its cells.

One rule set for every reader of the raw folder (ingest, the reports' PII scan, the
benchmark), so they cannot disagree about which file is which table or how it is encoded:

- ``scan_exports``: files per table by the schema ``files`` globs, plus the names that fit no
  table and broken symbolic links (listed, never silently skipped).
- ``decode_export``: bytes -> text: UTF-8 with BOM, UTF-8 or CP932/Shift_JIS (or a configured
  encoding), with a message that says what to do when none fits.
- ``read_sheets``: every sheet of an export as text cells with their spreadsheet row numbers
  (a CSV is one sheet). A file cut inside a quoted cell is an error naming the record and the
  last complete one; an .xlsx date-time cell keeps its date.
- ``locate_table``: the header row (title lines above it are skipped and reported), the records,
  and totals/footer lines after them (skipped and reported); ``record_columns`` checks that
  every record has the header's width (a short last record = a file cut mid-record).
- ``exports_manifest`` / ``write_manifest``: names, sizes and hashes of the exports: the make
  prerequisite of ingest, so a changed, added, removed or back-dated export redoes ingest
  (``python -m helpers.exports`` refreshes it and prints its path).
"""

from __future__ import annotations

import csv
import datetime as dt
import fnmatch
import hashlib
import io
import json
import os
import re
import sys
import unicodedata
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from helpers import MimamoriError
from helpers.normalize import normalize_key
from helpers.paths import Paths
from helpers.schema import TableSchema, load_schemas

SUPPORTED_SUFFIXES = (".csv", ".txt", ".xlsx")
ENCODING_NAMES = {
    "cp932": "cp932",
    "shift_jis": "cp932",
    "sjis": "cp932",
    "shift-jis": "cp932",
    "utf-8": "utf-8",
    "utf8": "utf-8",
    "utf-8-sig": "utf-8-sig",
}
HEADER_SEARCH_ROWS = 10  # the header is looked for among the first records (title lines above)
FOOTER_SEARCH_ROWS = 3  # totals/footer lines are looked for among the last records
# first non-blank cell of a totals / footer line (after NFKC, no spaces, case-folded)
FOOTER_RE = re.compile(
    r"^(?:合計|総合計|総計|小計|計|件数|総件数|合計件数|出力件数|データ件数|レコード件数|以上|"
    r"total|totals|sum|count|end|eof|\*+終了\*+|【以上】|-+以上-+)(?:[:：=].*|\d.*|件.*|行.*)?$"
)


# ----------------------------------------------------------------------------- finding
@dataclass(frozen=True)
class ExportScan:
    """What the raw folder holds: export files per table and what fits no table."""

    files: dict[str, list[Path]]
    unmatched: list[str] = field(default_factory=list)
    broken_links: list[str] = field(default_factory=list)

    @property
    def all_files(self) -> list[Path]:
        return [p for ps in self.files.values() for p in ps]


def table_of(name: str, schemas: Mapping[str, TableSchema]) -> list[str]:
    """The tables whose ``files`` globs fit a file name (normally one)."""
    name = unicodedata.normalize("NFC", name)
    return [t for t, s in schemas.items() if any(fnmatch.fnmatch(name, g) for g in s.files)]


def scan_exports(raw_dir: str | Path, schemas: Mapping[str, TableSchema]) -> ExportScan:
    """Export files per table (top level of ``raw_dir``, by the schema ``files`` globs).

    Hidden files, ``_truth/`` and Excel lock files (``~$``) are not exports. A name that fits
    two tables or an export in an unsupported format is an error; names that fit no table and
    symbolic links whose target is missing are listed.
    """
    raw_dir = Path(raw_dir)
    if not raw_dir.is_dir():
        raise MimamoriError(
            f"{raw_dir}: raw data folder not found; run `python -m helpers synth` "
            "or put the exports there"
        )
    found: dict[str, list[Path]] = {t: [] for t in schemas}
    unmatched: list[str] = []
    broken: list[str] = []
    for p in sorted(raw_dir.iterdir()):
        if p.name.startswith((".", "_", "~$")):
            continue
        if p.is_symlink() and not p.exists():
            broken.append(p.name)
            continue
        if not p.is_file():
            continue
        tables = table_of(p.name, schemas)
        if len(tables) > 1:
            raise MimamoriError(f"{p.name}: file name fits several tables {tables}; rename it")
        if not tables:
            unmatched.append(p.name)
            continue
        if p.suffix.lower() not in SUPPORTED_SUFFIXES:
            raise MimamoriError(
                f"{p.name}: unsupported file type for table {tables[0]}; export CSV or .xlsx"
            )
        found[tables[0]].append(p)
    return ExportScan(found, unmatched, broken)


def find_exports(
    raw_dir: str | Path, schemas: Mapping[str, TableSchema]
) -> tuple[dict[str, list[Path]], list[str]]:
    """Files per table and the names that fit no table (see ``scan_exports``)."""
    scan = scan_exports(raw_dir, schemas)
    return scan.files, scan.unmatched + [f"{n} (broken link)" for n in scan.broken_links]


# ----------------------------------------------------------------------------- decoding
def decode_export(data: bytes, path: Path, encoding: str | None = None) -> tuple[str, str]:
    """Bytes -> (text, encoding). Detects UTF-8 with BOM, UTF-8 and CP932 unless configured."""
    if encoding:
        enc = ENCODING_NAMES.get(encoding.lower().replace("_", "-"), encoding)
        try:
            return data.decode(enc), enc
        except (UnicodeDecodeError, LookupError) as exc:
            raise MimamoriError(
                f"{path.name}: cannot be read as {encoding} (configured in ingest.encoding): "
                f"{exc}; fix ingest.encoding for this table or re-export the file"
            ) from None
    if data[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\x00" in data[:4096]:
        raise MimamoriError(
            f"{path.name}: looks like UTF-16 (NUL bytes); re-export as CSV in "
            "CP932 (Shift_JIS) or UTF-8"
        )
    if data.startswith(b"\xef\xbb\xbf"):
        return _strict(data, path, "utf-8-sig"), "utf-8-sig"
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as exc:
        utf8_error = exc
    try:
        return data.decode("cp932"), "cp932"
    except UnicodeDecodeError as exc:
        if exc.start >= len(data) - 1 or utf8_error.start >= len(data) - 3:
            raise MimamoriError(
                f"{path.name}: the file ends in the middle of a character: it "
                "looks cut off; export it again"
            ) from None
        raise MimamoriError(
            f"{path.name}: not readable as UTF-8 or CP932/Shift_JIS (byte {exc.start}); "
            "re-export it as CSV (CP932 or UTF-8) or set ingest.encoding for this table"
        ) from None


def _strict(data: bytes, path: Path, enc: str) -> str:
    try:
        return data.decode(enc)
    except UnicodeDecodeError as exc:
        raise MimamoriError(
            f"{path.name}: starts with a UTF-8 byte-order mark but byte "
            f"{exc.start} is not UTF-8; export it again"
        ) from None


def detect_encoding(path: Path, configured: str | None = None) -> str:
    """The encoding ingest reads a CSV export with (cp932, utf-8 or utf-8-sig)."""
    return decode_export(Path(path).read_bytes(), Path(path), configured)[1]


def looks_garbled(texts: Iterable[str]) -> bool:
    """Header text that suggests a wrong encoding (replacement or half-width kana runs)."""
    joined = "".join(texts)
    if not joined:
        return False
    odd = sum(
        1
        for ch in joined
        if ch == "\ufffd"
        or "\uff61" <= ch <= "\uff9f"
        or unicodedata.category(ch) in ("Co", "Cs", "Cn")
    )
    return odd / len(joined) > 0.2


# ----------------------------------------------------------------------------- reading
@dataclass
class Sheet:
    """One sheet of an export (a CSV is one sheet): every record as text cells.

    ``grid`` is records x widest record (object, '' where a record is shorter); ``widths`` the
    number of cells each record really has; ``numbers`` the spreadsheet row of each record
    (first line = 1; a record with a line break inside a cell is still one row).
    """

    source: str
    sheet: str | None
    encoding: str
    grid: np.ndarray
    widths: np.ndarray
    numbers: np.ndarray
    ends_with_newline: bool = True


def read_sheets(path: str | Path, encoding: str | None = None) -> list[Sheet]:
    """Every sheet of one export with records (empty sheets are left out)."""
    path = Path(path)
    if not path.exists():
        raise MimamoriError(f"{path}: file not found")
    suffix = path.suffix.lower()
    if suffix == ".xlsx":
        return _xlsx_sheets(path)
    if suffix not in (".csv", ".txt"):
        raise MimamoriError(f"{path.name}: unsupported file type {suffix!r}; export CSV or .xlsx")
    data = path.read_bytes()
    if not data.strip():
        raise MimamoriError(
            f"{path.name}: the file is empty; export it again with a header row and records"
        )
    text, enc = decode_export(data, path, encoding)
    sample = "\n".join(text.split("\n", 5)[:5])
    delimiter = "\t" if sample.count("\t") > sample.count(",") else ","
    grid = _csv_fast(text, delimiter)
    if grid is None:
        grid, widths = _csv_careful(text, delimiter, path)
    else:
        widths = np.full(len(grid), grid.shape[1], dtype=np.int64)
    return [
        Sheet(
            path.name,
            None,
            enc,
            grid,
            widths,
            np.arange(1, len(grid) + 1),
            text.endswith(("\n", "\r")),
        )
    ]


def _csv_fast(text: str, delimiter: str) -> np.ndarray | None:
    """Records through pyarrow's C parser; None when the file needs the careful reader
    (ragged records, an odd number of quotes = maybe a quoted cell that never closes)."""
    if text.count('"') % 2:
        return None
    try:
        table = pacsv.read_csv(
            pa.BufferReader(text.encode("utf-8")),
            read_options=pacsv.ReadOptions(autogenerate_column_names=True, use_threads=True),
            parse_options=pacsv.ParseOptions(
                delimiter=delimiter, newlines_in_values=True, ignore_empty_lines=False
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={f"f{i}": pa.string() for i in range(4096)},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, pa.ArrowException):
        return None
    if not table.num_columns or not table.num_rows:
        return None
    grid = np.empty((table.num_rows, table.num_columns), dtype=object)
    for i, col in enumerate(table.columns):
        grid[:, i] = col.to_numpy(zero_copy_only=False)
    return grid


def _csv_careful(text: str, delimiter: str, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Python's strict CSV reader: names the record where a quoted cell never closes."""
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    records: list[list[str]] = []
    try:
        for rec in reader:
            records.append(rec)
    except csv.Error as exc:
        row = len(records) + 1
        last = f"the last complete record is row {row - 1}" if row > 1 else "no record is complete"
        if "end of data" in str(exc) or "EOF" in str(exc):
            raise MimamoriError(
                f"{path.name}: row {row} opens a quoted cell that is never closed before the end "
                f"of the file (line {reader.line_num}): the file looks truncated (cut off "
                f"mid-record); {last}; export it again"
            ) from None
        raise MimamoriError(
            f"{path.name}: row {row} (line {reader.line_num}): malformed CSV "
            f"({exc}); {last}; export it again"
        ) from None
    widths = np.fromiter(map(len, records), dtype=np.int64, count=len(records))
    width = int(widths.max()) if len(widths) else 0
    grid = np.full((len(records), width), "", dtype=object)
    for i, rec in enumerate(records):
        grid[i, : len(rec)] = rec
    return grid, widths


# ----------------------------------------------------------------------------- xlsx
_NS = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
_NS_REL = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}"
_NS_PKG = "{http://schemas.openxmlformats.org/package/2006/relationships}"
# Built-in number formats that display a date (incl. the Japanese era formats 27-36, 50-58).
_DATE_FMT_IDS = set(range(14, 18)) | {22} | set(range(27, 37)) | set(range(50, 59))


def xlsx_cell_text(value: object) -> str:
    """A cell value as text: numbers without a spurious .0, dates as ISO (date-times keep the
    date and the time to the second), blanks as ''."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    if isinstance(value, dt.datetime):
        value = (value + dt.timedelta(microseconds=500_000)).replace(microsecond=0)
        if value.time() == dt.time(0, 0):
            return value.date().isoformat()
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def _is_date_format(code: str) -> bool:
    code = re.sub(r'"[^"]*"|\[[^\]]*\]|\\.|[eE][+-]', "", code).lower()
    return code not in ("general", "@") and bool(re.search(r"[ymdeg]", code))


@dataclass(frozen=True)
class _Workbook:
    sheets: list[tuple[str, str]]  # (sheet name, part name) in workbook order
    date1904: bool
    shared: list[str]
    date_styles: set[int]


def _xlsx_workbook(zf: zipfile.ZipFile) -> _Workbook:
    wb = ET.fromstring(zf.read("xl/workbook.xml"))
    pr = wb.find(f"{_NS}workbookPr")
    date1904 = pr is not None and pr.get("date1904") in ("1", "true")
    rels = ET.fromstring(zf.read("xl/_rels/workbook.xml.rels"))
    targets = {r.get("Id"): r.get("Target") or "" for r in rels.iter(f"{_NS_PKG}Relationship")}
    sheets = []
    for sheet in wb.iterfind(f"{_NS}sheets/{_NS}sheet"):
        target = targets[sheet.get(f"{_NS_REL}id")]
        part = target.lstrip("/") if target.startswith("/") else "xl/" + target
        sheets.append((sheet.get("name", ""), part))
    if not sheets:
        raise ValueError("the workbook has no sheets")
    shared: list[str] = []
    if "xl/sharedStrings.xml" in zf.namelist():
        for si in ET.fromstring(zf.read("xl/sharedStrings.xml")).iter(f"{_NS}si"):
            # plain <t> or rich-text runs <r><t>; furigana (<rPh>) is not cell text
            runs = [si.find(f"{_NS}t"), *si.findall(f"{_NS}r/{_NS}t")]
            shared.append("".join(t.text or "" for t in runs if t is not None))
    dates: set[int] = set()
    if "xl/styles.xml" in zf.namelist():
        st = ET.fromstring(zf.read("xl/styles.xml"))
        custom = {
            int(n.get("numFmtId", "0")): n.get("formatCode", "") for n in st.iter(f"{_NS}numFmt")
        }
        xfs = st.find(f"{_NS}cellXfs")
        for i, xf in enumerate(xfs.findall(f"{_NS}xf") if xfs is not None else []):
            fid = int(xf.get("numFmtId", "0"))
            if fid in _DATE_FMT_IDS or (fid in custom and _is_date_format(custom[fid])):
                dates.add(i)
    return _Workbook(sheets, date1904, shared, dates)


def _col_index(ref: str) -> int:
    n = 0
    for ch in ref:
        if "A" <= ch <= "Z":
            n = n * 26 + ord(ch) - 64
        else:
            break
    return n - 1


def _cell_value(el: ET.Element, book: _Workbook, epoch: dt.datetime) -> str:
    kind = el.get("t", "n")
    if kind == "inlineStr":
        inline = el.find(f"{_NS}is")
        return "".join(t.text or "" for t in inline.iter(f"{_NS}t")) if inline is not None else ""
    v = el.find(f"{_NS}v")
    raw = v.text if v is not None else None
    if raw is None:
        return ""
    if kind == "s":
        return book.shared[int(raw)]
    if kind == "b":
        return "true" if raw.strip() == "1" else "false"
    if kind in ("str", "e", "d"):
        return raw
    style = el.get("s")
    if style is not None and int(style) in book.date_styles:
        return xlsx_cell_text(epoch + dt.timedelta(days=float(raw)))
    if raw.lstrip("-").isdigit():
        return raw
    return xlsx_cell_text(float(raw))


def _sheet_rows(
    zf: zipfile.ZipFile, part: str, book: _Workbook
) -> tuple[list[list[str]], list[int]]:
    """Rows of one sheet as text with their Excel row numbers (streaming XML parse: openpyxl
    re-parses a whole sheet when the writer left out its dimension, far too slow at 100k rows)."""
    epoch = dt.datetime(1904, 1, 1) if book.date1904 else dt.datetime(1899, 12, 30)
    rows: list[list[str]] = []
    numbers: list[int] = []
    current: dict[int, str] = {}
    next_col = 0
    c_tag, row_tag = f"{_NS}c", f"{_NS}row"
    with zf.open(part) as fh:
        for _event, el in ET.iterparse(fh, events=("end",)):
            if el.tag == c_tag:
                ref = el.get("r")
                col = _col_index(ref) if ref else next_col
                current[col] = _cell_value(el, book, epoch)
                next_col = col + 1
                el.clear()
            elif el.tag == row_tag:
                r = el.get("r")
                numbers.append(int(r) if r else (numbers[-1] + 1 if numbers else 1))
                width = max(current) + 1 if current else 0
                rows.append([current.get(i, "") for i in range(width)])
                current, next_col = {}, 0
                el.clear()
    return rows, numbers


def _xlsx_sheets(path: Path) -> list[Sheet]:
    try:
        with zipfile.ZipFile(path) as zf:
            book = _xlsx_workbook(zf)
            parsed = [(name, *_sheet_rows(zf, part, book)) for name, part in book.sheets]
    except (
        zipfile.BadZipFile,
        ET.ParseError,
        KeyError,
        StopIteration,
        ValueError,
        IndexError,
        OSError,
        EOFError,
    ) as exc:
        raise MimamoriError(
            f"{path.name}: not a readable .xlsx workbook ({type(exc).__name__}: {exc}); "
            "open it in Excel and save it again as .xlsx, or export CSV"
        ) from None
    used = [(n, rows, nums) for n, rows, nums in parsed if any(c.strip() for r in rows for c in r)]
    if not used:
        raise MimamoriError(f"{path.name}: every sheet is empty; put the header in row 1")
    out = []
    for name, rows, nums in used:
        widths = np.fromiter(map(len, rows), dtype=np.int64, count=len(rows))
        grid = np.full((len(rows), int(widths.max())), "", dtype=object)
        for i, rec in enumerate(rows):
            grid[i, : len(rec)] = rec
        source = f"{path.name}#{name}" if len(used) > 1 else path.name
        out.append(Sheet(source, name, "xlsx", grid, widths, np.asarray(nums, dtype=np.int64)))
    return out


# ----------------------------------------------------------------------------- the table
@dataclass
class Located:
    """A sheet's header and records, with what was skipped around them."""

    source: str
    header: list[str]
    grid: np.ndarray  # records x header width
    widths: np.ndarray
    numbers: np.ndarray
    title_rows: list[tuple[int, str]]
    footer_rows: list[tuple[int, str]]
    blank_rows: int
    header_row: int


def _blank_mask(grid: np.ndarray) -> np.ndarray:
    blank = np.ones(len(grid), dtype=bool)
    for i in range(grid.shape[1]):  # pyarrow's trim runs in C; python strings would loop per cell
        trimmed = pc.utf8_trim_whitespace(pa.array(grid[:, i], type=pa.string()))
        blank &= pc.equal(trimmed, "").to_numpy(zero_copy_only=False)
    return blank


def _row_text(cells: Iterable[str], limit: int = 40) -> str:
    text = " ".join(str(c).strip() for c in cells if str(c).strip())
    text = re.sub(r"\d{6,}", "<digits>", text)
    return text if len(text) <= limit else text[:limit] + "…"


def header_score(cells: Iterable[str], header_keys: set[str]) -> int:
    """How many distinct known headers a record holds."""
    return len({normalize_key(c) for c in cells if str(c).strip()} & header_keys)


def is_footer(cells: Iterable[str]) -> bool:
    """A totals / footer line: its first non-blank cell says 合計, 件数, 以上, total ..."""
    first = next((c for c in cells if str(c).strip()), "")
    return bool(FOOTER_RE.match(normalize_key(first)))


def locate_table(
    sheet: Sheet,
    header_keys: set[str],
    skip_rows: int | None = None,
    footer_rows: int | None = None,
) -> Located:
    """Find the header (the record among the first ones holding most known headers, or the
    one after ``skip_rows`` lines), skip title lines above it and totals/footer lines after
    the records (or the last ``footer_rows`` records); blank records are dropped and counted."""
    blank = _blank_mask(sheet.grid)
    rows = np.flatnonzero(~blank)
    if not len(rows):
        raise MimamoriError(
            f"{sheet.source}: the file is empty; export it again with a header row and records"
        )
    if skip_rows is not None:
        after = rows[sheet.numbers[rows] > int(skip_rows)]
        if not len(after):
            raise MimamoriError(
                f"{sheet.source}: nothing after the {skip_rows} line(s) "
                "ingest.skip_rows says to skip"
            )
        head = int(after[0])
    else:
        scores = [header_score(sheet.grid[i], header_keys) for i in rows[:HEADER_SEARCH_ROWS]]
        head = int(rows[int(np.argmax(scores))]) if max(scores) > 0 else int(rows[0])
    title = [(int(sheet.numbers[i]), _row_text(sheet.grid[i])) for i in rows[rows < head]]
    records = rows[rows > head]
    footer: list[int] = []
    if footer_rows:
        footer = [int(i) for i in records[-int(footer_rows) :]]
    else:
        for i in records[::-1][:FOOTER_SEARCH_ROWS]:
            if not is_footer(sheet.grid[i]):
                break
            footer.append(int(i))
    footer_set = set(footer)
    keep = (
        np.array([i for i in records if i not in footer_set], dtype=np.int64)
        if footer_set
        else records
    )
    header = [str(h) for h in sheet.grid[head, : sheet.widths[head]]]
    while header and not header[-1].strip():
        header = header[:-1]
    return Located(
        source=sheet.source,
        header=header,
        grid=sheet.grid[keep],
        widths=sheet.widths[keep],
        numbers=sheet.numbers[keep],
        title_rows=title,
        footer_rows=[(int(sheet.numbers[i]), _row_text(sheet.grid[i])) for i in sorted(footer)],
        blank_rows=int(blank[head + 1 :].sum()),
        header_row=int(sheet.numbers[head]),
    )


def record_columns(table: Located, sheet: Sheet) -> list[np.ndarray]:
    """One object array per header column; every record must have the header's width.

    Extra cells must be empty; a short record is padded for a workbook (Excel stores no
    trailing empty cells) and an error in a CSV (a damaged file, or one cut mid-record when it
    is the last record and the file does not end with a line break).
    """
    width = len(table.header)
    grid = table.grid
    if grid.shape[1] < width:
        grid = np.concatenate([grid, np.full((len(grid), width - grid.shape[1]), "", object)], 1)
    if grid.shape[1] > width:
        extra = grid[:, width:]
        filled = np.flatnonzero(~_blank_mask(extra))
        if len(filled):
            i = int(filled[0])
            raise MimamoriError(
                f"{table.source}: row {table.numbers[i]} has {table.widths[i]} cells but the "
                f"header has {width}: the file is damaged or a cell holds an unquoted comma; "
                "export it again"
            )
        grid = grid[:, :width]
    if sheet.encoding != "xlsx":
        short = np.flatnonzero(table.widths < width)
        if len(short):
            i = int(short[0])
            row = int(table.numbers[i])
            last_good = int(table.numbers[i - 1]) if i > 0 else table.header_row
            cut = i == len(table.widths) - 1 and not sheet.ends_with_newline
            kind = (
                "the file looks truncated (cut off mid-record)"
                if cut
                else "the file is damaged or truncated"
            )
            raise MimamoriError(
                f"{table.source}: row {row} has {table.widths[i]} cells but the header has "
                f"{width}: {kind}; the last complete record before it is row {last_good}; "
                "export it again"
            )
    return [grid[:, i] for i in range(width)]


def read_columns(
    path: str | Path, headers: Iterable[str], encoding: str | None = None
) -> pd.DataFrame:
    """The columns titled one of ``headers``, from every sheet of one export, as text.

    Title lines and totals lines are skipped the way ingest skips them, and nothing else is
    checked: a file ingest would reject (a missing required column, a ragged record) is still
    read. Two columns with one title both come back (duplicate column names). For readers that
    need only some columns of any export, such as the reports' identifier scan.
    """
    keys = {normalize_key(h) for h in headers}
    frames = []
    for sheet in read_sheets(path, encoding):
        table = locate_table(sheet, keys)
        picked = [
            (i, h)
            for i, h in enumerate(table.header)
            if normalize_key(h) in keys and i < table.grid.shape[1]
        ]
        frames.append(
            pd.DataFrame(
                {k: pd.Series(table.grid[:, i], dtype=object) for k, (i, _h) in enumerate(picked)}
            ).set_axis([h for _i, h in picked], axis=1)
        )
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def header_keys_of(schema: TableSchema, header_map: Mapping[str, str] | None = None) -> set[str]:
    """Every header (normalised) a table's export may carry."""
    keys = {normalize_key(h) for f in schema.fields for h in f.headers}
    keys |= {normalize_key(h) for h in (header_map or {})}
    return keys


# ----------------------------------------------------------------------------- manifest
def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def exports_manifest(
    raw_dir: str | Path, schemas: Mapping[str, TableSchema], previous: Mapping | None = None
) -> dict:
    """Name, size and SHA-256 of every export (and what fits no table). A file whose size and
    modification time (ns) match ``previous`` keeps its hash; any other file is hashed."""
    scan = scan_exports(raw_dir, schemas)
    known = {e["file"]: e for e in (previous or {}).get("exports", [])}
    entries = []
    for table, files in sorted(scan.files.items()):
        for p in files:
            st = p.stat()
            old = known.get(p.name)
            same = old and old.get("size") == st.st_size and old.get("mtime_ns") == st.st_mtime_ns
            digest = old["sha256"] if same and old else _sha256(p)
            entries.append(
                {
                    "table": table,
                    "file": p.name,
                    "size": st.st_size,
                    "mtime_ns": st.st_mtime_ns,
                    "sha256": digest,
                }
            )
    return {"exports": entries, "unmatched": scan.unmatched, "broken_links": scan.broken_links}


def _content(manifest: Mapping) -> dict:
    """What decides whether ingest must run again (not the modification times)."""
    return {
        "exports": [
            {k: e[k] for k in ("table", "file", "size", "sha256")}
            for e in manifest.get("exports", [])
        ],
        "unmatched": list(manifest.get("unmatched", [])),
        "broken_links": list(manifest.get("broken_links", [])),
    }


def write_manifest(
    raw_dir: str | Path, schemas: Mapping[str, TableSchema], path: str | Path
) -> bool:
    """Refresh the manifest file; it is rewritten (new modification time) only when the set of
    exports or any export's content changed, so make redoes ingest exactly then."""
    path = Path(path)
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        old = None
    new = exports_manifest(raw_dir, schemas, old)
    if old is not None and _content(old) == _content(new):
        if old != new:  # only modification times moved: remember them without touching mtime
            st = path.stat()
            _write_json(new, path)
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
        return False
    _write_json(new, path)
    return True


def _write_json(obj: Mapping, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(
        json.dumps(obj, ensure_ascii=False, indent=1, sort_keys=True) + "\n", encoding="utf-8"
    )
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    """``python -m helpers.exports DATA_DIR``: refresh DATA_DIR's exports manifest (rewritten
    only when the exports changed) and print its path, for make's ingest prerequisite.

    Prints nothing when there is no raw folder yet or it cannot be read (make then runs the
    chain, and ingest stops with the message).
    """
    args = list(argv or [])
    if len(args) != 1:
        print("usage: python -m helpers.exports DATA_DIR", file=sys.stderr)
        return 2
    P = Paths(Path(args[0]), Path(args[0]))
    if not P.raw.is_dir():
        return 0
    try:
        write_manifest(P.raw, load_schemas(), P.exports_manifest)
    except MimamoriError as exc:
        print(f"mimamori exports: {exc}", file=sys.stderr)
        return 0
    print(P.exports_manifest)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
