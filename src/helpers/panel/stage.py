"""The time-aware panel: one row per (child, fiscal year), features as of 1 April, labels after.

Lesson 5 of the reference analyses: an event recorded after the difficulty is not a predictor.
So every fiscal year t has an as-of date (1 April of t); features use records dated strictly
before it, labels come from the outcome window that starts on it, and tables whose schema role
is ``post_outcome`` may only mark a child as already known. The panel is built one fiscal year
at a time and streamed into a parquet writer, so memory stays bounded by one year.

``python -m helpers panel`` writes data/panel/panel.parquet,
feature_catalogue.csv, missingness.csv and leakage_check.json.
"""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from helpers import MimamoriError
from helpers.config import PanelSettings, Settings
from helpers.io import append_audit, atomic_path, write_csv, write_json
from helpers.panel import features as F
from helpers.panel.coverage import (
    Coverage,
    blank_absent,
    empty_table,
    household_windows,
    label_observed,
    source_coverage,
)
from helpers.paths import Paths, mart_file, paths
from helpers.schema import load_schemas

END_DATE_FIELDS = ("end_date", "loss_date", "move_out_date", "death_date", "closed_date")


# ---------------------------------------------------------------------------------------------
# Loading the mart
# ---------------------------------------------------------------------------------------------

REQUIRED_TABLES = ("residents",)  # the spine; any other absent source only blanks features


def absent_tables(mart_dir: Path) -> list[str]:
    """Schema tables without a mart file (their export was absent at ingest)."""
    return sorted(t for t in load_schemas() if not mart_file(Path(mart_dir), t).exists())


def load_mart(mart_dir: Path, tables: list[str] | None = None) -> dict[str, pd.DataFrame]:
    """Read data/mart/<table>.parquet for every schema table (or ``tables``) and check the
    columns against the schema: the contract in docs/architecture.md "data/mart".

    An optional table without a file (no export) is an empty table with the mart's columns;
    ``absent_tables`` names them so every feature they feed is NaN, never 0.
    """
    mart_dir = Path(mart_dir)
    schemas = load_schemas()
    names = list(tables) if tables is not None else list(schemas)
    out: dict[str, pd.DataFrame] = {}
    for name in names:
        if name not in schemas:
            raise MimamoriError(f"unknown mart table {name!r}; known: {sorted(schemas)}")
        path = mart_file(mart_dir, name)
        if not path.exists():
            if name in REQUIRED_TABLES:
                raise MimamoriError(f"{path}: not found (run `python -m helpers ingest` first)")
            out[name] = empty_table(schemas[name])
            continue
        df = pd.read_parquet(path)
        out[name] = check_mart_table(df, name, str(path))
    return out


def check_mart_table(df: pd.DataFrame, table: str, where: str | None = None) -> pd.DataFrame:
    """Fail with a clear message when a mart table does not follow the schema."""
    schema = load_schemas()[table]
    where = where or f"mart table {table}"
    expected = [f.name for f in schema.mart_fields]
    missing = [c for c in expected if c not in df.columns]
    if missing:
        raise MimamoriError(
            f"{where}: column(s) {missing} missing (schema data_schema/{table}.yaml)"
        )
    for f in schema.mart_fields:
        col = df[f.name]
        if f.type == "date" and not pd.api.types.is_datetime64_any_dtype(col):
            raise MimamoriError(f"{where}: column {f.name}: expected datetime64, got {col.dtype}")
        if f.type in ("int", "float") and not pd.api.types.is_numeric_dtype(col):
            raise MimamoriError(f"{where}: column {f.name}: expected a number, got {col.dtype}")
    # no primary-key check: month masking legitimately makes keys with a date collide
    # (two progress records in one month); counts below count every record
    return df[expected]


def predictor_tables(mart: dict[str, pd.DataFrame], schemas=None) -> dict[str, pd.DataFrame]:
    """The tables features may read: every table whose schema role is not post_outcome."""
    schemas = schemas or load_schemas()
    return {t: df for t, df in mart.items() if schemas[t].role != "post_outcome"}


KEY_DOMAINS = ("resident_code", "household_code", "student_id", "consultation_id")
# columns coded in another key domain: 名寄せ candidate_code holds a resident pseudonym
KEY_ALIASES = {"resident_code": ("candidate_code",)}


