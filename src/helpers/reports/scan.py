"""``python -m helpers check-reports``: an audit that attacks the rendered reports.

It reads **every** file under reports/ (sub-folders, dot-files and caches included) the way a
determined reader would, and fails on anything that names a person or gives away a count of
1..T (T = reports.small_cell_threshold):

1. Real identifiers: codes, names, kana and addresses from data/raw's exports, in text,
   attributes, comments, styles, scripts, ``data:`` URIs (decoded) and PNG text chunks.
2. Small counts in words: an integer 1..T next to a count word (人, 件, children, n = ...) in any
   sentence, attribute or comment, including text split across inline tags.
3. Small counts in tables: a visible 1..T in any column that counts people or records, marked
   as such by the report API or not.
4. Derived figures: a fraction that, times a count shown in the same row or sentence, pins a
   count of 1..T (precision × list length, a mean of a yes/no item × group size ...).
5. Subtraction: for every table with hidden cells, the linear system given by its visible
   cells, its total rows and columns, the relations it states (``data-sums``) and every total
   printed elsewhere in the report (``data-margins`` → ``data-key``) is solved with linprog
   (`helpers.reports.disclosure.audit`); a hidden count whose feasible interval is narrower than
   1..T is a finding.

Every finding names the file, the table (caption), the row and the column.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import contextlib
import io
import json
import re
import time
import unicodedata
import urllib.parse
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from helpers import MimamoriError
from helpers.config import data_dir as cfg_data_dir
from helpers.config import reports_dir as cfg_reports_dir
from helpers.reports import disclosure as D


# ------------------------------------------------------------------------------ findings
@dataclass(frozen=True)
class Finding:
    """One thing in a report that must not be there (``masked``: the hit, masked)."""

    file: str
    kind: str
    masked: str
    detail: str = ""
    table: str = ""
    row: str = ""
    column: str = ""

    def __str__(self) -> str:
        where = "".join(
            f" {k} {v!r}"
            for k, v in (("table", self.table), ("row", self.row), ("column", self.column))
            if v
        )
        return f"{self.file}:{where} {self.kind} {self.masked}" + (
            f" ({self.detail})" if self.detail else ""
        )


def mask(value: str) -> str:
    """Show a hit without repeating it: first 2 characters + ***."""
    return str(value)[:2] + "***"


# ------------------------------------------------------------------ real identifiers
_WS = re.compile(r"\s+")
MIN_TEXT_LEN = 3  # names/kana shorter than this after removing spaces are not searched
MIN_ADDRESS_LEN = 6
MIN_CODE_LEN = 6


def normalise_text(value: str) -> str:
    """NFKC (full-width digits/letters → ASCII, half-width kana → full) without whitespace."""
    return _WS.sub("", unicodedata.normalize("NFKC", str(value)))


# a digit run that is not part of a hex hash, a decimal or a longer number
_CODE_RE = re.compile(r"(?<![0-9A-Za-z])(?<!\d\.)(\d{6,15})(?![0-9A-Za-z])(?!\.\d)")


@dataclass
class PiiIndex:
    """Real identifiers from data/raw: codes as a set, strings keyed by their first characters."""

    codes: set[str]
    strings: dict[str, list[str]]
    n_strings: int = 0

    @classmethod
    def build(
        cls, codes: Iterable[str], strings: Iterable[str], normalised: bool = False
    ) -> PiiIndex:
        def norm(x: str) -> str:
            return x if normalised else normalise_text(x)

        code_set = {c for c in (norm(x) for x in codes) if len(c) >= MIN_CODE_LEN and c.isdigit()}
        by_prefix: dict[str, set[str]] = {}
        for s in {norm(x) for x in strings}:
            if len(s) >= MIN_TEXT_LEN and not s.isdigit():
                by_prefix.setdefault(s[:MIN_TEXT_LEN], set()).add(s)
        return cls(
            code_set,
            {k: sorted(v, key=len, reverse=True) for k, v in by_prefix.items()},
            sum(len(v) for v in by_prefix.values()),
        )

    def find_strings(self, text: str) -> list[str]:
        """Every indexed string occurring in ``text`` (already normalised)."""
        hits = []
        k = MIN_TEXT_LEN
        for i in range(len(text) - k + 1):
            cands = self.strings.get(text[i : i + k])
            if cands:
                for s in cands:
                    if text.startswith(s, i):
                        hits.append(s)
                        break
        return hits

    def find_codes(self, text: str) -> list[str]:
        return [m.group(1) for m in _CODE_RE.finditer(text) if m.group(1) in self.codes]


def _read_raw_table(path: Path, headers: set[str]) -> pd.DataFrame:
    """Only the PII columns of one raw export, as text: every sheet of a workbook, title and
    totals lines skipped, by the same reading rules as ingest (helpers.exports)."""
    from helpers.exports import read_columns

    return read_columns(path, headers)


def _pii_columns(path: Path, schema: Any, header_map: Mapping | None) -> pd.DataFrame:
    """PII code/string columns of one export, named by field.

    Our own reader rather than helpers.ingest.read_export: the scan needs only a few columns,
    must still read a file ingest would reject (a missing required column can sit beside a
    name column), and pandas' C parser reading only those columns is ~10× faster.
    """
    pii = {f.name: f for f in schema.fields if f.pii and f.type in ("code", "string")}
    header_to_name = {normalise_text(h): f.name for f in pii.values() for h in f.headers}
    for vendor, fname in ((header_map or {}).get(schema.table) or {}).items():
        if fname in pii:
            header_to_name[normalise_text(vendor)] = fname
    frame = _read_raw_table(path, set(header_to_name))
    frame.columns = [header_to_name[normalise_text(c)] for c in frame.columns]
    # two headers for one field (e.g. 宛名番号 and 住民コード): keep both as rows
    if frame.columns.duplicated().any():
        return pd.concat(
            [frame.iloc[:, [i]].set_axis([c], axis=1) for i, c in enumerate(frame.columns)],
            ignore_index=True,
        )
    return frame


def load_pii_index(
    raw_dir: str | Path, schemas: Mapping[str, Any] | None = None, header_map: Mapping | None = None
) -> PiiIndex:
    """Collect every `pii: true` code, name, kana and address value in data/raw's exports.

    Dates (birth dates) and dropped free text are not searched: dates collide with ordinary
    report dates and free text is never copied into reports by construction.
    """
    from helpers.exports import find_exports  # the same file -> table rule as ingest
    from helpers.schema import load_schemas

    raw_dir = Path(raw_dir)
    schemas = schemas or load_schemas()
    codes: list[pd.Series] = []
    strings: list[pd.Series] = []
    found, _unmatched = find_exports(raw_dir, dict(schemas))
    for table, files in found.items():
        schema = schemas[table]
        for path in files:
            frame = _pii_columns(path, schema, header_map)
            for f in schema.fields:
                if f.name in frame.columns:
                    _collect(frame[f.name].dropna().astype(str), f, codes, strings)
    return PiiIndex.build(_normalised_unique(codes), _normalised_unique(strings), normalised=True)


def _collect(values: pd.Series, f: Any, codes: list, strings: list) -> None:
    if f.type == "code":
        codes.append(values)
        return
    strings.append(values)
    if "address" in f.name or "住所" in f.title:
        # also identifying without the city part or the building name
        unique = values.drop_duplicates()
        street = unique.str.normalize("NFKC").str.split(r"\s").str[0]
        for variant in (unique, street):
            strings.append(variant.map(strip_municipality))
        strings.append(street[street.str.len() >= MIN_ADDRESS_LEN])


def _normalised_unique(parts: list[pd.Series]) -> list[str]:
    """`normalise_text` of every value, vectorised, deduplicated, blanks dropped."""
    if not parts:
        return []
    values = pd.Series(pd.concat(parts, ignore_index=True).unique(), dtype="string")
    values = values.str.normalize("NFKC").str.replace(r"\s+", "", regex=True)
    return [v for v in values.dropna().unique() if v]


_MUNICIPALITY = re.compile(
    r"^(?:[^\d]{2,3}?[都道府県])?(?:[^\d]+?郡[^\d]+?[町村]|[^\d]+?市(?:[^\d]+?区)?|"
    r"[^\d]+?区)"
)


def strip_municipality(address: str) -> str:
    """The part of an address after prefecture and city/ward ("" if that leaves too little)."""
    norm = normalise_text(address)
    rest = _MUNICIPALITY.sub("", norm, count=1)
    return rest if rest != norm and len(rest) >= MIN_ADDRESS_LEN else ""


# ------------------------------------------------------------------------ HTML reading
_BLOCK = {
    "p",
    "div",
    "td",
    "th",
    "tr",
    "table",
    "caption",
    "li",
    "ul",
    "ol",
    "dl",
    "dt",
    "dd",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "pre",
    "br",
    "hr",
    "section",
    "header",
    "footer",
    "main",
    "article",
    "figure",
    "figcaption",
    "details",
    "summary",
    "thead",
    "tbody",
    "body",
    "html",
    "head",
    "title",
    "blockquote",
    "form",
    "nav",
    "aside",
    "img",
    "svg",
    "text",
    "tspan",
    "g",
}


@dataclass
class Cell:
    text: str
    attrs: dict[str, str]
    header: bool


@dataclass
class Table:
    attrs: dict[str, str]
    caption: str = ""
    rows: list[list[Cell]] = field(default_factory=list)
    in_head: list[bool] = field(default_factory=list)


class _Page(HTMLParser):
    """Text chunks (inline tags joined, blocks apart), attributes, comments, styles, tables."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[tuple[str, str]] = []  # (where, text)
        self.comments: list[str] = []
        self.data_uris: list[str] = []
        self.tables: list[Table] = []
        self._stack: list[Table] = []
        self._buf: list[str] = []
        self._raw: str | None = None  # inside <style>/<script>
        self._cell: Cell | None = None
        self._in_caption = False
        self._in_head = False

    def _flush(self) -> None:
        text = "".join(self._buf).strip()
        if text:
            self.chunks.append(("text", text))
        self._buf = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        for key, value in a.items():
            if value.strip().lower().startswith("data:"):
                self.data_uris.append(value.strip())
            elif value:  # an anchor holds its heading percent-encoded: scan the heading
                self.chunks.append((f"attribute {key}", urllib.parse.unquote(value)))
        if tag in ("style", "script"):
            self._flush()
            self._raw = tag
            return
        if tag in _BLOCK:
            self._flush()
        self._table_start(tag, a)

    def _table_start(self, tag: str, a: dict[str, str]) -> None:
        if tag == "table":
            self._stack.append(Table(a))
        elif not self._stack:
            return
        elif tag == "caption":
            self._in_caption = True
        elif tag == "thead":
            self._in_head = True
        elif tag == "tr":
            self._stack[-1].rows.append([])
            self._stack[-1].in_head.append(self._in_head)
        elif tag in ("td", "th"):
            if not self._stack[-1].rows:
                self._stack[-1].rows.append([])
                self._stack[-1].in_head.append(self._in_head)
            self._cell = Cell("", a, tag == "th")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script"):
            self._raw = None
            return
        if tag in _BLOCK:
            self._flush()
        if not self._stack:
            return
        if tag == "caption":
            self._in_caption = False
        elif tag == "thead":
            self._in_head = False
        elif tag in ("td", "th") and self._cell is not None:
            self._cell.text = self._cell.text.strip()
            self._stack[-1].rows[-1].append(self._cell)
            self._cell = None
        elif tag == "table":
            self.tables.append(self._stack.pop())

    def handle_data(self, data: str) -> None:
        if self._raw:
            self.chunks.append((self._raw, data))
            return
        self._buf.append(data)
        if self._stack:
            if self._in_caption:
                self._stack[-1].caption += data
            if self._cell is not None:
                self._cell.text += data

    def handle_comment(self, data: str) -> None:
        self.comments.append(data)
        self.chunks.append(("comment", data))

    def close(self) -> None:
        super().close()
        self._flush()
        while self._stack:
            self.tables.append(self._stack.pop())


