"""Code look-ups in C (helpers.ingest.codes): the same answers as the plain Python routes."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from helpers.ingest import codes
from helpers.ingest.masking import DEMO_KEY, pseudonymise_arrow, pseudonyms, pseudonyms_sql

TEXTS = ["0001", "1", "", "名前ｱ🙂", "x" * 300, "a b", "00010", "ｱｲｳ"]


def test_positions_find_each_code_and_nothing_else():
    index = codes.CodeIndex(pa.array(TEXTS))
    values = pa.array(["1", None, "0001", "nope", "", "x" * 300, "0001 "])
    assert index.positions(values).tolist() == [1, -1, 0, -1, 2, 4, -1]
    assert index.contains(values).tolist() == [True, False, True, False, True, True, False]


def test_a_fingerprint_collision_never_matches_the_wrong_code(monkeypatch):
    index = codes.CodeIndex(pa.array(["a", "b"]))
    real = codes.fingerprints

    def collide(values, columns=1):  # "z" gets the fingerprint of "a"
        out = real(values, columns)
        z = np.asarray(pa.array(values).to_pylist(), dtype=object) == "z"
        out[z] = real(pa.array(["a"]))[0]
        return out

    monkeypatch.setattr(codes, "fingerprints", collide)
    assert index.positions(pa.array(["z", "a", "b"])).tolist() == [-1, 0, 1]


def test_a_set_whose_fingerprints_collide_is_looked_up_exactly(monkeypatch):
    monkeypatch.setattr(codes, "fingerprints", lambda v, columns=1: np.zeros(len(v), np.uint64))
    index = codes.CodeIndex(pa.array(["a", "b", "c"]))
    assert index.positions(pa.array(["c", None, "q", "a"])).tolist() == [2, -1, -1, 0]


def test_pseudonyms_by_duckdb_equal_the_reference_hmac():
    values = pa.array([*TEXTS, None, *[f"{i:011d}" for i in range(2000)]])
    for key in (DEMO_KEY, b"k" * 100, bytes(range(40))):
        for domain in ("resident", "household"):
            got = pseudonyms_sql(values, key, domain, threads=2).to_pylist()
            want = [
                None if v is None else pseudonyms([v], key, domain, {})[0]
                for v in values.to_pylist()
            ]
            assert got == want


@pytest.mark.parametrize("book_codes", [None, TEXTS[:3], TEXTS])
def test_a_book_gives_the_pseudonyms_of_every_code_held_or_not(book_codes):
    book = codes.PseudonymBook(
        DEMO_KEY, "resident", None if book_codes is None else pa.array(book_codes), threads=1
    )
    values = pa.array(["1", None, *TEXTS, "unseen", "1", None])
    want = pseudonymise_arrow(values, DEMO_KEY, "resident", {})
    assert book.lookup(values).to_pylist() == want.to_pylist()
    assert book.lookup(pa.chunked_array([values[:3], values[3:]])).equals(want)


def test_a_forked_process_opens_its_own_connections():
    codes.fingerprints(pa.array(["a"]))  # this thread's connection exists
    before = codes._local
    codes.reset_connections()
    assert codes._local is not before and before in codes._inherited  # kept, never closed
    assert codes.fingerprints(pa.array(["a"])).dtype == np.uint64


def test_several_domains_in_one_query_give_each_domains_pseudonyms():
    from helpers.ingest.masking import pseudonyms_sql_of

    codes_of = {
        "resident": pa.array(TEXTS),
        "household": pa.array(TEXTS[:2]),
        "student": pa.array([], pa.string()),
    }
    got = pseudonyms_sql_of(codes_of, DEMO_KEY, threads=2)
    for domain, values in codes_of.items():
        assert got[domain].to_pylist() == pseudonyms(values.to_pylist(), DEMO_KEY, domain, {})