def encode_keys(
    mart: dict[str, pd.DataFrame],
) -> tuple[dict[str, pd.DataFrame], dict[str, pd.Index]]:
    """Replace pseudonym strings by Int64 positions in one sorted index per key domain.

    Joins, ``isin`` and group-bys on integers are several times faster than on strings; the
    order of the codes is the order of the pseudonyms, so results do not change.
    """
    decoders: dict[str, pd.Index] = {}
    out = dict(mart)
    for key in KEY_DOMAINS:
        cols = [
            (t, c)
            for t, df in mart.items()
            for c in (key, *KEY_ALIASES.get(key, ()))
            if c in df.columns
        ]
        if not cols:
            continue
        arrays = [mart[t][c].to_numpy(dtype=object, na_value=None) for t, c in cols]
        codes, uniques = pd.factorize(np.concatenate(arrays), sort=True)
        decoders[key] = pd.Index(uniques, dtype="object")
        start = 0
        for (t, c), arr in zip(cols, arrays, strict=True):
            part = codes[start : start + len(arr)]
            start += len(arr)
            df = out[t].copy() if out[t] is mart[t] else out[t]
            df[c] = pd.arrays.IntegerArray(part.astype("int64"), part < 0)
            out[t] = df
    return out, decoders


KEY_COLUMNS = {c: key for key in KEY_DOMAINS for c in (key, *KEY_ALIASES.get(key, ()))}


def _keys_are_text(mart_dir: Path, schemas: dict) -> bool:
    """Whether every key column in the mart files is text (pseudonyms), so Arrow's byte order
    of the values is the order pandas sorts them in."""
    for name in schemas:
        path = mart_file(mart_dir, name)
        if not path.exists():
            continue
        for field in pq.read_schema(path):
            kind = field.type
            if pa.types.is_dictionary(kind):
                kind = kind.value_type
            text = pa.types.is_string(kind) or pa.types.is_large_string(kind)
            if field.name in KEY_COLUMNS and not (text or pa.types.is_null(kind)):
                return False
    return True


def load_encoded_mart(mart_dir: Path) -> tuple[dict[str, pd.DataFrame], dict[str, pd.Index]]:
    """``encode_keys(load_mart(mart_dir))`` without holding the pseudonyms as Python strings:
    key columns are read as Arrow arrays, each key domain's sorted dictionary is built by
    Arrow (byte order = the order of the pseudonyms) and the codes are looked up in it.
    Other text columns stay Arrow-backed (``string[pyarrow]``: same values, no Python
    object per cell), so the frames are small and can be shared with forked workers.
    Same frames and decoders, several times faster and in a fraction of the memory at L."""
    mart_dir = Path(mart_dir)
    schemas = load_schemas()
    if not _keys_are_text(mart_dir, schemas):  # not the mart contract: the pandas way
        return encode_keys(load_mart(mart_dir))
    frames: dict[str, pd.DataFrame] = {}
    keys: dict[tuple[str, str], pa.ChunkedArray] = {}
    for name, schema in schemas.items():
        path = mart_file(mart_dir, name)
        key_cols = [f.name for f in schema.mart_fields if f.name in KEY_COLUMNS]
        if not path.exists():
            if name in REQUIRED_TABLES:
                raise MimamoriError(f"{path}: not found (run `python -m helpers ingest` first)")
            frames[name] = empty_table(schema).drop(columns=key_cols)
            keys.update({(name, c): pa.chunked_array([], pa.large_string()) for c in key_cols})
            continue
        table = pq.read_table(path)
        found = [c for c in key_cols if c in table.column_names]
        keys.update({(name, c): table.column(c) for c in found})
        frames[name] = _arrow_frame(table.drop_columns(found))
        del table
    decoders: dict[str, pd.Index] = {}
    for key in KEY_DOMAINS:
        cols = [tc for tc in keys if KEY_COLUMNS[tc[1]] == key]
        if cols:
            decoders[key] = _encode_domain(frames, [(tc, keys.pop(tc)) for tc in cols])
    return {
        t: check_mart_table(df, t, str(mart_file(mart_dir, t))) for t, df in frames.items()
    }, decoders


def _arrow_frame(table: pa.Table) -> pd.DataFrame:
    """A mart table as pandas the way ``pd.read_parquet`` reads it, except that text columns
    are ``string[pyarrow]`` (Arrow buffers) rather than one Python string per cell."""
    text = pd.StringDtype("pyarrow")
    mapper = {pa.string(): text, pa.large_string(): text}.get
    return table.to_pandas(types_mapper=mapper)