# --------------------------------------------------------------------------- tables
_HIDDEN_PRIMARY = re.compile(r"^<\s*(\d+)$")
_COUNT_HEADER = re.compile(
    r"人数|件数|児童数|事例数|世帯数|行数|記録数|該当|要支援|確認数|抽出|回答|人）|件）|"
    r"\bn\b|^n_|children|child-years|count|rows|events|cases|records|positives?|\btp\b|"
    r"\bfp\b|\bfn\b|caught|missed|selected|reviewed|drawn|flagged|known|excluded|households|"
    r"persons|people|hits",
    re.I,
)
_RATE_HEADER = re.compile(
    r"率|割合|share|rate|平均|mean|ratio|比|%|precision|recall|lift|"
    r"median|quantile|rank|順位|p値|p-value|ci\b|信頼区間",
    re.I,
)
# a list length or group size column a reader multiplies a share by
_SIZE_HEADER = re.compile(r"^k$|^k_|list length|リストの長さ|上位|\bsize\b", re.I)
# test statistics and model quantities: not shares of anything a reader can count
_STAT_HEADER = re.compile(
    r"p_value|p値|p-value|^p$|welch|statistic|統計量|auc|brier|odds|"
    r"correlation|相関|loading|負荷|spearman|^t$|coef|係数|shap",
    re.I,
)


