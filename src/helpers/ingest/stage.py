"""Ingest: read municipal exports, validate them against data_schema/, mask, write the mart.

Contract (docs/architecture.md): every record read is either in the mart, in
``mart/_rejects/<table>.csv`` with a reason from the reject vocabulary, or dropped as an
exact duplicate (also listed there, reason ``duplicate_exact``, and counted) — never silently
fixed or lost; ``rows_in == rows_out + rows_rejected + duplicates_dropped`` is enforced.
Whole-file problems (encoding, missing required column, empty, truncated, corrupt xlsx) stop
the run with one message per file saying what to do.

The rejects file keeps the offending cell's raw value (the analyst needs it to fix the export).
It lives under data/ (never reports/), like the raw exports it points into; it is not analysis
data and no report reads values from it.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import fnmatch
import hashlib
import io
import json
import re
import unicodedata
import xml.etree.ElementTree as ET
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from tqdm.auto import tqdm

from helpers import MimamoriError
from helpers import io as hio
from helpers.config import config_hash, data_dir
from helpers.dates import parse_dates
from helpers.ingest.masking import correspondence_table, load_key, mask_table, private_dir
from helpers.normalize import normalize_cells, normalize_key, normalize_keys, parse_numbers
from helpers.schema import BOOL_FALSE, BOOL_TRUE, SCHEMA_DIR, Field, TableSchema, load_schemas

REASONS = (
    "missing_required", "invalid_code", "invalid_date", "invalid_number", "out_of_range",
    "unknown_enum", "duplicate_conflict", "orphan_key", "duplicate_exact",
)
REJECT_COLUMNS = ["file", "source_row", "column", "value", "reason", "detail"]
SUPPORTED_SUFFIXES = (".csv", ".txt", ".xlsx")
ENCODING_NAMES = {"cp932": "cp932", "shift_jis": "cp932", "sjis": "cp932", "shift-jis": "cp932",
                  "utf-8": "utf-8", "utf8": "utf-8", "utf-8-sig": "utf-8-sig"}
REPORT_NAME = "_ingest_report.json"
REJECTS_DIR = "_rejects"
CODE_FILES = ("ingest/stage.py", "ingest/masking.py", "dates.py", "normalize.py", "schema.py")


# ----------------------------------------------------------------------------- reading
def decode_export(data: bytes, path: Path, encoding: str | None = None) -> tuple[str, str]:
    """Bytes → text. Detects UTF-8 with BOM, UTF-8 and CP932 unless ``encoding`` is given."""
    if encoding:
        enc = ENCODING_NAMES.get(encoding.lower().replace("_", "-"), encoding)
        try:
            return data.decode(enc), enc
        except (UnicodeDecodeError, LookupError) as exc:
            raise MimamoriError(
                f"{path.name}: cannot be read as {encoding} (configured in ingest.encoding): {exc}; "
                "fix ingest.encoding for this table or re-export the file"
            ) from None
    if data[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\x00" in data[:4096]:
        raise MimamoriError(
            f"{path.name}: looks like UTF-16 (NUL bytes); re-export as CSV in CP932 (Shift_JIS) or UTF-8"
        )
    if data.startswith(b"\xef\xbb\xbf"):
        return data.decode("utf-8-sig", errors="strict"), "utf-8-sig"
    try:
        return data.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp932"), "cp932"
    except UnicodeDecodeError as exc:
        raise MimamoriError(
            f"{path.name}: not readable as UTF-8 or CP932/Shift_JIS (byte {exc.start}); "
            "re-export it as CSV (CP932 or UTF-8) or set ingest.encoding for this table"
        ) from None


def _csv_records(text: str, path: Path) -> tuple[list[str], list[list[str]], list[int]]:
    """Header, records and their spreadsheet row numbers (header = 1, first record = 2)."""
    first_line = text.split("\n", 1)[0]
    delimiter = "\t" if "\t" in first_line and "," not in first_line else ","
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        records = list(reader)
    except csv.Error as exc:
        kind = ("the file ends inside a quoted cell: it looks truncated"
                if "end of data" in str(exc) else f"malformed CSV ({exc})")
        raise MimamoriError(
            f"{path.name}: record {reader.line_num} (line {reader.line_num}): {kind}; export it again"
        ) from None
    if not records or all(not any(c.strip() for c in r) for r in records):
        raise MimamoriError(f"{path.name}: the file is empty; export it again with a header row and records")
    header = records[0]
    rows = records[1:]
    numbers = list(range(2, len(rows) + 2))
    return header, rows, numbers


def _xlsx_cell_text(value: object) -> str:
    """Every cell as text: numbers without a spurious .0, dates as ISO, blanks as ''."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    if isinstance(value, dt.datetime):
        if value.time() == dt.time(0, 0):
            return value.date().isoformat()
        return value.isoformat(sep=" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


_NS = "{http://schemas.openxmlformats.org/spreadsheetml/2006/main}"
_NS_REL = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}"
_NS_PKG = "{http://schemas.openxmlformats.org/package/2006/relationships}"
# Built-in number formats that display a date (incl. the Japanese era formats 27-36, 50-58).
_DATE_FMT_IDS = set(range(14, 18)) | {22} | set(range(27, 37)) | set(range(50, 59))


