"""Validation against data_schema/: typed values, rejected rows, nulled cells, unmapped spellings.

A bad value in a required field, a primary-key field or a reference rejects the row (reason
from the reject vocabulary); a bad value in any other field becomes null and is recorded as a
cell warning, the row stays. Enum and yes/no spellings are looked up in the schema vocabulary,
after a vendor's own ``value_map`` (config/ingest.yaml), which wins; a spelling found in
neither is *unmapped* and listed with its count. Open-end sentinels (9999/12/31 ...) in an
``open_end`` date field mean "still open" (null) and are counted.

Rows reconcile: ``rows_in == rows_out + rows_rejected + duplicates_dropped``.
"""

from __future__ import annotations

import functools
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from helpers import MimamoriError
from helpers.dates import open_end_mask, parse_dates
from helpers.normalize import (
    cells_changed_by_normalize,
    normalize_changed,
    normalize_spellings,
    parse_numbers,
    spelling_key,
)
from helpers.schema import BOOL_FALSE, BOOL_TRUE, Field, TableSchema

REASONS = (
    "missing_required",
    "invalid_code",
    "invalid_date",
    "invalid_number",
    "out_of_range",
    "unknown_enum",
    "duplicate_conflict",
    "orphan_key",
    "duplicate_exact",
)
REJECT_COLUMNS = ["file", "source_row", "column", "value", "reason", "detail"]
BOOL_LOOKUP: dict[str, bool] = {spelling_key(v): True for v in BOOL_TRUE} | {
    spelling_key(v): False for v in BOOL_FALSE
}


# ----------------------------------------------------------------------------- vocabularies
def enum_lookup(f: Field) -> dict[str, str]:
    """Every schema spelling of an enum field (matching form) -> its code."""
    return dict(_enum_lookup(f))


@functools.lru_cache(maxsize=1024)
def _enum_lookup(f: Field) -> dict[str, str]:
    """``enum_lookup`` computed once per field (every block of every file asks for it)."""
    out: dict[str, str] = {}
    items = list(f.enum_lookup().items())
    keys = normalize_spellings(pd.Series([sp for sp, _ in items], dtype="string"))
    for k, (spelling, code) in zip(keys.tolist(), items, strict=True):
        if out.get(k, code) != code:
            raise MimamoriError(
                f"data_schema: field {f.name}: spelling {spelling!r} fits two "
                f"codes ({out[k]}, {code})"
            )
        out[k] = code
    return out


def value_maps(
    configured: Mapping[str, Mapping[str, object]] | None, schemas: Mapping[str, TableSchema]
) -> dict[str, dict[str, dict[str, object]]]:
    """``ingest.value_map`` ({"table.field": {vendor value: code}}) checked against the schemas,
    as {table: {field: {matching form: code or bool}}}."""
    out: dict[str, dict[str, dict[str, object]]] = {}
    for key, mapping in (configured or {}).items():
        where = f"config/ingest.yaml: value_map: {key!r}"
        table, _, fname = str(key).partition(".")
        if table not in schemas or fname not in schemas[table].field_names:
            raise MimamoriError(
                f"{where}: not a table.field of data_schema/ (e.g. household_history.relationship)"
            )
        f = schemas[table].field(fname)
        if f.type not in ("enum", "bool"):
            raise MimamoriError(
                f"{where}: {fname} is a {f.type} field; value maps are for enum and yes/no fields"
            )
        out.setdefault(table, {})[fname] = {
            spelling_key(str(v)): _target(f, c, where) for v, c in (mapping or {}).items()
        }
    return out


def _target(f: Field, code: object, where: str) -> object:
    if f.type == "bool":
        value = BOOL_LOOKUP.get(spelling_key(str(code)))
        if value is None:
            raise MimamoriError(f"{where}: {code!r} is not yes/no (write true or false)")
        return value
    codes = [v.code for v in f.values]
    if str(code) not in codes:
        raise MimamoriError(f"{where}: {code!r} is not a code of {f.name}; codes: {codes}")
    return str(code)