def _number(text: str) -> float | None:
    t = unicodedata.normalize("NFKC", text).replace(",", "").strip()
    if re.fullmatch(r"\d+(?:\.0+)?", t):
        return float(t)
    return None


def _cell_state(text: str) -> tuple[int, float]:
    """(status, value) of a count cell as a reader sees it."""
    t = unicodedata.normalize("NFKC", text).strip()
    if _HIDDEN_PRIMARY.match(t):
        return D.PRIMARY, np.nan
    if t.lower() == D.SECONDARY_LABEL:
        return D.SECONDARY, np.nan
    n = _number(t)
    if n is None:
        return D.UNKNOWN, np.nan
    return D.VISIBLE, n


@dataclass
class TableView:
    """A table as a reader takes it: header, body rows, which columns count people."""

    file: str
    caption: str
    columns: list[str]
    body: list[list[Cell]]
    attrs: dict[str, str]
    count_cols: list[int]
    size_cols: list[int]
    truncated: bool
    lp_cols: list[int] = field(default_factory=list)  # whole-number columns a reader adds up

    @property
    def marked(self) -> bool:
        """Written by the report API, which states the table's structure in data-* attributes."""
        return self.attrs.get("data-table") == "1"

    def labels(self, skip: Iterable[int] = ()) -> list[str]:
        """Each row's label: its text cells (not counts, figures or hidden marks)."""
        skip = {*self.count_cols, *skip}
        return [
            " / ".join(c.text for j, c in enumerate(row) if j not in skip and _is_label(c.text))
            for row in self.body
        ]

    def where(self, r: int) -> str:
        return self.labels()[r][:60] or f"#{r + 1}"

    def declared(self, name: str) -> Any:
        raw = self.attrs.get(f"data-{name}")
        if not raw:
            return None
        try:
            return json.loads(raw)
        except json.JSONDecodeError:
            return None