def _encode_domain(
    frames: dict[str, pd.DataFrame], columns: list[tuple[tuple[str, str], pa.ChunkedArray]]
) -> pd.Index:
    """Put Int64 key codes of one key domain into ``frames`` (positions in the sorted
    pseudonyms) and return that sorted index: one hash pass over all the domain's columns."""
    chunks = [chunk.cast(pa.large_string()) for _, arr in columns for chunk in arr.chunks]
    allkeys = pa.concat_arrays(chunks) if chunks else pa.array([], pa.large_string())
    encoded = pc.dictionary_encode(allkeys)
    del allkeys, chunks
    dictionary = encoded.dictionary
    order = pc.sort_indices(dictionary).to_numpy()
    rank = np.empty(len(order), dtype="int64")
    rank[order] = np.arange(len(order), dtype="int64")
    indices = encoded.indices
    missing = indices.is_null().to_numpy(zero_copy_only=False)
    codes = np.zeros(len(indices), dtype="int64")
    if len(rank):
        codes = rank[pc.fill_null(indices, 0).to_numpy().astype("int64")]
    codes[missing] = -1
    start = 0
    for (t, c), arr in columns:
        part = codes[start : start + len(arr)]
        start += len(arr)
        frames[t][c] = pd.arrays.IntegerArray(part.copy(), part < 0)
    values = dictionary.take(pa.array(order)).to_numpy(zero_copy_only=False)
    return pd.Index(values, dtype="object")


def decode(codes: pd.Series, decoder: pd.Index) -> pd.Series:
    """Int64 key positions back to pseudonym strings (NA stays NA)."""
    arr = codes.astype("Int64")
    values = np.full(len(arr), None, dtype=object)
    ok = arr.notna().to_numpy()
    values[ok] = decoder.to_numpy()[arr[ok].to_numpy(dtype="int64")]
    return pd.Series(values, index=codes.index, dtype="string")


# ---------------------------------------------------------------------------------------------
# Spine and labels
# ---------------------------------------------------------------------------------------------


def as_of_date(fiscal_year: int, panel_cfg: PanelSettings) -> pd.Timestamp:
    month, day = panel_cfg.as_of_month_day
    return pd.Timestamp(year=int(fiscal_year), month=int(month), day=int(day))


def resident_spine(
    residents: pd.DataFrame, fiscal_year: int, panel_cfg: PanelSettings
) -> pd.DataFrame:
    """Children resident on the as-of date and aged age_min..age_max; index = child_id."""
    on = as_of_date(fiscal_year, panel_cfg)
    res = residents.drop_duplicates("resident_code")
    res = res[F.resident_on(res, on)]
    age = F.age_on(res["birth_date"], on)
    keep = (age >= panel_cfg.age_min) & (age <= panel_cfg.age_max)
    spine = res[keep.to_numpy()].set_index("resident_code").sort_index()
    spine.index.name = "child_id"
    return spine


def outcome_dates(tables: dict[str, pd.DataFrame], target: str) -> pd.Series:
    """First date each child's outcome was recorded (index resident_code).

    ``young_carer`` = a consultation with young_carer_determined true; any other target is a
    consultation_type code (physical_abuse, neglect, ...).
    """
    cons = tables["consultations"]
    if target == "young_carer":
        hit = cons["young_carer_determined"].astype("boolean").fillna(False).astype(bool)
    else:
        known = {c for c, _ in F._enum("consultations", "consultation_type")}
        if target not in known:
            raise MimamoriError(
                f"config/run.yaml: targets: {target!r} is neither young_carer nor a "
                f"consultation_type code ({sorted(known)})"
            )
        hit = cons["consultation_type"] == target
    return cons.loc[hit].groupby("resident_code")["received_date"].min()


def label_columns(
    spine: pd.DataFrame,
    tables: dict[str, pd.DataFrame],
    fiscal_year: int,
    cfg: Settings,
    coverage: Coverage | None = None,
) -> pd.DataFrame:
    """``label_<t>``: first recorded within [as-of, as-of + n years), NaN when that window is
    not complete in the export (it ends after ``run.export_date``, else after the last date
    the consultation system's export holds); ``known_<t>``: recorded before the as-of date."""
    on = as_of_date(fiscal_year, cfg.panel)
    n_years = cfg.panel.outcome_window_years
    window_end = on + pd.DateOffset(years=n_years)
    coverage = coverage if coverage is not None else source_coverage(tables, (), cfg)
    observed = label_observed(on, n_years, coverage)
    out = pd.DataFrame(index=spine.index)
    for target in cfg.run.targets:
        first = outcome_dates(tables, target).reindex(spine.index)
        label = ((first >= on) & (first < window_end)).astype("float64")
        out[f"label_{target}"] = label if observed else np.nan
        out[f"known_{target}"] = (first < on).astype("float64")
    cc = tables.get("case_conference")
    if cc is not None:
        reg = cc.loc[cc["registered_date"] < on, "resident_code"].unique()
        out["known_case_conference"] = spine.index.isin(reg).astype("float64")
    else:
        out["known_case_conference"] = np.nan
    return out


