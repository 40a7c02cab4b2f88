"""Masking before analysis, driven by each schema field's ``masking`` rule.

- ``hmac``: keyed pseudonym (HMAC-SHA256, 16 hex chars). A plain hash of an 8-15 digit code
  can be reversed by enumeration; a keyed hash cannot without the municipality's secret.
  The domain (resident/household/student/consultation) is part of the message, so the same
  digits in two code systems give unrelated pseudonyms, while one code gives one pseudonym
  in every table and every run under the same key.
- ``birth_month``: YYYYMM01, except 1 April → YYYY0301 so the school year stays right.
- ``month``: YYYYMM01.  ``topcode``: clipped at configured percentiles.  ``drop``: removed.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from helpers import MimamoriError
from helpers.config import REPO_ROOT, Settings, resolve
from helpers.schema import TableSchema

if TYPE_CHECKING:
    from helpers.ingest.codes import PseudonymBook

DOMAINS = ("resident", "household", "student", "consultation")
# Which pseudonym domain each hmac field uses (the key is the field name).
FIELD_DOMAINS = {
    "resident_code": "resident",
    "candidate_code": "resident",  # 名寄せ: an unmatched record's best registry candidate
    "household_code": "household",
    "student_id": "student",
    "consultation_id": "consultation",
}
DEMO_KEY = b"mimamori-demo-key: synthetic data only, not secret"
MIN_KEY_BYTES = 32
KEY_HELP = (
    "make a secret key once with `python -c 'import secrets; print(secrets.token_hex(32))' > "
    "~/mimamori.key` (keep it outside this folder and away from the data), then either "
    "`export MIMAMORI_KEY=$(cat ~/mimamori.key)` or set key_file: ~/mimamori.key in "
    "config/ingest.yaml; the same key must be used for every run, or pseudonyms change"
)


def pseudonym(code: str, key: bytes, domain: str) -> str:
    """Keyed pseudonym of one code: first 16 hex chars of HMAC-SHA256(key, domain:code)."""
    if domain not in DOMAINS:
        raise ValueError(f"unknown pseudonym domain {domain!r}; known: {DOMAINS}")
    msg = f"{domain}:{code}".encode()
    return hmac.new(key, msg, hashlib.sha256).hexdigest()[:16]


def _hmac_states(key: bytes, prefix: bytes) -> tuple:
    """SHA-256 states of HMAC(key, prefix + ...) after the inner pad and the prefix, and after
    the outer pad (RFC 2104), so each message costs two hash finishes, not a key set-up."""
    block = 64  # SHA-256's block size
    k = hashlib.sha256(key).digest() if len(key) > block else key
    k = k.ljust(block, b"\0")
    inner = hashlib.sha256(bytes(c ^ 0x36 for c in k))
    inner.update(prefix)
    return inner, hashlib.sha256(bytes(c ^ 0x5C for c in k))


def pseudonyms(texts: list[str], key: bytes, domain: str, cache: dict[str, str]) -> list[str]:
    """``pseudonym`` of each text, through ``cache`` (text -> pseudonym, same key and domain):
    a code met before is not hashed again."""
    out = list(map(cache.get, texts))
    if None not in out:
        return out  # type: ignore[return-value]
    inner, outer = _hmac_states(key, f"{domain}:".encode())
    for i in [i for i, done in enumerate(out) if done is None]:
        text = texts[i]
        h = inner.copy()
        h.update(text.encode())
        o = outer.copy()
        o.update(h.digest())
        out[i] = cache[text] = o.hexdigest()[:16]
    return out  # type: ignore[return-value]


def pseudonyms_sql(codes: pa.Array, key: bytes, domain: str, threads: int = 2) -> pa.Array:
    """``pseudonym`` of many codes at once, computed by DuckDB's SHA-256 on ``threads`` threads
    (the same RFC 2104 HMAC: the key's inner and outer pads prefixed as bytes); nulls stay null.
    ``pseudonyms`` is the reference it is tested against."""
    return pseudonyms_sql_of({domain: codes}, key, threads)[domain]


def pseudonyms_sql_of(
    codes: Mapping[str, pa.Array], key: bytes, threads: int = 2
) -> dict[str, pa.Array]:
    """``pseudonyms_sql`` of several domains' codes in one query."""
    import duckdb

    for domain in codes:
        if domain not in DOMAINS:
            raise ValueError(f"unknown pseudonym domain {domain!r}; known: {DOMAINS}")
    block = 64  # SHA-256's block size
    k = (hashlib.sha256(key).digest() if len(key) > block else key).ljust(block, b"\0")
    pads = {"i": bytes(c ^ 0x36 for c in k), "o": bytes(c ^ 0x5C for c in k)}
    names = list(codes)
    table = pa.table(
        {
            "d": pa.chunked_array(
                [pa.repeat(pa.scalar(f"{d}:"), len(codes[d])) for d in names], pa.string()
            ),
            "c": pa.chunked_array([pa.array(codes[d], pa.string()) for d in names], pa.string()),
        }
    )
    con = duckdb.connect()
    try:
        con.execute(f"SET threads = {max(1, int(threads))}")
        con.register("codes", table)
        hmac_hex = "sha256($o || unhex(sha256($i || encode(d || c))))"
        query = f"SELECT substr({hmac_hex}, 1, 16) AS p FROM codes"
        out = con.sql(query, params=pads).to_arrow_table().column("p").combine_chunks()
    finally:
        con.close()
    ends = np.cumsum([len(codes[d]) for d in names])
    return {
        d: out.slice(end - len(codes[d]), len(codes[d])).cast(pa.string())
        for d, end in zip(names, ends, strict=True)
    }


def pseudonymise(
    series: pd.Series, key: bytes, domain: str, cache: dict[str, str] | None = None
) -> pd.Series:
    """Pseudonym of every code in a column (computed once per distinct code); blanks stay <NA>.

    ``cache`` (code -> pseudonym, same key and domain) carries the pseudonyms from one block of
    a table to the next, so a code met in many blocks is hashed once."""
    if domain not in DOMAINS:
        raise ValueError(f"unknown pseudonym domain {domain!r}; known: {DOMAINS}")
    s = pd.Series(series, copy=False).astype("string")
    codes, uniques = pd.factorize(s, use_na_sentinel=True)
    texts = [str(u) for u in np.asarray(uniques, dtype=object)]
    mapped = np.empty(len(texts), dtype=object)
    mapped[:] = pseudonyms(texts, key, domain, cache if cache is not None else {})
    out = np.full(len(s), None, dtype=object)
    has = codes >= 0
    out[has] = mapped[codes[has]]
    return pd.Series(out, index=s.index, dtype="string")


def pseudonymise_arrow(
    values: pa.Array, key: bytes, domain: str, cache: dict[str, str] | None = None
) -> pa.Array:
    """``pseudonymise`` of an Arrow column: each distinct code hashed once; nulls stay null."""
    if domain not in DOMAINS:
        raise ValueError(f"unknown pseudonym domain {domain!r}; known: {DOMAINS}")
    if not pa.types.is_string(values.type):
        values = pc.cast(values, pa.string())
    enc = pc.dictionary_encode(values)
    texts = enc.dictionary.to_pylist()
    mapped = pa.array(
        pseudonyms(texts, key, domain, cache if cache is not None else {}), pa.string()
    )
    return mapped.take(enc.indices)


def field_domain(field_name: str) -> str:
    if field_name not in FIELD_DOMAINS:
        raise MimamoriError(
            f"field {field_name!r} has masking: hmac but no pseudonym domain; "
            f"known: {sorted(FIELD_DOMAINS)}"
        )
    return FIELD_DOMAINS[field_name]


def check_key(key: bytes, where: str, synthetic: bool) -> bytes:
    """Refuse a key that does not protect real codes: the public demo key (real data), fewer
    than 32 bytes, or one character repeated."""
    if key == DEMO_KEY and not synthetic:
        raise MimamoriError(
            f"{where}: this is the public demo key, which is not secret; real "
            f"data (run.synthetic: false) needs the municipality's own key: "
            f"{KEY_HELP}"
        )
    if len(key) < MIN_KEY_BYTES:
        raise MimamoriError(
            f"{where}: the key is {len(key)} bytes, shorter than {MIN_KEY_BYTES}; {KEY_HELP}"
        )
    if len(set(key)) == 1:
        raise MimamoriError(f"{where}: the key is one character repeated; {KEY_HELP}")
    return key


def load_key(cfg: Settings) -> tuple[bytes, str]:
    """The pseudonym key and where it came from: ``env`` | ``file`` | ``demo``.

    The demo key is public, so it is only allowed for the synthetic city (also when given
    through MIMAMORI_KEY or a key file). A key file inside the repository is refused: it
    would end up committed next to the data it protects.
    """
    synthetic = cfg.run.synthetic
    env = os.environ.get("MIMAMORI_KEY")
    if env:
        return check_key(env.strip().encode("utf-8"), "MIMAMORI_KEY", synthetic), "env"
    if cfg.ingest.key_file:
        path = resolve(Path(cfg.ingest.key_file).expanduser()).resolve()
        if path.is_relative_to(REPO_ROOT.resolve()):
            raise MimamoriError(
                f"{path}: the pseudonym key file is inside the repository; move it outside "
                f"(e.g. ~/mimamori.key) and update ingest.key_file"
            )
        if not path.is_file():
            raise MimamoriError(f"{path}: ingest.key_file not found; {KEY_HELP}")
        return check_key(path.read_bytes().strip(), str(path), synthetic), "file"
    if synthetic:
        return DEMO_KEY, "demo"
    raise MimamoriError(
        f"no pseudonym key for real data (run.synthetic is false): set "
        f"MIMAMORI_KEY or ingest.key_file; {KEY_HELP}"
    )


def mask_month(series: pd.Series) -> pd.Series:
    """Dates → the first day of their month (datetime64[ns], NaT kept)."""
    s = pd.to_datetime(pd.Series(series, copy=False))
    months = s.to_numpy(dtype="datetime64[ns]").astype("datetime64[M]")  # NaT stays NaT
    return pd.Series(months.astype("datetime64[ns]"), index=s.index, name=s.name)


def mask_birth_month(series: pd.Series) -> pd.Series:
    """Birth dates → YYYYMM01, except 1 April → YYYY0301 (the child belongs to the earlier school year)."""
    s = pd.to_datetime(pd.Series(series, copy=False))
    month = mask_month(s)
    april_first = (s.dt.month == 4) & (s.dt.day == 1)
    march = (s - pd.DateOffset(months=1)).dt.to_period("M").dt.to_timestamp()
    return month.where(~april_first.fillna(False), march).astype("datetime64[ns]")


def topcode(
    series: pd.Series, lower_pct: float = 0.5, upper_pct: float = 99.5
) -> tuple[pd.Series, dict]:
    """Clip a measurement at its own percentiles so a rare extreme cannot single a child out.

    The bounds are observed values (lower bound rounded down, upper bound up to the nearest
    observation), so an integer column stays integer. Returns the clipped column and
    ``{lower, upper, n_lower, n_upper, n_values}``.
    """
    s = pd.Series(series, copy=False)
    values = pd.to_numeric(s, errors="coerce").dropna().to_numpy(dtype=float)
    if not len(values):
        return s.copy(), {"lower": None, "upper": None, "n_lower": 0, "n_upper": 0, "n_values": 0}
    lower = float(np.percentile(values, lower_pct, method="lower"))
    upper = float(np.percentile(values, upper_pct, method="higher"))
    return clip_to(s, lower, upper)


def clip_to(series: pd.Series, lower: float, upper: float) -> tuple[pd.Series, dict]:
    """Clip at fixed bounds and count how many values each bound changed."""
    s = pd.Series(series, copy=False)
    n_lower = int((s < lower).sum())
    n_upper = int((s > upper).sum())
    if str(s.dtype) == "Int64":
        clipped = s.clip(int(np.floor(lower)), int(np.ceil(upper)))
    else:
        clipped = s.clip(lower, upper)
    info = {
        "lower": lower,
        "upper": upper,
        "n_lower": n_lower,
        "n_upper": n_upper,
        "n_values": int(s.notna().sum()),
    }
    return clipped, info


def mask_table(
    df: pd.DataFrame,
    schema: TableSchema,
    key: bytes,
    bounds: tuple[float, float] | dict[str, tuple[float, float]] = (0.5, 99.5),
    caches: dict[str, dict[str, str]] | None = None,
) -> tuple[pd.DataFrame, dict]:
    """Apply every field's masking rule to a validated, typed table.

    ``bounds`` is either the top-coding percentiles ``(lower, upper)`` or fixed value bounds
    per field ``{field: (lower, upper)}``; ``caches`` (per pseudonym domain) keeps pseudonyms
    from block to block and table to table (same key). Returns the masked table (only the schema's
    non-dropped fields, in schema order) and a report of what masking did per field.
    """
    out: dict[str, pd.Series] = {}
    report: dict[str, dict] = {}
    for f in schema.fields:
        if f.masking == "drop":
            report[f.name] = {"masking": "drop"}
            continue
        if f.name not in df.columns:
            raise MimamoriError(f"{schema.table}: column {f.name!r} missing before masking")
        col = df[f.name]
        if f.masking == "hmac":
            domain = field_domain(f.name)
            cache = caches.setdefault(domain, {}) if caches is not None else None
            out[f.name] = pseudonymise(col, key, field_domain(f.name), cache)
            report[f.name] = {
                "masking": "hmac",
                "domain": field_domain(f.name),
                "n_values": int(col.notna().sum()),
            }
        elif f.masking == "birth_month":
            masked = mask_birth_month(col)
            report[f.name] = {
                "masking": "birth_month",
                "n_april_first": int(((col.dt.month == 4) & (col.dt.day == 1)).sum()),
            }
            out[f.name] = masked
        elif f.masking == "month":
            out[f.name] = mask_month(col)
            report[f.name] = {"masking": "month"}
        elif f.masking == "topcode":
            if isinstance(bounds, dict):
                if f.name not in bounds:
                    raise MimamoriError(
                        f"{schema.table}.{f.name}: no fixed top-coding bounds given"
                    )
                lo, hi = bounds[f.name]
                clipped, info = clip_to(col, lo, hi)
            else:
                clipped, info = topcode(col, bounds[0], bounds[1])
                info["percentiles"] = [bounds[0], bounds[1]]
            out[f.name] = clipped
            report[f.name] = {"masking": "topcode", **info}
        else:
            out[f.name] = col
            report[f.name] = {"masking": "keep"}
    return pd.DataFrame(out, index=df.index), report


def _month_arrow(values: pa.Array, birth: bool) -> tuple[pa.Array, int]:
    """``mask_month`` (or, ``birth``, ``mask_birth_month``) of an Arrow timestamp column; the
    number of 1 April birth dates moved to March."""
    ns = values.to_numpy(zero_copy_only=False).astype("datetime64[ns]")
    months = ns.astype("datetime64[M]")  # NaT stays NaT
    april_first = np.zeros(len(ns), dtype=bool)
    if birth:
        ok = ~np.isnat(ns)
        first = ns.astype("datetime64[D]") == months.astype("datetime64[D]")
        april_first = ok & first & (months.astype("int64") % 12 == 3)
        months = np.where(april_first, months - np.timedelta64(1, "M"), months)
    out = pa.array(months.astype("datetime64[ns]"), pa.timestamp("ns"), from_pandas=True)
    return out, int(april_first.sum())


def _clip_arrow(values: pa.Array, lower: float, upper: float) -> tuple[pa.Array, dict]:
    """``clip_to`` of an Arrow int64 or float64 column (nulls stay null)."""
    n_lower = pc.sum(pc.less(values, lower)).as_py() or 0
    n_upper = pc.sum(pc.greater(values, upper)).as_py() or 0
    if pa.types.is_integer(values.type):
        lo = pa.scalar(int(np.floor(lower)), values.type)
        hi = pa.scalar(int(np.ceil(upper)), values.type)
    else:
        lo, hi = pa.scalar(float(lower), values.type), pa.scalar(float(upper), values.type)
    clipped = pc.if_else(pc.less(values, lo), lo, pc.if_else(pc.greater(values, hi), hi, values))
    info = {
        "lower": lower,
        "upper": upper,
        "n_lower": int(n_lower),
        "n_upper": int(n_upper),
        "n_values": len(values) - values.null_count,
    }
    return clipped, info


def mask_batch(
    batch: pa.RecordBatch,
    schema: TableSchema,
    key: bytes,
    bounds: dict[str, tuple[float, float]],
    books: Mapping[str, PseudonymBook],
) -> tuple[list[pa.Array], dict]:
    """``mask_table`` of an Arrow batch of typed rows with fixed top-coding ``bounds``: the
    masked columns of the schema's mart fields (in order) and the same report. ``books``:
    the pseudonyms of each hmac field's domain (``codes.PseudonymBook``)."""
    out: list[pa.Array] = []
    report: dict[str, dict] = {}
    names = batch.schema.names
    for f in schema.fields:
        if f.masking == "drop":
            report[f.name] = {"masking": "drop"}
            continue
        if f.name not in names:
            raise MimamoriError(f"{schema.table}: column {f.name!r} missing before masking")
        col = batch.column(f.name)
        if f.masking == "hmac":
            domain = field_domain(f.name)
            out.append(books[domain].lookup(col))
            n = len(col) - col.null_count
            report[f.name] = {"masking": "hmac", "domain": domain, "n_values": n}
        elif f.masking in ("birth_month", "month"):
            masked, n_april = _month_arrow(col, f.masking == "birth_month")
            out.append(masked)
            report[f.name] = {"masking": f.masking}
            if f.masking == "birth_month":
                report[f.name]["n_april_first"] = n_april
        elif f.masking == "topcode":
            if f.name not in bounds:
                raise MimamoriError(f"{schema.table}.{f.name}: no fixed top-coding bounds given")
            clipped, info = _clip_arrow(col, *bounds[f.name])
            out.append(clipped)
            report[f.name] = {"masking": "topcode", **info}
        else:
            out.append(col)
            report[f.name] = {"masking": "keep"}
    return out, report


def correspondence_table(df: pd.DataFrame, schema: TableSchema, key: bytes) -> pd.DataFrame:
    """(domain, pseudonym, code) for every hmac field of an unmasked table: the way back."""
    parts = []
    for f in schema.fields:
        if f.masking != "hmac" or f.name not in df.columns:
            continue
        codes = df[f.name].dropna().astype("string").drop_duplicates()
        domain = field_domain(f.name)
        parts.append(
            pd.DataFrame(
                {
                    "domain": domain,
                    "pseudonym": pseudonymise(codes, key, domain).to_numpy(),
                    "code": codes.to_numpy(),
                }
            )
        )
    if not parts:
        return pd.DataFrame(columns=["domain", "pseudonym", "code"])
    return pd.concat(parts, ignore_index=True)


PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def private_dir(path: Path) -> Path:
    """Create (or tighten) the folder for re-identifying material: owner only (0700)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, PRIVATE_DIR_MODE)
    return path


def make_private(path: Path) -> Path:
    """Owner-only permissions (0600) on a file under the private folder."""
    os.chmod(path, PRIVATE_FILE_MODE)
    return Path(path)