def _is_label(text: str) -> bool:
    t = text.strip()
    return (
        bool(t)
        and _number(t) is None
        and D.fraction_interval(t) is None
        and t not in ("*", "x", "–", "-", "—")
        and not t.startswith("<")
    )


def _is_count_column(header: str, cells: list[Cell]) -> bool:
    marked = any("data-count" in c.attrs for c in cells)
    hidden = any(_cell_state(c.text)[0] in (D.PRIMARY, D.SECONDARY) for c in cells)
    worded = bool(_COUNT_HEADER.search(header)) and not _RATE_HEADER.search(header)
    numeric = all(
        _cell_state(c.text)[0] != D.UNKNOWN or c.text.strip() in ("", "–", "-", "—") for c in cells
    )
    return marked or ((hidden or worded) and numeric)


def table_view(file: str, table: Table) -> TableView | None:
    head = [row for row, h in zip(table.rows, table.in_head, strict=True) if h]
    body = [row for row, h in zip(table.rows, table.in_head, strict=True) if not h and row]
    if not head and body and all(c.header for c in body[0]):
        head, body = [body[0]], body[1:]
    if not body:
        return None
    width = max(len(r) for r in body)
    columns = [c.text for c in head[-1]] if head else []
    columns += [f"#{j + 1}" for j in range(len(columns), width)]
    cells = [[r[j] for r in body if j < len(r)] for j in range(width)]
    count_cols = [j for j in range(width) if _is_count_column(columns[j], cells[j])]
    size_cols = [
        j
        for j in range(width)
        if j not in count_cols
        and _SIZE_HEADER.search(columns[j])
        and all(_number(c.text) is not None for c in cells[j])
    ]
    truncated = table.attrs.get("data-truncated") == "1" or bool(
        re.search(r"more rows|他 [\d,]+ 行", table.caption)
    )
    whole = [
        j
        for j in range(width)
        if j not in count_cols
        and j not in size_cols
        and all(
            _cell_state(c.text)[0] != D.UNKNOWN or c.text.strip() in ("", "–", "-")
            for c in cells[j]
        )
        and any(_number(c.text) is not None for c in cells[j])
    ]
    marked = table.attrs.get("data-table") == "1"
    lp_cols = count_cols if marked else sorted([*count_cols, *whole])
    return TableView(
        file,
        table.caption.strip(),
        columns,
        body,
        table.attrs,
        count_cols,
        size_cols,
        truncated,
        lp_cols,
    )