def _is_date_format(code: str) -> bool:
    code = re.sub(r'"[^"]*"|\[[^\]]*\]|\\.|[eE][+-]', "", code).lower()
    return code not in ("general", "@") and bool(re.search(r"[ymdeg]", code))


def _xlsx_parts(zf: zipfile.ZipFile) -> tuple[str, str, bool, list[str], set[int]]:
    """First sheet's part name and title, the 1904 flag, shared strings, date style indices."""
    wb = ET.fromstring(zf.read("xl/workbook.xml"))
    pr = wb.find(f"{_NS}workbookPr")
    date1904 = pr is not None and pr.get("date1904") in ("1", "true")
    sheet = wb.find(f"{_NS}sheets/{_NS}sheet")
    if sheet is None:
        raise ValueError("the workbook has no sheets")
    rid = sheet.get(f"{_NS_REL}id")
    rels = ET.fromstring(zf.read("xl/_rels/workbook.xml.rels"))
    target = next(r.get("Target") for r in rels.iter(f"{_NS_PKG}Relationship") if r.get("Id") == rid)
    part = target.lstrip("/") if target.startswith("/") else "xl/" + target
    shared: list[str] = []
    if "xl/sharedStrings.xml" in zf.namelist():
        for si in ET.fromstring(zf.read("xl/sharedStrings.xml")).iter(f"{_NS}si"):
            # plain <t> or rich-text runs <r><t>; furigana (<rPh>) is not cell text
            runs = [si.find(f"{_NS}t"), *si.findall(f"{_NS}r/{_NS}t")]
            shared.append("".join(t.text or "" for t in runs if t is not None))
    dates: set[int] = set()
    if "xl/styles.xml" in zf.namelist():
        st = ET.fromstring(zf.read("xl/styles.xml"))
        custom = {int(n.get("numFmtId")): n.get("formatCode", "") for n in st.iter(f"{_NS}numFmt")}
        xfs = st.find(f"{_NS}cellXfs")
        for i, xf in enumerate(xfs.findall(f"{_NS}xf") if xfs is not None else []):
            fid = int(xf.get("numFmtId", "0"))
            if fid in _DATE_FMT_IDS or (fid in custom and _is_date_format(custom[fid])):
                dates.add(i)
    return part, sheet.get("name", ""), date1904, shared, dates


def _col_index(ref: str) -> int:
    n = 0
    for ch in ref:
        if "A" <= ch <= "Z":
            n = n * 26 + ord(ch) - 64
        else:
            break
    return n - 1


def _number_text(raw: str) -> str:
    if raw.lstrip("-").isdigit():
        return raw
    return _xlsx_cell_text(float(raw))


def _xlsx_sheet_rows(path: Path) -> tuple[list[list[str]], list[int], str]:
    """Rows of the first sheet as text with their Excel row numbers (streaming XML parse).

    openpyxl is far too slow for a 100k-row export (it re-parses the whole sheet when the
    writer left out the dimension), so cells are read straight from the sheet XML.
    """
    with zipfile.ZipFile(path) as zf:
        part, sheet, date1904, shared, date_styles = _xlsx_parts(zf)
        epoch = dt.datetime(1904, 1, 1) if date1904 else dt.datetime(1899, 12, 30)
        rows: list[list[str]] = []
        numbers: list[int] = []
        current: dict[int, str] = {}
        next_col = 0
        c_tag, row_tag, v_tag, is_tag, t_tag = f"{_NS}c", f"{_NS}row", f"{_NS}v", f"{_NS}is", f"{_NS}t"
        with zf.open(part) as fh:
            for _event, el in ET.iterparse(fh, events=("end",)):
                tag = el.tag
                if tag == c_tag:
                    ref = el.get("r")
                    col = _col_index(ref) if ref else next_col
                    kind = el.get("t", "n")
                    if kind == "inlineStr":
                        inline = el.find(is_tag)
                        text = "".join(t.text or "" for t in inline.iter(t_tag)) if inline is not None else ""
                    else:
                        v = el.find(v_tag)
                        raw = v.text if v is not None else None
                        if raw is None:
                            text = ""
                        elif kind == "s":
                            text = shared[int(raw)]
                        elif kind == "b":
                            text = "true" if raw.strip() == "1" else "false"
                        elif kind in ("str", "e", "d"):
                            text = raw
                        elif el.get("s") is not None and int(el.get("s")) in date_styles:
                            text = _xlsx_cell_text(epoch + dt.timedelta(days=float(raw)))
                        else:
                            text = _number_text(raw)
                    current[col] = text
                    next_col = col + 1
                    el.clear()
                elif tag == row_tag:
                    r = el.get("r")
                    numbers.append(int(r) if r else (numbers[-1] + 1 if numbers else 1))
                    width = max(current) + 1 if current else 0
                    rows.append([current.get(i, "") for i in range(width)])
                    current, next_col = {}, 0
                    el.clear()
    return rows, numbers, sheet