# ----------------------------------------------------------------------------- one field
@dataclass
class Parsed:
    """One field of one table: typed values and, per row, why a value was not accepted."""

    typed: pd.Series
    reason: pd.Series
    detail: pd.Series
    unmapped: dict[str, int] = field(default_factory=dict)  # spelling -> rows
    open_ends: int = 0  # sentinels read as "still open"
    bad: np.ndarray | None = None  # per row: a reason is given (``reason.notna()``)
    codes: np.ndarray | None = None  # per row: its distinct value (-1: blank)
    values: object = None  # the typed distinct values (``typed`` is ``values.take(codes)``)


_PLAIN_ASCII = r"^[\x21-\x7e]+$"  # printable ASCII, no whitespace: NFKC keeps it as it is


def _fullmatch(v: pd.Series, pattern: str) -> np.ndarray:
    """``v.str.fullmatch(pattern)`` (False for <NA>)."""
    return _fullmatch_cells(pa.array(v.to_numpy(object), pa.string(), from_pandas=True), pattern)


def _fullmatch_cells(cells: pa.Array, pattern: str) -> np.ndarray:
    """``_fullmatch`` of Arrow texts: texts of printable ASCII are matched in one pyarrow (RE2)
    pass, which reads a pattern on them as ``re`` does; a pattern RE2 cannot read, and every
    other text, go through ``re``."""
    ok = np.zeros(len(cells), dtype=bool)
    plain = pc.fill_null(pc.match_substring_regex(cells, _PLAIN_ASCII), False)
    plain_np = plain.to_numpy(zero_copy_only=False).astype(bool)
    try:
        fast = pc.match_substring_regex(cells.filter(plain), f"^(?:{pattern})$")
        ok[plain_np] = fast.to_numpy(zero_copy_only=False).astype(bool)
        rest = ~plain_np
    except pa.ArrowInvalid:
        rest = np.ones(len(cells), dtype=bool)
    if rest.any():
        v = pd.Series(cells.filter(pa.array(rest)).to_pylist(), dtype="string")
        ok[rest] = v.str.fullmatch(pattern).fillna(False).to_numpy(dtype=bool)
    return ok


# ----------------------------------------------------------------------------- text in Arrow
TEXT_TYPES = ("code", "string", "text")  # many distinct values: kept in Arrow, never objects


def _replaced(cells: pa.Array, mask: np.ndarray, texts: list) -> pa.Array:
    """``cells`` with the ``mask`` positions replaced by ``texts`` (None: null)."""
    return pc.replace_with_mask(cells, pa.array(mask), pa.array(texts, pa.string()))


def _text_uniques(uniques) -> pa.Array:
    """``normalized_uniques`` as Arrow text: the few cells normalisation changes are redone one
    by one (``normalize.normalize_changed``), the others kept as they are."""
    arr = getattr(uniques, "array", uniques)
    if isinstance(arr, pd.arrays.ArrowExtensionArray) and pa.types.is_string(
        arr.dtype.pyarrow_dtype
    ):
        cells = arr._pa_array.combine_chunks()
    else:
        cells = pa.array(np.asarray(uniques, dtype=object), pa.string(), from_pandas=True)
    if not len(cells):
        return cells
    changed = cells_changed_by_normalize(pc.fill_null(cells, ""))
    if not changed.any():
        return cells
    return _replaced(cells, changed, list(normalize_changed(cells, changed)))


def _nfkc_cells(cells: pa.Array) -> pa.Array:
    """``normalize.nfkc`` of Arrow texts: only texts that are not ASCII are normalised."""
    other = ~pc.fill_null(pc.string_is_ascii(cells), True).to_numpy(zero_copy_only=False)
    if not other.any():
        return cells
    texts = cells.filter(pa.array(other)).to_pylist()
    return _replaced(cells, other, [unicodedata.normalize("NFKC", t) for t in texts])