def small_cells(view: TableView, rules: D.Rules) -> list[Finding]:
    """Visible 1..T in a column that counts people or records (columns the report API
    declares as settings, ``data-fixed``, are not counts unless their cells are marked)."""
    fixed = set(view.declared("fixed") or [])
    out = []
    for r, row in enumerate(view.body):
        for j in view.count_cols:
            if view.columns[j] in fixed and "data-count" not in row[j].attrs:
                continue
            n = _number(row[j].text) if j < len(row) else None
            if n is not None and 1 <= n <= rules.threshold:
                out.append(
                    Finding(
                        view.file,
                        "unsuppressed small count",
                        str(int(n)),
                        "",
                        view.caption[:60],
                        view.where(r),
                        view.columns[j],
                    )
                )
    return out


def derived_cells(view: TableView, rules: D.Rules) -> list[Finding]:
    """Figures that, times a count or size shown in the same row (or a list length in the
    caption), pin a count of 1..T. Columns the report declares as computed from this table's
    counts (data-derived / data-shares / data-fixed) were checked when it was written."""
    declared = {c for key in ("derived", "shares", "fixed") for c in (view.declared(key) or [])}
    caption_sizes = D.sizes_in(view.caption, rules.threshold)
    out = []
    for r, row in enumerate(view.body):
        ns = [
            n
            for j in [*view.count_cols, *view.size_cols]
            if j < len(row) and (n := _number(row[j].text)) is not None and n > rules.threshold
        ]
        ns += caption_sizes
        for j, cell in enumerate(row):
            col = view.columns[j] if j < len(view.columns) else f"#{j + 1}"
            if (
                j in view.count_cols
                or j in view.size_cols
                or col in declared
                or _STAT_HEADER.search(col)
            ):
                continue
            hit = _first_pin(cell.text, ns, rules.threshold)
            if hit is None and any(
                _cell_state(row[k].text)[0] in (D.PRIMARY, D.SECONDARY)
                for k in view.count_cols
                if k < len(row)
            ):  # a ratio of two small numbers beside a hidden count gives the count away
                hit = _small_ratio(cell.text, rules.threshold)
            if hit is not None:
                out.append(
                    Finding(
                        view.file,
                        "derived figure gives away a count",
                        hit[0],
                        hit[1],
                        view.caption[:60],
                        view.where(r),
                        col,
                    )
                )
    return out


def _small_ratio(text: str, threshold: int) -> tuple[str, str] | None:
    for m in D.FRACTION_TOKEN.finditer(unicodedata.normalize("NFKC", text)):
        ratio = D.small_ratio(m.group(1), threshold)
        if ratio is not None:
            return f"{m.group(1).strip()} = {ratio}", f"{ratio} beside a hidden count"
    return None


def _first_pin(text: str, ns: list[float], threshold: int) -> tuple[str, str] | None:
    for m in D.FRACTION_TOKEN.finditer(unicodedata.normalize("NFKC", text)):
        for n in ns:
            pinned = D.pinned_count(m.group(1), n, threshold)
            if pinned is not None:
                return f"{m.group(1).strip()} × {int(n):,}", f"≈ {pinned}"
    return None


def published_keys(views: list[TableView]) -> dict[str, float]:
    """Every figure a report prints under a key (``data-key`` cells), as the reader reads it,
    and, for tables not written by the report API, each visible total row by column header."""
    keys: dict[str, float] = {}
    for view in views:
        totals = D.total_row_positions(view.labels())
        for r, row in enumerate(view.body):
            for j, cell in enumerate(row):
                n = _number(cell.text)
                if n is None:
                    continue
                if cell.attrs.get("data-key"):
                    keys.setdefault(cell.attrs["data-key"], n)
                if r in totals and len(totals) == 1 and j < len(view.columns):
                    keys.setdefault(f"header:{view.columns[j]}", n)
    return keys