def _xlsx_records(path: Path) -> tuple[list[str], list[list[str]], list[int], str]:
    try:
        all_rows, numbers, sheet = _xlsx_sheet_rows(path)
    except (zipfile.BadZipFile, ET.ParseError, KeyError, StopIteration, ValueError, IndexError,
            OSError, EOFError) as exc:
        raise MimamoriError(
            f"{path.name}: not a readable .xlsx workbook ({type(exc).__name__}: {exc}); "
            "open it in Excel and save it again as .xlsx, or export CSV"
        ) from None
    if not all_rows or all(not any(c.strip() for c in r) for r in all_rows):
        raise MimamoriError(f"{path.name}: the first sheet is empty; put the header in row 1")
    first = next(i for i, r in enumerate(all_rows) if any(c.strip() for c in r))
    header = all_rows[first]
    while header and not header[-1].strip():
        header = header[:-1]
    # Excel stores no trailing empty cells: pad short rows to the header's width.
    width = len(header)
    rows = [(r + [""] * (width - len(r))) if len(r) < width else r for r in all_rows[first + 1:]]
    return header, rows, numbers[first + 1:], sheet


def _header_candidates(schema: TableSchema) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for f in schema.fields:
        for h in f.headers:
            out.setdefault(normalize_key(h), set()).add(f.name)
    return out


def _headers_for_message(header: list[str], limit: int = 15) -> list[str]:
    """Headers as an error message may show them. A file without a header row would put a
    record's values here, so digit runs (codes) are hidden and long cells shortened."""
    out = []
    for h in header[:limit]:
        h = re.sub(r"\d{4,}", "<digits>", h.replace("\ufeff", ""))
        out.append(h if len(h) <= 20 else h[:20] + "…")
    return out + (["…"] if len(header) > limit else [])


def map_headers(
    header: list[str], schema: TableSchema, header_map: dict | None, path: Path, encoding: str = ""
) -> tuple[dict[int, str], list[str], list[str]]:
    """Column position → field name, plus unknown headers and missing optional fields.

    Missing required fields, a header that fits two fields and two columns for one field
    are whole-file errors.
    """
    candidates = _header_candidates(schema)
    overrides: dict[str, str] = {}
    for vendor, fname in (header_map or {}).items():
        if fname not in schema.field_names:
            raise MimamoriError(
                f"config ingest.header_map.{schema.table}: {vendor!r} maps to unknown field "
                f"{fname!r}; fields: {schema.field_names}"
            )
        overrides[normalize_key(vendor)] = fname
    mapping: dict[int, str] = {}
    unknown: list[str] = []
    for i, h in enumerate(header):
        h_clean = h.replace("\ufeff", "")
        k = normalize_key(h_clean)
        if not k:
            continue
        if k in overrides:
            mapping[i] = overrides[k]
            continue
        fits = candidates.get(k, set())
        if len(fits) > 1:
            raise MimamoriError(
                f"{path.name}: column {h_clean!r} matches several fields {sorted(fits)}; "
                f"say which one in ingest.header_map.{schema.table}"
            )
        if fits:
            mapping[i] = next(iter(fits))
        else:
            unknown.append(h_clean)
    seen: dict[str, int] = {}
    for i, fname in mapping.items():
        if fname in seen:
            raise MimamoriError(
                f"{path.name}: columns {header[seen[fname]]!r} and {header[i]!r} both map to field "
                f"{fname!r}; remove one or map it elsewhere in ingest.header_map.{schema.table}"
            )
        seen[fname] = i
    missing_required = [f for f in schema.fields if f.required and f.name not in seen]
    if missing_required:
        wanted = "; ".join(f"{f.name} (header {f.title!r} or one of {list(f.aliases)})"
                           for f in missing_required)
        hint = (f" The file was read as {encoding}; if these headers look garbled the encoding "
                f"is wrong: set ingest.encoding.{schema.table}." if encoding else "")
        raise MimamoriError(
            f"{path.name}: missing required column(s): {wanted}. Headers found: "
            f"{_headers_for_message(header)}. Rename the column or add it to "
            f"ingest.header_map.{schema.table}.{hint}"
        )
    missing_optional = [f.name for f in schema.fields if f.name not in seen]
    return mapping, unknown, missing_optional


def _records_to_columns(
    header: list[str], rows: list[list[str]], numbers: list[int], path: Path
) -> list[np.ndarray]:
    """Records → one object array per header column.

    A record with a different number of cells than the header means a damaged or truncated
    file (a whole-file error) unless the extra cells are empty.
    """
    width = len(header)
    n = len(rows)
    lengths = np.fromiter(map(len, rows), dtype=np.int64, count=n)
    odd = np.flatnonzero(lengths != width)
    if len(odd):
        rows = list(rows)
        for i in odd:
            rec = rows[i]
            if not any(c.strip() for c in rec):
                rows[i] = [""] * width
                continue
            if len(rec) > width and not any(c.strip() for c in rec[width:]):
                rows[i] = rec[:width]
                continue
            raise MimamoriError(
                f"{path.name}: row {numbers[i]} has {len(rec)} cells but the header has {width}: "
                "the file is damaged or truncated; export it again"
            )
    grid = np.empty((n, width), dtype=object)
    if n:
        grid[:] = rows  # every record now has exactly `width` cells
    return [grid[:, i] for i in range(width)]