# ---------------------------------------------------------------------------------------------
# One fiscal year
# ---------------------------------------------------------------------------------------------


def build_year(
    mart: dict[str, pd.DataFrame],
    fiscal_year: int,
    cfg: Settings,
    registry: list[F.FeatureSpec] | None = None,
    state_cache: dict | None = None,
    decoders: dict[str, pd.Index] | None = None,
    coverage: Coverage | None = None,
    notes: dict | None = None,
    children: np.ndarray | None = None,
) -> pd.DataFrame:
    """All panel columns for one fiscal year, in registry order.

    ``mart`` holds pseudonym strings, or Int64 key codes when ``decoders`` is given (the
    streaming builder encodes once for all years). ``coverage`` says what each source export
    covers (computed from ``mart`` when not given); ``notes`` collects per-year counts of
    what is unknown for coverage.json. ``children`` (key codes) limits the rows to those
    children (one hash partition on the dask engine); every feature is per child, so their
    rows equal the same rows of the whole year.
    """
    panel_cfg = cfg.panel
    registry = registry or F.feature_registry(cfg)
    coverage = coverage if coverage is not None else source_coverage(mart, (), cfg)
    if decoders is None:
        mart, decoders = encode_keys(mart)
    tables = predictor_tables(mart)
    on = as_of_date(fiscal_year, panel_cfg)
    spine = resident_spine(tables["residents"], fiscal_year, panel_cfg)
    if children is not None:
        spine = spine[spine.index.isin(children)]
    sources = {s.name: s.source_tables for s in registry}
    child = blank_absent(
        F.child_features(spine, tables, on, fiscal_year, panel_cfg, coverage),
        sources,
        coverage.absent,
    )
    hh_now = F.household_state(tables, on, fiscal_year, spine.index, coverage)
    prev_on = on - pd.DateOffset(years=1)
    needed = spine.index[F.resident_on(spine, prev_on).to_numpy()]
    # the previous year's state was computed for last year's spine: reuse it when it covers
    # every child who was here a year ago (it does unless age_min > 0)
    cached = (state_cache or {}).get(fiscal_year - 1)
    if cached is not None and needed.isin(cached[1]).all():
        hh_prev = cached[0]
    else:
        hh_prev = F.household_state(tables, prev_on, fiscal_year - 1, needed, coverage)
    if state_cache is not None:
        state_cache.clear()
        state_cache[fiscal_year] = (hh_now, spine.index)
    household = household_windows(hh_now.reindex(spine.index), spine, on, fiscal_year, coverage)
    household = blank_absent(household, sources, coverage.absent)
    deltas = blank_absent(F.delta_features(spine, hh_now, hh_prev, on), sources, coverage.absent)
    yc = F.young_carer_items(
        spine, household, child, coverage.covered_from("nursery_enrolment", on)
    )
    labels = blank_absent(
        label_columns(spine, mart, fiscal_year, cfg, coverage), sources, coverage.absent
    )
    if notes is not None:
        notes[fiscal_year] = year_notes(spine, household, labels, on, cfg, coverage)

    info = {
        "fiscal_year": pd.Series(fiscal_year, index=spine.index),
        "household_id": household["household_id"],
        "age": child["child_age"],
        "school_age": child["child_school_age"],
    }
    grade = child["child_school_age"] - 5
    info["grade"] = grade.where((grade >= 1) & (grade <= 9))
    reg = tables["school_register"]
    reg_now = reg[reg["fiscal_year"] == fiscal_year].drop_duplicates("resident_code")
    info["school_code"] = reg_now.set_index("resident_code")["school_code"].reindex(spine.index)
    for col in ("school_district", "sex", "nationality"):
        info[col] = spine[col]
    info["single_parent"] = household["hh_single_parent"]
    info["history_incomplete"] = child["history_incomplete_flag"]
    columns = _columns(spine.index, info, child, household[F.HOUSEHOLD_COLUMNS], deltas)
    columns.update(_columns(spine.index, F.missing_indicators(columns), yc, labels))
    columns["child_id"] = decode(pd.Series(spine.index), decoders["resident_code"])
    columns["household_id"] = decode(columns["household_id"], decoders["household_code"])
    return conform(columns, registry)


