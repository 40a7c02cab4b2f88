"""One export -> raw text cells named by schema field (the reading half of ingest).

``helpers.exports`` decodes the file and finds its records (every sheet of a workbook, the
header below any title lines, totals/footer lines after the records); this module maps the
vendor's column titles to schema fields and stacks the sheets of one workbook, which must all
hold the same table.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from helpers import MimamoriError
from helpers.exports import (
    HEADER_SEARCH_ROWS,
    Located,
    header_keys_of,
    locate_table,
    looks_garbled,
    read_sheets,
    record_columns,
)
from helpers.normalize import normalize_key
from helpers.schema import TableSchema


def _header_candidates(schema: TableSchema) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for f in schema.fields:
        for h in f.headers:
            out.setdefault(normalize_key(h), set()).add(f.name)
    return out


def headers_for_message(header: list[str], limit: int = 15) -> list[str]:
    """Headers as an error message may show them. A file without a header row would put a
    record's values here, so digit runs (codes) are hidden and long cells shortened."""
    out = []
    for h in header[:limit]:
        h = re.sub(r"\d{4,}", "<digits>", h.replace("\ufeff", ""))
        out.append(h if len(h) <= 20 else h[:20] + "…")
    return out + (["…"] if len(header) > limit else [])


def _overrides(schema: TableSchema, header_map: Mapping[str, str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for vendor, fname in (header_map or {}).items():
        if fname not in schema.field_names:
            raise MimamoriError(
                f"config/ingest.yaml: header_map.{schema.table}: {vendor!r} maps to unknown field "
                f"{fname!r}; fields: {schema.field_names}"
            )
        out[normalize_key(vendor)] = fname
    return out


def map_headers(
    header: list[str],
    schema: TableSchema,
    header_map: Mapping[str, str] | None,
    source: str | Path,
    encoding: str = "",
    header_row: int = 1,
) -> tuple[dict[int, str], list[str], list[str]]:
    """Column position -> field name, plus unknown headers and missing optional fields.

    Missing required fields, a header that fits two fields and two columns for one field
    are whole-file errors.
    """
    name = source.name if isinstance(source, Path) else str(source)
    candidates = _header_candidates(schema)
    overrides = _overrides(schema, header_map)
    mapping: dict[int, str] = {}
    unknown: list[str] = []
    for i, h in enumerate(header):
        h_clean = h.replace("\ufeff", "")
        k = normalize_key(h_clean)
        if not k:
            continue
        fits = {overrides[k]} if k in overrides else candidates.get(k, set())
        if len(fits) > 1:
            raise MimamoriError(
                f"{name}: column {h_clean!r} matches several fields "
                f"{sorted(fits)}; say which one in ingest.header_map.{schema.table}"
            )
        if fits:
            mapping[i] = next(iter(fits))
        else:
            unknown.append(h_clean)
    seen: dict[str, int] = {}
    for i, fname in mapping.items():
        if fname in seen:
            raise MimamoriError(
                f"{name}: columns {header[seen[fname]]!r} and {header[i]!r} both map to field "
                f"{fname!r}; remove one or map it elsewhere in ingest.header_map.{schema.table}"
            )
        seen[fname] = i
    missing = [f for f in schema.fields if f.required and f.name not in seen]
    if missing:
        raise MimamoriError(
            _missing_message(name, missing, header, schema, encoding, header_row, bool(mapping))
        )
    return mapping, unknown, [f.name for f in schema.fields if f.name not in seen]


def _missing_message(
    name: str,
    missing: list,
    header: list[str],
    schema: TableSchema,
    encoding: str,
    header_row: int,
    any_known: bool,
) -> str:
    wanted = "; ".join(
        f"{f.name} (header {f.title!r} or one of {list(f.aliases)})" for f in missing
    )
    msg = (
        f"{name}: missing required column(s): {wanted}. Headers found (row {header_row}): "
        f"{headers_for_message(header)}. Rename the column or add it to "
        f"ingest.header_map.{schema.table}."
    )
    if not any_known:
        msg += (
            f" No row among the first {HEADER_SEARCH_ROWS} holds a known column title: if "
            f"the export starts with title lines, set ingest.skip_rows.{schema.table}."
        )
    if encoding and encoding != "xlsx" and looks_garbled(header):
        msg += (
            f" The file was read as {encoding} and these headers look garbled: set "
            f"ingest.encoding.{schema.table}."
        )
    return msg


def _sheet_frame(
    table: Located, columns: list[np.ndarray], mapping: dict[int, str], schema: TableSchema
) -> pd.DataFrame:
    out = pd.DataFrame(index=range(len(table.numbers)))
    by_field = {name: i for i, name in mapping.items()}
    for f in schema.fields:
        pos = by_field.get(f.name)
        out[f.name] = (
            pd.Series(columns[pos], dtype=object)
            if pos is not None
            else pd.Series(None, index=out.index, dtype=object)
        )
    out["source_file"] = table.source
    out["source_row"] = np.asarray(table.numbers, dtype="int64")
    return out


def read_export(
    path: str | Path,
    schema: TableSchema,
    encoding: str | None = None,
    header_map: Mapping[str, str] | None = None,
    skip_rows: int | None = None,
    footer_rows: int | None = None,
) -> pd.DataFrame:
    """One export -> raw text cells named by schema field, plus ``source_file``/``source_row``.

    Cells are Python ``str`` (object dtype); every schema field is a column (absent optional
    ones are all None). Every sheet of a workbook is read; their columns must map to the same
    fields. ``source_file`` is the file name (``name.xlsx#sheet`` for a workbook with several
    sheets) and ``source_row`` the row a spreadsheet shows. ``df.attrs`` carries ``encoding``,
    ``sheets``, ``unknown_headers``, ``missing_optional_columns``, ``blank_rows`` and the
    skipped ``title_rows`` and ``footer_rows`` (row, text).
    """
    path = Path(path)
    keys = header_keys_of(schema, header_map)
    parts: list[tuple[Located, dict[int, str], list[str], list[str], pd.DataFrame]] = []
    sheets = read_sheets(path, encoding)
    enc = sheets[0].encoding
    for sheet in sheets:
        table = locate_table(sheet, keys, skip_rows, footer_rows)
        mapping, unknown, missing = map_headers(
            table.header, schema, header_map, table.source, sheet.encoding, table.header_row
        )
        frame = _sheet_frame(table, record_columns(table, sheet), mapping, schema)
        parts.append((table, mapping, unknown, missing, frame))
    first = parts[0]
    for other in parts[1:]:
        if set(other[1].values()) != set(first[1].values()):
            a, b = sorted(set(first[1].values())), sorted(set(other[1].values()))
            raise MimamoriError(
                f"{path.name}: sheets {first[0].source!r} and {other[0].source!r} hold different "
                f"columns ({a} vs {b}); every sheet must hold the same table: move the other "
                "sheet to its own file or delete it"
            )
    out = pd.concat([p[4] for p in parts], ignore_index=True)
    if not len(out):
        raise MimamoriError(
            f"{path.name}: header only, no records; export the data again (or "
            "remove the file if the table really is empty)"
        )
    out.attrs.update(
        {
            "encoding": enc,
            "sheets": [p[0].source for p in parts],
            "sheet": sheets[0].sheet if len(sheets) == 1 else None,
            "unknown_headers": sorted({h for p in parts for h in p[2]}),
            "missing_optional_columns": first[3],
            "blank_rows": int(sum(p[0].blank_rows for p in parts)),
            "title_rows": [[p[0].source, r, t] for p in parts for r, t in p[0].title_rows],
            "footer_rows": [[p[0].source, r, t] for p in parts for r, t in p[0].footer_rows],
        }
    )
    return out