def _csv_columns_fast(text: str, delimiter: str) -> tuple[list[str], list[np.ndarray]] | None:
    """Header and columns through pyarrow's C parser; None when the file needs the careful
    reader (ragged rows, an open quote at the end): that one names the row that is wrong."""
    import pyarrow.csv as pacsv

    try:
        table = pacsv.read_csv(
            pa.BufferReader(text.encode("utf-8")),
            read_options=pacsv.ReadOptions(autogenerate_column_names=True, use_threads=True),
            parse_options=pacsv.ParseOptions(delimiter=delimiter, newlines_in_values=True,
                                             ignore_empty_lines=False),
            convert_options=pacsv.ConvertOptions(
                column_types={f"f{i}": pa.string() for i in range(4096)},
                strings_can_be_null=False, quoted_strings_can_be_null=False),
        )
    except (pa.ArrowInvalid, pa.ArrowException):
        return None
    cols = [c.to_numpy(zero_copy_only=False) for c in table.columns]
    if not cols or not len(cols[0]):
        return None
    header = [str(c[0]) for c in cols]
    if not any(h.strip() for h in header):
        return None  # blank first line: let the careful reader say what is wrong
    return header, [c[1:].astype(object) for c in cols]


def _drop_blank_records(columns: list[np.ndarray], numbers: list[int], path: Path
                        ) -> tuple[list[np.ndarray], list[int], int]:
    """Remove records whose every cell is blank (not records); count them."""
    n = len(numbers)
    blank = np.ones(n, dtype=bool)
    for col in columns:  # pyarrow's trim runs in C; pandas' python strings would loop per cell
        trimmed = pc.utf8_trim_whitespace(pa.array(col, type=pa.string()))
        blank &= pc.equal(trimmed, "").to_numpy(zero_copy_only=False)
    keep = ~blank
    if not keep.any():
        raise MimamoriError(
            f"{path.name}: header only, no records; export the data again (or remove the file "
            "if the table really is empty)"
        )
    kept_numbers = np.asarray(numbers, dtype=np.int64)[keep].tolist()
    return [c[keep] for c in columns], kept_numbers, int(blank.sum())


def read_export(
    path: str | Path,
    schema: TableSchema,
    encoding: str | None = None,
    header_map: dict | None = None,
) -> pd.DataFrame:
    """One export → raw text cells named by schema field, plus ``source_file``/``source_row``.

    Cells are Python ``str`` (object dtype); every schema field is a column (absent optional
    ones are all None). Fully blank lines are
    not records; their count is in ``df.attrs["blank_rows"]``. ``df.attrs`` also carries
    ``encoding``, ``unknown_headers`` and ``missing_optional_columns``.
    """
    path = Path(path)
    if not path.exists():
        raise MimamoriError(f"{path}: file not found")
    suffix = path.suffix.lower()
    sheet = None
    rows: list[list[str]] | None = None
    columns: list[np.ndarray] | None = None
    if suffix == ".xlsx":
        header, rows, numbers, sheet = _xlsx_records(path)
        enc = "xlsx"
    elif suffix in (".csv", ".txt"):
        data = path.read_bytes()
        if not data.strip():
            raise MimamoriError(f"{path.name}: the file is empty; export it again with a header row and records")
        text, enc = decode_export(data, path, encoding)
        first_line = text.split("\n", 1)[0]
        delimiter = "\t" if "\t" in first_line and "," not in first_line else ","
        fast = _csv_columns_fast(text, delimiter)
        if fast is not None:
            header, columns = fast
            numbers = list(range(2, len(columns[0]) + 2))
        else:
            header, rows, numbers = _csv_records(text, path)
    else:
        raise MimamoriError(f"{path.name}: unsupported file type {suffix!r}; export CSV or .xlsx")

    mapping, unknown, missing_optional = map_headers(header, schema, header_map, path, enc)
    if columns is None:
        columns = _records_to_columns(header, rows or [], numbers, path)
    columns, numbers_kept, blank = _drop_blank_records(columns, numbers, path)
    out = pd.DataFrame(index=range(len(numbers_kept)))
    for f in schema.fields:
        pos = next((i for i, name in mapping.items() if name == f.name), None)
        out[f.name] = (pd.Series(columns[pos], dtype=object) if pos is not None
                       else pd.Series(None, index=out.index, dtype=object))
    out["source_file"] = path.name
    out["source_row"] = np.asarray(numbers_kept, dtype="int64")
    out.attrs.update({"encoding": enc, "unknown_headers": unknown, "sheet": sheet,
                      "missing_optional_columns": missing_optional, "blank_rows": blank})
    return out


# ----------------------------------------------------------------------------- parsing
def _enum_lookup(f: Field) -> dict[str, str]:
    out: dict[str, str] = {}
    for spelling, code in f.enum_lookup().items():
        k = normalize_key(spelling)
        if out.get(k, code) != code:
            raise MimamoriError(f"schema field {f.name}: spelling {spelling!r} fits two codes")
        out[k] = code
    return out


_BOOL_LOOKUP = {normalize_key(v): True for v in BOOL_TRUE} | {normalize_key(v): False for v in BOOL_FALSE}