def _code_cells(cells: pa.Array, f: Field, reason: np.ndarray, detail: np.ndarray) -> pa.Array:
    """``_code`` of Arrow texts."""
    v = _nfkc_cells(cells)
    if f.pattern:
        bad = ~pc.is_null(cells).to_numpy(zero_copy_only=False) & ~_fullmatch_cells(v, f.pattern)
        reason[bad] = "invalid_code"
        detail[bad] = f"does not match {f.pattern}"
        if bad.any():
            v = _replaced(v, bad, [None] * int(bad.sum()))
    return v


def _text_values(cells: pa.Array) -> pd.api.extensions.ExtensionArray:
    """Arrow texts as pandas ``string`` values backed by Arrow (no Python object per text)."""
    return pd.arrays.ArrowStringArray(pc.cast(cells, pa.large_string()))


def _number(u: pd.Series, f: Field, reason: np.ndarray, detail: np.ndarray) -> pd.Series:
    values, errs = parse_numbers(u, integer=f.type == "int", unit=f.unit)
    bad = errs.notna().to_numpy()
    reason[bad] = "invalid_number"
    detail[bad] = errs[bad].to_numpy()
    vals = values.to_numpy()
    present = u.notna().to_numpy()
    unit = f" {f.unit}" if f.unit else ""
    for bound, side, fails in (
        (f.min, "below minimum", np.less),
        (f.max, "above maximum", np.greater),
    ):
        if bound is None:
            continue
        out = ~bad & present & fails(np.nan_to_num(vals, nan=float(bound)), bound)
        reason[out] = "out_of_range"
        detail[out] = f"{side} {bound:g}{unit}"
        vals = np.where(out, np.nan, vals)
    if f.type == "float":
        return pd.Series(vals, dtype="float64")
    huge = np.abs(np.nan_to_num(vals)) > 2**53
    reason[huge] = "out_of_range"
    detail[huge] = "too large for an integer"
    vals = np.where(huge, np.nan, vals)
    typed = pd.Series(pd.array(np.where(np.isnan(vals), 0, vals).astype("int64"), dtype="Int64"))
    typed[np.isnan(vals)] = pd.NA
    return typed


def _date(
    u: pd.Series, f: Field, reason: np.ndarray, detail: np.ndarray
) -> tuple[pd.Series, np.ndarray]:
    sentinel = open_end_mask(u).to_numpy() if f.open_end else np.zeros(len(u), dtype=bool)
    dates, errs = parse_dates(u.mask(sentinel))
    bad = errs.notna().to_numpy()
    reason[bad] = "invalid_date"
    detail[bad] = errs[bad].to_numpy()
    return dates, sentinel


def _vocabulary(
    u: pd.Series, f: Field, vmap: Mapping[str, object], reason: np.ndarray, detail: np.ndarray
) -> tuple[pd.Series, np.ndarray]:
    keys = normalize_spellings(u)
    lookup: dict[str, object] = dict(BOOL_LOOKUP) if f.type == "bool" else dict(_enum_lookup(f))
    lookup.update(vmap)  # a vendor's own codes win over the schema's spellings
    mapped = keys.map(lookup)
    bad = u.notna().to_numpy() & mapped.isna().to_numpy()
    reason[bad] = "unknown_enum"
    if f.type == "bool":
        detail[bad] = "not a yes/no value (有/無, 該当/非該当, ○/×, はい/いいえ, 1/0, ...)"
        return mapped.astype("boolean"), bad
    detail[bad] = f"not a code, label or listed spelling of {f.name} (add it to ingest.value_map)"
    return mapped.astype("string"), bad


def normalized_uniques(uniques) -> pd.Series:
    """``normalize_cells`` of the distinct cells of a column (``_text_uniques`` as pandas
    ``string``): most cells are already normal, only the others are normalised one by one."""
    cells = _text_uniques(uniques)
    return pd.Series(cells.to_numpy(zero_copy_only=False), dtype="string")