def _columns(index: pd.Index, *parts: dict | pd.DataFrame) -> dict[str, pd.Series]:
    """The columns of ``parts`` (frames or dicts of Series on ``index``) in order, each aligned
    to ``index``: the panel is put together once, without copying a wide frame per step."""
    out: dict[str, pd.Series] = {}
    for part in parts:
        for name in part:
            if name in out:
                raise MimamoriError(f"panel: column {name!r} computed twice")
            col = part[name]
            out[name] = col if col.index.equals(index) else col.reindex(index)
    return out


def year_notes(
    spine: pd.DataFrame,
    household: pd.DataFrame,
    labels: pd.DataFrame,
    on: pd.Timestamp,
    cfg: Settings,
    coverage: Coverage,
) -> dict:
    """What is unknown in one fiscal year (counts of child rows), for coverage.json."""
    unknown_members = household["hh_unknown_members"].fillna(0) > 0
    in_movers = spine["move_in_date"].notna()
    return {
        "children": int(len(spine)),
        "no_household": int(household["hh_size"].isna().sum()),
        "household_member_unknown": int(unknown_members.sum()),
        "in_movers": int(in_movers.sum()),
        "labels_observed": bool(label_observed(on, cfg.panel.outcome_window_years, coverage)),
        "label_window": [
            on.date().isoformat(),
            (on + pd.DateOffset(years=cfg.panel.outcome_window_years) - pd.Timedelta(days=1))
            .date()
            .isoformat(),
        ],
    }


def arrow_schema(registry: list[F.FeatureSpec]) -> pa.Schema:
    """Fixed column types: ids and categories as strings, fiscal_year int64, the rest float64."""
    fields = []
    for spec in registry:
        if spec.name == "fiscal_year":
            fields.append(pa.field(spec.name, pa.int64()))
        elif spec.type in ("id", "category"):
            fields.append(pa.field(spec.name, pa.string()))
        else:
            fields.append(pa.field(spec.name, pa.float64()))
    return pa.schema(fields)


def conform(
    frame: pd.DataFrame | dict[str, pd.Series], registry: list[F.FeatureSpec]
) -> pd.DataFrame:
    """Exactly the registry's columns, in order, with fixed dtypes (fails loudly otherwise);
    ``frame`` may be a dict of equally long columns. The result has a RangeIndex."""
    names = [s.name for s in registry]
    have = list(frame.keys())
    missing = [n for n in names if n not in have]
    extra = [c for c in have if c not in names]
    if missing or extra:
        raise MimamoriError(
            f"panel: columns do not match the feature registry "
            f"(missing {missing}, unregistered {extra})"
        )
    out = {}
    for spec in registry:
        if spec.name == "fiscal_year":
            kind = "int64"
        elif spec.type in ("id", "category"):
            kind = "string"
        else:
            kind = "float64"
        col = frame[spec.name].astype(kind, copy=False)
        out[spec.name] = col.array if kind == "string" else col.to_numpy()
    return pd.DataFrame(out, copy=False)  # one block per column: no consolidation copy


def iter_panel_years(
    mart: dict[str, pd.DataFrame],
    cfg: Settings,
    progress: bool = True,
    decoders: dict[str, pd.Index] | None = None,
    coverage: Coverage | None = None,
    notes: dict | None = None,
    children: np.ndarray | None = None,
) -> Iterator[pd.DataFrame]:
    """One frame per fiscal year (``mart`` already key-encoded when ``decoders`` is given;
    ``children``: only these children's rows, see ``build_year``)."""
    registry = F.feature_registry(cfg)
    F.check_registry_roles(registry)
    cache: dict = {}
    coverage = coverage if coverage is not None else source_coverage(mart, (), cfg)
    encoded, decoders = (mart, decoders) if decoders is not None else encode_keys(mart)
    years = list(cfg.run.fiscal_years)
    for fy in tqdm(years, desc="panel (fiscal years)", disable=not progress):
        yield build_year(encoded, fy, cfg, registry, cache, decoders, coverage, notes, children)


def _as_mart(
    mart: dict[str, pd.DataFrame] | Path | str,
) -> tuple[dict[str, pd.DataFrame], list[str]]:
    """The mart and its absent tables (from a folder, or a dict missing some tables)."""
    if isinstance(mart, (str, Path)):
        return load_mart(Path(mart)), absent_tables(Path(mart))
    schemas = load_schemas()
    absent = sorted(t for t in schemas if t not in mart)
    required = [t for t in absent if t in REQUIRED_TABLES]
    if required:
        raise MimamoriError(f"mart: table(s) {required} missing")
    out = {t: check_mart_table(df, t) for t, df in mart.items()}
    return {**out, **{t: empty_table(schemas[t]) for t in absent}}, absent