def structure_of(view: TableView, keys: Mapping[str, float]) -> tuple[D.Grid, list[D.Relation]]:
    """The grid of count cells and the relations a reader can write down for one table.

    Tables from the report API state their relations (data-sums, data-group-by,
    data-margins → data-key); for any other table the reader looks for columns that add up
    in every visible row, and takes a total printed under the same column header elsewhere
    in the report as the column's total.
    """
    names = [view.columns[j] for j in view.lp_cols]
    n_rows = len(view.body)
    values = np.full((n_rows, len(names)), np.nan)
    status = np.full((n_rows, len(names)), D.UNKNOWN, dtype=np.int8)
    for r, row in enumerate(view.body):
        for k, j in enumerate(view.lp_cols):
            if j < len(row):
                status[r, k], values[r, k] = _cell_state(row[j].text)
    labels = view.labels(view.lp_cols)
    groups_at = [
        view.columns.index(g) for g in (view.declared("group-by") or []) if g in view.columns
    ]
    if not groups_at:
        groups_at = _partition_column(view, status, values)
    groups = (
        [" / ".join(row[j].text for j in groups_at if j < len(row)) for row in view.body]
        if groups_at
        else []
    )
    visible = np.where(status == D.VISIBLE, values, np.nan)
    sums = view.declared("sums") if view.marked else D.infer_sums(visible, names)
    sums = {k: v for k, v in (sums or {}).items() if k in names and all(p in names for p in v)}
    s = D.Structure(view.columns, names, labels, groups, sums)
    if view.truncated:  # rows are missing: totals cannot be checked against them
        s.total_rows = []
    else:
        margins = (
            (view.declared("margins") or {}) if view.marked else {c: f"header:{c}" for c in names}
        )
        parts = D.segments(n_rows, D.total_row_positions(labels), groups)
        for col, key in margins.items():
            if col not in names:
                continue
            known: dict[str, float | None] = {}
            for i, (p, _) in enumerate(parts):
                seg = D.segment_key(groups, p, i)
                value = keys.get(f"{key}|{seg}" if groups else key)
                if value is not None:
                    known[seg] = value
            if known:
                s.margins[col] = known
    grid = D.Grid(values, status, labels, names)
    if groups:
        declared = view.declared("partition")
        s.partition = [
            c
            for c in (declared if declared is not None else names)
            if c in names and len(_group_totals(grid, groups, names.index(c))) <= 1
        ]
    return grid, D.relations_for(s)


def _group_totals(grid: D.Grid, groups: list[str], j: int) -> set[float]:
    """Totals of column ``j`` over the groups a reader sees in full."""
    totals = set()
    for g in dict.fromkeys(groups):
        rows = [i for i, x in enumerate(groups) if x == g]
        if all(grid.status[i, j] == D.VISIBLE for i in rows):
            totals.add(float(np.sum(grid.values[rows, j])))
    return totals


def _partition_column(view: TableView, status: np.ndarray, values: np.ndarray) -> list[int]:
    """A label column whose groups add up alike in the groups a reader sees in full."""
    for j in range(len(view.columns)):
        if j in view.lp_cols:
            continue
        keys = [row[j].text if j < len(row) else "" for row in view.body]
        if not 2 <= len(set(keys)) < len(keys) or not all(_is_label(k) for k in keys):
            continue
        grid = D.Grid(values, status, keys, [])
        if any(len(_group_totals(grid, keys, c)) == 1 for c in range(values.shape[1])):
            return [j]
    return []


def _may_hold(rel: D.Relation, grid: D.Grid) -> bool:
    """False for a guessed relation that the visible cells already contradict."""
    if rel.rhs is None or any(grid.status[r, c] != D.VISIBLE for r, c, _ in rel.terms):
        return True
    total = sum(coef * grid.values[r, c] for r, c, coef in rel.terms)
    return bool(abs(total - rel.rhs) < 1e-6)


def subtraction(view: TableView, keys: Mapping[str, float], rules: D.Rules) -> list[Finding]:
    """Hidden counts of one table that its visible cells and the report's totals pin down."""
    grid, rels = structure_of(view, keys)
    rels = [rel for rel in rels if _may_hold(rel, grid)]
    if not (grid.status == D.PRIMARY).any() or not rels:
        return []
    try:
        exposures = D.audit(grid, rels, rules.threshold, rules.protection)
    except D.Inconsistent:  # a guessed partition does not hold: solve without it
        try:
            exposures = D.audit(
                grid, [r for r in rels if r.kind != "partition"], rules.threshold, rules.protection
            )
        except D.Inconsistent:
            return []  # the reader's guess at the structure does not hold: nothing to solve
    return [
        Finding(
            view.file,
            "hidden count can be worked out",
            e.interval(),
            "from visible cells and totals printed in the report",
            view.caption[:60],
            grid.rows[e.row][:60] or f"#{e.row + 1}",
            grid.cols[e.col],
        )
        for e in exposures
    ]