def parse_field(raw: pd.Series, f: Field, value_map: Mapping[str, object] | None = None) -> Parsed:
    """Raw text column -> typed values and per-row reject reasons; computed on distinct values.

    Blank cells give <NA> with reason ``missing_required`` only when the field is required.
    """
    codes, uniques = pd.factorize(pd.Series(raw, copy=False), use_na_sentinel=True)
    if f.type in TEXT_TYPES:
        cells = _text_uniques(uniques)
        reason = np.full(len(cells), None, dtype=object)
        detail = np.full(len(cells), None, dtype=object)
        blank = pc.is_null(cells).to_numpy(zero_copy_only=False)
        if f.type == "code":
            cells = _code_cells(cells, f, reason, detail)
        seen = _Seen(pd.Series(_text_values(cells)), reason, detail, blank)
    else:
        seen = _typed_uniques(normalized_uniques(uniques), f, value_map or {})
    return _by_row(pd.Series(raw).index, f, codes, seen)


@dataclass
class _Seen:
    """A field's distinct values, typed, with their reject reasons and what was noticed."""

    typed: pd.Series  # the typed distinct values
    reason: np.ndarray
    detail: np.ndarray
    blank: np.ndarray  # per distinct value: blank (a sentinel of an open end counts)
    unmapped: np.ndarray | None = None  # per distinct value: no code matched it
    sentinel: np.ndarray | None = None  # per distinct value: read as "still open"
    texts: pd.Series | None = None  # the normalised spellings (for the unmapped ones)


def _typed_uniques(u: pd.Series, f: Field, value_map: Mapping[str, object]) -> _Seen:
    reason = np.full(len(u), None, dtype=object)
    detail = np.full(len(u), None, dtype=object)
    unmapped_u = np.zeros(len(u), dtype=bool)
    sentinel_u = np.zeros(len(u), dtype=bool)
    if f.type in ("int", "float"):
        typed = _number(u, f, reason, detail)
    elif f.type == "date":
        typed, sentinel_u = _date(u, f, reason, detail)
    elif f.type in ("bool", "enum"):
        typed, unmapped_u = _vocabulary(u, f, value_map, reason, detail)
    else:
        raise ValueError(f"{f.name}: unknown field type {f.type!r}")
    blank = u.isna().to_numpy() | sentinel_u
    return _Seen(typed, reason, detail, blank, unmapped_u, sentinel_u, u)


def _by_row(idx: pd.Index, f: Field, codes: np.ndarray, seen: _Seen) -> Parsed:
    """The distinct values' types and reasons mapped back to the rows (``codes``)."""
    reason, detail = seen.reason, seen.detail
    if f.required:
        reason[seen.blank] = "missing_required"
        detail[seen.blank] = "required field is blank"
    has = codes >= 0
    bad_u = pd.notna(reason)
    bad = np.zeros(len(codes), dtype=bool)
    bad[has] = bad_u[codes[has]]
    if f.required:
        bad |= ~has
    out_reason = np.empty(len(codes), dtype=object)  # all None
    out_detail = out_reason  # no reason: one array of None serves both
    if bad.any():  # the reasons of the distinct values, mapped back to their rows
        out_detail = np.empty(len(codes), dtype=object)
        out_reason[has] = reason[codes[has]]
        out_detail[has] = detail[codes[has]]
        if f.required:
            out_reason[~has] = "missing_required"
            out_detail[~has] = "required field is blank"
    counts = np.bincount(codes[has], minlength=len(reason))
    unmapped = {}
    if seen.unmapped is not None and seen.texts is not None:
        hit = seen.unmapped
        unmapped = {str(v): int(c) for v, c in zip(seen.texts[hit], counts[hit], strict=True)}
    typed = seen.typed
    return Parsed(
        codes=codes,
        values=typed._values,
        typed=pd.Series(typed.array.take(codes, allow_fill=True), index=idx),
        reason=pd.Series(out_reason, index=idx, dtype=object, copy=False),
        detail=pd.Series(out_detail, index=idx, dtype=object, copy=False),
        unmapped=unmapped,
        open_ends=int(counts[seen.sentinel].sum()) if seen.sentinel is not None else 0,
        bad=bad,
    )