def build_panel(
    mart: dict[str, pd.DataFrame] | Path, cfg: Settings, progress: bool = False
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The whole panel in memory (tests, notebooks, small cities) and its catalogue. A table
    missing from ``mart`` is an absent source: the features it feeds are NaN."""
    mart, absent = _as_mart(mart)
    coverage = source_coverage(mart, absent, cfg)
    frames = list(iter_panel_years(mart, cfg, progress=progress, coverage=coverage))
    catalogue = F.feature_catalogue(cfg)
    return pd.concat(frames, ignore_index=True), catalogue


# ---------------------------------------------------------------------------------------------
# Leakage check
# ---------------------------------------------------------------------------------------------


def truncate_mart(
    mart: dict[str, pd.DataFrame], on: pd.Timestamp, fiscal_year: int
) -> tuple[dict[str, pd.DataFrame], dict[str, int]]:
    """The mart as it could have been seen just before ``on``: records dated on or after it
    are removed, end dates on or after it are blanked (the period was still open).

    Each table is copied once (its kept rows), not twice: a cut L mart is several GB."""
    schemas = load_schemas()
    out, removed = {}, {}
    for table, df in mart.items():
        fields = schemas[table].mart_fields
        keep = kept_rows(df, table, on, fiscal_year)
        cut = df.take(np.flatnonzero(keep))
        for f in fields:
            if f.type == "date" and f.name in END_DATE_FIELDS:
                cut[f.name] = cut[f.name].mask(cut[f.name].notna() & (cut[f.name] >= on))
        cut.index = pd.RangeIndex(len(cut))
        removed[table] = int((~keep).sum())
        out[table] = cut
    return out, removed


def kept_rows(df: pd.DataFrame, table: str, on: pd.Timestamp, fiscal_year: int) -> np.ndarray:
    """Rows of a mart table that ``truncate_mart`` keeps: none of its event or start dates
    (end dates excluded) is on or after ``on`` and its fiscal year is before ``fiscal_year``."""
    keep = np.ones(len(df), dtype=bool)
    for f in load_schemas()[table].mart_fields:
        if f.type == "date" and f.name not in END_DATE_FIELDS:
            keep &= ~(df[f.name].notna() & (df[f.name] >= on)).to_numpy(dtype=bool)
        elif f.type != "date" and f.name == "fiscal_year":
            late = (df[f.name] >= fiscal_year).fillna(False).astype(bool)
            keep &= ~late.to_numpy(dtype=bool)
    return keep


def removed_by_cut(mart: dict[str, pd.DataFrame], cfg: Settings) -> dict[str, int]:
    """``records_removed_by_cut`` of the leakage check, without cutting the mart."""
    fy = leakage_year(cfg)
    on = as_of_date(fy, cfg.panel)
    return {t: int((~kept_rows(df, t, on, fy)).sum()) for t, df in mart.items()}


def leakage_year(cfg: Settings, fiscal_year: int | None = None) -> int:
    """The fiscal year the leakage check rebuilds: given, configured, or the middle one."""
    years = list(cfg.run.fiscal_years)
    return int(
        fiscal_year
        if fiscal_year is not None
        else cfg.panel.leakage_check_fiscal_year or years[len(years) // 2]
    )


def keep_year(
    frames: Iterable[pd.DataFrame], fiscal_year: int, kept: dict
) -> Iterator[pd.DataFrame]:
    """Pass ``frames`` through, keeping the one of ``fiscal_year`` in ``kept["frame"]`` (the
    leakage check compares it instead of building that year again)."""
    for frame in frames:
        if len(frame) and int(frame["fiscal_year"].iat[0]) == fiscal_year:
            kept["frame"] = frame
        yield frame


def leakage_check(
    mart: dict[str, pd.DataFrame],
    cfg: Settings,
    fiscal_year: int | None = None,
    decoders: dict[str, pd.Index] | None = None,
    coverage: Coverage | None = None,
    children: np.ndarray | None = None,
    full: pd.DataFrame | None = None,
) -> dict:
    """Rebuild one fiscal year from the mart cut at its as-of date and compare every feature
    (of ``children`` only when given: one partition's share of the check). ``full`` is that
    year as the panel built it from the whole mart (built here when not given).

    Passing means no record dated on or after the as-of date influences a feature; the
    registry check means no post_outcome table feeds a feature. Both builds use the spans of
    the full exports (what each export covers is a fact about the export, not a record).
    """
    coverage = coverage if coverage is not None else source_coverage(mart, (), cfg)
    fy = leakage_year(cfg, fiscal_year)
    registry = F.feature_registry(cfg)
    on = as_of_date(fy, cfg.panel)
    if decoders is None:
        mart, decoders = encode_keys(mart)
    build = functools.partial(
        build_year, registry=registry, decoders=decoders, coverage=coverage, children=children
    )
    full = full if full is not None else build(mart, fy, cfg)
    cut_mart, removed = truncate_mart(mart, on, fy)
    return compare_builds(full, build(cut_mart, fy, cfg), removed, fy, cfg)


def compare_builds(
    full: pd.DataFrame, cut: pd.DataFrame, removed: dict[str, int], fiscal_year: int, cfg: Settings
) -> dict:
    """The leakage check's verdict: ``full`` (the year built from the whole mart) against
    ``cut`` (rebuilt from the mart cut at its as-of date, which removed ``removed`` rows)."""
    registry = F.feature_registry(cfg)
    on = as_of_date(fiscal_year, cfg.panel)
    feats = [s.name for s in registry if s.role == "feature"]
    same_rows = pd.Index(full["child_id"]).equals(pd.Index(cut["child_id"]))
    changed = []
    if same_rows:
        for c in feats:
            a, b = full[c].to_numpy(), cut[c].to_numpy()
            if not np.array_equal(a, b, equal_nan=True):
                changed.append(c)
    schemas = load_schemas()
    post = sorted(t for t, s in schemas.items() if s.role == "post_outcome")
    post_in_features = sorted(
        {s.name for s in registry if s.role == "feature" and set(s.source_tables) & set(post)}
    )
    return {
        "fiscal_year": fiscal_year,
        "as_of": on.date().isoformat(),
        "rows_compared": int(len(full)),
        "same_children": bool(same_rows),
        "features_compared": len(feats),
        "features_changed": changed,
        "records_removed_by_cut": removed,
        "post_outcome_tables": post,
        "features_from_post_outcome_tables": post_in_features,
        "passed": bool(same_rows and not changed and not post_in_features),
    }


# ---------------------------------------------------------------------------------------------
# Stage entry point
# ---------------------------------------------------------------------------------------------


def write_panel(
    mart: dict[str, pd.DataFrame],
    cfg: Settings,
    P: Paths,
    progress: bool = True,
    decoders: dict[str, pd.Index] | None = None,
    coverage: Coverage | None = None,
    kept: dict | None = None,
) -> dict:
    """Stream the panel year by year into panel.parquet; write catalogue, missingness and
    coverage.json (what each source covers and what is unknown per year). ``kept`` receives
    the leakage check's year (``kept["frame"]``)."""
    coverage = coverage if coverage is not None else source_coverage(mart, (), cfg)
    notes: dict[int, dict] = {}
    frames = iter_panel_years(
        mart, cfg, progress=progress, decoders=decoders, coverage=coverage, notes=notes
    )
    if kept is not None:
        frames = keep_year(frames, leakage_year(cfg), kept)
    return write_frames(frames, cfg, P, coverage, notes)


def write_frames(
    frames: Iterable[pd.DataFrame | pa.Table],
    cfg: Settings,
    P: Paths,
    coverage: Coverage,
    notes: dict[int, dict],
) -> dict:
    """Write the year frames (pandas, or arrow tables of the panel schema) into panel.parquet,
    one row group per year, and the catalogue, missingness and coverage.json; ``notes`` is
    filled while ``frames`` is consumed."""
    schema = arrow_schema(F.feature_registry(cfg))
    catalogue = F.feature_catalogue(cfg)

    def tables() -> Iterator[tuple[pa.Table, pd.DataFrame]]:
        for item in frames:
            if isinstance(item, pa.Table):
                table, frame = item, item.to_pandas()
            else:
                frame = item
                table = pa.Table.from_pandas(frame, schema=schema, preserve_index=False)
            if len(frame):
                yield table, F.missingness_table(frame, catalogue)
            del frame, table

    return write_tables(tables(), cfg, P, coverage, notes)


def write_tables(
    years: Iterable[tuple[pa.Table, pd.DataFrame]],
    cfg: Settings,
    P: Paths,
    coverage: Coverage,
    notes: dict[int, dict],
) -> dict:
    """Write the (non-empty) years, each an arrow table of the panel schema with its rows of
    missingness.csv, into panel.parquet, one row group per year, and the catalogue,
    missingness and coverage.json; ``notes`` is filled while ``years`` is consumed."""
    catalogue = F.feature_catalogue(cfg)
    schema = arrow_schema(F.feature_registry(cfg))
    miss_parts: list[pd.DataFrame] = []
    rows_per_year: dict[int, int] = {}
    with atomic_path(P.panel) as tmp:
        writer = pq.ParquetWriter(tmp, schema)
        try:
            for table, missing in years:
                fy = int(table.column("fiscal_year")[0].as_py())
                rows_per_year[fy] = table.num_rows
                miss_parts.append(missing)
                writer.write_table(table)
                del table
        finally:
            writer.close()
    missingness = (
        pd.concat(miss_parts, ignore_index=True)
        .sort_values(["name", "fiscal_year"])
        .reset_index(drop=True)
        if miss_parts
        else pd.DataFrame()
    )
    write_csv(catalogue, P.feature_catalogue)
    write_csv(missingness, P.missingness)
    write_json(
        {
            "export_date": cfg.run.export_date,
            "sources": coverage.summary(),
            "absent_sources": sorted(coverage.absent),
            "years": {str(fy): n for fy, n in sorted(notes.items())},
        },
        P.panel_coverage,
    )
    return {
        "rows_per_year": rows_per_year,
        "rows": int(sum(rows_per_year.values())),
        "notes": notes,
    }


def main(cfg: Settings, argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m helpers panel", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--no-leakage-check",
        action="store_true",
        help="skip the rebuild of one year from the cut mart",
    )
    args = parser.parse_args(argv)
    P = paths(cfg)
    started = time.perf_counter()
    # the pseudonyms are read as key codes: memory stays near one mart
    mart, decoders = load_encoded_mart(P.mart)
    coverage = source_coverage(mart, absent_tables(P.mart), cfg)
    check: dict | None = None
    from helpers.panel.parallel import parallel_panel, process_count

    if cfg.run.engine == "dask":
        from helpers.panel.partitions import dask_panel

        removed = None if args.no_leakage_check else removed_by_cut(mart, cfg)
        del mart, decoders  # the tasks read the mart themselves
        summary, check = dask_panel(cfg, P, coverage, removed)
    elif process_count(len(cfg.run.fiscal_years), cfg.run.local_workers) > 1:  # more cores
        leakage = not args.no_leakage_check
        summary, check = parallel_panel(mart, decoders, coverage, cfg, P, leakage)
    else:
        kept: dict = {}
        summary = write_panel(mart, cfg, P, decoders=decoders, coverage=coverage, kept=kept)
        if not args.no_leakage_check:
            full = kept.pop("frame", None)
            check = leakage_check(mart, cfg, decoders=decoders, coverage=coverage, full=full)
    outputs = [P.panel, P.feature_catalogue, P.missingness, P.panel_coverage]
    if check is not None:
        write_json(check, P.leakage_check)
        outputs.append(P.leakage_check)
        if not check["passed"]:
            raise MimamoriError(
                f"{P.leakage_check}: leakage check failed "
                f"(features changed: {check['features_changed']})"
            )
    append_audit(
        P.data,
        "panel",
        cfg,
        inputs=[P.mart],
        outputs=outputs,
        rows={
            "panel": summary["rows"],
            **{f"fy{k}": v for k, v in summary["rows_per_year"].items()},
        },
    )
    print(
        f"panel: {summary['rows']:,} child-years in {time.perf_counter() - started:.1f}s "
        f"-> {P.panel}"
    )
    _print_unknowns(summary["notes"], coverage)
    return 0


def _print_unknowns(notes: dict, coverage: Coverage) -> None:
    """Say what the panel could not know (also in coverage.json)."""
    if coverage.absent:
        print(
            f"panel: no export for {sorted(coverage.absent)}: the features they feed are "
            "NaN (unknown)"
        )
    open_years = [fy for fy, n in notes.items() if not n["labels_observed"]]
    if open_years:
        print(
            f"panel: outcome windows not complete in the export for fiscal year(s) "
            f"{open_years}: their labels are NaN"
        )
    unknown = sum(n["household_member_unknown"] for n in notes.values())
    if unknown:
        print(
            f"panel: {unknown} child-years have a household member without a resident row: "
            "items about that member are NaN"
        )