# ---------------------------------------------------------------------------- documents
def _decode_data_uri(uri: str) -> tuple[str, bytes] | None:
    head, _, payload = uri.partition(",")
    mime = head[5:].split(";")[0].strip().lower() or "text/plain"
    try:
        data = (
            base64.b64decode(payload, validate=False)
            if ";base64" in head.lower()
            else urllib.parse.unquote_to_bytes(payload)
        )
    except (binascii.Error, ValueError):
        return None
    return mime, data


def png_text(data: bytes) -> str:
    """Text stored in a PNG's tEXt / zTXt / iTXt chunks (matplotlib metadata, or a leak)."""
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return ""
    out, pos = [], 8
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos : pos + 4], "big")
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"tEXt":
            out.append(body.replace(b"\0", b": ").decode("latin-1"))
        elif kind == b"zTXt":
            key, _, rest = body.partition(b"\0")
            try:
                out.append(
                    key.decode("latin-1") + ": " + zlib.decompress(rest[1:]).decode("latin-1")
                )
            except zlib.error:
                out.append(key.decode("latin-1"))
        elif kind == b"iTXt":
            parts = body.split(b"\0", 4)
            text = parts[-1]
            if len(parts) == 5 and parts[1][:1] == b"\x01":
                with contextlib.suppress(zlib.error):
                    text = zlib.decompress(text)
            out.append(parts[0].decode("latin-1") + ": " + text.decode("utf-8", "replace"))
        elif kind == b"IEND":
            break
    return "\n".join(out)


@dataclass
class Context:
    """What one scan needs: the disclosure rules, the identifiers index, findings so far."""

    rules: D.Rules
    index: PiiIndex | None
    findings: list[Finding] = field(default_factory=list)


def _text_findings(name: str, where: str, text: str, ctx: Context) -> None:
    for hit in D.count_words(text, ctx.rules.threshold):
        ctx.findings.append(Finding(name, "small count in text", hit, where))
    for hit in D.derived_in_text(text, ctx.rules.threshold):
        ctx.findings.append(Finding(name, "derived figure gives away a count", hit, where))
    if ctx.index is None:
        return
    for code in ctx.index.find_codes(unicodedata.normalize("NFKC", text)):
        ctx.findings.append(Finding(name, "real code", mask(code), where))
    for hit in ctx.index.find_strings(normalise_text(text)):
        ctx.findings.append(Finding(name, "name/kana/address", mask(hit), where))


def scan_html(name: str, text: str, ctx: Context, depth: int = 0) -> None:
    """Every check on one HTML (or SVG) document; comments and data: URIs are opened too."""
    page = _Page()
    page.feed(text)
    page.close()
    for where, chunk in page.chunks:
        _text_findings(name, where, chunk, ctx)
    views = [v for t in page.tables if (v := table_view(name, t)) is not None]
    keys = published_keys(views)
    for view in views:
        ctx.findings += small_cells(view, ctx.rules)
        ctx.findings += derived_cells(view, ctx.rules)
        ctx.findings += subtraction(view, keys, ctx.rules)
    if depth < 3:
        for comment in page.comments:
            if "<" in comment:
                scan_html(f"{name}#comment", comment, ctx, depth + 1)
        for uri in page.data_uris:
            decoded = _decode_data_uri(uri)
            if decoded is not None:
                scan_bytes(f"{name}#{decoded[0]}", decoded[1], decoded[0], ctx, depth + 1)


_HTML_SUFFIXES = (".html", ".htm", ".svg", ".xml", ".xhtml")
_TEXT_SUFFIXES = (".csv", ".tsv", ".json", ".md", ".txt", ".js", ".css", ".yaml", ".yml", "")