# ----------------------------------------------------------------------------- one table
@dataclass
class TableResult:
    """A validated table: accepted typed rows, rejects, cell warnings and what was noticed."""

    table: str
    typed_all: pd.DataFrame  # every row read, typed (invalid cells <NA>), for reference keys
    valid: pd.DataFrame  # accepted rows (typed, unmasked) with source_file/source_row
    rejects: pd.DataFrame  # REJECT_COLUMNS; includes duplicate_exact lines (dropped copies)
    rows_in: int
    duplicates_dropped: int
    warnings: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=REJECT_COLUMNS))
    unmapped: pd.DataFrame = field(
        default_factory=lambda: pd.DataFrame(columns=["field", "value", "count", "action"])
    )
    open_ends: dict[str, int] = field(default_factory=dict)
    info: dict = field(default_factory=dict)

    @property
    def rows_rejected(self) -> int:
        r = self.rejects[self.rejects["reason"] != "duplicate_exact"]
        return int(r[["file", "source_row"]].drop_duplicates().shape[0])


def row_level(f: Field, schema: TableSchema) -> bool:
    """Whether a bad value in this field rejects the row (required, key or reference)."""
    return schema.rejects_row(f.name)


def _reject_frame(
    raw: pd.DataFrame, mask: np.ndarray, column: str, values, reason, detail
) -> pd.DataFrame:
    sel = raw.loc[mask]
    return pd.DataFrame(
        {
            "file": sel["source_file"].to_numpy(),
            "source_row": sel["source_row"].to_numpy(),
            "column": column,
            "value": np.asarray(values, dtype=object)[mask] if not np.isscalar(values) else values,
            "reason": np.asarray(reason, dtype=object)[mask]
            if not isinstance(reason, str)
            else reason,
            "detail": np.asarray(detail, dtype=object)[mask]
            if not isinstance(detail, str)
            else detail,
        },
        columns=REJECT_COLUMNS,
    )


def _frames(parts: list[pd.DataFrame]) -> pd.DataFrame:
    parts = [p for p in parts if len(p)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=REJECT_COLUMNS)


def _fields(
    raw: pd.DataFrame, schema: TableSchema, value_map: Mapping[str, Mapping[str, object]]
) -> tuple[pd.DataFrame, np.ndarray, list[pd.DataFrame], list[pd.DataFrame], dict]:
    """Parse every field: typed frame, rows to reject, reject and warning lines, what was seen."""
    typed: dict[str, pd.Series] = {}
    rejects: list[pd.DataFrame] = []
    warnings: list[pd.DataFrame] = []
    row_bad = np.zeros(len(raw), dtype=bool)
    unmapped: list[dict] = []
    open_ends: dict[str, int] = {}
    parsed: dict[str, tuple] = {}
    for f in schema.fields:
        p = parse_field(raw[f.name], f, value_map.get(f.name))
        bad = p.bad if p.bad is not None else p.reason.notna().to_numpy()
        rowwise = row_level(f, schema)
        any_bad = bool(bad.any())
        parsed[f.name] = (p.codes, p.values, None if rowwise or not any_bad else bad)
        typed[f.name] = p.typed if rowwise or not any_bad else p.typed.mask(bad)
        if any_bad:
            values = np.full(len(raw), None, dtype=object)  # raw text of the bad cells only
            values[bad] = raw[f.name][bad].astype(object).to_numpy()
            lines = _reject_frame(
                raw, bad, f.name, values, p.reason.to_numpy(), p.detail.to_numpy()
            )
            (rejects if rowwise else warnings).append(lines)
            row_bad |= bad if rowwise else False
        action = "row rejected" if rowwise else "cell set to blank"
        unmapped += [
            {"field": f.name, "value": v, "count": n, "action": action}
            for v, n in sorted(p.unmapped.items(), key=lambda kv: (-kv[1], kv[0]))
        ]
        if p.open_ends:
            open_ends[f.name] = p.open_ends
    typed_df = pd.DataFrame(typed)
    typed_df["source_file"] = raw["source_file"].to_numpy()
    typed_df["source_row"] = raw["source_row"].to_numpy()
    seen = {"unmapped": unmapped, "open_ends": open_ends, "parsed": parsed}
    return typed_df, row_bad, rejects, warnings, seen


