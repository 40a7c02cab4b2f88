"""Look-ups of text codes against a large fixed set of codes, in C rather than per value in Python.

Pass 2 asks two questions of every code in every block: is it one of the registry's codes (the
orphan checks), and what is its pseudonym. Both look a block's codes up among a few million
distinct codes. ``CodeIndex`` fingerprints the set once (DuckDB's 64-bit ``hash`` of each text,
in a pandas hash table built once) and then fingerprints each block's codes the same way; every
hit is confirmed by comparing the texts themselves, so a fingerprint collision can only make a
code look absent, never match the wrong code. A set whose own fingerprints collide falls back to
Arrow's exact ``index_in``.

``PseudonymBook`` is the pseudonyms of one domain's codes, computed once per distinct code up
front (``masking.pseudonyms_sql``, tested equal to the reference ``masking.pseudonyms``); a code
it does not hold is pseudonymised on the spot through its own cache, so a book only changes how
fast the answer comes, not the answer. Books are shared, read-only, by the threads of a local run.
"""

from __future__ import annotations

import threading

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from helpers.ingest.masking import DOMAINS, pseudonymise_arrow, pseudonyms_sql

_local = threading.local()


def _connection(threads: int = 1) -> duckdb.DuckDBPyConnection:
    """One in-memory DuckDB connection per thread (the callers already run side by side),
    using ``threads`` threads of its own."""
    con = getattr(_local, "con", None)
    if con is None:
        con = _local.con = duckdb.connect()
        _local.threads = 0
    if _local.threads != threads:
        con.execute(f"SET threads = {max(1, int(threads))}")
        _local.threads = threads
    return con


def distinct_text(parts: list[pa.Array], threads: int = 1) -> pa.Array:
    """The distinct non-null texts of several arrays (in no particular order: they are only
    looked up), by DuckDB on ``threads`` threads; Arrow's ``unique`` is several times slower."""
    if not parts:
        return pa.array([], pa.string())
    table = pa.table({"c": pa.chunked_array(parts, pa.string())})
    query = _connection(threads).from_arrow(table).filter("c IS NOT NULL").distinct()
    return query.to_arrow_table().column(0).combine_chunks().cast(pa.string())


_inherited: list[threading.local] = []


def reset_connections() -> None:
    """Open new per-thread connections from here on (a forked process must not use, nor
    close, the connections it inherited: their threads were not forked with it)."""
    global _local
    _inherited.append(_local)  # kept, never closed
    _local = threading.local()


def fingerprints(values: pa.Array, columns: int = 1) -> np.ndarray:
    """DuckDB's 64-bit hash of each text (equal texts, equal fingerprints; nulls too); with
    ``columns=2`` a second, independent one beside it (the hash of the text after a prefix)."""
    table = pa.table({"c": values})
    wanted = ["hash(c)", "hash('\x01mimamori:' || c)"][:columns]
    out = _connection().from_arrow(table).select(", ".join(wanted)).to_arrow_table()
    hashes = np.column_stack([out.column(i).to_numpy() for i in range(columns)])
    return hashes[:, 0] if columns == 1 else hashes


def _text(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    return values if pa.types.is_string(values.type) else pc.cast(values, pa.string())


class CodeIndex:
    """Positions of texts in a fixed array of distinct, non-null ``codes``."""

    def __init__(self, codes: pa.Array) -> None:
        self.codes = _text(codes)
        index = pd.Index(fingerprints(self.codes)) if len(self.codes) else None
        self._index = index if index is not None and index.is_unique else None
        if self._index is not None:
            self._index.get_indexer(self._index[:1])  # its hash table is built here, once

    def __len__(self) -> int:
        return len(self.codes)

    def positions(self, values: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """Each value's position in ``codes`` (int64); -1 when absent or null."""
        values = _text(values)
        if not len(self.codes) or not len(values):
            return np.full(len(values), -1, dtype=np.int64)
        if self._index is None:  # the set's own fingerprints collide: exact, slower
            pos = pc.index_in(values, value_set=self.codes)
            return pc.fill_null(pos, -1).to_numpy(zero_copy_only=False).astype(np.int64)
        pos = self._index.get_indexer(fingerprints(values)).astype(np.int64)
        hit = np.flatnonzero(pos >= 0)
        if len(hit):  # confirm every fingerprint hit by its text
            same = pc.equal(self.codes.take(pa.array(pos[hit])), values.take(pa.array(hit)))
            wrong = ~pc.fill_null(same, False).to_numpy(zero_copy_only=False)
            pos[hit[wrong]] = -1
        return pos

    def contains(self, values: pa.Array | pa.ChunkedArray) -> np.ndarray:
        """Whether each value is one of ``codes`` (nulls: False)."""
        return self.positions(values) >= 0


class PseudonymBook:
    """The pseudonyms of one domain's codes under one key, looked up per block in C."""

    def __init__(
        self,
        key: bytes,
        domain: str,
        codes: pa.Array | None = None,
        threads: int = 1,
        pseudonyms: pa.Array | None = None,
    ) -> None:
        """``pseudonyms``: those of ``codes`` when computed already (``pseudonyms_sql_of``)."""
        if domain not in DOMAINS:
            raise ValueError(f"unknown pseudonym domain {domain!r}; known: {DOMAINS}")
        self.key, self.domain = key, domain
        self.index = CodeIndex(codes) if codes is not None and len(codes) else None
        if self.index is not None and pseudonyms is None:
            pseudonyms = pseudonyms_sql(self.index.codes, key, domain, threads)
        self.pseudonyms = pseudonyms if self.index is not None else None
        self._extra: dict[str, str] = {}  # codes met that the book does not hold

    def lookup(self, values: pa.Array | pa.ChunkedArray) -> pa.Array:
        """``masking.pseudonymise_arrow`` of ``values``: the same pseudonyms, nulls stay null."""
        values = _text(values)
        if self.index is None or self.pseudonyms is None:
            return pseudonymise_arrow(values, self.key, self.domain, self._extra)
        pos = self.index.positions(values)
        out = self.pseudonyms.take(pa.array(pos, mask=pos < 0))
        miss = (pos < 0) & ~pc.is_null(values).to_numpy(zero_copy_only=False)
        if not miss.any():
            return out
        rest = pseudonymise_arrow(values.filter(pa.array(miss)), self.key, self.domain, self._extra)
        return pc.replace_with_mask(out, pa.array(miss), rest)


__all__ = ["CodeIndex", "PseudonymBook", "fingerprints"]