def scan_bytes(name: str, data: bytes, kind: str, ctx: Context, depth: int = 0) -> None:
    """One file (or decoded data: URI) of any kind: ``kind`` is a suffix or a MIME type."""
    kind = kind.lower()
    if kind in ("image/png", ".png"):
        text = png_text(data)
        if text:
            _text_findings(name, "PNG text chunk", text, ctx)
        return
    if kind.startswith("image/") and kind != "image/svg+xml" or kind in (".jpg", ".jpeg", ".gif"):
        return  # pixels only; matplotlib writes PNG, which is read above
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        ctx.findings.append(
            Finding(
                name,
                "unscannable file",
                kind or "binary",
                "only text reports and PNG images may go under reports/",
            )
        )
        return
    if (
        kind in _HTML_SUFFIXES
        or kind in ("text/html", "image/svg+xml", "application/xhtml+xml")
        or re.match(r"\s*<(?:!doctype|html|table|div|p|svg)\b", text, re.I)
    ):
        scan_html(name, text, ctx, depth)
    elif kind in (".csv", ".tsv", "text/csv"):
        _text_findings(name, "text", text, ctx)
        scan_csv(name, text, kind, ctx)
    else:
        _text_findings(name, "text", text, ctx)


def scan_csv(name: str, text: str, kind: str, ctx: Context) -> None:
    """A CSV under reports/ is a table like any other."""
    try:
        frame = pd.read_csv(
            io.StringIO(text), sep="\t" if kind == ".tsv" else ",", dtype=str, keep_default_na=False
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
        return
    table = Table({}, name, [[Cell(str(c), {}, True) for c in frame.columns]], [True])
    for row in frame.itertuples(index=False):
        table.rows.append([Cell(str(v), {}, False) for v in row])
        table.in_head.append(False)
    view = table_view(name, table)
    if view is not None:
        ctx.findings += small_cells(view, ctx.rules) + derived_cells(view, ctx.rules)
        ctx.findings += subtraction(view, {}, ctx.rules)


def scan_text(
    name: str, text: str, index: PiiIndex | None, rules: D.Rules, is_html: bool
) -> list[Finding]:
    """Findings in one document's text (pure; used by `scan_reports` and tests)."""
    ctx = Context(rules, index)
    scan_bytes(name, text.encode("utf-8"), ".html" if is_html else ".txt", ctx)
    return _unique(ctx.findings)


def _unique(findings: list[Finding]) -> list[Finding]:
    return list(dict.fromkeys(findings))


def scan_reports(
    reports_dir: str | Path,
    raw_dir: str | Path | None,
    rules: D.Rules,
    index: PiiIndex | None = None,
) -> list[Finding]:
    """Every finding in every file under ``reports_dir``, recursively (empty list = clean).

    With ``raw_dir`` missing only counts are checked. Files that are neither text nor PNG are
    findings of kind "unscannable file": nothing under reports/ escapes the audit.
    """
    reports_dir = Path(reports_dir)
    if index is None and raw_dir is not None and Path(raw_dir).is_dir():
        index = load_pii_index(raw_dir)
    ctx = Context(rules, index)
    for path in sorted(p for p in reports_dir.rglob("*") if p.is_file()):
        rel = str(path.relative_to(reports_dir))
        scan_bytes(rel, path.read_bytes(), path.suffix, ctx)
    return _unique(ctx.findings)


def check_reports_main(cfg: Any, argv: list[str]) -> int:
    """``python -m helpers check-reports``: exit 1 naming file, table, row and column per hit."""
    parser = argparse.ArgumentParser(prog="python -m helpers check-reports")
    parser.add_argument("--reports", default=None, help="folder to scan (default reports/)")
    args = parser.parse_args(argv)
    reports = Path(args.reports) if args.reports else cfg_reports_dir(cfg)
    raw = cfg_data_dir(cfg) / "raw"
    rules = D.Rules.from_cfg(cfg)
    if not reports.is_dir():
        raise MimamoriError(f"{reports}: reports folder not found")
    start = time.perf_counter()
    index = None
    if raw.is_dir():
        index = load_pii_index(raw, header_map=cfg.ingest.header_map)
        print(
            f"check-reports: {len(index.codes):,} codes and {index.n_strings:,} names/"
            f"addresses from {raw}"
        )
    else:
        print(f"check-reports: {raw} not found; checking counts only (no names/codes)")
    findings = scan_reports(reports, None, rules, index=index)
    n_files = sum(1 for p in reports.rglob("*") if p.is_file())
    for f in findings:
        print(f"  {f}")
    elapsed = time.perf_counter() - start
    if findings:
        print(
            f"check-reports: FAILED: {len(findings)} finding(s) in {n_files} files "
            f"({elapsed:.1f} s)"
        )
        return 1
    print(f"check-reports: OK: {n_files} files clean ({elapsed:.1f} s)")
    return 0