def _duplicates(
    raw: pd.DataFrame, typed_df: pd.DataFrame, row_bad: np.ndarray, names: list[str]
) -> tuple[np.ndarray, pd.DataFrame]:
    """Exact duplicates among clean rows (same value in every field): the first copy stays."""
    clean_idx = np.flatnonzero(~row_bad)
    clean = typed_df.iloc[clean_idx]
    dup = clean.duplicated(subset=names, keep="first").to_numpy()
    dup_mask = np.zeros(len(raw), dtype=bool)
    dup_mask[clean_idx[dup]] = True
    if not dup_mask.any():
        return dup_mask, pd.DataFrame(columns=REJECT_COLUMNS)
    first_row = clean.groupby(names, dropna=False, sort=False)["source_row"].transform("first")
    firsts = np.zeros(len(raw), dtype=object)
    firsts[clean_idx] = first_row.to_numpy()
    detail = np.array(
        [f"exact copy of row {r}; dropped (counted, not rejected)" for r in firsts], dtype=object
    )
    return dup_mask, _reject_frame(raw, dup_mask, "*", "", "duplicate_exact", detail)


def _conflicts(
    raw: pd.DataFrame, typed_df: pd.DataFrame, remaining: np.ndarray, schema: TableSchema
) -> tuple[np.ndarray, pd.DataFrame]:
    """Primary-key conflicts among the remaining rows: every row of the key group is rejected."""
    pk = list(schema.primary_key)
    conflict = np.zeros(len(raw), dtype=bool)
    if not pk:
        return conflict, pd.DataFrame(columns=REJECT_COLUMNS)
    rem_idx = np.flatnonzero(remaining)
    in_group = typed_df.iloc[rem_idx].duplicated(subset=pk, keep=False).to_numpy()
    conflict[rem_idx[in_group]] = True
    if not conflict.any():
        return conflict, pd.DataFrame(columns=REJECT_COLUMNS)
    grp = typed_df.loc[conflict]
    others = [n for n in schema.field_names if n not in pk]
    nunique = grp.groupby(pk, dropna=False)[others].nunique(dropna=False)
    differing = nunique.apply(lambda r: ", ".join(r.index[r > 1]), axis=1)
    gsize = grp.groupby(pk, dropna=False)["source_row"].transform("size")
    diff_txt = grp[pk].merge(differing.rename("d").reset_index(), on=pk, how="left")["d"].to_numpy()
    det = np.zeros(len(raw), dtype=object)
    det[conflict] = [
        f"{s} rows share this key with different {d}" for s, d in zip(gsize, diff_txt, strict=True)
    ]
    keytxt = np.zeros(len(raw), dtype=object)
    keytxt[conflict] = raw.loc[conflict, pk].astype(str).agg("|".join, axis=1).to_numpy()
    return conflict, _reject_frame(raw, conflict, "+".join(pk), keytxt, "duplicate_conflict", det)