def parse_field(raw: pd.Series, f: Field) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Raw text column → (typed values, reject reason, detail); computed on distinct values.

    Blank cells give <NA> with reason ``missing_required`` only when the field is required.
    """
    codes, uniques = pd.factorize(pd.Series(raw, copy=False), use_na_sentinel=True)
    u = normalize_cells(pd.Series(uniques, dtype="string"))
    n = len(u)
    reason = np.full(n, None, dtype=object)
    detail = np.full(n, None, dtype=object)
    present = u.notna().to_numpy()

    if f.type == "code":
        v = u.str.normalize("NFKC")
        if f.pattern:
            ok = v.str.fullmatch(f.pattern).fillna(False).to_numpy(dtype=bool)
            bad = present & ~ok
            reason[bad] = "invalid_code"
            detail[bad] = f"does not match {f.pattern}"
            v = v.mask(bad)
        typed = v.astype("string")
    elif f.type in ("int", "float"):
        values, errs = parse_numbers(u, integer=f.type == "int")
        bad = errs.notna().to_numpy()
        reason[bad] = "invalid_number"
        detail[bad] = errs[bad].to_numpy()
        vals = values.to_numpy()
        if f.min is not None:
            low = ~bad & present & (vals < f.min)
            reason[low] = "out_of_range"
            detail[low] = f"below minimum {f.min:g}{' ' + f.unit if f.unit else ''}"
            vals = np.where(low, np.nan, vals)
        if f.max is not None:
            high = ~bad & present & (vals > f.max)
            reason[high] = "out_of_range"
            detail[high] = f"above maximum {f.max:g}{' ' + f.unit if f.unit else ''}"
            vals = np.where(high, np.nan, vals)
        if f.type == "int":
            huge = np.abs(np.nan_to_num(vals)) > 2**53
            reason[huge] = "out_of_range"
            detail[huge] = "too large for an integer"
            vals = np.where(huge, np.nan, vals)
            typed = pd.Series(pd.array(np.where(np.isnan(vals), 0, vals).astype("int64"), dtype="Int64"))
            typed[np.isnan(vals)] = pd.NA
        else:
            typed = pd.Series(vals, dtype="float64")
    elif f.type == "date":
        dates, errs = parse_dates(u)
        bad = errs.notna().to_numpy()
        reason[bad] = "invalid_date"
        detail[bad] = errs[bad].to_numpy()
        typed = dates
    elif f.type == "bool":
        mapped = normalize_keys(u).map(_BOOL_LOOKUP)
        bad = present & mapped.isna().to_numpy()
        reason[bad] = "unknown_enum"
        detail[bad] = "not a yes/no value (有/無, あり/なし, はい/いいえ, ○/×, 1/0, true/false)"
        typed = mapped.astype("boolean")
    elif f.type == "enum":
        lookup = _enum_lookup(f)
        mapped = normalize_keys(u).map(lookup)
        bad = present & mapped.isna().to_numpy()
        reason[bad] = "unknown_enum"
        detail[bad] = f"not one of the codes/labels/aliases of {f.name}"
        typed = mapped.astype("string")
    else:  # string, text
        typed = u.astype("string")

    if f.required:
        reason[~present] = "missing_required"
        detail[~present] = "required field is blank"

    has = codes >= 0
    idx = pd.Series(raw).index
    out_typed = pd.Series(typed.array.take(codes, allow_fill=True), index=idx)
    out_reason = np.full(len(codes), None, dtype=object)
    out_detail = np.full(len(codes), None, dtype=object)
    out_reason[has] = reason[codes[has]]
    out_detail[has] = detail[codes[has]]
    if f.required:
        out_reason[~has] = "missing_required"
        out_detail[~has] = "required field is blank"
    return out_typed, pd.Series(out_reason, index=idx), pd.Series(out_detail, index=idx)


# ----------------------------------------------------------------------------- validation
@dataclass
class TableResult:
    """A validated table: accepted typed rows, rejects, counts and what the readers noticed."""

    table: str
    typed_all: pd.DataFrame  # every row read, typed (invalid cells <NA>), for reference keys
    valid: pd.DataFrame  # accepted rows (typed, unmasked) with source_file/source_row
    rejects: pd.DataFrame  # REJECT_COLUMNS; includes duplicate_exact lines (dropped copies)
    rows_in: int
    duplicates_dropped: int
    info: dict = field(default_factory=dict)

    @property
    def rows_rejected(self) -> int:
        r = self.rejects[self.rejects["reason"] != "duplicate_exact"]
        return int(r[["file", "source_row"]].drop_duplicates().shape[0])


def _reject_frame(raw: pd.DataFrame, mask: np.ndarray, column: str, values, reason, detail) -> pd.DataFrame:
    sel = raw.loc[mask]
    return pd.DataFrame({
        "file": sel["source_file"].to_numpy(),
        "source_row": sel["source_row"].to_numpy(),
        "column": column,
        "value": np.asarray(values, dtype=object)[mask] if not np.isscalar(values) else values,
        "reason": np.asarray(reason, dtype=object)[mask] if not isinstance(reason, str) else reason,
        "detail": np.asarray(detail, dtype=object)[mask] if not isinstance(detail, str) else detail,
    })


def validate_table(raw: pd.DataFrame, schema: TableSchema) -> TableResult:
    """Schema-driven validation of one table's raw rows (all its files concatenated).

    Field checks (type, pattern, range, enum, required) come from the YAML schema, then exact
    duplicates are dropped (first copy kept) and primary-key conflicts reject every row of the
    key group. References are checked across tables by ``check_references``.
    """
    raw = raw.reset_index(drop=True)
    typed: dict[str, pd.Series] = {}
    parts: list[pd.DataFrame] = []
    row_bad = np.zeros(len(raw), dtype=bool)
    for f in schema.fields:
        values, reason, detail = parse_field(raw[f.name], f)
        typed[f.name] = values
        bad = reason.notna().to_numpy()
        if bad.any():
            row_bad |= bad
            parts.append(_reject_frame(raw, bad, f.name, raw[f.name].astype(object).to_numpy(),
                                       reason.to_numpy(), detail.to_numpy()))
    typed_df = pd.DataFrame(typed)
    typed_df["source_file"] = raw["source_file"].to_numpy()
    typed_df["source_row"] = raw["source_row"].to_numpy()

    # Exact duplicates among clean rows: same value in every field → keep the first copy.
    names = schema.field_names
    clean_idx = np.flatnonzero(~row_bad)
    clean = typed_df.iloc[clean_idx]
    dup = clean.duplicated(subset=names, keep="first").to_numpy()
    dup_mask = np.zeros(len(raw), dtype=bool)
    dup_mask[clean_idx[dup]] = True
    if dup_mask.any():
        first_row = clean.groupby(names, dropna=False, sort=False)["source_row"].transform("first")
        firsts = np.zeros(len(raw), dtype=object)
        firsts[clean_idx] = first_row.to_numpy()
        parts.append(_reject_frame(
            raw, dup_mask, "*", "", "duplicate_exact",
            np.array([f"exact copy of row {r}; dropped (counted, not rejected)" for r in firsts], dtype=object),
        ))

    # Primary-key conflicts among the remaining clean rows.
    pk = list(schema.primary_key)
    remaining = ~row_bad & ~dup_mask
    conflict = np.zeros(len(raw), dtype=bool)
    if pk:
        rem_idx = np.flatnonzero(remaining)
        rem = typed_df.iloc[rem_idx]
        in_group = rem.duplicated(subset=pk, keep=False).to_numpy()
        conflict[rem_idx[in_group]] = True
        if conflict.any():
            grp = typed_df.loc[conflict]
            nunique = grp.groupby(pk, dropna=False)[[n for n in names if n not in pk]].nunique(dropna=False)
            differing = nunique.apply(lambda r: ", ".join(r.index[r > 1]), axis=1)
            gsize = grp.groupby(pk, dropna=False)["source_row"].transform("size")
            diff_txt = grp[pk].merge(differing.rename("d").reset_index(), on=pk, how="left")["d"].to_numpy()
            det = np.zeros(len(raw), dtype=object)
            det[conflict] = [f"{s} rows share this key with different {d}" for s, d in zip(gsize, diff_txt, strict=True)]
            keytxt = np.zeros(len(raw), dtype=object)
            keytxt[conflict] = raw.loc[conflict, pk].astype(str).agg("|".join, axis=1).to_numpy()
            parts.append(_reject_frame(raw, conflict, "+".join(pk), keytxt, "duplicate_conflict", det))

    accepted = remaining & ~conflict
    rejects = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=REJECT_COLUMNS)
    return TableResult(
        table=schema.table,
        typed_all=typed_df,
        valid=typed_df.loc[accepted].reset_index(drop=True),
        rejects=rejects[REJECT_COLUMNS],
        rows_in=len(raw),
        duplicates_dropped=int(dup_mask.sum()),
    )


def check_references(results: dict[str, TableResult], schemas: dict[str, TableSchema]) -> dict:
    """Reject accepted rows whose reference (``references:``) is found nowhere in the target export.

    A code counts as present when it appears, validly spelt, in any row of the referenced
    export — even a row rejected for another reason — so one bad resident row does not cascade
    into orphaning every record of that person. Returns what was checked per table.
    """
    checked: dict[str, dict] = {}
    for table, res in results.items():
        info: dict[str, dict] = {}
        for fname, target in schemas[table].references.items():
            ref_table, ref_field = target.split(".", 1)
            if ref_table not in results:
                info[fname] = {"references": target, "checked": False, "orphans": 0,
                               "note": f"{ref_table} export absent; not checked"}
                continue
            known = results[ref_table].typed_all[ref_field].dropna().unique()
            col = res.valid[fname]
            orphan = (col.notna() & ~col.isin(known)).to_numpy()
            info[fname] = {"references": target, "checked": True, "orphans": int(orphan.sum())}
            if orphan.any():
                v = res.valid.loc[orphan]
                rej = pd.DataFrame({
                    "file": v["source_file"].to_numpy(), "source_row": v["source_row"].to_numpy(),
                    "column": fname, "value": v[fname].astype(object).to_numpy(),
                    "reason": "orphan_key", "detail": f"not found in {target}",
                })
                res.rejects = pd.concat([res.rejects, rej], ignore_index=True)
                res.valid = res.valid.loc[~orphan].reset_index(drop=True)
        checked[table] = info
    return checked


# ----------------------------------------------------------------------------- the stage
def find_exports(raw_dir: Path, schemas: dict[str, TableSchema]) -> tuple[dict[str, list[Path]], list[str]]:
    """Files per table by the schema ``files`` globs (top level of raw_dir), plus unmatched names."""
    found: dict[str, list[Path]] = {t: [] for t in schemas}
    unmatched: list[str] = []
    if not raw_dir.is_dir():
        raise MimamoriError(f"{raw_dir}: raw data folder not found; run `python -m helpers synth` or put the exports there")
    for p in sorted(raw_dir.iterdir()):
        if not p.is_file() or p.name.startswith((".", "_", "~$")):
            continue
        name = unicodedata.normalize("NFC", p.name)
        tables = [t for t, s in schemas.items() if any(fnmatch.fnmatch(name, g) for g in s.files)]
        if len(tables) > 1:
            raise MimamoriError(f"{p.name}: file name fits several tables {tables}; rename it")
        if not tables:
            unmatched.append(p.name)
            continue
        if p.suffix.lower() not in SUPPORTED_SUFFIXES:
            raise MimamoriError(f"{p.name}: unsupported file type for table {tables[0]}; export CSV or .xlsx")
        found[tables[0]].append(p)
    return found, unmatched


def _code_hash() -> str:
    h = hashlib.sha256()
    here = Path(__file__).resolve().parents[1]
    for name in CODE_FILES:
        p = here / name
        if p.exists():
            h.update(p.read_bytes())
    for p in sorted(Path(SCHEMA_DIR).glob("*.yaml")):
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def _fingerprint(cfg: dict, files: list[Path], key: bytes, raw_dir: Path, correspondence: bool) -> str:
    blob = {
        "inputs": {p.name: hio.file_sha256(p) for p in files},
        "config": config_hash(cfg, ("ingest",)),
        "synthetic": bool(cfg["run"].get("synthetic")),
        "code": _code_hash(),
        "key": hashlib.sha256(b"fingerprint:" + key).hexdigest()[:16],
        "correspondence": correspondence,
        "raw_dir": str(raw_dir.resolve()),
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:24]


def mart_dtypes(schema: TableSchema) -> dict[str, str]:
    """The mart dtype of every non-dropped field (docs/architecture.md)."""
    by_type = {"code": "string", "string": "string", "text": "string", "enum": "string",
               "int": "Int64", "float": "float64", "bool": "boolean", "date": "datetime64[ns]"}
    return {f.name: by_type[f.type] for f in schema.mart_fields}


def ingest_all(cfg: dict, raw_dir: Path, mart_dir: Path, write_correspondence: bool | None = None,
               force: bool = False) -> dict:
    """Read, validate and mask every table of raw_dir into mart_dir; return the ingest report."""
    raw_dir, mart_dir = Path(raw_dir), Path(mart_dir)
    icfg = cfg.get("ingest") or {}
    schemas = load_schemas(icfg.get("schema_dir") or None)
    if write_correspondence is None:
        write_correspondence = bool(icfg.get("write_correspondence", False))
    key, key_source = load_key(cfg)
    exports, unmatched = find_exports(raw_dir, schemas)
    all_files = [p for ps in exports.values() for p in ps]
    fingerprint = _fingerprint(cfg, all_files, key, raw_dir, write_correspondence)
    report_path = mart_dir / REPORT_NAME

    if not force and report_path.exists():
        try:
            old = json.loads(report_path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            old = {}
        outputs_exist = all((mart_dir / f"{t}.parquet").exists() for t in old.get("tables", {}))
        if old.get("fingerprint") == fingerprint and outputs_exist:
            old["skipped_reruns"] = int(old.get("skipped_reruns", 0)) + 1
            old["last_checked"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
            old["skipped"] = True
            hio.write_json(old, report_path)
            hio.append_audit(data_dir(cfg), "ingest", cfg, inputs=all_files, outputs=[report_path],
                             rows={"skipped": 1})
            return old

    required_tables = set(icfg.get("required_tables", ["residents"]))
    missing_tables = sorted(t for t, ps in exports.items() if not ps)
    problems = [f"{raw_dir}: no export for required table {t} (file names {list(schemas[t].files)})"
                for t in missing_tables if t in required_tables]
    enc_cfg = icfg.get("encoding") or {}
    hmap_cfg = icfg.get("header_map") or {}
    raws: dict[str, pd.DataFrame] = {}
    file_info: dict[str, list[dict]] = {}
    for table, paths in tqdm(exports.items(), desc="read exports", leave=False):
        frames = []
        for p in paths:
            try:
                df = read_export(p, schemas[table], enc_cfg.get(table), hmap_cfg.get(table))
            except MimamoriError as exc:
                problems.append(str(exc))
                continue
            frames.append(df)
            file_info.setdefault(table, []).append({
                "file": p.name, "encoding": df.attrs["encoding"], "sheet": df.attrs["sheet"],
                "rows": len(df), "blank_rows_skipped": df.attrs["blank_rows"],
                "unknown_headers": df.attrs["unknown_headers"],
                "missing_optional_columns": df.attrs["missing_optional_columns"],
                "sha256": hio.file_sha256(p),
            })
        if frames:
            raws[table] = pd.concat(frames, ignore_index=True)
    if problems:
        raise MimamoriError("cannot ingest; fix these files and run again:\n  " + "\n  ".join(problems))

    results = {t: validate_table(raw, schemas[t]) for t, raw in tqdm(raws.items(), desc="validate", leave=False)}
    references = check_references(results, schemas)
    percentiles = tuple(icfg.get("topcode_percentiles", [0.5, 99.5]))

    tables_report: dict[str, dict] = {}
    outputs: list[Path] = []
    corr_parts = []
    for table, res in tqdm(results.items(), desc="mask and write", leave=False):
        schema = schemas[table]
        masked, mreport = mask_table(res.valid, schema, key, percentiles)
        masked = masked.astype(mart_dtypes(schema))
        rej = res.rejects.sort_values(["file", "source_row", "column"], kind="stable")
        outputs.append(hio.write_parquet(masked, mart_dir / f"{table}.parquet"))
        outputs.append(hio.write_csv(rej, mart_dir / REJECTS_DIR / f"{table}.csv"))
        if write_correspondence:
            corr_parts.append(correspondence_table(res.valid, schema, key))
        real = rej[rej["reason"] != "duplicate_exact"]
        reasons = real.drop_duplicates(["file", "source_row", "reason"])["reason"].value_counts()
        by_col = real.groupby(["column", "reason"]).size()
        tr = {
            "rows_in": res.rows_in, "rows_out": len(masked), "rows_rejected": res.rows_rejected,
            "duplicates_dropped": res.duplicates_dropped,
            "reasons": {str(k): int(v) for k, v in reasons.items()},
            "rejected_cells": {f"{c}:{r}": int(n) for (c, r), n in by_col.items()},
            "files": file_info.get(table, []),
            "unknown_headers": sorted({h for fi in file_info.get(table, []) for h in fi["unknown_headers"]}),
            "missing_optional_columns": sorted({c for fi in file_info.get(table, []) for c in fi["missing_optional_columns"]}),
            "references": references.get(table, {}),
            "topcode": {k: v for k, v in mreport.items() if v.get("masking") == "topcode"},
            "masking": {k: v["masking"] for k, v in mreport.items()},
            "rejects_file": f"{REJECTS_DIR}/{table}.csv",
        }
        if tr["rows_in"] != tr["rows_out"] + tr["rows_rejected"] + tr["duplicates_dropped"]:
            raise MimamoriError(
                f"{table}: rows do not reconcile: in {tr['rows_in']} != out {tr['rows_out']} + "
                f"rejected {tr['rows_rejected']} + duplicates {tr['duplicates_dropped']}; nothing was "
                "written to the report — this is a bug in ingest, please report it"
            )
        tables_report[table] = tr
    for table in missing_tables:  # a stale mart file must not pass for this run's data
        for stale in (mart_dir / f"{table}.parquet", mart_dir / REJECTS_DIR / f"{table}.csv"):
            if stale.exists():
                stale.unlink()

    if write_correspondence and corr_parts:
        corr = pd.concat(corr_parts, ignore_index=True).drop_duplicates().sort_values(["domain", "code"])
        corr_path = private_dir(data_dir(cfg)) / "correspondence.csv"
        if corr_path.resolve().is_relative_to(mart_dir.resolve()):
            raise MimamoriError(f"{corr_path}: the correspondence table must not live under the mart")
        hio.write_csv(corr, corr_path)

    report = {
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "fingerprint": fingerprint, "skipped": False, "skipped_reruns": 0,
        "key_source": key_source, "synthetic": bool(cfg["run"].get("synthetic")),
        "config_hash": config_hash(cfg, ("ingest",)),
        "raw_dir": str(raw_dir), "topcode_percentiles": list(percentiles),
        "missing_tables": missing_tables, "unmatched_files": unmatched,
        "correspondence_written": bool(write_correspondence),
        "tables": tables_report,
        "totals": {k: int(sum(t[k] for t in tables_report.values()))
                   for k in ("rows_in", "rows_out", "rows_rejected", "duplicates_dropped")},
    }
    hio.write_json(report, report_path)
    outputs.append(report_path)
    hio.append_audit(data_dir(cfg), "ingest", cfg, inputs=all_files, outputs=outputs,
                     rows={t: v["rows_out"] for t, v in tables_report.items()})
    return report


def main(cfg: dict, argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m helpers ingest", description=__doc__.splitlines()[0])
    parser.add_argument("--raw-dir", type=Path, default=None, help="exports folder (default data/raw)")
    parser.add_argument("--mart-dir", type=Path, default=None, help="output folder (default data/mart)")
    parser.add_argument("--write-correspondence", action="store_true",
                        help="also write pseudonym → real code to data/private/ (never the mart)")
    parser.add_argument("--force", action="store_true", help="rerun even when inputs and settings are unchanged")
    args = parser.parse_args(argv)
    root = data_dir(cfg)
    raw_dir = args.raw_dir or root / "raw"
    mart_dir = args.mart_dir or root / "mart"
    report = ingest_all(cfg, raw_dir, mart_dir,
                        write_correspondence=args.write_correspondence or None, force=args.force)
    if report.get("skipped"):
        print(f"ingest: inputs and settings unchanged since {report.get('created')}; nothing to do")
        return 0
    t = report["totals"]
    print(f"ingest: {len(report['tables'])} tables, {t['rows_in']} rows in, {t['rows_out']} to the mart, "
          f"{t['rows_rejected']} rejected (see {mart_dir / REJECTS_DIR}), "
          f"{t['duplicates_dropped']} exact duplicates dropped; key source {report['key_source']}")
    if report["missing_tables"]:
        print(f"ingest: no export for {report['missing_tables']} (optional; reported)")
    return 0


__all__ = ["read_export", "validate_table", "check_references", "ingest_all", "main",
           "parse_field", "map_headers", "decode_export", "find_exports", "mart_dtypes",
           "TableResult", "REASONS"]