def validate_table(
    raw: pd.DataFrame,
    schema: TableSchema,
    value_map: Mapping[str, Mapping[str, object]] | None = None,
) -> TableResult:
    """Schema-driven validation of one table's raw rows (all its files concatenated).

    Field checks (type, pattern, range, vocabulary, required) come from the YAML schema; then
    exact duplicates are dropped (first copy kept) and primary-key conflicts reject every row
    of the key group. References are checked across tables by ``check_references``.
    """
    raw = raw.reset_index(drop=True)
    typed_df, row_bad, rejects, warnings, seen = _fields(raw, schema, value_map or {})
    dup_mask, dups = _duplicates(raw, typed_df, row_bad, schema.field_names)
    conflict, conflicts = _conflicts(raw, typed_df, ~row_bad & ~dup_mask, schema)
    accepted = ~row_bad & ~dup_mask & ~conflict
    return TableResult(
        table=schema.table,
        typed_all=typed_df,
        valid=typed_df.loc[accepted].reset_index(drop=True),
        rejects=_frames([*rejects, dups, conflicts])[REJECT_COLUMNS],
        rows_in=len(raw),
        duplicates_dropped=int(dup_mask.sum()),
        warnings=_frames(warnings)[REJECT_COLUMNS],
        unmapped=pd.DataFrame(seen["unmapped"], columns=["field", "value", "count", "action"]),
        open_ends=seen["open_ends"],
    )


# ----------------------------------------------------------------------------- across tables
def _known(results: Mapping[str, TableResult], target: str) -> np.ndarray:
    ref_table, ref_field = target.split(".", 1)
    return results[ref_table].typed_all[ref_field].dropna().unique()


def linkage(results: Mapping[str, TableResult], schemas: Mapping[str, TableSchema]) -> dict:
    """How each table's accepted records link to their references, counted before orphans are
    rejected (afterwards every remaining record links by construction). Tables keyed by
    household only are checked against the household history (information, not a rejection)."""
    out: dict[str, dict] = {}
    for table, res in results.items():
        links = dict(schemas[table].references)
        if (
            not links
            and "household_code" in res.valid
            and "household_history" in results
            and table != "household_history"
        ):
            links = {"household_code": "household_history.household_code"}
        for fname, target in links.items():
            if target.split(".", 1)[0] not in results:
                continue
            col = res.valid[fname]
            blank = int(col.isna().sum())
            linked = int(col.isin(_known(results, target)).sum())
            n = len(col)
            out.setdefault(table, {})[fname] = {
                "references": target,
                "records": n,
                "key_blank": blank,
                "linked": linked,
                "not_found": n - blank - linked,
                "linkage_rate": linked / n if n else None,
            }
    return out


def orphan_rejects(rows: pd.DataFrame, fname: str, target: str) -> pd.DataFrame:
    """Reject lines for ``rows`` whose ``fname`` code is not in ``target`` (table.field)."""
    return pd.DataFrame(
        {
            "file": rows["source_file"].to_numpy(),
            "source_row": rows["source_row"].to_numpy(),
            "column": fname,
            "value": rows[fname].astype(object).to_numpy(),
            "reason": "orphan_key",
            "detail": f"not found in {target}",
        }
    )


def check_references(
    results: Mapping[str, TableResult], schemas: Mapping[str, TableSchema]
) -> dict:
    """Reject accepted rows whose reference (``references:``) is found nowhere in the target export.

    A code counts as present when it appears, validly spelt, in any row of the referenced
    export (even a row rejected for another reason), so one bad resident row does not cascade
    into orphaning every record of that person. Returns what was checked per table.
    """
    checked: dict[str, dict] = {}
    for table, res in results.items():
        info: dict[str, dict] = {}
        for fname, target in schemas[table].references.items():
            ref_table = target.split(".", 1)[0]
            if ref_table not in results:
                info[fname] = {
                    "references": target,
                    "checked": False,
                    "orphans": 0,
                    "note": f"{ref_table} export absent; not checked",
                }
                continue
            col = res.valid[fname]
            orphan = (col.notna() & ~col.isin(_known(results, target))).to_numpy()
            info[fname] = {"references": target, "checked": True, "orphans": int(orphan.sum())}
            if orphan.any():
                rej = orphan_rejects(res.valid.loc[orphan], fname, target)
                res.rejects = pd.concat([res.rejects, rej], ignore_index=True)
                res.valid = res.valid.loc[~orphan].reset_index(drop=True)
        checked[table] = info
    return checked
